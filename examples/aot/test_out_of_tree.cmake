# The aot_out_of_tree test (cmake -P): configures examples/aot as a project of
# its own, as a user of an installed attnc would, with ATTNC_EXECUTABLE set to
# the attnc of this build; builds it and runs its test.
#
# -D variables: SOURCE_DIR BINARY_DIR ATTNC GENERATOR MAKE_PROGRAM CXX
#               HALIDE_HELPERS_DIR BUILD_TYPE
foreach(var SOURCE_DIR BINARY_DIR ATTNC GENERATOR CXX HALIDE_HELPERS_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "test_out_of_tree.cmake: -D${var}=... is required")
  endif()
endforeach()

function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "aot_out_of_tree: ${what} failed (${rc})")
  endif()
endfunction()

# A fresh configure each time: the test is that a new project finds it all.
file(REMOVE_RECURSE "${BINARY_DIR}")
set(generatorArgs -G "${GENERATOR}")
if(MAKE_PROGRAM)
  list(APPEND generatorArgs "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
run(configure
  "${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${BINARY_DIR}" ${generatorArgs}
  "-DCMAKE_CXX_COMPILER=${CXX}"
  "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}"
  "-DATTNC_EXECUTABLE=${ATTNC}"
  "-DHalideHelpers_DIR=${HALIDE_HELPERS_DIR}")
run(build "${CMAKE_COMMAND}" --build "${BINARY_DIR}" --parallel 1)
run(test "${CMAKE_CTEST_COMMAND}" --test-dir "${BINARY_DIR}" --output-on-failure)
