# exportctl's tests (included from tests/client/CMakeLists.txt): unit tests of its pieces
# (label unit), and end-to-end tests of the real exportctl binary against the real export-server
# and export-worker on a seeded demo database (label e2e). Run them with
# `ctest -R '^exportctl\.'`.
foreach(test cli format download)
  add_executable(exportctl_${test}_test exportctl_${test}_test.cc)
  target_compile_options(exportctl_${test}_test PRIVATE ${EXPORTD_WARNINGS})
  target_link_libraries(exportctl_${test}_test PRIVATE exportctl_lib exportd_test_support)
  gtest_discover_tests(exportctl_${test}_test TEST_PREFIX "exportctl." DISCOVERY_TIMEOUT 60
    PROPERTIES LABELS unit)
endforeach()
