# The Debian libraries eddy links, as pkg-config imported targets. Included
# by the build and, installed, by eddyConfig.cmake, so that both resolve the
# same PkgConfig::NAME targets.
#
# The transports' client libraries are optional: EDDY_WITH_REDIS (hiredis),
# EDDY_WITH_KAFKA (librdkafka), EDDY_WITH_NATS (libnats). The build sets
# them (default: ON when pkg-config finds the library); the installed
# eddyConfig.cmake sets them to what the build used before including this.
# EDDY_DEPS lists the targets to link.
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(JANSSON REQUIRED IMPORTED_TARGET jansson)
pkg_check_modules(SQLITE3 REQUIRED IMPORTED_TARGET sqlite3)
pkg_check_modules(UUID REQUIRED IMPORTED_TARGET uuid)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(MICROHTTPD REQUIRED IMPORTED_TARGET libmicrohttpd)
pkg_check_modules(LIBPQ REQUIRED IMPORTED_TARGET libpq)
set(EDDY_DEPS PkgConfig::JANSSON PkgConfig::SQLITE3 PkgConfig::UUID
    PkgConfig::PCRE2 PkgConfig::MICROHTTPD PkgConfig::LIBPQ)
if(EDDY_WITH_REDIS)
  pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET hiredis)
  list(APPEND EDDY_DEPS PkgConfig::HIREDIS)
endif()
if(EDDY_WITH_KAFKA)
  pkg_check_modules(RDKAFKA REQUIRED IMPORTED_TARGET rdkafka)
  list(APPEND EDDY_DEPS PkgConfig::RDKAFKA)
endif()
if(EDDY_WITH_NATS)
  pkg_check_modules(LIBNATS REQUIRED IMPORTED_TARGET libnats)
  list(APPEND EDDY_DEPS PkgConfig::LIBNATS)
endif()
list(APPEND EDDY_DEPS Threads::Threads m)
