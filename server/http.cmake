# The HTTP port of export-server: signed download URLs, the files they serve, Range handling.
#
# Debian's cpp-httplib is a compiled library (libcpp-httplib.so) built with OpenSSL, zlib and
# Brotli support, and those defines change the layout of its classes (httplib::Request has an
# SSL* member only with CPPHTTPLIB_OPENSSL_SUPPORT). Every translation unit that includes
# <httplib.h> must therefore see exactly the library's defines: pkg-config supplies them, and
# exportd_http passes them on (PUBLIC) to everything that links it.
find_package(PkgConfig REQUIRED)
if(NOT TARGET PkgConfig::HTTPLIB)
  pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET GLOBAL cpp-httplib)
endif()

add_library(exportd_http STATIC
  download_signer.cc
  download_signer.h
  export_file.cc
  export_file.h
  http_range.cc
  http_range.h
  http_server.cc
  http_server.h
  job_view.cc
  job_view.h
)
target_include_directories(exportd_http PUBLIC ${PROJECT_SOURCE_DIR})
target_compile_options(exportd_http PRIVATE ${EXPORTD_WARNINGS})
target_link_libraries(exportd_http PUBLIC exportd_storage exportd_common PkgConfig::HTTPLIB
  OpenSSL::Crypto Threads::Threads)
