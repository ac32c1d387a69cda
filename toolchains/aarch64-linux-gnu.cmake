# toolchains/aarch64-linux-gnu.cmake — CMake toolchain file for 64-bit ARM
# Linux with glibc (Debian: gcc-aarch64-linux-gnu, qemu-user).
#   cmake -DCMAKE_TOOLCHAIN_FILE=toolchains/aarch64-linux-gnu.cmake \
#         [-DPDR_CROSS_PREFIX=...] [-DPDR_SYSROOT=...] [-DPDR_DEPS_ROOT=...] ...
# Variables: see linux-gnu-common.cmake; ctest runs tests under qemu-aarch64.
set(PDR_TRIPLE aarch64-linux-gnu)
set(PDR_PROCESSOR aarch64)
set(PDR_QEMU qemu-aarch64)
include(${CMAKE_CURRENT_LIST_DIR}/linux-gnu-common.cmake)
