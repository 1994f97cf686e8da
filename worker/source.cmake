# The data-source side of the export engine: filters compiled to SQL, the SQLite source and the
# demo-data generator.
find_package(SQLite3 REQUIRED)

add_library(exportd_source STATIC
  demo_data.cc
  sql_query.cc
  sqlite_source.cc
)
target_include_directories(exportd_source PUBLIC ${PROJECT_SOURCE_DIR})
target_compile_options(exportd_source PRIVATE ${EXPORTD_WARNINGS})
target_link_libraries(exportd_source PUBLIC exportd_common SQLite::SQLite3 absl::status
  absl::statusor absl::strings absl::flat_hash_map)
