# toolchains/arm-linux-gnueabihf.cmake — CMake toolchain file for 32-bit ARM
# (ARMv7, hard float) Linux with glibc (Debian: gcc-arm-linux-gnueabihf,
# qemu-user).
#   cmake -DCMAKE_TOOLCHAIN_FILE=toolchains/arm-linux-gnueabihf.cmake \
#         [-DPDR_CROSS_PREFIX=...] [-DPDR_SYSROOT=...] [-DPDR_DEPS_ROOT=...] ...
# Variables: see linux-gnu-common.cmake; ctest runs tests under qemu-arm.
set(PDR_TRIPLE arm-linux-gnueabihf)
set(PDR_PROCESSOR arm)
set(PDR_QEMU qemu-arm)
include(${CMAKE_CURRENT_LIST_DIR}/linux-gnu-common.cmake)
