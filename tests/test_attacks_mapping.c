/* SPDX-License-Identifier: MIT */
/*
 * The attack catalogue, part two: files a peer shares that stop backing the
 * device's mappings. A truncated memory, log or in-flight file, a hugetlb
 * memfd without a pool, a sparse file on a full filesystem, a VDUSE IOTLB
 * entry that faults: each case checks what prevents it (an error reply, a
 * seal) or how it is contained (the device breaks, the process goes on),
 * and then that the same device serves a well-behaved front-end with
 * verified I/O.
 *
 * Every case runs in a child process, so that a fault the library fails to
 * contain kills the child and fails the case instead of ending the whole
 * program. See docs/security.md, "Shared files".
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "attack_harness.h"
#include "transport/fault_guard.h"
#include "driver/vhost-user/vu_client_internal.h"
#include "transport/vhost-user/vu_internal.h"
#include "vduse_fake.h"

#define ATK_VU_GET_INFLIGHT_FD 31u

/* Runs @fn in a child process, as a test group of its own (so that a
 * failed assertion ends the child rather than running the remaining cases
 * there), and fails unless the child exits with 0. */
#define in_child(fn) in_child_named(#fn, fn)
static void in_child_named(const char *name, CMUnitTestFunction fn)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        const struct CMUnitTest one[] = {{name, fn, NULL, NULL, NULL}};
        _exit(cmocka_run_group_tests_name(name, one, NULL, NULL) ? 1 : 0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (WIFSIGNALED(st))
        fail_msg("the process died of signal %d", WTERMSIG(st));
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* Replaces the front-end's guest memory by @fd (ATK_VU_MEM bytes). */
static void use_memory(struct atk_vu *v, int fd)
{
    munmap(v->mem, ATK_VU_MEM);
    close(v->memfd);
    v->memfd = fd;
    v->mem = mmap(NULL, ATK_VU_MEM, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    assert_true(v->mem != MAP_FAILED);
}

/* Posts [header at @hdr][@len bytes of data at @data][status after the
 * header] in guest memory; returns the status byte's offset. */
static size_t post_rq(struct atk_vu *v, size_t hdr, uint32_t type, uint64_t sector, size_t data,
                      uint32_t len)
{
    struct vblk_req_hdr h = {type, 0, sector};
    memcpy(v->mem + hdr, &h, sizeof(h));
    size_t st = hdr + 32;
    v->mem[st] = 0xee;
    struct atk_seg s[3] = {{atk_vu_gpa(hdr), 16, 0},
                           {atk_vu_gpa(data), len, type == VBLK_T_IN ? ATK_W : 0},
                           {atk_vu_gpa(st), 1, ATK_W}};
    atk_post(&v->ring, s, 3);
    return st;
}

/* The device reports DEVICE_NEEDS_RESET and wants the connection closed. */
static void expect_faulted(struct atk_vu *v)
{
    assert_true(fault_owner_count(&v->d->fault) > 0);
    assert_int_equal(atk_vu_send(v, ATK_VU_GET_STATUS, 0, NULL, 0, NULL, 0), -EPROTO);
    assert_true(atk_vu_u64(v) & VBLK_STATUS_DEVICE_NEEDS_RESET);
}

/* A request whose data lies in memory that no longer exists: the queue
 * breaks instead of the process dying. */
static void expect_io_faults(struct atk_vu *v, size_t data)
{
    unsigned long before = fault_guard_total();
    eventfd_t x;
    (void)eventfd_read(v->err, &x);
    size_t st = post_rq(v, 0x8000, VBLK_T_IN, 0, data, 4096);
    assert_int_equal(vblk_vu_queue_process(v->d, 0), -EIO);
    assert_true(fault_guard_total() > before);
    assert_false(vblk_vu_queue_active(v->d, 0));
    /* The status byte is still in memory that exists: the request was
     * completed; the error eventfd told the front-end. */
    assert_int_not_equal(v->mem[st], 0xee);
    assert_int_equal(eventfd_read(v->err, &x), 0);
    /* The ring is no longer served, even if someone runs it again. */
    st = post_rq(v, 0x9000, VBLK_T_IN, 0, 0xa000, 512);
    assert_true(vblk_vu_queue_process(v->d, 0) <= 0);
    assert_int_equal(v->mem[st], 0xee);
    expect_faulted(v);
}

/* What the server does after -EPROTO, then a new front-end with fresh
 * guest memory: negotiation, a ring, a write and a read-back compared. */
static void serves_a_well_behaved_front_end(struct atk_vu *v)
{
    vblk_vu_dev_detach(v->d);
    int fd = memfd_create("atk-guest-2", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, ATK_VU_MEM), 0);
    use_memory(v, fd);
    atk_vu_negotiate(v, false);
    atk_vu_mem_table(v);
    atk_vu_ring(v, false, 0);
    assert_int_equal(atk_vu_get(v, ATK_VU_GET_STATUS) & VBLK_STATUS_DEVICE_NEEDS_RESET, 0);
    for (size_t i = 0; i < 4096; i++)
        v->mem[0x10000 + i] = (uint8_t)(i * 7 + 3);
    size_t st = post_rq(v, 0x8000, VBLK_T_OUT, 8, 0x10000, 4096);
    assert_int_equal(vblk_vu_queue_process(v->d, 0), 1);
    assert_int_equal(v->mem[st], VBLK_S_OK);
    st = post_rq(v, 0x9000, VBLK_T_IN, 8, 0x20000, 4096);
    assert_int_equal(vblk_vu_queue_process(v->d, 0), 1);
    assert_int_equal(v->mem[st], VBLK_S_OK);
    assert_memory_equal(v->mem + 0x10000, v->mem + 0x20000, 4096);
    /* The memfd is now sealed against shrinking by the device. */
    int seals = fcntl(fd, F_GET_SEALS);
    assert_true(seals >= 0 && (seals & F_SEAL_SHRINK));
}

/* ---- guest memory ---- */

static void truncated_guest_memory(void **unused)
{
    (void)unused;
    struct atk_vu *v = atk_vu_ready(false);
    size_t st = post_rq(v, 0x8000, VBLK_T_IN, 0, 0x80000, 4096);
    assert_int_equal(vblk_vu_queue_process(v->d, 0), 1);
    assert_int_equal(v->mem[st], VBLK_S_OK);
    /* A memfd created without MFD_ALLOW_SEALING cannot be sealed: the
     * front-end cuts it down to the rings and headers. */
    assert_int_equal(ftruncate(v->memfd, 0x10000), 0);
    expect_io_faults(v, 0x80000);
    serves_a_well_behaved_front_end(v);
    atk_vu_free(v, false);
}

static void vu_guest_memory_truncated_after_mem_table(void **state)
{
    (void)state;
    in_child(truncated_guest_memory);
}

static void two_devices(void **unused)
{
    (void)unused;
    struct atk_vu *a = atk_vu_ready(false), *b = atk_vu_ready(false);
    assert_int_equal(ftruncate(a->memfd, 0x10000), 0);
    expect_io_faults(a, 0x80000);
    /* The other device in the process saw nothing and goes on serving. */
    assert_int_equal(fault_owner_count(&b->d->fault), 0);
    assert_int_equal(atk_vu_get(b, ATK_VU_GET_STATUS) & VBLK_STATUS_DEVICE_NEEDS_RESET, 0);
    for (size_t i = 0; i < 4096; i++)
        b->mem[0x10000 + i] = (uint8_t)(i ^ 0x5a);
    size_t st = post_rq(b, 0x8000, VBLK_T_OUT, 24, 0x10000, 4096);
    assert_int_equal(vblk_vu_queue_process(b->d, 0), 1);
    assert_int_equal(b->mem[st], VBLK_S_OK);
    st = post_rq(b, 0x9000, VBLK_T_IN, 24, 0x80000, 4096);
    assert_int_equal(vblk_vu_queue_process(b->d, 0), 1);
    assert_int_equal(b->mem[st], VBLK_S_OK);
    assert_memory_equal(b->mem + 0x10000, b->mem + 0x80000, 4096);
    serves_a_well_behaved_front_end(a);
    atk_vu_free(b, false);
    atk_vu_free(a, false);
}

static void vu_fault_breaks_only_its_device(void **state)
{
    (void)state;
    in_child(two_devices);
}

static void sealed_guest_memory(void **unused)
{
    (void)unused;
    struct atk_vu *v = atk_vu_new(NULL);
    int fd = memfd_create("atk-sealable", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, ATK_VU_MEM), 0);
    use_memory(v, fd);
    atk_vu_negotiate(v, false);
    atk_vu_mem_table(v);
    /* Mapping it sealed it: the front-end can no longer shrink it. */
    assert_int_equal(ftruncate(fd, 0x10000), -1);
    assert_int_equal(errno, EPERM);
    atk_vu_ring(v, false, 0);
    size_t st = post_rq(v, 0x8000, VBLK_T_IN, 0, 0x80000, 4096);
    assert_int_equal(vblk_vu_queue_process(v->d, 0), 1);
    assert_int_equal(v->mem[st], VBLK_S_OK);
    assert_int_equal(fault_owner_count(&v->d->fault), 0);
    atk_vu_free(v, false);
}

