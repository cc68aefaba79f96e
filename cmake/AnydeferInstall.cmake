# Install rules: headers, static libraries, CMake package (anydeferConfig.cmake, version file, exported targets in
# namespace anydefer::, with anydefer::tbb, anydefer::asio and anydefer::grpc where they were built) and pkg-config files
# (anydefer.pc, and anydefer-tbb.pc with anydefer::tbb).

include(CMakePackageConfigHelpers)

set(ANYDEFER_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/anydefer"
    CACHE STRING "Where to install anydeferConfig.cmake (relative to the prefix)")
mark_as_advanced(ANYDEFER_INSTALL_CMAKEDIR)

set(_anydefer_installed_targets anydefer_core anydefer_executors anydefer)
foreach(_anydefer_optional IN ITEMS anydefer_tbb anydefer_asio anydefer_grpc)
  if(TARGET ${_anydefer_optional})
    list(APPEND _anydefer_installed_targets ${_anydefer_optional})
  endif()
endforeach()
install(TARGETS ${_anydefer_installed_targets}
  EXPORT anydeferTargets
  ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT anydefer_development
  LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT anydefer_development)

foreach(_anydefer_include_root IN ITEMS "${PROJECT_SOURCE_DIR}/core/include" "${PROJECT_SOURCE_DIR}/executors/include")
  # OPTIONAL: a tree may not exist yet while the library is being written.
  install(DIRECTORY "${_anydefer_include_root}/"
    DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}"
    COMPONENT anydefer_development
    OPTIONAL
    FILES_MATCHING PATTERN "*.hpp" PATTERN "*.h")
endforeach()
unset(_anydefer_include_root)

install(EXPORT anydeferTargets
  NAMESPACE anydefer::
  FILE anydeferTargets.cmake
  DESTINATION "${ANYDEFER_INSTALL_CMAKEDIR}"
  COMPONENT anydefer_development)

configure_package_config_file(
  "${PROJECT_SOURCE_DIR}/cmake/anydeferConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/anydeferConfig.cmake"
  INSTALL_DESTINATION "${ANYDEFER_INSTALL_CMAKEDIR}")
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/anydeferConfigVersion.cmake"
  VERSION "${PROJECT_VERSION}"
  COMPATIBILITY SameMinorVersion)
install(FILES
  "${PROJECT_BINARY_DIR}/anydeferConfig.cmake"
  "${PROJECT_BINARY_DIR}/anydeferConfigVersion.cmake"
  DESTINATION "${ANYDEFER_INSTALL_CMAKEDIR}"
  COMPONENT anydefer_development)

# --- pkg-config ---------------------------------------------------------------------------------------------------
# Static libraries: the dependencies go in Libs/Requires (not .private) so a plain `pkg-config --libs` links.
set(ANYDEFER_PC_LIBS "")
get_target_property(_anydefer_executors_type anydefer_executors TYPE)
if(_anydefer_executors_type STREQUAL "STATIC_LIBRARY")
  string(APPEND ANYDEFER_PC_LIBS " -lanydefer_executors")
endif()
string(APPEND ANYDEFER_PC_LIBS " -lanydefer_core")
unset(_anydefer_executors_type)
set(ANYDEFER_PC_CFLAGS "-I${ANYDEFER_CONCURRENTQUEUE_INCLUDE_DIR}")
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(ANYDEFER_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(ANYDEFER_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(ANYDEFER_PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
else()
  set(ANYDEFER_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
endif()
set(ANYDEFER_PC_PREFIX "@ANYDEFER_PC_PREFIX@")  # kept as a placeholder until install time
configure_file("${PROJECT_SOURCE_DIR}/cmake/anydefer.pc.in" "${PROJECT_BINARY_DIR}/anydefer.pc.configured" @ONLY)
# The prefix is only known at install time (cmake --install --prefix ...), so substitute it there.
install(CODE "
  file(READ \"${PROJECT_BINARY_DIR}/anydefer.pc.configured\" _anydefer_pc)
  string(REPLACE \"@ANYDEFER_PC_PREFIX@\" \"\${CMAKE_INSTALL_PREFIX}\" _anydefer_pc \"\${_anydefer_pc}\")
  file(WRITE \"${PROJECT_BINARY_DIR}/anydefer.pc\" \"\${_anydefer_pc}\")
" COMPONENT anydefer_development)
install(FILES "${PROJECT_BINARY_DIR}/anydefer.pc"
  DESTINATION "${CMAKE_INSTALL_LIBDIR}/pkgconfig"
  COMPONENT anydefer_development)

# anydefer-tbb.pc for tbb_executor: `pkg-config --cflags --libs anydefer-tbb` (anydefer's flags and oneTBB's).
if(TARGET anydefer_tbb)
  configure_file("${PROJECT_SOURCE_DIR}/cmake/anydefer-tbb.pc.in" "${PROJECT_BINARY_DIR}/anydefer-tbb.pc.configured" @ONLY)
  install(CODE "
    file(READ \"${PROJECT_BINARY_DIR}/anydefer-tbb.pc.configured\" _anydefer_pc)
    string(REPLACE \"@ANYDEFER_PC_PREFIX@\" \"\${CMAKE_INSTALL_PREFIX}\" _anydefer_pc \"\${_anydefer_pc}\")
    file(WRITE \"${PROJECT_BINARY_DIR}/anydefer-tbb.pc\" \"\${_anydefer_pc}\")
  " COMPONENT anydefer_development)
  install(FILES "${PROJECT_BINARY_DIR}/anydefer-tbb.pc"
    DESTINATION "${CMAKE_INSTALL_LIBDIR}/pkgconfig"
    COMPONENT anydefer_development)
endif()
