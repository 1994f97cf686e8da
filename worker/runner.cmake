# The export engine — claim, export, upload, complete — and the export-worker binary.
add_library(exportd_runner STATIC
  export_runner.cc
  export_runner.h
)
target_include_directories(exportd_runner PUBLIC ${PROJECT_SOURCE_DIR})
target_compile_options(exportd_runner PRIVATE ${EXPORTD_WARNINGS})
target_link_libraries(exportd_runner PUBLIC exportd_source exportd_output exportd_common
  exportd_proto gRPC::grpc++ absl::status absl::statusor absl::strings absl::synchronization
  absl::time Threads::Threads)

add_executable(export-worker worker_main.cc)
target_compile_options(export-worker PRIVATE ${EXPORTD_WARNINGS})
target_link_libraries(export-worker PRIVATE exportd_runner absl::flags absl::flags_parse
  absl::flags_usage)
