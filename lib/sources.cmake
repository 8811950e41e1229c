# The library's sources, one list per folder of lib/. A .c file that is not
# listed here is an error at configure time (see the check at the end), so
# a new file cannot be left out of the build unnoticed.
set(VBLK_LIB_DIR ${CMAKE_CURRENT_LIST_DIR})

# Freestanding: ring formats, memory map, request decoding, config space.
set(VBLK_CORE_SRC
  ${VBLK_LIB_DIR}/core/blk_dev.c
  ${VBLK_LIB_DIR}/core/blk_fast.c
  ${VBLK_LIB_DIR}/core/blk_queue.c
  ${VBLK_LIB_DIR}/core/blk_req.c
  ${VBLK_LIB_DIR}/core/mem.c
  ${VBLK_LIB_DIR}/core/version.c
  ${VBLK_LIB_DIR}/core/vq.c
  ${VBLK_LIB_DIR}/core/vq_packed.c
  ${VBLK_LIB_DIR}/core/vq_split.c
  ${VBLK_LIB_DIR}/core/zone.c)

# Freestanding: the driver side of a virtqueue.
set(VBLK_DRIVER_SRC
  ${VBLK_LIB_DIR}/driver/drv_blk.c
  ${VBLK_LIB_DIR}/driver/drv_packed.c
  ${VBLK_LIB_DIR}/driver/drv_split.c
  ${VBLK_LIB_DIR}/driver/drv_vq.c)

# Hosted: the vhost-user front-end that drives a back-end over a socket.
set(VBLK_FRONTEND_SRC
  ${VBLK_LIB_DIR}/driver/vhost-user/vu_client.c
  ${VBLK_LIB_DIR}/driver/vhost-user/vu_client_msg.c)

# Hosted: storage backends. The rbd*.c files compile to nothing unless
# VBLK_HAVE_RBD (CMake option VBLK_RBD).
set(VBLK_BACKEND_SRC
  ${VBLK_LIB_DIR}/backend/backend.c
  ${VBLK_LIB_DIR}/backend/file.c
  ${VBLK_LIB_DIR}/backend/file_range.c
  ${VBLK_LIB_DIR}/backend/file_uring.c
  ${VBLK_LIB_DIR}/backend/file_zoned_dev.c
  ${VBLK_LIB_DIR}/backend/memory.c
  ${VBLK_LIB_DIR}/backend/null.c
  ${VBLK_LIB_DIR}/backend/rbd.c
  ${VBLK_LIB_DIR}/backend/rbd_io.c
  ${VBLK_LIB_DIR}/backend/rbd_util.c
  ${VBLK_LIB_DIR}/backend/zoned_emul.c)

# Hosted: the device-side transports (loopback, vhost-user, VDUSE) and the
# page-fault guard they share.
set(VBLK_TRANSPORT_SRC
  ${VBLK_LIB_DIR}/transport/fault_guard.c
  ${VBLK_LIB_DIR}/transport/loopback/loopback.c
  ${VBLK_LIB_DIR}/transport/tqueue.c
  ${VBLK_LIB_DIR}/transport/unix_listen.c
  ${VBLK_LIB_DIR}/transport/vduse/vduse.c
  ${VBLK_LIB_DIR}/transport/vduse/vduse_iotlb.c
  ${VBLK_LIB_DIR}/transport/vduse/vduse_kernel.c
  ${VBLK_LIB_DIR}/transport/vduse/vduse_msg.c
  ${VBLK_LIB_DIR}/transport/vduse/vduse_queue.c
  ${VBLK_LIB_DIR}/transport/vduse/vduse_support.c
  ${VBLK_LIB_DIR}/transport/vhost-user/vu_device.c
  ${VBLK_LIB_DIR}/transport/vhost-user/vu_inflight.c
  ${VBLK_LIB_DIR}/transport/vhost-user/vu_inflight_fd.c
  ${VBLK_LIB_DIR}/transport/vhost-user/vu_log.c
  ${VBLK_LIB_DIR}/transport/vhost-user/vu_mem.c
  ${VBLK_LIB_DIR}/transport/vhost-user/vu_memtable.c
  ${VBLK_LIB_DIR}/transport/vhost-user/vu_msg.c
  ${VBLK_LIB_DIR}/transport/vhost-user/vu_notify.c
  ${VBLK_LIB_DIR}/transport/vhost-user/vu_queue.c
  ${VBLK_LIB_DIR}/transport/vhost-user/vu_server.c
  ${VBLK_LIB_DIR}/transport/vhost-user/vu_vring.c
  ${VBLK_LIB_DIR}/transport/worker.c)

