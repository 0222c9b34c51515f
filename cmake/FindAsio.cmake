# FindAsio: standalone (non-Boost) Asio, which Debian ships without a CMake config.
#
# Defines Asio::Asio (INTERFACE) with ASIO_STANDALONE and ASIO_NO_DEPRECATED.
# Set Asio_ROOT or ASIO_INCLUDE_DIR to point at a copy (for example when
# cross-compiling for Android with headers outside the sysroot).
find_path(ASIO_INCLUDE_DIR NAMES asio.hpp
  HINTS ${Asio_ROOT} ENV ASIO_ROOT
  PATH_SUFFIXES include)
if(ASIO_INCLUDE_DIR AND EXISTS "${ASIO_INCLUDE_DIR}/asio/version.hpp")
  file(STRINGS "${ASIO_INCLUDE_DIR}/asio/version.hpp" _asio_ver REGEX "^#define ASIO_VERSION [0-9]+")
  string(REGEX REPLACE ".*ASIO_VERSION ([0-9]+).*" "\\1" _asio_num "${_asio_ver}")
  math(EXPR _major "${_asio_num} / 100000")
  math(EXPR _minor "${_asio_num} / 100 % 1000")
  math(EXPR _patch "${_asio_num} % 100")
  set(Asio_VERSION "${_major}.${_minor}.${_patch}")
endif()
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(Asio REQUIRED_VARS ASIO_INCLUDE_DIR VERSION_VAR Asio_VERSION)
if(Asio_FOUND AND NOT TARGET Asio::Asio)
  add_library(Asio::Asio INTERFACE IMPORTED)
  set_target_properties(Asio::Asio PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${ASIO_INCLUDE_DIR}"
    INTERFACE_COMPILE_DEFINITIONS "ASIO_STANDALONE;ASIO_NO_DEPRECATED")
endif()
mark_as_advanced(ASIO_INCLUDE_DIR)
