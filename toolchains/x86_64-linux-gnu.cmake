# toolchains/x86_64-linux-gnu.cmake — CMake toolchain file for x86-64 Linux
# with glibc: the "firmware" flavour built on (and run by) an x86-64 host
# with Debian's gcc (x86_64-linux-gnu-gcc), or with a cross prefix for
# another x86-64 toolchain and its sysroot.
#   cmake -DCMAKE_TOOLCHAIN_FILE=toolchains/x86_64-linux-gnu.cmake \
#         [-DPDR_CROSS_PREFIX=...] [-DPDR_SYSROOT=...] [-DPDR_DEPS_ROOT=...] ...
# Variables: see linux-gnu-common.cmake. On an x86-64 host the tests run
# natively (no emulator); elsewhere under qemu-x86_64.
set(PDR_TRIPLE x86_64-linux-gnu)
set(PDR_PROCESSOR x86_64)
if(CMAKE_HOST_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  set(PDR_QEMU "")
else()
  set(PDR_QEMU qemu-x86_64)
endif()
include(${CMAKE_CURRENT_LIST_DIR}/linux-gnu-common.cmake)
