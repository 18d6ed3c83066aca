# The Debian libraries eddy links, as pkg-config imported targets. Included
# by the build and, installed, by eddyConfig.cmake, so that both resolve the
# same PkgConfig::NAME targets.
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(JANSSON REQUIRED IMPORTED_TARGET jansson)
pkg_check_modules(SQLITE3 REQUIRED IMPORTED_TARGET sqlite3)
pkg_check_modules(UUID REQUIRED IMPORTED_TARGET uuid)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET hiredis)
pkg_check_modules(RDKAFKA REQUIRED IMPORTED_TARGET rdkafka)
pkg_check_modules(LIBNATS REQUIRED IMPORTED_TARGET libnats)
pkg_check_modules(LIBPQ REQUIRED IMPORTED_TARGET libpq)
