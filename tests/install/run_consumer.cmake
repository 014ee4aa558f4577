# Run by the CTest test install/consumer (cmake -P): cmake --install the build tree into a
# fresh prefix, configure and build consumer/ against it, run it. Any failing step fails the test.
cmake_minimum_required(VERSION 3.25)

foreach(var IN ITEMS LONGHAUL_BINARY_DIR PREFIX CONSUMER_SOURCE_DIR CONSUMER_BINARY_DIR
                     CONSUMER_GENERATOR CONSUMER_CXX_COMPILER)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_consumer.cmake: ${var} is not set")
  endif()
endforeach()

# run_step(<what> <command...>): runs the command, echoing it, and stops on failure.
function(run_step what)
  message(STATUS "install/consumer: ${what}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc COMMAND_ECHO STDOUT)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "install/consumer: ${what} failed (${rc})")
  endif()
endfunction()

# Start from nothing, so a file left by an earlier run cannot hide a missing install rule.
file(REMOVE_RECURSE "${PREFIX}" "${CONSUMER_BINARY_DIR}")

set(config_args)
if(INSTALL_CONFIG)
  set(config_args --config "${INSTALL_CONFIG}")
endif()
run_step("install into ${PREFIX}"
  "${CMAKE_COMMAND}" --install "${LONGHAUL_BINARY_DIR}" --prefix "${PREFIX}" ${config_args})

set(configure_args
  -S "${CONSUMER_SOURCE_DIR}" -B "${CONSUMER_BINARY_DIR}" -G "${CONSUMER_GENERATOR}"
  "-DCMAKE_PREFIX_PATH=${PREFIX}"
  "-DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF"
  "-DCMAKE_CXX_COMPILER=${CONSUMER_CXX_COMPILER}"
  "-DCMAKE_CXX_FLAGS=${CONSUMER_CXX_FLAGS}"
  "-DCMAKE_EXE_LINKER_FLAGS=${CONSUMER_LINK_FLAGS}"
  "-DCONSUMER_WERROR=${CONSUMER_WERROR}")
if(CONSUMER_MAKE_PROGRAM)
  list(APPEND configure_args "-DCMAKE_MAKE_PROGRAM=${CONSUMER_MAKE_PROGRAM}")
endif()
if(INSTALL_CONFIG)
  list(APPEND configure_args "-DCMAKE_BUILD_TYPE=${INSTALL_CONFIG}")
endif()
run_step("configure the consumer" "${CMAKE_COMMAND}" ${configure_args})

# The package must come from the scratch prefix, not from a longhaul installed elsewhere.
file(STRINGS "${CONSUMER_BINARY_DIR}/CMakeCache.txt" found_dir REGEX "^longhaul_DIR:")
string(REGEX REPLACE "^longhaul_DIR:[A-Z]+=" "" found_dir "${found_dir}")
file(REAL_PATH "${PREFIX}" real_prefix)
file(REAL_PATH "${found_dir}" real_found_dir)
string(FIND "${real_found_dir}/" "${real_prefix}/" at)
if(NOT at EQUAL 0)
  message(FATAL_ERROR "install/consumer: found longhaul in '${found_dir}', not under ${PREFIX}")
endif()

run_step("build the consumer"
  "${CMAKE_COMMAND}" --build "${CONSUMER_BINARY_DIR}" --parallel 2 ${config_args})

find_program(consumer longhaul_consumer
  PATHS "${CONSUMER_BINARY_DIR}" "${CONSUMER_BINARY_DIR}/${INSTALL_CONFIG}" NO_DEFAULT_PATH)
if(NOT consumer)
  message(FATAL_ERROR "install/consumer: longhaul_consumer was not built in ${CONSUMER_BINARY_DIR}")
endif()
run_step("run the consumer" "${consumer}" "${CONSUMER_BINARY_DIR}/scratch")
