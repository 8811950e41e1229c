# Tests that exercise threads (label "tsan"): tests/tsan/run.sh builds them
# with -DVBLK_TSAN=ON and runs them under ThreadSanitizer. They stay in the
# "unit" label as well, so every build runs them. (test_vblkd_rpc sets its
# own labels in tests/vblkd/tests.cmake.)
foreach(t test_threads test_blk_queue)
  if(TEST ${t})
    set_property(TEST ${t} APPEND PROPERTY LABELS tsan)
  endif()
endforeach()
