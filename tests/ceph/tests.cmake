# Ceph RBD tests (label "integration"): vblk-vhost-user --rbd against a real
# single-node Ceph cluster that the tests start themselves (ceph-up.sh; the
# ceph-mon, ceph-osd and ceph-common packages, scripts/deps.sh test). One
# cluster (memstore, cephx) is a ctest fixture shared by the cases below;
# the fault case starts its own (bluestore). vu-ranges comes from
# tests/integration/tests.cmake.
if(VBLK_HAVE_RBD AND TARGET vblk-vhost-user AND TARGET vblk-vduse AND TARGET vblk-bench)
  set(vblk_ceph_dir ${PROJECT_BINARY_DIR}/ceph-test-cluster)
  add_test(NAME ceph_cluster_up
    COMMAND env AUTH=cephx IMAGE_SIZE=0 ${CMAKE_CURRENT_LIST_DIR}/ceph-up.sh ${vblk_ceph_dir})
  add_test(NAME ceph_cluster_down COMMAND ${CMAKE_CURRENT_LIST_DIR}/ceph-down.sh ${vblk_ceph_dir})
  # Two clusters starting at once could pick the same free ports.
  set_tests_properties(ceph_cluster_up PROPERTIES
    LABELS integration TIMEOUT 120 FIXTURES_SETUP ceph_cluster RESOURCE_LOCK ceph_ports)
  set_tests_properties(ceph_cluster_down PROPERTIES
    LABELS integration TIMEOUT 60 FIXTURES_CLEANUP ceph_cluster)

  set(vblk_rbd_tests)
  foreach(case ours-rbd-split-1q ours-rbd-split-2q ours-rbd-packed-1q ours-rbd-packed-2q)
    add_test(NAME integration_${case}
      COMMAND bash ${PROJECT_SOURCE_DIR}/tests/integration/bench-verify.sh
              --bench $<TARGET_FILE:vblk-bench> --server $<TARGET_FILE:vblk-vhost-user>
              --case ${case})
    list(APPEND vblk_rbd_tests integration_${case})
  endforeach()
  foreach(case zeroes snapshot badconfig)
    add_test(NAME ceph_rbd_${case}
      COMMAND ${CMAKE_CURRENT_LIST_DIR}/rbd-test.sh --case ${case}
              --server $<TARGET_FILE:vblk-vhost-user> --bench $<TARGET_FILE:vblk-bench>
              --ranges $<TARGET_FILE:vu-ranges> --vduse $<TARGET_FILE:vblk-vduse>)
    list(APPEND vblk_rbd_tests ceph_rbd_${case})
  endforeach()
  if(TARGET vblkd AND TARGET vblk-ctl)
    add_test(NAME ceph_rbd_vblkd-resize
      COMMAND ${CMAKE_CURRENT_LIST_DIR}/rbd-test.sh --case vblkd-resize
              --server $<TARGET_FILE:vblk-vhost-user> --bench $<TARGET_FILE:vblk-bench>
              --ranges $<TARGET_FILE:vu-ranges> --vblkd $<TARGET_FILE:vblkd>
              --ctl $<TARGET_FILE:vblk-ctl>)
    list(APPEND vblk_rbd_tests ceph_rbd_vblkd-resize)
  endif()
  set_tests_properties(${vblk_rbd_tests} PROPERTIES
    LABELS integration TIMEOUT 180 FIXTURES_REQUIRED ceph_cluster
    ENVIRONMENT VBLK_CEPH_DIR=${vblk_ceph_dir})

  add_test(NAME ceph_rbd_faults
    COMMAND ${CMAKE_CURRENT_LIST_DIR}/rbd-test.sh --case faults
            --server $<TARGET_FILE:vblk-vhost-user> --bench $<TARGET_FILE:vblk-bench>
            --ranges $<TARGET_FILE:vu-ranges>)
  set_tests_properties(ceph_rbd_faults PROPERTIES LABELS integration TIMEOUT 300
    RESOURCE_LOCK ceph_ports)
endif()