# Hosted, optional (VBLK_NBD): the NBD backend over libnbd.
set(VBLK_NBD_SRC
  ${VBLK_LIB_DIR}/backend/nbd.c
  ${VBLK_LIB_DIR}/backend/nbd_config.c
  ${VBLK_LIB_DIR}/backend/nbd_conn.c
  ${VBLK_LIB_DIR}/backend/nbd_log.c)

set(VBLK_ALL_SRC ${VBLK_CORE_SRC} ${VBLK_DRIVER_SRC} ${VBLK_FRONTEND_SRC} ${VBLK_BACKEND_SRC}
    ${VBLK_TRANSPORT_SRC})

# The public headers virtioblk-core needs; none of them includes anything
# beyond <stdbool.h>, <stddef.h> and <stdint.h>.
set(VBLK_CORE_HEADERS
  ${PROJECT_SOURCE_DIR}/include/virtioblk/advanced.h
  ${PROJECT_SOURCE_DIR}/include/virtioblk/backend.h
  ${PROJECT_SOURCE_DIR}/include/virtioblk/blk.h
  ${PROJECT_SOURCE_DIR}/include/virtioblk/driver.h
  ${PROJECT_SOURCE_DIR}/include/virtioblk/mem.h
  ${PROJECT_SOURCE_DIR}/include/virtioblk/ring.h
  ${PROJECT_SOURCE_DIR}/include/virtioblk/spec.h
  ${PROJECT_SOURCE_DIR}/include/virtioblk/version.h
  ${PROJECT_SOURCE_DIR}/include/virtioblk/vq.h
  ${PROJECT_SOURCE_DIR}/include/virtioblk/zone.h)

# Every public header a full build installs. An optional backend whose
# library is not found removes its header from this list.
set(VBLK_PUBLIC_HEADERS ${VBLK_CORE_HEADERS}
  ${PROJECT_SOURCE_DIR}/include/virtioblk/advanced_msg.h
  ${PROJECT_SOURCE_DIR}/include/virtioblk/backends.h
  ${PROJECT_SOURCE_DIR}/include/virtioblk/loopback.h
  ${PROJECT_SOURCE_DIR}/include/virtioblk/nbd.h
  ${PROJECT_SOURCE_DIR}/include/virtioblk/rbd.h
  ${PROJECT_SOURCE_DIR}/include/virtioblk/transport.h
  ${PROJECT_SOURCE_DIR}/include/virtioblk/vduse.h
  ${PROJECT_SOURCE_DIR}/include/virtioblk/vhost_user.h
  ${PROJECT_SOURCE_DIR}/include/virtioblk/vhost_user_client.h
  ${PROJECT_SOURCE_DIR}/include/virtioblk/virtioblk.h)
file(GLOB vblk_headers_found CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/include/virtioblk/*.h)
foreach(h ${vblk_headers_found})
  list(FIND VBLK_PUBLIC_HEADERS ${h} vblk_idx)
  if(vblk_idx LESS 0)
    message(FATAL_ERROR "Header not listed in lib/sources.cmake: ${h}")
  endif()
endforeach()

file(GLOB_RECURSE vblk_found CONFIGURE_DEPENDS ${VBLK_LIB_DIR}/*.c)
set(vblk_unlisted ${vblk_found})
list(REMOVE_ITEM vblk_unlisted ${VBLK_ALL_SRC} ${VBLK_NBD_SRC})
if(vblk_unlisted)
  message(FATAL_ERROR "Sources not listed in lib/sources.cmake: ${vblk_unlisted}")
endif()
set(vblk_missing ${VBLK_ALL_SRC} ${VBLK_NBD_SRC})
list(REMOVE_ITEM vblk_missing ${vblk_found})
if(vblk_missing)
  message(FATAL_ERROR "Listed in lib/sources.cmake but not present: ${vblk_missing}")
endif()
