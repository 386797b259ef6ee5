# LibTorch from the torch wheel in the project's virtualenv: CMake finds it through
# torch.utils.cmake_prefix_path.
#
# The wheel is a CUDA build. Its TorchConfig insists on finding the CUDA toolkit, so a CPU-only
# build (no nvcc) imports the CPU libraries of the same wheel directly instead: torch_cpu and c10
# are all that SLA's CPU path (the reference, the module, the hooks) links against.
execute_process(
  COMMAND ${SLA_PYTHON} -c "import torch, torch.utils; print(torch.utils.cmake_prefix_path); print(int(torch._C._GLIBCXX_USE_CXX11_ABI)); print(torch.__version__)"
  OUTPUT_VARIABLE torch_info OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "SLA: ${SLA_PYTHON} cannot import torch; run tools/setup.sh first (or -DSLA_WITH_TORCH=OFF)")
endif()
string(REPLACE "\n" ";" torch_info "${torch_info}")
list(GET torch_info 0 SLA_TORCH_PREFIX)
list(GET torch_info 1 SLA_TORCH_CXX11_ABI)
list(GET torch_info 2 SLA_TORCH_VERSION)
get_filename_component(SLA_TORCH_ROOT "${SLA_TORCH_PREFIX}/../.." ABSOLUTE)

if(SLA_CUDA_ENABLED)
  list(APPEND CMAKE_PREFIX_PATH ${SLA_TORCH_PREFIX})
  set(sla_cuda_flags_before_torch "${CMAKE_CUDA_FLAGS}")
  find_package(Torch REQUIRED)
  # TorchConfig also appends its own flags to CMAKE_CUDA_FLAGS (-gencode for every architecture of
  # the wheel, -DONNX_NAMESPACE, diagnostics) and hides CMAKE_CUDA_ARCHITECTURES behind a normal
  # variable set to OFF; undo both: the kernels are torch-free (src/sla/kernels/CMakeLists.txt) and
  # the cache variable of cmake/SlaCuda.cmake alone decides what they target.
  set(CMAKE_CUDA_FLAGS "${sla_cuda_flags_before_torch}")
  unset(CMAKE_CUDA_ARCHITECTURES)
  # Link torch_cpu and torch_cuda, never the wrapper libtorch.so: the wheel's libtorch.so exports
  # its own static copy of std::filesystem (from the toolchain that built the wheel), which the
  # dynamic linker then prefers over libstdc++'s, and any std::filesystem call in our code crashes
  # (remove_all, create_directories, ...). torch_cuda_library is what the `torch` target wraps.
  # Imported (not built here), so sla_core's export names it and sla_toolkitConfig.cmake, which runs
  # this file again, defines it in the consumer.
  add_library(sla_torch_cuda INTERFACE IMPORTED)
  separate_arguments(torch_cxx_flags UNIX_COMMAND "${TORCH_CXX_FLAGS}")
  set_target_properties(sla_torch_cuda PROPERTIES
    INTERFACE_LINK_LIBRARIES torch_cuda_library
    INTERFACE_INCLUDE_DIRECTORIES "${TORCH_INCLUDE_DIRS}"
    INTERFACE_COMPILE_OPTIONS "${torch_cxx_flags}")
  set(TORCH_LIBRARIES sla_torch_cuda)
else()
  set(torch_includes ${SLA_TORCH_ROOT}/include ${SLA_TORCH_ROOT}/include/torch/csrc/api/include)
  foreach(lib c10 torch_cpu)
    add_library(sla_torch_${lib} SHARED IMPORTED)
    set_target_properties(sla_torch_${lib} PROPERTIES
      IMPORTED_LOCATION ${SLA_TORCH_ROOT}/lib/lib${lib}.so
      INTERFACE_INCLUDE_DIRECTORIES "${torch_includes}"
      INTERFACE_COMPILE_DEFINITIONS "_GLIBCXX_USE_CXX11_ABI=${SLA_TORCH_CXX11_ABI}")
  endforeach()
  set(TORCH_LIBRARIES sla_torch_torch_cpu sla_torch_c10)
endif()
message(STATUS "SLA: LibTorch ${SLA_TORCH_VERSION} from ${SLA_TORCH_ROOT} (${TORCH_LIBRARIES})")

# One C++ runtime per process: LibTorch's libraries use the shared libstdc++.so.6, and so must all
# of ours that link them. A toolchain that links libstdc++ statically (the GPU machine's /opt/gcc
# put a copy of it inside libsla_dit_ops.so, whose first `ostream << double` then crashed under
# torchrun) would give the process two runtimes with separate locale state. Named by file name, so
# that the shared library is linked even where the compiler's own folder holds only libstdc++.a;
# listed after LibTorch, so every std:: symbol resolves to it before the driver's own -lstdc++.
# tests/arch/test_cxx_runtime.py checks the built libraries.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_SYSTEM_NAME STREQUAL "Linux")
  foreach(torch_target ${TORCH_LIBRARIES})
    set_property(TARGET ${torch_target} APPEND PROPERTY INTERFACE_LINK_LIBRARIES "-l:libstdc++.so.6")
  endforeach()
endif()
