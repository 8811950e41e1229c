# Integration tests (label "integration"): vblk-bench --verify through real
# vhost-user-blk back-ends, ours and qemu-storage-daemon (skipped, exit 77,
# when it is not installed). Run with: ctest -L integration
if(TARGET vblk-vhost-user AND TARGET vblk-bench)
  set(VBLK_IT_CASES
    ours-memory-split-1q ours-memory-split-2q ours-memory-packed-1q ours-memory-packed-2q
    ours-image-split-1q ours-image-split-2q ours-image-packed-1q ours-image-packed-2q
    qsd-file-split-1q qsd-file-split-2q qsd-null-split-1q qsd-null-split-2q
    qsd-packed-refused ours-readonly-status)
  foreach(case ${VBLK_IT_CASES})
    add_test(NAME integration_${case}
      COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/bench-verify.sh
              --bench $<TARGET_FILE:vblk-bench> --server $<TARGET_FILE:vblk-vhost-user>
              --case ${case})
    set_tests_properties(integration_${case} PROPERTIES
      LABELS integration TIMEOUT 180 SKIP_RETURN_CODE 77)
  endforeach()
endif()

# vu-ranges: DISCARD / WRITE_ZEROES read back as zeros through vhost-user
# (used by the network backends' tests).
if(TARGET vblk-vhost-user)
  add_executable(vu-ranges ${CMAKE_CURRENT_LIST_DIR}/vu-ranges.c)
  target_compile_definitions(vu-ranges PRIVATE _GNU_SOURCE)
  target_link_libraries(vu-ranges PRIVATE virtioblk_static Threads::Threads)
  if(VBLK_HAVE_URING)
    target_link_libraries(vu-ranges PRIVATE PkgConfig::URING)
  endif()
endif()

# Request types through vhost-user without a VM: GET_LIFETIME, and zoned
# exports checked by vblk-bench --zoned.
if(TARGET vblk-vhost-user AND TARGET vblk-bench)
  foreach(case lifetime secure-erase zoned-memory zoned-image)
    add_test(NAME integration_${case}
      COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/requests-bench.sh
              --bench $<TARGET_FILE:vblk-bench> --server $<TARGET_FILE:vblk-vhost-user>
              --case ${case})
    set_tests_properties(integration_${case} PROPERTIES
      LABELS integration TIMEOUT 120)
  endforeach()
endif()
