# attnc_add_kernel(): compile a `.attn` kernel ahead of time and wrap it in a
# library target, in the manner of Halide's add_halide_library(). See
# docs/aot.md.
#
#   include(path/to/attnc/cmake/AttncKernel.cmake)
#   attnc_add_kernel(causal SOURCE causal.attn)
#   target_link_libraries(my_app PRIVATE causal)   # then: #include "causal.h"
#
# Which attnc runs:
#   1. ATTNC_EXECUTABLE, when set (cache variable; use it with an attnc built
#      or installed elsewhere),
#   2. else the `attnc` target of this build (attnc's own tree),
#   3. else an `attnc` found on PATH (stored in ATTNC_EXECUTABLE).
#
# The Halide runtime headers (HalideRuntime.h, HalideBuffer.h) come from the
# Halide::Runtime target: from the Halide package when the project already
# found it, else from the header-only HalideHelpers package found here (point
# CMAKE_PREFIX_PATH or HalideHelpers_DIR at Halide's lib*/cmake).
#
# Include this file from the directory that calls attnc_add_kernel() or from
# one above it (the top level is best): the Threads::Threads and
# Halide::Runtime targets it finds are visible in that directory and below.
include_guard(GLOBAL)

if(NOT TARGET Threads::Threads)
  find_package(Threads REQUIRED)
endif()
if(NOT TARGET Halide::Runtime)
  find_package(HalideHelpers 21 REQUIRED CONFIG)
endif()

# attnc_add_kernel(<target> SOURCE <file.attn> [KERNEL <name>] [TARGET <halide-target>])
#
# Runs `attnc compile <file.attn> -o ${CMAKE_CURRENT_BINARY_DIR} --kernel <name>
# --target <halide-target>` at build time, which writes
# ${CMAKE_CURRENT_BINARY_DIR}/<name>.a (the kernel, its index-check function
# when it reads aux tensors, and the Halide runtime) and <name>.h. The command
# re-runs when the .attn file or the attnc executable changes.
#
# <target> becomes a STATIC IMPORTED (GLOBAL) library: linking it links
# <name>.a, Threads::Threads, ${CMAKE_DL_LIBS} and libm, and adds the directory
# of <name>.h and the Halide runtime headers to the include path.
#
#   SOURCE  the .attn file (relative to the current source directory).
#   KERNEL  the attention block of the file to compile. It defaults to
#           <target>, as add_halide_library's FUNCTION_NAME does, so that the
#           names of the outputs are known when CMake configures; name it
#           whenever the target and the block differ. It is always passed to
#           attnc, so a file with several blocks works the same way.
#   TARGET  the Halide target string (default `host`: the machine that builds,
#           with the CPU features it has). Use e.g. `x86-64-linux-avx2` to
#           build a kernel for other machines than the build machine.
#
# Two kernels with the same name cannot be added in one directory (their
# outputs would collide): put them in separate directories.
function(attnc_add_kernel TARGET)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "" "SOURCE;KERNEL;TARGET" "")
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "attnc_add_kernel(${TARGET}): unknown arguments: ${ARG_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT ARG_SOURCE)
    message(FATAL_ERROR "attnc_add_kernel(${TARGET}): SOURCE <file.attn> is required")
  endif()
  if(NOT ARG_KERNEL)
    set(ARG_KERNEL "${TARGET}")
  endif()
  if(NOT ARG_KERNEL MATCHES "^[A-Za-z_][A-Za-z0-9_]*$")
    message(FATAL_ERROR "attnc_add_kernel(${TARGET}): KERNEL '${ARG_KERNEL}' is not an identifier; "
                        "name the attention block with KERNEL <name>")
  endif()
  if(NOT ARG_TARGET)
    set(ARG_TARGET host)
  endif()
  cmake_path(ABSOLUTE_PATH ARG_SOURCE BASE_DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}" NORMALIZE)

  if(ATTNC_EXECUTABLE)
    set(attnc "${ATTNC_EXECUTABLE}")
  elseif(TARGET attnc)
    set(attnc attnc) # the target: CMake substitutes its path and adds the dependency
  else()
    find_program(ATTNC_EXECUTABLE attnc DOC "the attnc compiler used by attnc_add_kernel()")
    if(NOT ATTNC_EXECUTABLE)
      message(FATAL_ERROR "attnc_add_kernel(${TARGET}): attnc not found; set ATTNC_EXECUTABLE "
                          "to the path of the attnc executable")
    endif()
    set(attnc "${ATTNC_EXECUTABLE}")
  endif()

  set(dir "${CMAKE_CURRENT_BINARY_DIR}")
  set(lib "${dir}/${ARG_KERNEL}${CMAKE_STATIC_LIBRARY_SUFFIX}")
  set(header "${dir}/${ARG_KERNEL}.h")
  if(NOT CMAKE_STATIC_LIBRARY_SUFFIX STREQUAL ".a")
    message(FATAL_ERROR "attnc_add_kernel(${TARGET}): attnc writes .a archives; "
                        "this platform's static libraries end in ${CMAKE_STATIC_LIBRARY_SUFFIX}")
  endif()

  add_custom_command(
    OUTPUT "${lib}" "${header}"
    COMMAND ${attnc} compile "${ARG_SOURCE}" -o "${dir}" --kernel "${ARG_KERNEL}"
            --target "${ARG_TARGET}"
    DEPENDS "${ARG_SOURCE}" ${attnc}
    COMMENT "attnc: compiling kernel ${ARG_KERNEL} (${ARG_TARGET}) from ${ARG_SOURCE}"
    VERBATIM)
  add_custom_target("${TARGET}.attnc" DEPENDS "${lib}" "${header}")

  add_library("${TARGET}" STATIC IMPORTED GLOBAL)
  set_target_properties("${TARGET}" PROPERTIES IMPORTED_LOCATION "${lib}")
  add_dependencies("${TARGET}" "${TARGET}.attnc")
  target_include_directories("${TARGET}" INTERFACE "${dir}")
  target_link_libraries("${TARGET}" INTERFACE Halide::Runtime Threads::Threads ${CMAKE_DL_LIBS}
                        $<$<PLATFORM_ID:Linux>:m>)
endfunction()
