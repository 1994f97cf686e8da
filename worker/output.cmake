# The output side of the export engine: CSV and JSON Lines encoding, gzip, and the PartWriter
# that splits an export into part files with their sizes and SHA-256.
find_package(ZLIB REQUIRED)

add_library(exportd_output STATIC
  csv.cc
  csv.h
  jsonl.cc
  jsonl.h
  part_writer.cc
  part_writer.h
  row.h
)
target_include_directories(exportd_output PUBLIC ${PROJECT_SOURCE_DIR})
target_compile_options(exportd_output PRIVATE ${EXPORTD_WARNINGS})
target_link_libraries(exportd_output PUBLIC exportd_common absl::status absl::statusor
  absl::strings absl::str_format OpenSSL::Crypto ZLIB::ZLIB)