static void vu_sealable_memfd_is_sealed_against_shrinking(void **state)
{
    (void)state;
    in_child(sealed_guest_memory);
}

/* ---- hugetlb ---- */

#define HUGE_2M (2u << 20)

static int hugetlb_memfd(void)
{
    return memfd_create("atk-huge", MFD_CLOEXEC | MFD_HUGETLB);
}

/* Free huge pages of the default size, from /proc/meminfo. */
static long free_huge_pages(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return -1;
    char line[128];
    long n = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "HugePages_Free: %ld", &n) == 1)
            break;
    fclose(f);
    return n;
}

static void hugetlb_without_pool(void **unused)
{
    (void)unused;
    struct atk_vu *v = atk_vu_ready(false);
    int fd = hugetlb_memfd();
    assert_true(fd >= 0);
    struct stat sb;
    assert_int_equal(fstat(fd, &sb), 0);
    assert_int_equal(ftruncate(fd, (off_t)sb.st_blksize), 0);
    /* Accepted, this mapping would raise SIGBUS at the first write. */
    struct atk_vu_single one = {
        0, {ATK_VU_GPA + 0x10000000ull, (uint64_t)sb.st_blksize, ATK_VU_UA + 0x10000000ull, 0}};
    atk_vu_refused(v, ATK_VU_ADD_MEM_REG, &one, sizeof(one), &fd, 1);
    struct atk_vu_table t = {.nregions = 1};
    t.r[0] = one.r;
    atk_vu_refused(v, ATK_VU_SET_MEM_TABLE, &t, 8 + 32, &fd, 1);
    close(fd);
    /* The table that was there goes on working. */
    size_t st = post_rq(v, 0x8000, VBLK_T_IN, 0, 0x80000, 4096);
    assert_int_equal(vblk_vu_queue_process(v->d, 0), 1);
    assert_int_equal(v->mem[st], VBLK_S_OK);
    assert_int_equal(fault_owner_count(&v->d->fault), 0);
    serves_a_well_behaved_front_end(v);
    atk_vu_free(v, false);
}

