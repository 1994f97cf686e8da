# Output-side tests: CSV and JSON Lines encoding, and the PartWriter (splitting, gzip members,
# sizes and SHA-256). Run them with `ctest -L unit -R '^worker\.'`.
add_executable(worker_csv_test csv_test.cc)
target_compile_options(worker_csv_test PRIVATE ${EXPORTD_WARNINGS})
target_link_libraries(worker_csv_test PRIVATE exportd_output exportd_test_support)
gtest_discover_tests(worker_csv_test TEST_PREFIX "worker." PROPERTIES LABELS unit)

add_executable(worker_jsonl_test jsonl_test.cc)
target_compile_options(worker_jsonl_test PRIVATE ${EXPORTD_WARNINGS})
target_link_libraries(worker_jsonl_test PRIVATE exportd_output exportd_test_support)
gtest_discover_tests(worker_jsonl_test TEST_PREFIX "worker." PROPERTIES LABELS unit)

add_executable(worker_part_writer_test part_writer_test.cc)
target_compile_options(worker_part_writer_test PRIVATE ${EXPORTD_WARNINGS})
target_link_libraries(worker_part_writer_test PRIVATE exportd_output exportd_test_support)
gtest_discover_tests(worker_part_writer_test TEST_PREFIX "worker." PROPERTIES LABELS unit)
