# cmake -DKERNELS_DIR=<src/sla/kernels> -DLINK_REPORT=<build>/torch_free_sla_kernels.txt -P check_torch_free.cmake
# The kernel library must not see LibTorch. Fails when
#  (a) any file under KERNELS_DIR includes a torch, ATen, c10 or caffe2 header (#include <...> or
#      "...", any spacing), or
#  (b) the configure-time walk of the kernels target's link closure and include directories
#      (cmake/SlaTorchFree.cmake) did not end in OK. Without a kernels target (no nvcc) the report
#      does not exist and only (a) runs.
file(GLOB_RECURSE files ${KERNELS_DIR}/*)
set(count 0)
set(bad "")
foreach(file IN LISTS files)
  math(EXPR count "${count} + 1")
  file(STRINGS ${file} lines REGEX "^[ \t]*#[ \t]*include")
  foreach(line IN LISTS lines)
    if(line MATCHES "#[ \t]*include[ \t]*[<\"](torch|ATen|c10|caffe2)[/.>\"]")
      list(APPEND bad "${file}: ${line}")
    endif()
  endforeach()
endforeach()
if(count LESS 10)
  message(FATAL_ERROR "only ${count} files under ${KERNELS_DIR}: wrong folder?")
endif()
if(bad)
  list(JOIN bad "\n  " shown)
  message(FATAL_ERROR "torch headers included under ${KERNELS_DIR}:\n  ${shown}")
endif()
message(STATUS "(a) ${count} files under ${KERNELS_DIR}, none includes torch, ATen, c10 or caffe2")
if(EXISTS ${LINK_REPORT})
  file(STRINGS ${LINK_REPORT} report)
  list(GET report 0 verdict)
  list(LENGTH report entries)
  if(NOT verdict STREQUAL "OK")
    message(FATAL_ERROR "${LINK_REPORT}: LibTorch in the kernels' link line or include path")
  endif()
  message(STATUS "(b) ${LINK_REPORT}: OK over ${entries} lines (targets, libraries, include directories)")
else()
  message(STATUS "(b) skipped: no kernels target in this build (${LINK_REPORT} absent)")
endif()
