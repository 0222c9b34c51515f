# Proves that an outside CMake project can use tandem (cmake -P script, run by ctest).
#
#   cmake -DMODE=<find_package|subdirectory|fetchcontent> -DSOURCE_DIR=<tandem source>
#         -DWORK_DIR=<scratch dir> [-DGENERATOR=Ninja] [-DMAKE_PROGRAM=...]
#         [-DCXX_COMPILER=...] [-DBUILD_TYPE=Release] -P check.cmake
#
# find_package: configures tandem alone (no tests/examples), `cmake --install`s it
#   into WORK_DIR/prefix, checks the installed files, then builds the consumer
#   against that prefix only.
# subdirectory: the consumer does add_subdirectory(SOURCE_DIR).
# fetchcontent: packs the source tree into a tarball and the consumer fetches it
#   with FetchContent from a file:// URL (no network).
# In every mode the consumer (project/main.cpp) opens stories260K.gguf and must
# print the tensor count that the file's own header holds; project/CMakeLists.txt
# fails the configure if tandem builds anything but its INTERFACE targets as a
# subproject.
cmake_minimum_required(VERSION 3.24)

foreach(v IN ITEMS MODE SOURCE_DIR WORK_DIR)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "check.cmake: -D${v}=... is required")
  endif()
endforeach()
if(NOT DEFINED GENERATOR)
  set(GENERATOR Ninja)
endif()
if(NOT DEFINED BUILD_TYPE OR BUILD_TYPE STREQUAL "")
  set(BUILD_TYPE Release)
endif()

# Tool settings shared by every configure this script runs.
set(_common -G "${GENERATOR}" -DCMAKE_BUILD_TYPE=${BUILD_TYPE})
if(MAKE_PROGRAM)
  list(APPEND _common -DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM})
endif()
if(CXX_COMPILER)
  list(APPEND _common -DCMAKE_CXX_COMPILER=${CXX_COMPILER})
endif()

# Runs one command; on failure prints its output and stops with the step's name.
function(step name)
  message(STATUS "[consumer/${MODE}] ${name}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "[consumer/${MODE}] ${name} failed (${rc}):\n${out}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

# The tensor count as the GGUF header states it: "GGUF", u32 version, u64 n_tensors (LE).
function(gguf_tensor_count path out_var)
  file(READ "${path}" hex OFFSET 0 LIMIT 16 HEX)
  string(SUBSTRING "${hex}" 0 8 magic)
  if(NOT magic STREQUAL "47475546")
    message(FATAL_ERROR "${path} is not a GGUF file (magic ${magic})")
  endif()
  set(be "")
  foreach(i RANGE 7 0 -1)
    math(EXPR at "16 + 2 * ${i}")
    string(SUBSTRING "${hex}" ${at} 2 byte)
    string(APPEND be "${byte}")
  endforeach()
  math(EXPR n "0x${be}")
  set(${out_var} ${n} PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
get_filename_component(_project_dir "${CMAKE_CURRENT_LIST_DIR}/project" ABSOLUTE)
set(_consumer_args -DCONSUMER_MODE=${MODE})

if(MODE STREQUAL "find_package")
  set(_prefix "${WORK_DIR}/prefix")
  step("configure tandem alone" ${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${WORK_DIR}/tandem-build" ${_common}
    -DTANDEM_BUILD_TESTS=OFF -DTANDEM_BUILD_EXAMPLES=OFF -DTANDEM_BUILD_BENCHMARKS=OFF)
  step("install tandem into ${_prefix}" ${CMAKE_COMMAND} --install "${WORK_DIR}/tandem-build" --prefix "${_prefix}")
  foreach(f IN ITEMS
      include/tandem/gguf/reader.hpp
      share/tandem/cmake/tandemConfig.cmake
      share/tandem/cmake/tandemConfigVersion.cmake
      share/tandem/cmake/tandemTargets.cmake
      share/tandem/cmake/FindAsio.cmake
      share/tandem/cmake/FindGLPK.cmake
      share/tandem/models/stories260K.gguf
      share/doc/tandem/LICENSE
      share/doc/tandem/LICENSE-models)
    if(NOT EXISTS "${_prefix}/${f}")
      message(FATAL_ERROR "[consumer/${MODE}] the install lacks ${f}")
    endif()
  endforeach()
  list(APPEND _consumer_args "-DCMAKE_PREFIX_PATH=${_prefix}" "-DTANDEM_EXPECTED_PREFIX=${_prefix}"
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
  set(_model "${_prefix}/share/tandem/models/stories260K.gguf")
elseif(MODE STREQUAL "subdirectory")
  list(APPEND _consumer_args "-DTANDEM_SOURCE_DIR=${SOURCE_DIR}")
  set(_model "${SOURCE_DIR}/models/stories260K.gguf")
elseif(MODE STREQUAL "fetchcontent")
  # A release tarball of the source tree: everything but .git and build trees
  # (tests/ and examples/ included, so the consumer sees that they stay off).
  set(_stage "${WORK_DIR}/stage/tandem")
  file(GLOB _children LIST_DIRECTORIES true RELATIVE "${SOURCE_DIR}" "${SOURCE_DIR}/*")
  foreach(c IN LISTS _children)
    if(c MATCHES "^(\\.git|build.*|out)$" OR EXISTS "${SOURCE_DIR}/${c}/CMakeCache.txt")
      continue()
    endif()
    file(COPY "${SOURCE_DIR}/${c}" DESTINATION "${_stage}")
  endforeach()
  set(_tarball "${WORK_DIR}/tandem-src.tar.gz")
  step("pack the source tree" ${CMAKE_COMMAND} -E chdir "${WORK_DIR}/stage" ${CMAKE_COMMAND} -E tar czf "${_tarball}" tandem)
  file(SHA256 "${_tarball}" _sha)
  list(APPEND _consumer_args "-DTANDEM_TARBALL=${_tarball}" "-DTANDEM_TARBALL_SHA256=${_sha}"
    "-DFETCHCONTENT_BASE_DIR=${WORK_DIR}/deps")
  set(_model "${SOURCE_DIR}/models/stories260K.gguf")
else()
  message(FATAL_ERROR "check.cmake: unknown MODE '${MODE}'")
endif()

step("configure the consumer" ${CMAKE_COMMAND} -S "${_project_dir}" -B "${WORK_DIR}/build" ${_common} ${_consumer_args})
step("build the consumer" ${CMAKE_COMMAND} --build "${WORK_DIR}/build")
# Belt and braces: nothing of tandem's own test/example tree was generated.
foreach(d IN ITEMS build/tandem deps/tandem-build)
  foreach(sub IN ITEMS tests examples benchmarks)
    if(EXISTS "${WORK_DIR}/${d}/${sub}")
      message(FATAL_ERROR "[consumer/${MODE}] the consumer's build holds tandem's ${d}/${sub}")
    endif()
  endforeach()
endforeach()

step("run the consumer on ${_model}" "${WORK_DIR}/build/consumer" "${_model}")
gguf_tensor_count("${_model}" _expected)
set(_want "tensors: ${_expected}\narchitecture: llama\n")
if(NOT step_output STREQUAL _want)
  message(FATAL_ERROR "[consumer/${MODE}] expected:\n${_want}got:\n${step_output}")
endif()
message(STATUS "[consumer/${MODE}] ok: ${_expected} tensors")
