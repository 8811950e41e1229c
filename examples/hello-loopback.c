/* SPDX-License-Identifier: MIT */
/*
 * hello-loopback: the life of one virtio-blk request, end to end, in one
 * process.
 *
 * A virtio-blk device never sees "read 4 KiB at offset X" as a function
 * call. The driver (normally the guest kernel) writes a small *request
 * header* into memory, points a *descriptor chain* at the header, the data
 * buffer and a one-byte *status*, publishes the chain's head in the
 * *available ring*, and *kicks* the device. The device walks the chain,
 * performs the I/O, writes the status byte, and puts the chain's head in the
 * *used ring*; then it may *notify* the driver.
 *
 * Here both sides run in this process, through real rings in memory:
 *
 *   driver (lib/driver)                 device (lib/core + a backend)
 *   -------------------                 -----------------------------
 *   vblk_drv_blk_add()  -- avail ring -->  vblk_vq_pop()   walk + check
 *   vblk_loopback_kick()                   req_start()     decode header
 *                                          backend submit  do the I/O
 *   vblk_drv_vq_get_used() <- used ring -- vblk_req_complete() status
 *
 * Build: cc hello-loopback.c $(pkg-config --cflags --libs libvirtioblk)
 */
#include <stdio.h>
#include <string.h>

#include <virtioblk/virtioblk.h>

int main(void)
{
    /* 1. Storage. A backend is a table of functions; the memory backend is
     *    a RAM disk. The device decides *whether* a request is valid, the
     *    backend only does the I/O. */
    struct vblk_backend disk;
    if (vblk_backend_memory_create(1 << 20, &disk) < 0) {
        fprintf(stderr, "cannot create a 1 MiB RAM disk\n");
        return 1;
    }

    /* 2. The device's identity: what the driver reads from config space
     *    (capacity in 512-byte sectors, limits, features) and its serial. */
    struct vblk_dev_params params;
    vblk_dev_params_default(&params, 1 << 20);
    memcpy(params.serial, "hello-loopback", 14);

    /* 3. Connect a driver to it. The loopback transport plays the part of
     *    a hypervisor: it negotiates features (split ring, indirect
     *    descriptors, event index), allocates the rings in an arena that
     *    stands in for guest memory, and tells the device where they are. */
    struct vblk_loopback *lb;
    int rc = vblk_loopback_create(&params, &disk, NULL, &lb);
    if (rc < 0) {
        fprintf(stderr, "loopback setup failed: %s\n", strerror(-rc));
        return 1;
    }

    /* 4. Buffers must live in memory the device can see: the arena. A real
     *    driver uses guest RAM; the device translates the addresses it
     *    finds in descriptors through its memory map. */
    char *buf = vblk_loopback_alloc(lb, 4096);
    struct vblk_drv_blk_frame *frame = vblk_loopback_alloc(lb, sizeof(*frame));

    /* 5. One write, step by step. The frame holds the 16-byte header
     *    {type = OUT, sector = 8} and the status byte. vblk_drv_blk_add()
     *    builds the chain  [header: readable] -> [buf: readable] ->
     *    [status: writable]  and places its head in the available ring. */
    memset(buf, 0, 4096);
    snprintf(buf, 4096, "Hello from sector 8!");
    struct vblk_drv_vq *vq = vblk_loopback_driver(lb, 0);
    struct vblk_iov data = {buf, 4096};
    rc = vblk_drv_blk_add(vq, frame, VBLK_T_OUT, 8, &data, 1, frame, false);
    if (rc < 0)
        return 1;

    /* 6. Kick. The driver publishes the new available index; the device
     *    asked to be kicked, so the device side runs now: it pops the chain,
     *    copies every descriptor out of shared memory once, checks that
     *    the addresses are mapped and the sector range fits the disk, and
     *    hands a request {OUT, sector 8, one 4 KiB iovec} to the backend.
     *    The memory backend completes it at once; the device writes the
     *    status byte and the used ring entry and notifies the driver. */
    vblk_loopback_kick(lb, 0);

    /* 7. The driver collects the used entry: the token it passed in comes
     *    back, and the status byte says how it went. */
    void *token;
    uint32_t used_len;
    if (vblk_drv_vq_get_used(vq, &token, &used_len) != 1 || token != frame) {
        fprintf(stderr, "no completion\n");
        return 1;
    }
    printf("write: status %u (0 is VIRTIO_BLK_S_OK), device wrote %u byte(s)\n", frame->status,
           used_len);

    /* 8. Read it back with the synchronous helper, which does steps 5-7. */
    memset(buf, 0, 4096);
    rc = vblk_loopback_rw(lb, 0, VBLK_T_IN, 8, buf, 4096);
    printf("read:  status %d, data \"%s\"\n", rc, buf);
    int ok = rc == VBLK_S_OK && strcmp(buf, "Hello from sector 8!") == 0;

    /* 9. GET_ID is answered by the device itself, from its serial. */
    char *id = vblk_loopback_alloc(lb, VBLK_ID_BYTES + 1);
    rc = vblk_loopback_rw(lb, 0, VBLK_T_GET_ID, 0, id, VBLK_ID_BYTES);
    printf("id:    status %d, serial \"%s\"\n", rc, id);

    /* 10. A request past the end of the disk: the device refuses it with
     *     VIRTIO_BLK_S_IOERR and the backend never sees it. */
    rc = vblk_loopback_rw(lb, 0, VBLK_T_IN, 1 << 20, buf, 4096);
    printf("beyond the end: status %d (1 is VIRTIO_BLK_S_IOERR)\n", rc);
    ok = ok && rc == VBLK_S_IOERR;
    vblk_loopback_destroy(lb);
    vblk_backend_destroy(&disk);
    return ok ? 0 : 1;
}
