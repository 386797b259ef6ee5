# cmake -DBUILD_DIR=<build> -DWORK_DIR=<scratch> -DSLA_PYTHON=<python> [-DCUDA_COMPILER=<nvcc>]
#       [-DGENERATOR=<generator>] [-DSANITIZE=<SLA_SANITIZE>] -P run_consumer.cmake
# Installs the build into WORK_DIR/prefix, then configures, builds and runs tests/consumer against
# it. Fails on any step's failure.
foreach(var BUILD_DIR WORK_DIR SLA_PYTHON)
  if(NOT ${var})
    message(FATAL_ERROR "run_consumer.cmake: ${var} is not set")
  endif()
endforeach()
file(REMOVE_RECURSE ${WORK_DIR})
function(step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer: ${what} failed (${rc})")
  endif()
endfunction()
step("cmake --install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix)
set(extra "")
if(GENERATOR)
  list(APPEND extra -G ${GENERATOR})
endif()
if(SANITIZE)  # the installed static libraries were built with -fsanitize
  list(APPEND extra -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=${SANITIZE})
endif()
if(CUDA_COMPILER)
  list(APPEND extra -DCMAKE_CUDA_COMPILER=${CUDA_COMPILER})
endif()
step("configure" ${CMAKE_COMMAND} -S ${CMAKE_CURRENT_LIST_DIR} -B ${WORK_DIR}/build ${extra}
     -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DSLA_PYTHON=${SLA_PYTHON})
step("build" ${CMAKE_COMMAND} --build ${WORK_DIR}/build)
step("run" ${WORK_DIR}/build/consumer)
