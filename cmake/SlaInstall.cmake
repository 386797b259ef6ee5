# install/export: `cmake --install <build> --prefix P` puts the libraries, their headers
# (include/sla_toolkit/sla/checkpoint, .../sla, .../sla/kernels: "sla/checkpoint/x.h" as in the tree) and
# lib/cmake/sla_toolkit/ there; an outside project then does find_package(sla_toolkit) and links
# sla::checkpoint, sla::sla (LibTorch builds) and sla::kernels (CUDA builds). LibTorch is found the
# way this build found it (SlaTorch.cmake through SLA_PYTHON, overridable by the consumer).
# tests/consumer is such a project, configured, built and run by CTest (test consumer_find_package).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(SLA_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/sla_toolkit)
set(SLA_INSTALL_INCLUDEDIR ${CMAKE_INSTALL_INCLUDEDIR}/sla_toolkit)

# A target's headers (each prefix of sla_public_headers) go to include/sla_toolkit/<prefix>, the
# installed include root, so consumers write #include "sla/checkpoint/x.h" as the project does.
function(sla_install_public_headers target export_name)
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${export_name})
  target_include_directories(${target} INTERFACE $<INSTALL_INTERFACE:${SLA_INSTALL_INCLUDEDIR}>)
  get_target_property(entries ${target} SLA_PUBLIC_HEADERS)
  foreach(entry IN LISTS entries)
    string(REPLACE "=" ";" pair "${entry}")
    list(GET pair 0 prefix)
    list(GET pair 1 dir)
    file(GLOB headers ${dir}/*.h)
    install(FILES ${headers} DESTINATION ${SLA_INSTALL_INCLUDEDIR}/${prefix})
  endforeach()
endfunction()

set(exported sla_checkpoint)
sla_install_public_headers(sla_checkpoint checkpoint)
if(TARGET sla_core)
  list(APPEND exported sla_core)
  sla_install_public_headers(sla_core sla)
  install(FILES ${PROJECT_SOURCE_DIR}/cmake/SlaTorch.cmake DESTINATION ${SLA_INSTALL_CMAKEDIR})
endif()
if(TARGET sla_kernels)
  list(APPEND exported sla_kernels)
  sla_install_public_headers(sla_kernels kernels)
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
