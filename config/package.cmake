# config/package.cmake — where the system files go on install, and the CPack
# settings of the Debian package. Included at the end of the top CMakeLists.txt
# (the man page's install rule is there, next to the command that makes it).
#
#   cmake -S . -B build && cmake --build build && cd build && cpack -G DEB
#     -> build/pdrelay_<version>_<arch>.deb
#
# Package layout (the binary and docs under CPACK_PACKAGING_INSTALL_PREFIX=/usr,
# the rest at absolute paths):
#   /usr/bin/pdrelay
#   /usr/share/man/man1/pdrelay.1.gz
#   /usr/share/doc/pdrelay/README.md, copyright
#   /etc/pdrelay/pdrelay.ini          conffile: config/pdrelay.ini, data_dir /var/lib/pdrelay
#   /etc/init.d/pdrelay               conffile: config/pdrelay.init
#   /lib/systemd/system/pdrelay.service
# The maintainer scripts in config/debian/ create the user and /var/lib/pdrelay.

# Off for `cmake --install --prefix ~/somewhere` without root: the files above
# go to /etc and /lib whatever the prefix, as the package needs them there.
option(PDR_INSTALL_SYSTEM_FILES "Install the config, init script and systemd unit to /etc and /lib" ON)
set(PDR_PACKAGE_MAINTAINER "pdrelay maintainers <maintainers@users.noreply.b-seed-01090780.example>"
    CACHE STRING "Maintainer field of the .deb")

# The packaged config is the shipped one with the outbox in the state
# directory the unit and postinst create, instead of ./var. Generated, so the
# two cannot drift; configure runs again when config/pdrelay.ini changes.
set(PDR_PKG_DIR ${PROJECT_BINARY_DIR}/package)
set_property(DIRECTORY ${PROJECT_SOURCE_DIR} APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
             ${PROJECT_SOURCE_DIR}/config/pdrelay.ini)
file(READ ${PROJECT_SOURCE_DIR}/config/pdrelay.ini pdr_ini)
string(REPLACE "\ndata_dir = ./var\n" "\ndata_dir = /var/lib/pdrelay\n" pdr_pkg_ini "${pdr_ini}")
if(pdr_pkg_ini STREQUAL pdr_ini)
  message(FATAL_ERROR "config/pdrelay.ini has no line 'data_dir = ./var' for config/package.cmake "
                      "to replace with the packaged data_dir")
endif()
file(CONFIGURE OUTPUT ${PDR_PKG_DIR}/pdrelay.ini CONTENT "${pdr_pkg_ini}")

# /usr/share/doc/pdrelay/copyright (DEP-5): config/copyright, whose last
# paragraph is "License: Expat", followed by the text of LICENSE from its
# "Permission" paragraph on, each line indented by one space and each empty
# line written " .". Generated, so the package cannot drift from LICENSE.
set_property(DIRECTORY ${PROJECT_SOURCE_DIR} APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
             ${PROJECT_SOURCE_DIR}/LICENSE ${PROJECT_SOURCE_DIR}/config/copyright)
file(READ ${PROJECT_SOURCE_DIR}/config/copyright pdr_copyright)
file(STRINGS ${PROJECT_SOURCE_DIR}/LICENSE pdr_license_lines)
set(pdr_in_text OFF)
foreach(l IN LISTS pdr_license_lines)
  if(l MATCHES "^Permission is hereby granted")
    set(pdr_in_text ON)
  endif()
  if(pdr_in_text)
    if(l STREQUAL "")
      string(APPEND pdr_copyright " .\n")
    else()
      string(APPEND pdr_copyright " ${l}\n")
    endif()
  endif()
endforeach()
if(NOT pdr_in_text OR NOT pdr_copyright MATCHES "\nLicense: Expat\n Permission is hereby granted")
  message(FATAL_ERROR "LICENSE has no 'Permission is hereby granted' paragraph, or config/copyright "
                      "does not end with a 'License: Expat' line, for config/package.cmake")
endif()
file(CONFIGURE OUTPUT ${PDR_PKG_DIR}/copyright CONTENT "${pdr_copyright}")

if(PDR_INSTALL_SYSTEM_FILES)
  install(FILES ${PDR_PKG_DIR}/pdrelay.ini DESTINATION /etc/pdrelay)
  install(PROGRAMS ${PROJECT_SOURCE_DIR}/config/pdrelay.init DESTINATION /etc/init.d RENAME pdrelay)
  install(FILES ${PROJECT_SOURCE_DIR}/config/pdrelay.service DESTINATION /lib/systemd/system)
endif()
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PDR_PKG_DIR}/copyright
        DESTINATION share/doc/pdrelay)

# ---- CPack: the .deb ------------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME pdrelay)
set(CPACK_PACKAGE_VENDOR "pdrelay")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "${PDR_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "store-and-forward relay of alerts to PagerDuty")
# Multi-line: CPack indents it into the control file's extended description.
set(CPACK_PACKAGE_DESCRIPTION
"pdrelay takes alerts where they happen (an HTTP ingest speaking PagerDuty's
Events API v2, the Alertmanager webhook and a generic alert model, or the
pd-send-like command `pdrelay send`), commits each one to a SQLite outbox
before it answers, and forwards the outbox to the PagerDuty Events API v2 at
the rate PagerDuty allows, retrying for as long as it takes. An alert it has
acknowledged survives a crash, a reboot or an uplink that is down for days.

Made for edge and embedded Linux: one small binary, a systemd unit
(Type=notify) and an init script for systems without systemd.")

set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)          # pdrelay_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${PDR_PACKAGE_MAINTAINER}")
# Depends from the binary's shared libraries (dpkg-shlibdeps, from dpkg-dev).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# The system CA bundle verifies PagerDuty's certificate unless ca_file is set.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "ca-certificates")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/config/debian/conffiles
    ${PROJECT_SOURCE_DIR}/config/debian/postinst
    ${PROJECT_SOURCE_DIR}/config/debian/prerm
    ${PROJECT_SOURCE_DIR}/config/debian/postrm)
# Maintainer scripts 0755 and conffiles 0644 whatever the checkout's modes.
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

include(CPack)
