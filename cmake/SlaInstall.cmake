# install/export: `cmake --install <build> --prefix P` puts the libraries, their headers (flat, as
# the targets include them today: include/sla_toolkit, kernels in include/sla_toolkit/kernels) and
# lib/cmake/sla_toolkit/ there; an outside project then does find_package(sla_toolkit) and links
# sla::checkpoint, sla::sla (LibTorch builds) and sla::kernels (CUDA builds). LibTorch is found the
# way this build found it (SlaTorch.cmake through SLA_PYTHON, overridable by the consumer).
# tests/consumer is such a project, configured, built and run by CTest (test consumer_find_package).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(SLA_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/sla_toolkit)
set(SLA_INSTALL_INCLUDEDIR ${CMAKE_INSTALL_INCLUDEDIR}/sla_toolkit)

# Plain include directories of a target become build-tree only, plus the installed folder.
function(sla_install_interface_includes target install_dir)
  get_target_property(dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
  set(wrapped "")
  foreach(dir IN LISTS dirs)
    if(dir MATCHES "^\\$<")
      list(APPEND wrapped "${dir}")
    else()
      list(APPEND wrapped "$<BUILD_INTERFACE:${dir}>")
    endif()
  endforeach()
  list(APPEND wrapped "$<INSTALL_INTERFACE:${install_dir}>")
  list(REMOVE_DUPLICATES wrapped)
  set_property(TARGET ${target} PROPERTY INTERFACE_INCLUDE_DIRECTORIES "${wrapped}")
endfunction()

set(exported sla_checkpoint)
sla_install_interface_includes(sla_checkpoint ${SLA_INSTALL_INCLUDEDIR})
set_target_properties(sla_checkpoint PROPERTIES EXPORT_NAME checkpoint)
file(GLOB headers ${PROJECT_SOURCE_DIR}/src/checkpoint/*.h)
install(FILES ${headers} DESTINATION ${SLA_INSTALL_INCLUDEDIR})
if(TARGET sla_core)
  list(APPEND exported sla_core)
  set_target_properties(sla_core PROPERTIES EXPORT_NAME sla)
  file(GLOB headers ${PROJECT_SOURCE_DIR}/src/sla/*.h)
  install(FILES ${headers} DESTINATION ${SLA_INSTALL_INCLUDEDIR})
  install(FILES ${PROJECT_SOURCE_DIR}/cmake/SlaTorch.cmake DESTINATION ${SLA_INSTALL_CMAKEDIR})
endif()
if(TARGET sla_kernels)
  list(APPEND exported sla_kernels)
  set_target_properties(sla_kernels PROPERTIES EXPORT_NAME kernels)
  file(GLOB headers ${PROJECT_SOURCE_DIR}/src/sla/kernels/*.h)
  install(FILES ${headers} DESTINATION ${SLA_INSTALL_INCLUDEDIR}/kernels)
endif()
install(TARGETS ${exported} EXPORT sla_toolkit
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(EXPORT sla_toolkit NAMESPACE sla:: FILE sla_toolkitTargets.cmake DESTINATION ${SLA_INSTALL_CMAKEDIR})

set(SLA_CONFIG_WITH_TORCH ${SLA_WITH_TORCH})
set(SLA_CONFIG_WITH_CUDA ${SLA_CUDA_ENABLED})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/sla_toolkitConfig.cmake.in
  ${PROJECT_BINARY_DIR}/sla_toolkitConfig.cmake INSTALL_DESTINATION ${SLA_INSTALL_CMAKEDIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/sla_toolkitConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/sla_toolkitConfig.cmake ${PROJECT_BINARY_DIR}/sla_toolkitConfigVersion.cmake
        DESTINATION ${SLA_INSTALL_CMAKEDIR})
