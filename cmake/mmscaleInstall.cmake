# `cmake --install`: the static libraries, the public headers under include/mmscale/
# (so "tensor/tensor.h" etc. resolve as in this tree), and a package config, so that
# another project can write
#   find_package(mmscale CONFIG REQUIRED)
#   target_link_libraries(app PRIVATE mmscale::mmscale)
# examples/consumer is that project; tools/test.sh builds it against an install.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# Our headers use C++20: consumers compile them as such.
target_compile_features(mmscale PUBLIC cxx_std_20)

set(MMS_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/mmscale)
set(mms_installed_targets mmscale)
if(MMS_WITH_CUDA)
  list(APPEND mms_installed_targets mmscale_cuda)
endif()
# libmmscale.a is static, so its PRIVATE dependencies (Eigen, ZLIB, utf8proc) are
# exported as $<LINK_ONLY:...> entries: the config below makes them resolvable.
install(TARGETS ${mms_installed_targets} EXPORT mmscaleTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})

# Public headers only: the CPU kernels' headers (tensor/cpu/) and the CUDA glue are
# internal; cuda/*.h ship only with the CUDA library they declare.
foreach(dir tensor autograd nn vlm losses data)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${dir}/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/mmscale/${dir}
    FILES_MATCHING PATTERN "*.h" PATTERN "cpu" EXCLUDE PATTERN "cuda_glue" EXCLUDE PATTERN "ops" EXCLUDE)
endforeach()
if(MMS_WITH_CUDA)
  file(GLOB mms_cuda_headers ${PROJECT_SOURCE_DIR}/cuda/*.h)
  install(FILES ${mms_cuda_headers} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/mmscale/cuda)
endif()

install(EXPORT mmscaleTargets NAMESPACE mmscale:: DESTINATION ${MMS_INSTALL_CMAKEDIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/mmscaleConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/mmscaleConfig.cmake INSTALL_DESTINATION ${MMS_INSTALL_CMAKEDIR})
# 0.x: a minor version may break the API, so only the same minor is compatible.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/mmscaleConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/mmscaleConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/mmscaleConfigVersion.cmake
  DESTINATION ${MMS_INSTALL_CMAKEDIR})
