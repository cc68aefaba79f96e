# Third-party dependencies. All of them come from Debian packages (tools/setup installs them); nothing is downloaded
# at configure time and nothing is vendored. A missing one stops the configure with the package to install.

function(anydefer_missing what package)
  message(FATAL_ERROR "${what} not found: install Debian package ${package} (tools/setup does this)")
endfunction()

# --- needed by the libraries ------------------------------------------------------------------------------------
set(THREADS_PREFER_PTHREAD_FLAG ON)
find_package(Threads REQUIRED)

# --- optional adapters: each is built when what it adapts is found ------------------------------------------------
# oneTBB: anydefer::tbb (tbb_executor). Without it the core, the pool and the reactors build as usual.
find_package(TBB CONFIG QUIET)
if(TBB_FOUND AND TARGET TBB::tbb)
  set(ANYDEFER_WITH_TBB ON)
else()
  set(ANYDEFER_WITH_TBB OFF)
  message(STATUS "anydefer: oneTBB not found (Debian package libtbb-dev): anydefer::tbb (tbb_executor) is not built")
endif()

# Standalone Asio (header-only): anydefer::asio (anydefer/asio/*.hpp), which needs only the core.
find_path(ANYDEFER_ASIO_INCLUDE_DIR NAMES asio.hpp DOC "Directory containing standalone asio.hpp")
if(ANYDEFER_ASIO_INCLUDE_DIR)
  set(ANYDEFER_WITH_ASIO ON)
else()
  set(ANYDEFER_WITH_ASIO OFF)
  message(STATUS "anydefer: standalone Asio not found (Debian package libasio-dev): anydefer::asio is not built")
endif()

# moodycamel::ConcurrentQueue is header-only; Debian installs it as /usr/include/concurrentqueue/concurrentqueue.h.
# The include directory is the one holding concurrentqueue.h, so code may write either <concurrentqueue.h> or
# <concurrentqueue/concurrentqueue.h>.
find_path(ANYDEFER_CONCURRENTQUEUE_INCLUDE_DIR
  NAMES concurrentqueue.h
  PATH_SUFFIXES concurrentqueue concurrentqueue/moodycamel
  DOC "Directory containing moodycamel's concurrentqueue.h")
if(NOT ANYDEFER_CONCURRENTQUEUE_INCLUDE_DIR)
  anydefer_missing("moodycamel concurrentqueue" libconcurrentqueue-dev)
endif()

# --- needed by the tests ----------------------------------------------------------------------------------------
if(ANYDEFER_BUILD_TESTS)
  find_package(GTest CONFIG QUIET)
  if(NOT GTest_FOUND)
    find_package(GTest QUIET)
  endif()
  if(NOT TARGET GTest::gtest OR NOT TARGET GTest::gtest_main)
    anydefer_missing("GoogleTest" libgtest-dev)
  endif()

endif()

# --- needed by the benchmarks -----------------------------------------------------------------------------------
if(ANYDEFER_BUILD_BENCH)
  find_package(benchmark CONFIG QUIET)
  if(NOT benchmark_FOUND OR NOT TARGET benchmark::benchmark)
    anydefer_missing("Google Benchmark" libbenchmark-dev)
  endif()

  # Comparison baselines used by some benchmark programs.
  if(NOT ANYDEFER_WITH_ASIO)
    anydefer_missing("standalone Asio (asio.hpp), a benchmark peer," libasio-dev)
  endif()
  if(NOT ANYDEFER_WITH_TBB)
    anydefer_missing("oneTBB (TBBConfig.cmake), a benchmark peer," libtbb-dev)
  endif()

  find_package(Boost CONFIG QUIET COMPONENTS thread)
  if(NOT Boost_FOUND OR NOT TARGET Boost::thread)
    anydefer_missing("Boost.Thread" libboost-thread-dev)
  endif()
endif()
