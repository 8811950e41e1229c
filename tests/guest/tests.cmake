# Guest integration tests (label "guest"): boot Linux guests under QEMU TCG.
# They install what they need (tests/guest/prepare.sh) and exit 77 (skipped)
# when no guest kernel can be had. Run with: ctest -L guest
if(TARGET vblk-vhost-user)
  foreach(case split-1q packed-1q split-2q packed-2q readonly poll reconnect reconnect-packed migrate)
    add_test(NAME guest_vhost_user_${case}
      COMMAND ${CMAKE_CURRENT_LIST_DIR}/vhost-user-test.sh
              --program $<TARGET_FILE:vblk-vhost-user> --only ${case})
    set_tests_properties(guest_vhost_user_${case} PROPERTIES
      LABELS guest TIMEOUT 900 SKIP_RETURN_CODE 77 RUN_SERIAL TRUE)
  endforeach()
endif()
if(TARGET vblk-vhost-user AND VBLK_HAVE_RBD)
  add_test(NAME guest_vhost_user_rbd
    COMMAND ${CMAKE_CURRENT_LIST_DIR}/vhost-user-test.sh
            --program $<TARGET_FILE:vblk-vhost-user> --only rbd)
  set_tests_properties(guest_vhost_user_rbd PROPERTIES
    LABELS guest TIMEOUT 900 SKIP_RETURN_CODE 77 RUN_SERIAL TRUE)
endif()
include(${CMAKE_CURRENT_LIST_DIR}/vduse.cmake)
