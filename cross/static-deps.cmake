# cross/static-deps.cmake — included by CMakeLists.txt when -DPDR_STATIC_DEPS=ON
# (the firmware flavour, see cross/build-pdrelay.sh): pdrelay links its
# dependencies' static libraries, found through `pkg-config --static` (with
# their private dependencies, in order), so that only the C library and its
# siblings (libm, libpthread, libdl, librt) stay dynamic. Expects the
# pkg_check_modules() prefixes SQLITE3 CURL CJSON INIH MHD and the MBEDTLS_LIB,
# MBEDX509_LIB, MBEDCRYPTO_LIB of CMakeLists.txt; use it with a toolchain file
# whose find root holds the static libraries (PDR_DEPS_ROOT).

# Only libc and its siblings may be linked dynamically.
set(PDR_LIBC_SIBLINGS c m pthread dl rt resolv util)

# Replaces PkgConfig::<prefix>'s link libraries by the --static list, each
# library resolved to its archive (lib<name>.a) in the .pc's library dirs.
function(pdr_link_static prefix)
  set(libs)
  foreach(name IN LISTS ${prefix}_STATIC_LIBRARIES)
    if(name IN_LIST PDR_LIBC_SIBLINGS)
      list(APPEND libs ${name})
      continue()
    endif()
    set(var PDR_STATIC_LIB_${name})
    find_library(${var} NAMES lib${name}.a HINTS ${${prefix}_STATIC_LIBRARY_DIRS} NO_DEFAULT_PATH)
    if(NOT ${var})
      find_library(${var} NAMES lib${name}.a)
    endif()
    if(NOT ${var})
      message(FATAL_ERROR "PDR_STATIC_DEPS: no static lib${name}.a (needed by ${prefix}) in "
                          "${${prefix}_STATIC_LIBRARY_DIRS} or the find root (${CMAKE_FIND_ROOT_PATH}); "
                          "build it with cross/build-deps.sh")
    endif()
    list(APPEND libs ${${var}})
  endforeach()
  set_property(TARGET PkgConfig::${prefix} PROPERTY INTERFACE_LINK_LIBRARIES "${libs}")
  if(${prefix}_STATIC_CFLAGS_OTHER)
    set_property(TARGET PkgConfig::${prefix} PROPERTY INTERFACE_COMPILE_OPTIONS "${${prefix}_STATIC_CFLAGS_OTHER}")
  endif()
  message(STATUS "PDR_STATIC_DEPS: ${prefix}: ${libs}")
endfunction()

foreach(p SQLITE3 CURL CJSON INIH MHD)
  pdr_link_static(${p})
endforeach()

foreach(v MBEDTLS_LIB MBEDX509_LIB MBEDCRYPTO_LIB)
  if(NOT ${v} MATCHES "\\.a$")
    message(FATAL_ERROR "PDR_STATIC_DEPS: ${v} is ${${v}}, not a static library; "
                        "configure with a toolchain file and -DPDR_DEPS_ROOT (cross/build-pdrelay.sh)")
  endif()
endforeach()

# The dependencies are built with -ffunction-sections -fdata-sections
# (cross/build-deps.sh): drop what pdrelay does not use.
add_link_options(-Wl,--gc-sections)
