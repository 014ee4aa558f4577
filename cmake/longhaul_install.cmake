# Install and export rules: libraries as longhaul::persistence/actors/runtime, public headers
# under include/<folder>/, and the package config that consumers find with find_package(longhaul).
# Included at the end of the top-level CMakeLists.txt; tests/install checks the result.
include_guard(GLOBAL)
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(longhaul_exported_targets longhaul_persistence longhaul_actors longhaul_runtime)
set(longhaul_install_cmakedir "${CMAKE_INSTALL_LIBDIR}/cmake/longhaul")

# longhaul_warnings is build-only: an exported target that links it without
# $<BUILD_INTERFACE:...> would make install(EXPORT) fail with a less direct message.
foreach(target IN LISTS longhaul_exported_targets)
  get_target_property(deps ${target} INTERFACE_LINK_LIBRARIES)
  foreach(dep IN LISTS deps)
    if(dep MATCHES "longhaul_warnings" AND NOT dep MATCHES "BUILD_INTERFACE")
      message(FATAL_ERROR "${target} links longhaul_warnings without $<BUILD_INTERFACE:...>; "
        "write target_link_libraries(${target} PRIVATE $<BUILD_INTERFACE:longhaul_warnings>) "
        "so that the installed package does not need it.")
    endif()
  endforeach()
endforeach()

# Static, shared and INTERFACE libraries alike (actors/runtime start as INTERFACE).
install(TARGETS ${longhaul_exported_targets}
  EXPORT longhaulTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# Every header of the library folders is public; includes are rooted at the repo
# ("persistence/journal.hpp"), so each keeps its folder below include/, the include root
# that longhaul_persistence's INSTALL_INTERFACE names (the other targets inherit it).
foreach(folder IN ITEMS persistence actors runtime)
  file(GLOB_RECURSE headers CONFIGURE_DEPENDS
       RELATIVE "${PROJECT_SOURCE_DIR}" "${PROJECT_SOURCE_DIR}/${folder}/*.hpp")
  foreach(header IN LISTS headers)
    get_filename_component(header_dir "${header}" DIRECTORY)
    install(FILES "${PROJECT_SOURCE_DIR}/${header}" DESTINATION "include/${header_dir}")
  endforeach()
endforeach()

install(EXPORT longhaulTargets
  NAMESPACE longhaul::
  FILE longhaulTargets.cmake
  DESTINATION ${longhaul_install_cmakedir})

configure_package_config_file(
  "${CMAKE_CURRENT_LIST_DIR}/longhaulConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/longhaulConfig.cmake"
  INSTALL_DESTINATION ${longhaul_install_cmakedir})
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/longhaulConfigVersion.cmake"
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMajorVersion)

install(FILES
  "${PROJECT_BINARY_DIR}/longhaulConfig.cmake"
  "${PROJECT_BINARY_DIR}/longhaulConfigVersion.cmake"
  "${CMAKE_CURRENT_LIST_DIR}/longhaul_dependencies.cmake"
  DESTINATION ${longhaul_install_cmakedir})