static void vu_hugetlb_memfd_without_pool(void **state)
{
    (void)state;
    int fd = hugetlb_memfd();
    if (fd < 0)
        skip(); /* no hugetlbfs in this kernel */
    close(fd);
    if (free_huge_pages() != 0)
        skip(); /* a pool exists: the case cannot be built here */
    in_child(hugetlb_without_pool);
}

/* ---- a sparse file on a full tmpfs ---- */

static char tmpfs_dir[] = "/tmp/atk-tmpfs-XXXXXX";

/* A private mount namespace with a 256 KiB tmpfs on tmpfs_dir. */
static bool small_tmpfs(void)
{
    if (unshare(CLONE_NEWNS) < 0) {
        uid_t uid = getuid();
        gid_t gid = getgid();
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
            return false;
        char map[64];
        int f = open("/proc/self/setgroups", O_WRONLY);
        if (f >= 0) {
            (void)!write(f, "deny", 4);
            close(f);
        }
        snprintf(map, sizeof(map), "0 %u 1", (unsigned)uid);
        f = open("/proc/self/uid_map", O_WRONLY);
        if (f < 0 || write(f, map, strlen(map)) < 0)
            return false;
        close(f);
        snprintf(map, sizeof(map), "0 %u 1", (unsigned)gid);
        f = open("/proc/self/gid_map", O_WRONLY);
        if (f < 0 || write(f, map, strlen(map)) < 0)
            return false;
        close(f);
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return false;
    return mount("atk", tmpfs_dir, "tmpfs", 0, "size=256k") == 0;
}

static void probe_tmpfs(void)
{
    _exit(small_tmpfs() ? 0 : 77);
}

static void sparse_memory_on_full_tmpfs(void **unused)
{
    (void)unused;
    assert_true(small_tmpfs());
    struct atk_vu *v = atk_vu_new(NULL);
    char path[64];
    snprintf(path, sizeof(path), "%s/guest", tmpfs_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    /* 1 MiB of guest memory on a 256 KiB filesystem: only holes. */
    assert_int_equal(ftruncate(fd, ATK_VU_MEM), 0);
    use_memory(v, fd);
    /* The rings and headers get pages; then another file fills the rest. */
    memset(v->mem, 0, 0x10000);
    snprintf(path, sizeof(path), "%s/filler", tmpfs_dir);
    int filler = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    assert_true(filler >= 0);
    static const uint8_t block[4096];
    while (write(filler, block, sizeof(block)) > 0)
        ;
    assert_int_equal(errno, ENOSPC);
    close(filler);
    atk_vu_negotiate(v, false);
    atk_vu_mem_table(v);
    atk_vu_ring(v, false, 0);
    /* Reading into a hole needs a page the filesystem no longer has. */
    expect_io_faults(v, 0x80000);
    serves_a_well_behaved_front_end(v);
    atk_vu_free(v, false);
}

static void vu_sparse_memory_on_full_tmpfs(void **state)
{
    (void)state;
    assert_non_null(mkdtemp(tmpfs_dir));
    fflush(stdout);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        probe_tmpfs();
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    bool can = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (can)
        in_child(sparse_memory_on_full_tmpfs);
    rmdir(tmpfs_dir);
    if (!can)
        skip(); /* no way to mount a small tmpfs here */
}

/* ---- the in-flight region ---- */

static void inflight_memfd_truncated(void **unused)
{
    (void)unused;
    struct atk_vu *v = atk_vu_new(NULL);
    atk_vu_negotiate(v, false);
    atk_vu_mem_table(v);
    struct atk_vu_inflight in = {0, 0, ATK_VU_NQ, ATK_VU_QSIZE, 0};
    assert_int_equal(atk_vu_send(v, ATK_VU_GET_INFLIGHT_FD, 0, &in, 20, NULL, 0), 0);
    int ifd = v->rep.fd;
    assert_true(ifd >= 0);
    memcpy(&in, v->rep.buf + sizeof(struct atk_vu_hdr), 20);
    assert_true(in.mmap_size > 0);
    /* The region the device hands out is sealed: the front-end can neither
     * shrink it nor grow it, nor lift the seals. */
    int seals = fcntl(ifd, F_GET_SEALS);
    assert_true(seals >= 0);
    assert_int_equal(seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
                     F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
    assert_int_equal(ftruncate(ifd, 0), -1);
    assert_int_equal(errno, EPERM);
    assert_int_equal(ftruncate(ifd, (off_t)in.mmap_size * 2), -1);
    assert_int_equal(errno, EPERM);
    /* Handed back (as after a back-end restart), it works. */
    atk_vu_ok(v, ATK_VU_SET_INFLIGHT_FD, &in, 20, &ifd, 1);
    atk_vu_ring(v, false, 0);
    size_t st = post_rq(v, 0x8000, VBLK_T_IN, 0, 0x80000, 4096);
    assert_int_equal(vblk_vu_queue_process(v->d, 0), 1);
    assert_int_equal(v->mem[st], VBLK_S_OK);
    assert_int_equal(fault_owner_count(&v->d->fault), 0);
    atk_vu_free(v, false);
}

static void vu_inflight_memfd_truncated_by_frontend(void **state)
{
    (void)state;
    in_child(inflight_memfd_truncated);
}

/* Starts queue 0 by hand; returns what the message that started it
 * returned (0, or -EPROTO once the device faulted). */
static int start_ring(struct atk_vu *v)
{
    atk_vu_ring_setup(v, false, 0);
    uint64_t idx = 0;
    int rc = atk_vu_send(v, ATK_VU_SET_VRING_KICK, 0, &idx, 8, &v->kick, 1);
    if (rc < 0)
        return rc;
    struct atk_vu_state en = {0, 1};
    return atk_vu_send(v, ATK_VU_SET_VRING_ENABLE, 0, &en, 8, NULL, 0);
}

static void set_inflight_truncated(void **unused)
{
    (void)unused;
    struct atk_vu *v = atk_vu_new(NULL);
    atk_vu_negotiate(v, false);
    atk_vu_mem_table(v);
    /* The front-end's own region, in a memfd it did not seal. */
    size_t size = ATK_VU_NQ * vu_inflight_queue_bytes(ATK_VU_QSIZE);
    int ifd = memfd_create("atk-inflight", MFD_CLOEXEC);
    assert_true(ifd >= 0);
    assert_int_equal(ftruncate(ifd, (off_t)size), 0);
    struct atk_vu_inflight in = {size, 0, ATK_VU_NQ, ATK_VU_QSIZE, 0};
    atk_vu_ok(v, ATK_VU_SET_INFLIGHT_FD, &in, 20, &ifd, 1);
    assert_int_equal(ftruncate(ifd, 0), 0);
    close(ifd);
    /* Starting the ring reads the region (is there work to resubmit?). */
    assert_int_equal(start_ring(v), -EPROTO);
    expect_faulted(v);
    serves_a_well_behaved_front_end(v);
    atk_vu_free(v, false);
}

static void vu_set_inflight_fd_truncated(void **state)
{
    (void)state;
    in_child(set_inflight_truncated);
}

/* ---- the dirty log ---- */

static void log_file_truncated(void **unused)
{
    (void)unused;
    struct atk_vu *v = atk_vu_ready(false);
    uint64_t size = ((ATK_VU_GPA + ATK_VU_MEM) >> 12) / 8 + 1; /* covers guest memory */
    size_t file = (size + 0xfff) & ~(size_t)0xfff;
    int lfd = memfd_create("atk-log", MFD_CLOEXEC);
    assert_true(lfd >= 0);
    assert_int_equal(ftruncate(lfd, (off_t)file), 0);
    struct atk_vu_log lg = {size, 0};
    atk_vu_ok(v, ATK_VU_SET_LOG_BASE, &lg, sizeof(lg), &lfd, 1);
    uint64_t feat = v->virtio_features | VBLK_BIT(VBLK_VU_F_LOG_ALL);
    atk_vu_ok(v, ATK_VU_SET_FEATURES, &feat, 8, NULL, 0);
    size_t st = post_rq(v, 0x8000, VBLK_T_IN, 0, 0x80000, 4096);
    assert_int_equal(vblk_vu_queue_process(v->d, 0), 1);
    assert_int_equal(v->mem[st], VBLK_S_OK);
    /* The next write into guest memory sets a bit in a page that is gone. */
    assert_int_equal(ftruncate(lfd, 0), 0);
    close(lfd);
    expect_io_faults(v, 0x80000);
    serves_a_well_behaved_front_end(v);
    atk_vu_free(v, false);
}

static void vu_log_file_truncated(void **state)
{
    (void)state;
    in_child(log_file_truncated);
}

/* ---- VDUSE ---- */

static void vduse_mapping_faults(void **unused)
{
    (void)unused;
    void *state;
    assert_int_equal(vduse_fx_setup(&state, true), 0);
    struct fixture *fx = state;
    bring_up(fx, false);
    /* The kernel's file for the buffer entry loses its pages under I/O
     * (a device deleted while the daemon works, a bounce page never
     * backed): modelled by truncating the memfd behind the fake IOTLB. */
    uint8_t *far = fx->arena + 0x80000;
    assert_int_equal(do_request(fx, VBLK_T_IN, 0, far, 4096), VBLK_S_OK);
    assert_int_equal(ftruncate(fx->arena_fd, 0x40000), 0);
    assert_int_equal(do_request(fx, VBLK_T_IN, 0, far, 4096), VBLK_S_OK);
    struct vblk_transport_stats st;
    vblk_vduse_stats(fx->v, &st);
    assert_int_equal(st.mapping_faults, 1);
    assert_int_equal(st.broken_queues, 1);
    assert_true(fx->v->vqs[0].broken);
    /* The driver resets the device; the kernel's entries are whole again. */
    assert_int_equal(set_status(fx, 0), VDUSE_ABI_RESULT_OK);
    assert_int_equal(ftruncate(fx->arena_fd, ARENA_SIZE), 0);
    bring_up(fx, false);
    uint8_t *out = arena_alloc(fx, 4096), *in = arena_alloc(fx, 4096);
    for (size_t i = 0; i < 4096; i++)
        out[i] = (uint8_t)(i * 13 + 5);
    assert_int_equal(do_request(fx, VBLK_T_OUT, 16, out, 4096), VBLK_S_OK);
    assert_int_equal(do_request(fx, VBLK_T_IN, 16, in, 4096), VBLK_S_OK);
    assert_memory_equal(out, in, 4096);
    vblk_vduse_stats(fx->v, &st);
    assert_int_equal(st.mapping_faults, 1);
    assert_false(fx->v->vqs[0].broken);
    teardown(&state);
}

static void vduse_iotlb_mapping_faults_under_io(void **state)
{
    (void)state;
    in_child(vduse_mapping_faults);
}

/* ---- the real server program ---- */

#ifdef VBLK_VHOST_USER_PROGRAM

static void sleep_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static pid_t server_pid;

/* Teardown: a server left behind by a failed case. */
static int stop_server(void **state)
{
    (void)state;
    if (server_pid > 0) {
        kill(server_pid, SIGKILL);
        waitpid(server_pid, NULL, 0);
    }
    server_pid = 0;
    return 0;
}

/* One request on queue 0 with header and status in @fr, waited for;
 * returns the status byte, or -1 if the connection ended first. */
static int client_io(struct vblk_vu_client *c, struct vblk_drv_blk_frame *fr, uint32_t type,
                     uint64_t sector, void *buf, size_t len)
{
    struct vblk_drv_vq *vq = vblk_vu_client_queue(c, 0);
    fr->status = 0xee;
    struct vblk_iov d = {buf, len};
    assert_int_equal(vblk_drv_blk_add(vq, fr, type, sector, &d, 1, fr, false), 0);
    assert_true(vblk_vu_client_kick(c, 0) >= 0);
    for (int i = 0; i < 100; i++) {
        void *tok;
        uint32_t ulen;
        int got = vblk_drv_vq_get_used(vq, &tok, &ulen);
        if (got == 1) {
            assert_ptr_equal(tok, fr);
            return fr->status;
        }
        assert_int_equal(got, 0);
        if (vblk_vu_client_wait(c, 0, 100) < 0)
            return -1;
    }
    fail_msg("no completion in 10 s");
    return -1;
}

static void vu_server_program_survives_truncated_guest_memory(void **state)
{
    (void)state;
    char dir[] = "/tmp/atk-server-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char sock[96], log[96];
    snprintf(sock, sizeof(sock), "%s/vu.sock", dir);
    snprintf(log, sizeof(log), "%s/server.log", dir);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(126);
        execl(VBLK_VHOST_USER_PROGRAM, "vblk-vhost-user", "--socket", sock, "--memory", "1M",
              "--quiet", (char *)NULL);
        _exit(127);
    }
    server_pid = pid;

    /* The hostile front-end: its memfd (not sealable) is cut down to the
     * rings and the first allocations, then it asks for a read into what
     * is gone. The socket file exists from bind() on, but connections are
     * refused until listen(): wait for the server to take one. */
    struct vblk_vu_client_opts o = {.queue_size = 16, .mem_size = 1u << 20};
    struct vblk_vu_client *c;
    int rc = -1;
    for (int i = 0; i < 1000 && rc < 0; i++) {
        rc = vblk_vu_client_connect(sock, &o, &c);
        if (rc < 0)
            sleep_ms(10);
    }
    assert_int_equal(rc, 0);
    struct vblk_drv_blk_frame *fr1 = vblk_vu_client_alloc(c, sizeof(*fr1));
    struct vblk_drv_blk_frame *fr2 = vblk_vu_client_alloc(c, sizeof(*fr2));
    uint8_t *near = vblk_vu_client_alloc(c, 4096);
    assert_non_null(vblk_vu_client_alloc(c, 512u << 10));
    uint8_t *far = vblk_vu_client_alloc(c, 4096);
    assert_true(fr1 && fr2 && near && far);
    assert_int_equal(client_io(c, fr1, VBLK_T_IN, 0, near, 4096), VBLK_S_OK);
    off_t keep = (off_t)(near - c->mem) + 0x10000;
    assert_true(keep < far - c->mem);
    assert_int_equal(ftruncate(c->memfd, keep), 0);
    (void)client_io(c, fr2, VBLK_T_IN, 0, far, 4096);
    /* The server breaks the device and hangs up. */
    rc = 0;
    for (int i = 0; i < 100 && rc >= 0; i++)
        rc = vblk_vu_client_wait(c, 0, 100);
    assert_int_equal(rc, -ECONNRESET);
    vblk_vu_client_close(c);

    /* The server is alive and serves the next front-end. */
    assert_int_equal(waitpid(pid, NULL, WNOHANG), 0);
    rc = -1;
    for (int i = 0; i < 500 && rc < 0; i++) {
        rc = vblk_vu_client_connect(sock, &o, &c);
        if (rc < 0)
            sleep_ms(10);
    }
    assert_int_equal(rc, 0);
    fr1 = vblk_vu_client_alloc(c, sizeof(*fr1));
    fr2 = vblk_vu_client_alloc(c, sizeof(*fr2));
    uint8_t *out = vblk_vu_client_alloc(c, 4096), *in = vblk_vu_client_alloc(c, 4096);
    assert_true(fr1 && fr2 && out && in);
    for (size_t i = 0; i < 4096; i++)
        out[i] = (uint8_t)(i * 31 + 1);
    assert_int_equal(client_io(c, fr1, VBLK_T_OUT, 64, out, 4096), VBLK_S_OK);
    assert_int_equal(client_io(c, fr2, VBLK_T_IN, 64, in, 4096), VBLK_S_OK);
    assert_memory_equal(out, in, 4096);
    vblk_vu_client_close(c);

    assert_int_equal(kill(pid, SIGTERM), 0);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    server_pid = 0;
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    /* Its log names the fault. */
    char text[4096] = {0};
    int lf = open(log, O_RDONLY | O_CLOEXEC);
    assert_true(lf >= 0);
    assert_true(read(lf, text, sizeof(text) - 1) > 0);
    close(lf);
    assert_non_null(strstr(text, "memory faulted"));
    unlink(log);
    unlink(sock);
    rmdir(dir);
}

#endif

/* ---- what the guard does not contain ---- */

static void fault_elsewhere(void)
{
    /* The handler the guard chains to: the default action (not cmocka's,
     * which reports the signal as a failed test). */
    signal(SIGBUS, SIG_DFL);
    assert_int_equal(fault_guard_install(), 0);
    int fd = memfd_create("atk-unguarded", MFD_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 4096), 0);
    volatile uint8_t *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    assert_true(p != MAP_FAILED);
    assert_int_equal(ftruncate(fd, 0), 0);
    p[0] = 1; /* not a peer's mapping: a bug, and it must still crash */
    _exit(0);
}

static void sigbus_outside_guarded_mappings_still_kills(void **state)
{
    (void)state;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        fault_elsewhere();
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGBUS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(vu_guest_memory_truncated_after_mem_table),
        cmocka_unit_test(vu_fault_breaks_only_its_device),
        cmocka_unit_test(vu_sealable_memfd_is_sealed_against_shrinking),
        cmocka_unit_test(vu_hugetlb_memfd_without_pool),
        cmocka_unit_test(vu_sparse_memory_on_full_tmpfs),
        cmocka_unit_test(vu_inflight_memfd_truncated_by_frontend),
        cmocka_unit_test(vu_set_inflight_fd_truncated),
        cmocka_unit_test(vu_log_file_truncated),
        cmocka_unit_test(vduse_iotlb_mapping_faults_under_io),
#ifdef VBLK_VHOST_USER_PROGRAM
        cmocka_unit_test_teardown(vu_server_program_survives_truncated_guest_memory, stop_server),
#endif
        cmocka_unit_test(sigbus_outside_guarded_mappings_still_kills),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
