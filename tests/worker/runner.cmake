# The export engine against a real in-process server over gRPC: completed exports (csv, jsonl,
# gzip, several parts), cancel, source errors and release at stop. Run them with
# `ctest -L service -R '^worker\.ExportRunner'`.
add_executable(worker_export_runner_test export_runner_test.cc)
target_compile_options(worker_export_runner_test PRIVATE ${EXPORTD_WARNINGS})
target_link_libraries(worker_export_runner_test PRIVATE exportd_runner exportd_server
  exportd_test_support ZLIB::ZLIB)
gtest_discover_tests(worker_export_runner_test TEST_PREFIX "worker." DISCOVERY_TIMEOUT 60
  PROPERTIES LABELS service)
