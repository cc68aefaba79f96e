# Script mode (cmake -P), driven by the consumer_* tests in tests/CMakeLists.txt.
#
#   MODE=install    wipe <BUILD_DIR>/stage and `cmake --install` the build into it
#   MODE=package    configure, build and run tests/consumer against the stage with find_package(anydefer)
#   MODE=pkgconfig  compile tests/consumer/main.cpp against the stage with `pkg-config --cflags --libs anydefer`
#
# Inputs: BUILD_DIR STAGE LIBDIR CONSUMER_SOURCE CXX CONFIG EXTRA_FLAGS (sanitizer flags of this build, may be
# empty), GENERATOR MAKE_PROGRAM REQUIRE_TBB REQUIRE_ASIO REQUIRE_GRPC (package: the optional targets this build made, which the
# package must then export), PKG_CONFIG (pkgconfig).
cmake_minimum_required(VERSION 3.25)

function(run)
  string(JOIN " " _shown ${ARGN})
  message(STATUS "+ ${_shown}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "command failed (${_rc}): ${_shown}")
  endif()
endfunction()

separate_arguments(_extra UNIX_COMMAND "${EXTRA_FLAGS}")

if(MODE STREQUAL "install")
  file(REMOVE_RECURSE "${STAGE}")
  set(_config_args "")
  if(CONFIG)
    set(_config_args --config "${CONFIG}")
  endif()
  run("${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${STAGE}" ${_config_args})
  set(_optional_expected "")
  if(REQUIRE_TBB)
    list(APPEND _optional_expected "${STAGE}/${LIBDIR}/libanydefer_tbb.a" "${STAGE}/${LIBDIR}/pkgconfig/anydefer-tbb.pc")
  endif()
  if(REQUIRE_GRPC)
    list(APPEND _optional_expected "${STAGE}/${LIBDIR}/libanydefer_grpc.a" "${STAGE}/include/anydefer/grpc/client.hpp")
  endif()
  foreach(_expected ${_optional_expected}
      "${STAGE}/${LIBDIR}/cmake/anydefer/anydeferConfig.cmake"
      "${STAGE}/${LIBDIR}/cmake/anydefer/anydeferConfigVersion.cmake"
      "${STAGE}/${LIBDIR}/cmake/anydefer/anydeferTargets.cmake"
      "${STAGE}/${LIBDIR}/pkgconfig/anydefer.pc"
      "${STAGE}/${LIBDIR}/libanydefer_core.a"
      "${STAGE}/include/anydefer/executor.hpp")
    if(NOT EXISTS "${_expected}")
      message(FATAL_ERROR "install did not produce ${_expected}")
    endif()
  endforeach()

elseif(MODE STREQUAL "package")
  set(_bin "${BUILD_DIR}/consumer-package")
  file(REMOVE_RECURSE "${_bin}")
  set(_gen_args "")
  if(GENERATOR)
    list(APPEND _gen_args -G "${GENERATOR}")
  endif()
  if(MAKE_PROGRAM)
    list(APPEND _gen_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
  endif()
  run("${CMAKE_COMMAND}" -S "${CONSUMER_SOURCE}" -B "${_bin}" ${_gen_args}
      "-DREQUIRE_TBB=${REQUIRE_TBB}" "-DREQUIRE_ASIO=${REQUIRE_ASIO}" "-DREQUIRE_GRPC=${REQUIRE_GRPC}"
      "-DCMAKE_CXX_COMPILER=${CXX}"
      "-DCMAKE_BUILD_TYPE=${CONFIG}"
      "-DCMAKE_PREFIX_PATH=${STAGE}"
      -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
      "-DCMAKE_CXX_FLAGS=${EXTRA_FLAGS}"
      "-DCMAKE_EXE_LINKER_FLAGS=${EXTRA_FLAGS}")
  run("${CMAKE_COMMAND}" --build "${_bin}" --config "${CONFIG}")
  file(READ "${_bin}/consumer_programs.txt" _programs)
  foreach(_program IN LISTS _programs)
    if(EXISTS "${_bin}/${CONFIG}/${_program}")
      run("${_bin}/${CONFIG}/${_program}")
    else()
      run("${_bin}/${_program}")
    endif()
  endforeach()

elseif(MODE STREQUAL "pkgconfig")
  set(_bin "${BUILD_DIR}/consumer-pkgconfig")
  file(REMOVE_RECURSE "${_bin}")
  file(MAKE_DIRECTORY "${_bin}")
  set(ENV{PKG_CONFIG_PATH} "${STAGE}/${LIBDIR}/pkgconfig")
  execute_process(COMMAND "${PKG_CONFIG}" --cflags --libs anydefer
    OUTPUT_VARIABLE _flags OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "pkg-config --cflags --libs anydefer failed (${_rc}) with PKG_CONFIG_PATH=$ENV{PKG_CONFIG_PATH}")
  endif()
  message(STATUS "pkg-config: ${_flags}")
  separate_arguments(_flags UNIX_COMMAND "${_flags}")
  run("${CXX}" -std=c++20 ${_extra} "${CONSUMER_SOURCE}/main.cpp" -o "${_bin}/anydefer_consumer" ${_flags})
  run("${_bin}/anydefer_consumer")

else()
  message(FATAL_ERROR "unknown MODE '${MODE}'")
endif()
