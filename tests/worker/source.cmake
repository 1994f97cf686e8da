# Unit tests of the data-source side: filter parsing, SQL compilation, the SQLite source and the
# demo data. Run them with `ctest -L unit -R '^source\.'`.
foreach(test filters_test sql_query_test sqlite_source_test demo_data_test)
  add_executable(source_${test} ${test}.cc)
  target_compile_options(source_${test} PRIVATE ${EXPORTD_WARNINGS})
  target_link_libraries(source_${test} PRIVATE exportd_source exportd_test_support)
  gtest_discover_tests(source_${test} TEST_PREFIX "source." DISCOVERY_TIMEOUT 60
    PROPERTIES LABELS unit)
endforeach()
