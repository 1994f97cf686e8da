# exportctl's tests (included from tests/client/CMakeLists.txt): unit tests of its pieces (label
# unit), its commands against an in-process server (label service), and end-to-end tests of the
# real exportctl binary against the real export-server and export-worker on a seeded demo
# database (label e2e). Run them with `ctest -R '^exportctl\.'`.
foreach(test cli format download)
  add_executable(exportctl_${test}_test exportctl_${test}_test.cc)
  target_compile_options(exportctl_${test}_test PRIVATE ${EXPORTD_WARNINGS})
  target_link_libraries(exportctl_${test}_test PRIVATE exportctl_lib exportd_test_support)
  gtest_discover_tests(exportctl_${test}_test TEST_PREFIX "exportctl." DISCOVERY_TIMEOUT 60
    PROPERTIES LABELS unit)
endforeach()

# The commands against a real in-process export-server, jobs driven by a WorkerClient.
add_executable(exportctl_commands_test exportctl_commands_test.cc)
target_compile_options(exportctl_commands_test PRIVATE ${EXPORTD_WARNINGS})
target_link_libraries(exportctl_commands_test PRIVATE exportctl_lib exportd_server
  exportd_test_support)
gtest_discover_tests(exportctl_commands_test TEST_PREFIX "exportctl." DISCOVERY_TIMEOUT 60
  PROPERTIES LABELS service)

# The real exportctl, export-server and export-worker binaries, curl, and node for the JSON
# Schema validator (tests/node/validate_export_job.js).
find_program(EXPORTD_NODE_FOR_EXPORTCTL node)
if(NOT EXPORTD_NODE_FOR_EXPORTCTL)
  set(EXPORTD_NODE_FOR_EXPORTCTL node)  # The validation then fails, naming node.
endif()
add_executable(exportctl_e2e_test exportctl_e2e_test.cc)
target_compile_options(exportctl_e2e_test PRIVATE ${EXPORTD_WARNINGS})
target_link_libraries(exportctl_e2e_test PRIVATE exportctl_lib exportd_test_support)
target_compile_definitions(exportctl_e2e_test PRIVATE
  EXPORTCTL_PATH="$<TARGET_FILE:exportctl>"
  EXPORT_SERVER_PATH="$<TARGET_FILE:export-server>"
  EXPORT_WORKER_PATH="$<TARGET_FILE:export-worker>"
  EXPORTD_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
  EXPORTD_NODE="${EXPORTD_NODE_FOR_EXPORTCTL}")
add_dependencies(exportctl_e2e_test exportctl export-server export-worker)
# One ctest test for the whole suite, so that its tests share one server and one worker.
add_test(NAME exportctl.e2e COMMAND exportctl_e2e_test)
set_tests_properties(exportctl.e2e PROPERTIES LABELS e2e TIMEOUT 120)
