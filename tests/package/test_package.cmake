# The package_install test (cmake -P): installs this build into a fresh
# prefix, then configures, builds and tests tests/package against it, as an
# out-of-tree user of find_package(attnc) would.
#
# -D variables: BUILD_DIR SOURCE_DIR BINARY_DIR GENERATOR MAKE_PROGRAM CXX
#               BUILD_TYPE
foreach(var BUILD_DIR SOURCE_DIR BINARY_DIR GENERATOR CXX)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "test_package.cmake: -D${var}=... is required")
  endif()
endforeach()

function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "package_install: ${what} failed (${rc})")
  endif()
endfunction()

file(REMOVE_RECURSE "${BINARY_DIR}")
set(prefix "${BINARY_DIR}/prefix")
run(install "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${prefix}")
foreach(f bin/attnc include/attn/jit/Jit.h include/attn/runtime/Tensor.h
          lib/cmake/attnc/attncConfig.cmake lib/cmake/attnc/AttncKernel.cmake)
  if(NOT EXISTS "${prefix}/${f}")
    message(FATAL_ERROR "package_install: ${prefix}/${f} was not installed")
  endif()
endforeach()

set(generatorArgs -G "${GENERATOR}")
if(MAKE_PROGRAM)
  list(APPEND generatorArgs "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
# Only the prefix: attncConfig.cmake finds the Halide and MLIR packages
# attnc was built with; nothing comes from the build tree.
run(configure
  "${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${BINARY_DIR}/project" ${generatorArgs}
  "-DCMAKE_CXX_COMPILER=${CXX}" "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}"
  "-DCMAKE_PREFIX_PATH=${prefix}"
  # scripts/gpu-check.sh: the CUDA library must run on the GPU.
  "-DATTNC_EXPECT_GPU=$ENV{ATTNC_EXPECT_GPU}")
run(build "${CMAKE_COMMAND}" --build "${BINARY_DIR}/project" --parallel 1)
run(test "${CMAKE_CTEST_COMMAND}" --test-dir "${BINARY_DIR}/project" --output-on-failure)
