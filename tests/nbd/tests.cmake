# NBD backend tests (label "nbd"), against a real nbdkit that each case
# starts on a UNIX socket: vblk-bench --verify and vu-ranges (DISCARD and
# WRITE_ZEROES) through vhost-user to vblk-vhost-user --nbd, the request types and splitting through the
# loopback transport (nbd-check), the server killed or stopped in the middle
# of a verified run, and bad configurations. Run with: ctest -L nbd
if(VBLK_HAVE_NBD AND TARGET vblk-vhost-user AND TARGET vblk-bench AND TARGET vu-ranges)
  add_executable(nbd-check ${CMAKE_CURRENT_LIST_DIR}/nbd-check.c)
  target_compile_definitions(nbd-check PRIVATE _GNU_SOURCE)
  target_link_libraries(nbd-check PRIVATE virtioblk_static Threads::Threads)
  set(VBLK_NBD_CASES
    vu-split-1q vu-split-2q vu-packed-1q vu-packed-2q vu-shared-split-2q vu-shared-packed-2q
    vu-ranges ops fault-kill fault-stop badconfig)
  set(vblk_nbd_vblkd)
  if(TARGET vblkd AND TARGET vblk-ctl)
    list(APPEND VBLK_NBD_CASES vblkd-resize)
    set(vblk_nbd_vblkd --vblkd $<TARGET_FILE:vblkd> --ctl $<TARGET_FILE:vblk-ctl>)
  endif()
  foreach(case ${VBLK_NBD_CASES})
    add_test(NAME nbd_${case}
      COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/nbd-test.sh
              --bench $<TARGET_FILE:vblk-bench> --server $<TARGET_FILE:vblk-vhost-user>
              --check $<TARGET_FILE:nbd-check> --ranges $<TARGET_FILE:vu-ranges> --case ${case}
              ${vblk_nbd_vblkd})
    set_tests_properties(nbd_${case} PROPERTIES LABELS nbd TIMEOUT 120)
  endforeach()
endif()
