# Cross build for 64-bit ARM Linux (aarch64) on a Debian/Ubuntu x86-64 host, with
# Debian's cross compiler (g++-aarch64-linux-gnu). Tests and programs run under
# qemu-user, so ctest, add_test and the scripts work as on a native build:
#   cmake --preset arm64 && cmake --build --preset arm64 && ctest --preset arm64
#
# Libraries with code (OpenSSL, GLPK) come from Debian multiarch packages of the
# target architecture (scripts/install-deps.sh arm64):
#   dpkg --add-architecture arm64 && apt-get update
#   apt-get install libssl-dev:arm64 libglpk-dev:arm64
# They land in /usr/lib/aarch64-linux-gnu and /usr/include/aarch64-linux-gnu,
# which this compiler searches by itself. Header-only libraries (Eigen, Asio,
# cereal, doctest) are the host's copies: they are the same for every target.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(TANDEM_CROSS_TRIPLE aarch64-linux-gnu)
if(NOT CMAKE_CXX_COMPILER)
  set(CMAKE_CXX_COMPILER ${TANDEM_CROSS_TRIPLE}-g++)
endif()
if(NOT CMAKE_C_COMPILER)
  set(CMAKE_C_COMPILER ${TANDEM_CROSS_TRIPLE}-gcc)
endif()
# find_library and find_package look in /usr/lib/aarch64-linux-gnu (never in the
# host's /usr/lib/x86_64-linux-gnu).
set(CMAKE_LIBRARY_ARCHITECTURE ${TANDEM_CROSS_TRIPLE})

# Programs (add_test commands, try_run) run through qemu-user. -L gives the
# cross toolchain's dynamic loader; LD_LIBRARY_PATH makes that loader take the
# cross toolchain's libc as well. Without it, once the multiarch libc6:arm64 is
# installed (a dependency of libssl-dev:arm64), the loader finds that libc in
# /lib/aarch64-linux-gnu first: a loader and a libc of two different glibc
# builds (Debian's cross libc lags the security updates), and the first
# pthread_create spins forever.
find_program(TANDEM_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static)
if(TANDEM_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${TANDEM_QEMU_AARCH64} -L /usr/${TANDEM_CROSS_TRIPLE}
      -E LD_LIBRARY_PATH=/usr/${TANDEM_CROSS_TRIPLE}/lib)
endif()

# pkg-config (FindOpenSSL tries it first) must describe the target's libraries,
# not the host's: point it at the multiarch directory of the target.
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/${TANDEM_CROSS_TRIPLE}/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")

# Debian's cereal package is architecture-specific only in where it puts its
# (header-only) CMake config: /usr/lib/x86_64-linux-gnu/cmake/cereal on an
# amd64 host. Use the host's copy when the target has none.
if(NOT DEFINED cereal_DIR AND NOT EXISTS /usr/lib/${TANDEM_CROSS_TRIPLE}/cmake/cereal/cerealConfig.cmake)
  file(GLOB _tandem_cereal_cfg /usr/lib/*-linux-gnu/cmake/cereal/cerealConfig.cmake)
  if(_tandem_cereal_cfg)
    list(GET _tandem_cereal_cfg 0 _tandem_cereal_cfg)
    get_filename_component(_tandem_cereal_dir "${_tandem_cereal_cfg}" DIRECTORY)
    set(cereal_DIR "${_tandem_cereal_dir}" CACHE PATH "cereal's CMake config (header-only; the host's copy)")
  endif()
endif()
