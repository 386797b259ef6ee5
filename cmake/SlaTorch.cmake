# LibTorch from the torch wheel in the project's virtualenv: CMake finds it through
# torch.utils.cmake_prefix_path. The wheel's TorchConfig looks for CUDA itself; without nvcc we
# tell it not to.
execute_process(
  COMMAND ${SLA_PYTHON} -c "import torch.utils; print(torch.utils.cmake_prefix_path)"
  OUTPUT_VARIABLE SLA_TORCH_PREFIX OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "SLA: ${SLA_PYTHON} cannot import torch; run tools/setup.sh first (or -DSLA_WITH_TORCH=OFF)")
endif()
list(APPEND CMAKE_PREFIX_PATH ${SLA_TORCH_PREFIX})
if(NOT SLA_CUDA_ENABLED)
  set(CAFFE2_USE_CUDA OFF)
  set(USE_CUDA OFF)
endif()
find_package(Torch REQUIRED)
# TorchConfig also appends -gencode flags for every architecture of the wheel to CMAKE_CUDA_FLAGS
# and hides CMAKE_CUDA_ARCHITECTURES behind a normal variable set to OFF; undo both so the cache
# variable of cmake/SlaCuda.cmake alone decides what our kernels target.
if(CMAKE_CUDA_FLAGS)
  string(REGEX REPLACE "-gencode[ =]arch=compute_[0-9a-z]+,code=[a-z_0-9]+" "" CMAKE_CUDA_FLAGS "${CMAKE_CUDA_FLAGS}")
endif()
unset(CMAKE_CUDA_ARCHITECTURES)
# TorchConfig appends its flags to CMAKE_CXX_FLAGS (the ABI macro among them); keep that.
message(STATUS "SLA: LibTorch ${Torch_VERSION} from ${SLA_TORCH_PREFIX}")
