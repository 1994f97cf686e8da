# exportctl, the command-line client (included from client/CMakeLists.txt). Its pieces are a
# library (exportctl_lib) so that tests can use them; the binary is exportctl_main.cc alone.
#
# cpp-httplib is Debian's compiled library; its defines must match (see server/http.cmake), so
# it comes from pkg-config here too.
find_package(CLI11 CONFIG REQUIRED)
find_package(PkgConfig REQUIRED)
if(NOT TARGET PkgConfig::HTTPLIB)
  pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET GLOBAL cpp-httplib)
endif()

add_library(exportctl_lib STATIC
  exportctl_cli.cc
  exportctl_cli.h
  exportctl_commands.cc
  exportctl_commands.h
  exportctl_download.cc
  exportctl_download.h
  exportctl_exit.cc
  exportctl_exit.h
  exportctl_format.cc
  exportctl_format.h
  exportctl_http.cc
  exportctl_http.h
  exportctl_progress.cc
  exportctl_progress.h
  exportctl_resume.cc
  exportctl_resume.h
  exportctl_verify.cc
  exportctl_verify.h
)
target_include_directories(exportctl_lib PUBLIC ${PROJECT_SOURCE_DIR})
target_compile_options(exportctl_lib PRIVATE ${EXPORTD_WARNINGS})
target_link_libraries(exportctl_lib PUBLIC exportd_client exportd_common CLI11::CLI11
  PkgConfig::HTTPLIB OpenSSL::Crypto nlohmann_json::nlohmann_json protobuf::libprotobuf
  absl::status absl::statusor absl::strings absl::time)

add_executable(exportctl exportctl_main.cc)
target_compile_options(exportctl PRIVATE ${EXPORTD_WARNINGS})
target_link_libraries(exportctl PRIVATE exportctl_lib Threads::Threads)
