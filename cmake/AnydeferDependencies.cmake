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

# gRPC's C++ callback API: anydefer::grpc (anydefer/grpc/*.hpp). Its tests and B12 also compile a .proto, with
# protoc and grpc_cpp_plugin.
find_package(gRPC CONFIG QUIET)
find_program(ANYDEFER_PROTOC protoc DOC "protoc, the protobuf compiler (Debian package protobuf-compiler)")
find_program(ANYDEFER_GRPC_CPP_PLUGIN grpc_cpp_plugin DOC "gRPC's protoc plugin (Debian package protobuf-compiler-grpc)")
if(gRPC_FOUND AND TARGET gRPC::grpc++ AND TARGET protobuf::libprotobuf AND ANYDEFER_PROTOC AND ANYDEFER_GRPC_CPP_PLUGIN)
  set(ANYDEFER_WITH_GRPC ON)
else()
  set(ANYDEFER_WITH_GRPC OFF)
  message(STATUS "anydefer: gRPC not found (Debian packages libgrpc++-dev, libprotobuf-dev, protobuf-compiler, "
                 "protobuf-compiler-grpc): anydefer::grpc, its tests and B12 are not built")
endif()

# Compiles `proto` (a .proto file with one service) into a static library `target` holding the messages and the
# generated stubs; its headers are included as "<name>.pb.h" and "<name>.grpc.pb.h".
function(anydefer_grpc_proto target proto)
  get_filename_component(_name "${proto}" NAME_WE)
  get_filename_component(_dir "${proto}" DIRECTORY)
  set(_out "${CMAKE_CURRENT_BINARY_DIR}/${target}")
  set(_generated "${_out}/${_name}.pb.cc" "${_out}/${_name}.grpc.pb.cc" "${_out}/${_name}.pb.h"
      "${_out}/${_name}.grpc.pb.h")
  add_custom_command(OUTPUT ${_generated}
    COMMAND "${CMAKE_COMMAND}" -E make_directory "${_out}"
    COMMAND "${ANYDEFER_PROTOC}" "--proto_path=${_dir}" "--cpp_out=${_out}" "--grpc_out=${_out}"
            "--plugin=protoc-gen-grpc=${ANYDEFER_GRPC_CPP_PLUGIN}" "${proto}"
    DEPENDS "${proto}"
    COMMENT "protoc: ${_name}.proto"
    VERBATIM)
  add_library(${target} STATIC ${_generated})
  set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON)
  target_include_directories(${target} SYSTEM PUBLIC "${_out}")  # generated code: not held to our warnings
  target_link_libraries(${target} PUBLIC gRPC::grpc++ protobuf::libprotobuf)
endfunction()

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
