# toolchains/linux-gnu-common.cmake — the part shared by the toolchain files
# in this directory (aarch64-linux-gnu.cmake, arm-linux-gnueabihf.cmake,
# x86_64-linux-gnu.cmake), which set PDR_TRIPLE, PDR_PROCESSOR and PDR_QEMU
# and include it. Not a toolchain file by itself. See README.md here.
#
# Cache variables (all optional; -D on the cmake command line):
#   PDR_CROSS_PREFIX  the compiler prefix; default "<triple>-" (Debian's
#                     gcc-<triple> packages), e.g. /opt/x-tools/bin/aarch64-foo-linux-gnu-
#   PDR_SYSROOT       the target's root file system with its libc (a firmware
#                     build's staging dir); default: none, the compiler's own
#                     (Debian: /usr/<triple>)
#   PDR_DEPS_ROOT     a second root holding the dependencies (static libs,
#                     headers and .pc files under <root>/usr), as made by
#                     cross/build-deps.sh: build-cross/<triple>/sysroot
#   PDR_EMULATOR      the command ctest runs target programs with; default:
#                     "qemu-<arch> -L <libc root>" when qemu-<arch> is installed
#                     and the target is not the host's own kind
if(NOT PDR_TRIPLE OR NOT PDR_PROCESSOR)
  message(FATAL_ERROR "linux-gnu-common.cmake: include it from a toolchain file that sets PDR_TRIPLE and PDR_PROCESSOR")
endif()

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR ${PDR_PROCESSOR})

set(PDR_CROSS_PREFIX "${PDR_TRIPLE}-" CACHE STRING "Compiler prefix of the ${PDR_TRIPLE} toolchain")
set(PDR_SYSROOT "" CACHE PATH "Target root file system with its libc (empty: the compiler's own)")
set(PDR_DEPS_ROOT "" CACHE PATH "Root holding the target's dependencies under usr/ (cross/build-deps.sh)")
# try_compile projects read this file again: hand them the same settings.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES PDR_CROSS_PREFIX PDR_SYSROOT PDR_DEPS_ROOT PDR_EMULATOR)

set(CMAKE_C_COMPILER "${PDR_CROSS_PREFIX}gcc")
find_program(_pdr_cxx NAMES "${PDR_CROSS_PREFIX}g++" NO_CACHE)
if(_pdr_cxx)
  set(CMAKE_CXX_COMPILER "${PDR_CROSS_PREFIX}g++")
endif()

# The root of the target's libc: qemu-user's -L and the find root.
if(PDR_SYSROOT)
  set(CMAKE_SYSROOT "${PDR_SYSROOT}")
  set(_pdr_libc_root "${PDR_SYSROOT}")
elseif(EXISTS "/usr/${PDR_TRIPLE}/lib")
  set(_pdr_libc_root "/usr/${PDR_TRIPLE}")
else()
  set(_pdr_libc_root "")   # the host's own libc (x86_64 on an x86_64 host)
endif()

set(CMAKE_FIND_ROOT_PATH ${PDR_DEPS_ROOT} ${_pdr_libc_root})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)   # build tools are the host's
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# pkg-config: only the target's .pc files, paths prefixed with their root.
set(ENV{PKG_CONFIG_PATH} "")
if(PDR_DEPS_ROOT)
  set(_pdr_pc_root "${PDR_DEPS_ROOT}")
else()
  set(_pdr_pc_root "${PDR_SYSROOT}")
endif()
if(_pdr_pc_root)
  set(ENV{PKG_CONFIG_LIBDIR} "${_pdr_pc_root}/usr/lib/pkgconfig:${_pdr_pc_root}/usr/lib/${PDR_TRIPLE}/pkgconfig:${_pdr_pc_root}/usr/share/pkgconfig")
  set(ENV{PKG_CONFIG_SYSROOT_DIR} "${_pdr_pc_root}")
else()
  # Debian multiarch: the -dev:<arch> packages' .pc files.
  set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/${PDR_TRIPLE}/pkgconfig:/usr/share/pkgconfig")
  unset(ENV{PKG_CONFIG_SYSROOT_DIR})
endif()

# ctest runs the target's programs under qemu-user (binfmt_misc not needed).
if(NOT DEFINED PDR_EMULATOR AND PDR_QEMU)
  find_program(_pdr_qemu NAMES ${PDR_QEMU} NO_CACHE)
  if(_pdr_qemu)
    if(_pdr_libc_root)
      set(PDR_EMULATOR "${_pdr_qemu};-L;${_pdr_libc_root}")
    else()
      set(PDR_EMULATOR "${_pdr_qemu}")
    endif()
  endif()
endif()
if(PDR_EMULATOR)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${PDR_EMULATOR})
endif()
