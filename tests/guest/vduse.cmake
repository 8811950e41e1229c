# Guest integration test of the VDUSE transport (label "guest"): boots a
# Linux 6.12 guest under QEMU TCG and runs vblk-vduse inside it through
# VDUSE and virtio_vdpa (see vduse-workload.sh). Exits 77 (skipped) when no
# guest kernel can be had. Run with: ctest -L guest -R guest_vduse
if(TARGET vblk-vduse)
  add_test(NAME guest_vduse
    COMMAND ${CMAKE_CURRENT_LIST_DIR}/vduse-test.sh --program $<TARGET_FILE:vblk-vduse>)
  set_tests_properties(guest_vduse PROPERTIES
    LABELS guest TIMEOUT 1200 SKIP_RETURN_CODE 77 RUN_SERIAL TRUE)
endif()

# VDUSE serving a virtual machine (vduse-vm-test.sh): the outer guest runs
# vblk-vduse and QEMU, whose inner guests (KVM on the outer guest's emulated
# SVM) use the device through vhost_vdpa; qemu-storage-daemon's vduse-blk
# export runs the same checks as the reference.
if(TARGET vblk-vduse)
  add_test(NAME guest_vduse_vm
    COMMAND ${CMAKE_CURRENT_LIST_DIR}/vduse-vm-test.sh --program $<TARGET_FILE:vblk-vduse>)
  set_tests_properties(guest_vduse_vm PROPERTIES
    LABELS guest TIMEOUT 1800 SKIP_RETURN_CODE 77 RUN_SERIAL TRUE)
endif()

# A zoned disk through VDUSE (vduse-zoned-test.sh): blkzone, the write
# pointer rules, f2fs and a restart, from the guest kernel's virtio_blk.
if(TARGET vblk-vduse AND TARGET vblk-vhost-user AND TARGET vblk-bench)
  add_test(NAME guest_vduse_zoned
    COMMAND ${CMAKE_CURRENT_LIST_DIR}/vduse-zoned-test.sh --program $<TARGET_FILE:vblk-vduse>
            --vhost-user $<TARGET_FILE:vblk-vhost-user> --bench $<TARGET_FILE:vblk-bench>)
  set_tests_properties(guest_vduse_zoned PROPERTIES
    LABELS guest TIMEOUT 900 SKIP_RETURN_CODE 77 RUN_SERIAL TRUE)
endif()
