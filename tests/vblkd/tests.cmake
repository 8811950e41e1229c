# vblkd: the JSON-RPC unit tests (label "unit", with cmocka) and the
# integration test with vblk-ctl and vblk-bench (label "integration").
if(TARGET vblkd_core AND VBLK_CMOCKA_FOUND)
  add_executable(test_vblkd_rpc ${CMAKE_CURRENT_LIST_DIR}/test_vblkd_rpc.c)
  target_compile_definitions(test_vblkd_rpc PRIVATE _GNU_SOURCE)
  target_link_libraries(test_vblkd_rpc PRIVATE vblkd_core PkgConfig::CMOCKA)
  add_test(NAME test_vblkd_rpc COMMAND test_vblkd_rpc)
  # Threaded (the control loop, worker threads, clients): also under
  # ThreadSanitizer (tests/tsan/run.sh).
  set_tests_properties(test_vblkd_rpc PROPERTIES LABELS "unit;tsan" TIMEOUT 120)
endif()
if(TARGET vblkd AND TARGET vblk-ctl AND TARGET vblk-bench)
  foreach(case exports many nbd zoned)
    add_test(NAME integration_vblkd_${case}
      COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/vblkd-test.sh
              --vblkd $<TARGET_FILE:vblkd> --ctl $<TARGET_FILE:vblk-ctl>
              --bench $<TARGET_FILE:vblk-bench> --case ${case})
    set_tests_properties(integration_vblkd_${case} PROPERTIES
      LABELS integration TIMEOUT 180 SKIP_RETURN_CODE 77)
  endforeach()
endif()
