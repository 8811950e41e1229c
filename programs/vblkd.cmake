# vblkd (the storage daemon) and vblk-ctl (its client) need json-c; without
# it they are skipped with a message and everything else is built.
if(PKG_CONFIG_FOUND)
  pkg_check_modules(JSONC IMPORTED_TARGET json-c)
endif()
if(JSONC_FOUND)
  set(VBLKD_SRC ${PROJECT_SOURCE_DIR}/programs/vblkd/daemon.c
                ${PROJECT_SOURCE_DIR}/programs/vblkd/loop.c
                ${PROJECT_SOURCE_DIR}/programs/vblkd/rpc.c
                ${PROJECT_SOURCE_DIR}/programs/vblkd/backends.c
                ${PROJECT_SOURCE_DIR}/programs/vblkd/exports.c
                ${PROJECT_SOURCE_DIR}/programs/vblkd/resize.c
                ${PROJECT_SOURCE_DIR}/programs/vblkd/clients.c)
  # --metrics needs libmicrohttpd; without it vblkd refuses the option.
  pkg_check_modules(MHD IMPORTED_TARGET libmicrohttpd)
  set(VBLKD_HAVE_METRICS 0)
  if(MHD_FOUND)
    set(VBLKD_HAVE_METRICS 1)
    list(APPEND VBLKD_SRC ${PROJECT_SOURCE_DIR}/programs/vblkd/metrics.c)
  else()
    message(STATUS "vblkd: --metrics not available, libmicrohttpd not found "
                   "(Debian: apt-get install libmicrohttpd-dev)")
  endif()
  # The daemon without main(): also linked by its unit tests.
  add_library(vblkd_core STATIC ${VBLKD_SRC})
  target_compile_definitions(vblkd_core PRIVATE VBLKD_HAVE_METRICS=${VBLKD_HAVE_METRICS}
                             VBLK_HAVE_NBD=${VBLK_HAVE_NBD} VBLK_HAVE_RBD=${VBLK_HAVE_RBD})
  if(MHD_FOUND)
    target_link_libraries(vblkd_core PUBLIC PkgConfig::MHD)
  endif()
  target_include_directories(vblkd_core PUBLIC ${PROJECT_SOURCE_DIR}/programs/vblkd
                                               ${PROJECT_SOURCE_DIR}/lib)
  target_compile_definitions(vblkd_core PRIVATE _GNU_SOURCE)
  target_link_libraries(vblkd_core PUBLIC virtioblk_static PkgConfig::JSONC Threads::Threads)
  if(VBLK_HAVE_URING)
    target_link_libraries(vblkd_core PUBLIC PkgConfig::URING)
  endif()
  vblk_program(vblkd ${PROJECT_SOURCE_DIR}/programs/vblkd/main.c ${PROJECT_SOURCE_DIR}/programs/cli.c)
  target_link_libraries(vblkd PRIVATE vblkd_core)
  target_include_directories(vblkd PRIVATE ${PROJECT_SOURCE_DIR}/programs)
  # The systemd unit, with this install's paths; copied into
  # /etc/systemd/system by whoever installs it as a service.
  configure_file(${PROJECT_SOURCE_DIR}/contrib/systemd/vblkd.service.in
                 ${PROJECT_BINARY_DIR}/contrib/vblkd.service @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/contrib/vblkd.service
          DESTINATION ${CMAKE_INSTALL_DATADIR}/libvirtioblk/systemd)
  vblk_program(vblk-ctl ${PROJECT_SOURCE_DIR}/programs/vblk-ctl.c ${PROJECT_SOURCE_DIR}/programs/cli.c)
  target_link_libraries(vblk-ctl PRIVATE PkgConfig::JSONC)
else()
  message(STATUS "vblkd and vblk-ctl: not built, json-c not found "
                 "(pkg-config json-c; Debian: apt-get install libjson-c-dev)")
endif()
