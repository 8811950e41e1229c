/*
 * vringattack - a hostile virtio-blk driver for the inner guest of the
 * VDUSE-for-VMs test (vduse-vm-test.sh).
 *
 * It takes the virtio-blk PCI function away from the kernel, drives it from
 * user space through its modern virtio-pci capabilities (sysfs resource
 * files), and puts hand-made rings and requests in a 2 MiB huge page whose
 * guest-physical address it reads from /proc/self/pagemap. Each attack is a
 * case of the unit tests' attack catalogue (tests/test_attacks_ring.c and
 * tests/test_attacks_request.c) that a driver can send through PCI:
 * looping or out-of-range chains, indirect
 * tables in the wrong places, buffers outside guest memory, bad headers and
 * status descriptors, avail index jumps, packed descriptors with the wrong
 * wrap counter. After each attack the device is reset and must serve a good
 * write and read-back again. The back-end must survive it all; the caller
 * checks that from the outer guest.
 *
 * Usage: vringattack split|packed PCI_ADDRESS   (as root; needs free huge
 * pages). PCI_ADDRESS is the virtio-blk function, e.g. 0000:00:03.0.
 * Prints "vringattack: PASS ..." and exits 0, or "vringattack: FAIL ..." and
 * exits 1.
 *
 * Build: gcc -std=c11 -static -O2 -o vringattack vringattack.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HUGE (2u << 20)

/* virtio 1.2 4.1.4: PCI capabilities */
#define CAP_VNDR      0x09
#define CFG_COMMON    1
#define CFG_NOTIFY    2
#define COMMON_DFSEL  0x00
#define COMMON_DF     0x04
#define COMMON_GFSEL  0x08
#define COMMON_GF     0x0c
#define COMMON_STATUS 0x14
#define COMMON_QSEL   0x16
#define COMMON_QSIZE  0x18
#define COMMON_QENA   0x1c
#define COMMON_QNOFF  0x1e
#define COMMON_QDESC  0x20
#define COMMON_QDRV   0x28
#define COMMON_QDEV   0x30

#define S_ACK      1
#define S_DRIVER   2
#define S_DRV_OK   4
#define S_FEAT_OK  8
#define F_INDIRECT 28
#define F_VERSION1 32
#define F_PACKED   34

#define D_NEXT     1
#define D_WRITE    2
#define D_INDIRECT 4
#define P_AVAIL    (1u << 7)
#define P_USED     (1u << 15)

#define QSIZE 16
/* offsets in the huge page */
#define OFF_DESC 0x0000
#define OFF_DRV  0x1000
#define OFF_DEV  0x2000
#define OFF_IND  0x3000 /* indirect tables */
#define OFF_HDR  0x8000
#define OFF_STAT 0x9000
#define OFF_DATA 0x10000

/* A descriptor as the attacks describe it; next is the buffer ID in a
 * packed ring. */
struct desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

/* virtio 1.2 2.8.13: the packed ring's layout puts the ID first */
struct pdesc {
    uint64_t addr;
    uint32_t len;
    uint16_t id;
    uint16_t flags;
};

static volatile uint8_t *common, *notify;
static uint32_t notify_mult;
static unsigned last_n; /* packed: descriptors in the last chain sent */
static uint8_t *mem;
static uint64_t pa; /* guest-physical address of mem */
static bool packed;
static uint16_t avail_idx, used_seen; /* split */
static uint16_t slot, uslot;          /* packed */
static bool wrap = true, uwrap = true;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("vringattack: FAIL ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    exit(1);
}

static uint8_t rd8(size_t o)
{
    return common[o];
}
static uint16_t rd16(size_t o)
{
    return *(volatile uint16_t *)(common + o);
}
static uint32_t rd32(size_t o)
{
    return *(volatile uint32_t *)(common + o);
}
static void wr8(size_t o, uint8_t v)
{
    common[o] = v;
}
static void wr16(size_t o, uint16_t v)
{
    *(volatile uint16_t *)(common + o) = v;
}
static void wr32(size_t o, uint32_t v)
{
    *(volatile uint32_t *)(common + o) = v;
}
static void wr64(size_t o, uint64_t v)
{
    wr32(o, (uint32_t)v);
    wr32(o + 4, (uint32_t)(v >> 32));
}

static void write_file(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0 || write(fd, s, strlen(s)) < 0) {
        if (fd >= 0)
            close(fd);
        fail("writing '%s' to %s: %s", s, path, strerror(errno));
    }
    close(fd);
}

static void *map_bar(const char *dev, int bar)
{
    char p[300];
    snprintf(p, sizeof(p), "%s/resource%d", dev, bar);
    int fd = open(p, O_RDWR | O_SYNC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        fail("open %s: %s", p, strerror(errno));
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        fail("mmap %s: %s", p, strerror(errno));
    close(fd);
    return m;
}

/* Unbinds PCI function @bdf from its driver and maps its common and notify
 * structures. */
static void pci_setup(const char *bdf)
{
    char dev[300];
    snprintf(dev, sizeof(dev), "/sys/bus/pci/devices/%s", bdf);
    if (access(dev, F_OK) != 0)
        fail("no PCI function %s", bdf);
    char p[340];
    snprintf(p, sizeof(p), "%s/driver", dev);
    if (access(p, F_OK) == 0) {
        snprintf(p, sizeof(p), "%s/driver/unbind", dev);
        write_file(p, strrchr(dev, '/') + 1);
    }
    snprintf(p, sizeof(p), "%s/enable", dev);
    write_file(p, "1");
    snprintf(p, sizeof(p), "%s/config", dev);
    int fd = open(p, O_RDWR);
    uint8_t cfg[256];
    if (fd < 0 || pread(fd, cfg, sizeof(cfg), 0) != (ssize_t)sizeof(cfg))
        fail("reading %s: %s", p, strerror(errno));
    uint16_t cmd = (uint16_t)(cfg[4] | cfg[5] << 8);
    cmd |= 0x6; /* memory space, bus master */
    if (pwrite(fd, &cmd, 2, 4) != 2)
        fail("enabling bus mastering: %s", strerror(errno));
    close(fd);
    for (uint8_t c = cfg[0x34] & 0xfc; c; c = cfg[c + 1] & 0xfc) {
        if (cfg[c] != CAP_VNDR)
            continue;
        uint8_t type = cfg[c + 3], bar = cfg[c + 4];
        uint32_t off;
        memcpy(&off, &cfg[c + 8], 4);
        if (type == CFG_COMMON)
            common = (uint8_t *)map_bar(dev, bar) + off;
        else if (type == CFG_NOTIFY) {
            notify = (uint8_t *)map_bar(dev, bar) + off;
            memcpy(&notify_mult, &cfg[c + 16], 4);
        }
    }
    if (!common || !notify)
        fail("no common or notify capability in %s", dev);
    printf("vringattack: driving %s\n", dev);
}

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static void dev_reset(void)
{
    wr8(COMMON_STATUS, 0);
    uint64_t t0 = now_ms();
    while (rd8(COMMON_STATUS) != 0) {
        if (now_ms() - t0 > 5000)
            fail("the device did not reset within 5 s");
        usleep(1000);
    }
}

static volatile uint16_t *notify_q0;

/* Resets the device and brings queue 0 up over fresh rings. */
static void dev_init(void)
{
    dev_reset();
    wr8(COMMON_STATUS, S_ACK);
    wr8(COMMON_STATUS, S_ACK | S_DRIVER);
    wr32(COMMON_DFSEL, 1);
    uint32_t hi = rd32(COMMON_DF);
    wr32(COMMON_DFSEL, 0);
    uint32_t lo = rd32(COMMON_DF);
    if (!(hi & 1u << (F_VERSION1 - 32)))
        fail("no VERSION_1");
    if (packed && !(hi & 1u << (F_PACKED - 32)))
        fail("the device does not offer RING_PACKED");
    wr32(COMMON_GFSEL, 0);
    wr32(COMMON_GF, lo & 1u << F_INDIRECT);
    wr32(COMMON_GFSEL, 1);
    wr32(COMMON_GF, 1u << (F_VERSION1 - 32) | (packed ? 1u << (F_PACKED - 32) : 0));
    wr8(COMMON_STATUS, S_ACK | S_DRIVER | S_FEAT_OK);
    if (!(rd8(COMMON_STATUS) & S_FEAT_OK))
        fail("FEATURES_OK refused");
    memset(mem, 0, OFF_HDR);
    avail_idx = used_seen = 0;
    slot = uslot = 0;
    wrap = uwrap = true;
    wr16(COMMON_QSEL, 0);
    if (rd16(COMMON_QSIZE) < QSIZE)
        fail("queue 0 is smaller than %d", QSIZE);
    wr16(COMMON_QSIZE, QSIZE);
    wr64(COMMON_QDESC, pa + OFF_DESC);
    wr64(COMMON_QDRV, pa + OFF_DRV);
    wr64(COMMON_QDEV, pa + OFF_DEV);
    wr16(COMMON_QENA, 1);
    /* queue 1, if any, stays unconfigured, as firmware leaves it */
    notify_q0 = (volatile uint16_t *)(notify + (size_t)rd16(COMMON_QNOFF) * notify_mult);
    wr8(COMMON_STATUS, S_ACK | S_DRIVER | S_FEAT_OK | S_DRV_OK);
    if (rd8(COMMON_STATUS) & 0x40)
        fail("DEVICE_NEEDS_RESET right after DRIVER_OK");
}

static struct desc *dtab(void)
{
    return (struct desc *)(void *)(mem + OFF_DESC);
}

/* Makes a chain of @n descriptors (already written at slots from the
 * current position) available and kicks. Split: @head is the avail entry. */
static void split_publish(uint16_t head, uint16_t count)
{
    volatile uint16_t *avail = (volatile uint16_t *)(void *)(mem + OFF_DRV);
    for (uint16_t i = 0; i < count; i++)
        avail[2 + (avail_idx + i) % QSIZE] = head;
    __atomic_thread_fence(__ATOMIC_RELEASE);
    avail_idx = (uint16_t)(avail_idx + count);
    avail[1] = avail_idx;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    *notify_q0 = 0;
}

/* Packed: writes @n descriptors from the current slot, the head's flags
 * last, and kicks. @bad_wrap marks them with the wrong wrap counter. */
static void packed_publish(struct desc *d, unsigned n, bool bad_wrap)
{
    struct pdesc *t = (struct pdesc *)(void *)(mem + OFF_DESC);
    uint16_t first = slot;
    uint16_t first_flags = 0;
    bool w = wrap;
    for (unsigned i = 0; i < n; i++) {
        bool mark = bad_wrap ? !w : w;
        uint16_t f = (uint16_t)(d[i].flags | (mark ? P_AVAIL : P_USED));
        t[slot].addr = d[i].addr;
        t[slot].len = d[i].len;
        t[slot].id = d[i].next;
        if (i == 0)
            first_flags = f;
        else
            t[slot].flags = f;
        slot++;
        if (slot == QSIZE) {
            slot = 0;
            w = !w;
        }
    }
    __atomic_thread_fence(__ATOMIC_RELEASE);
    t[first].flags = first_flags;
    wrap = w;
    last_n = n;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    *notify_q0 = 0;
}

/* Waits up to @ms for a used entry; returns true if one came. */
static bool wait_used(unsigned ms)
{
    uint64_t t0 = now_ms();
    for (;;) {
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (!packed) {
            volatile uint16_t *used = (volatile uint16_t *)(void *)(mem + OFF_DEV);
            if (used[1] != used_seen) {
                used_seen++;
                return true;
            }
        } else {
            volatile uint16_t *f =
                &((volatile struct pdesc *)(void *)(mem + OFF_DESC))[uslot].flags;
            uint16_t v = *f;
            bool a = v & P_AVAIL, u = v & P_USED;
            if (a == uwrap && u == uwrap) {
                /* one used element for the whole chain: the next one
                 * comes after the chain's descriptors */
                uslot = (uint16_t)(uslot + last_n);
                if (uslot >= QSIZE) {
                    uslot = (uint16_t)(uslot - QSIZE);
                    uwrap = !uwrap;
                }
                return true;
            }
        }
        if (now_ms() - t0 > ms)
            return false;
        usleep(500);
    }
}

struct hdr {
    uint32_t type;
    uint32_t ioprio;
    uint64_t sector;
};

static uint8_t *hdr_at(void)
{
    return mem + OFF_HDR;
}
static uint8_t *stat_at(void)
{
    return mem + OFF_STAT;
}

/* A request as descriptors: header, data, status. */
static unsigned req(struct desc *d, uint32_t type, uint64_t sector, uint64_t data, uint32_t len,
                    bool data_write)
{
    struct hdr h = {type, 0, sector};
    memcpy(hdr_at(), &h, sizeof(h));
    *stat_at() = 0xff;
    unsigned n = 0;
    d[n++] = (struct desc){pa + OFF_HDR, sizeof(h), 0, 0};
    if (len)
        d[n++] = (struct desc){data, len, data_write ? D_WRITE : 0, 0};
    d[n++] = (struct desc){pa + OFF_STAT, 1, D_WRITE, 0};
    return n;
}

/* Sends descriptors d[0..n) as one chain (split: at table slots 0..n-1). */
static void send_chain(struct desc *d, unsigned n)
{
    if (packed) {
        for (unsigned i = 0; i + 1 < n; i++)
            d[i].flags |= D_NEXT;
        for (unsigned i = 0; i < n; i++)
            d[i].next = 0; /* buffer id */
        packed_publish(d, n, false);
        return;
    }
    struct desc *t = dtab();
    for (unsigned i = 0; i < n; i++) {
        t[i] = d[i];
        if (i + 1 < n) {
            t[i].flags |= D_NEXT;
            t[i].next = (uint16_t)(i + 1);
        }
    }
    split_publish(0, 1);
}

/* A good write then read-back of 4 KiB at sector 8 must work. */
static void must_work(const char *after)
{
    struct desc d[3];
    uint8_t *buf = mem + OFF_DATA;
    for (unsigned i = 0; i < 4096; i++)
        buf[i] = (uint8_t)(i * 7 + 3);
    send_chain(d, req(d, 1, 8, pa + OFF_DATA, 4096, false));
    if (!wait_used(10000))
        fail("after %s: a good write did not complete", after);
    if (*stat_at() != 0)
        fail("after %s: a good write completed with status %u", after, *stat_at());
    memset(buf + 8192, 0, 4096);
    send_chain(d, req(d, 0, 8, pa + OFF_DATA + 8192, 4096, true));
    if (!wait_used(10000))
        fail("after %s: a good read did not complete", after);
    if (*stat_at() != 0 || memcmp(buf, buf + 8192, 4096) != 0)
        fail("after %s: the read-back differs (status %u)", after, *stat_at());
}

/* Outcome of an attack: a completion and its status, or none. */
static void report(const char *name)
{
    if (wait_used(1000))
        printf("vringattack: %-34s completed, status %u\n", name, *stat_at());
    else
        printf("vringattack: %-34s no completion (ignored, or queue stopped until reset)\n", name);
}

typedef void attack_fn(void);

static void a_desc_loop(void)
{
    struct desc *t = dtab();
    t[0] = (struct desc){pa + OFF_HDR, 16, D_NEXT, 1};
    t[1] = (struct desc){pa + OFF_DATA, 512, D_NEXT | D_WRITE, 0};
    split_publish(0, 1);
}
static void a_next_out_of_range(void)
{
    struct desc *t = dtab();
    t[0] = (struct desc){pa + OFF_HDR, 16, D_NEXT, QSIZE + 5};
    split_publish(0, 1);
}
static void a_avail_head_out_of_range(void)
{
    split_publish(0xffff, 1);
}
static void a_avail_idx_jump(void)
{
    struct desc d[3];
    unsigned n = req(d, 0, 0, pa + OFF_DATA, 512, true);
    struct desc *t = dtab();
    for (unsigned i = 0; i < n; i++) {
        t[i] = d[i];
        t[i].flags |= i + 1 < n ? D_NEXT : 0;
        t[i].next = (uint16_t)(i + 1);
    }
    split_publish(0, QSIZE + 3);
}
static void a_indirect_outside_memory(void)
{
    struct desc d = {1ull << 50, 3 * 16, D_INDIRECT, 0};
    send_chain(&d, 1);
}
static void a_indirect_inside_indirect(void)
{
    struct desc *ind = (struct desc *)(void *)(mem + OFF_IND);
    ind[0] = (struct desc){pa + OFF_IND + 0x100, 48, D_INDIRECT, 0};
    struct desc d = {pa + OFF_IND, 16, D_INDIRECT, 0};
    send_chain(&d, 1);
}
static void a_indirect_len_0(void)
{
    struct desc d = {pa + OFF_IND, 0, D_INDIRECT, 0};
    send_chain(&d, 1);
}
static void a_indirect_loop(void)
{
    struct desc *ind = (struct desc *)(void *)(mem + OFF_IND);
    ind[0] = (struct desc){pa + OFF_HDR, 16, D_NEXT, 1};
    ind[1] = (struct desc){pa + OFF_DATA, 512, D_NEXT | D_WRITE, 0};
    struct desc d = {pa + OFF_IND, 2 * 16, D_INDIRECT, 0};
    send_chain(&d, 1);
}
static void a_buffer_outside_memory(void)
{
    struct desc d[3];
    send_chain(d, req(d, 0, 0, 0xfffffff000ull, 4096, true));
}
static void a_buffer_wraps_2_64(void)
{
    struct desc d[3];
    send_chain(d, req(d, 0, 0, UINT64_MAX - 100, 4096, true));
}
static void a_header_outside_memory(void)
{
    struct desc d[3];
    unsigned n = req(d, 0, 0, pa + OFF_DATA, 512, true);
    d[0].addr = 1ull << 52;
    send_chain(d, n);
}
static void a_header_short(void)
{
    struct desc d[3];
    unsigned n = req(d, 0, 0, pa + OFF_DATA, 512, true);
    d[0].len = 8;
    send_chain(d, n);
}
static void a_header_writable(void)
{
    struct desc d[3];
    unsigned n = req(d, 0, 0, pa + OFF_DATA, 512, true);
    d[0].flags = D_WRITE;
    send_chain(d, n);
}
static void a_status_read_only(void)
{
    struct desc d[3];
    unsigned n = req(d, 0, 0, pa + OFF_DATA, 512, true);
    d[n - 1].flags = 0;
    send_chain(d, n);
}
static void a_status_zero_length(void)
{
    struct desc d[3];
    unsigned n = req(d, 0, 0, pa + OFF_DATA, 512, true);
    d[n - 1].len = 0;
    send_chain(d, n);
}
static void a_readable_after_writable(void)
{
    struct desc d[4];
    unsigned n = req(d, 1, 0, pa + OFF_DATA, 512, false);
    d[3] = d[2];
    d[2] = d[1];
    d[1] = (struct desc){pa + OFF_DATA + 4096, 512, D_WRITE, 0};
    send_chain(d, n + 1);
}
static void a_sector_past_capacity(void)
{
    struct desc d[3];
    send_chain(d, req(d, 0, UINT64_MAX / 512 - 1, pa + OFF_DATA, 4096, true));
}
static void a_len_not_multiple_of_512(void)
{
    struct desc d[3];
    send_chain(d, req(d, 1, 0, pa + OFF_DATA, 100, false));
}
static void a_unknown_type(void)
{
    struct desc d[3];
    send_chain(d, req(d, 0x5a, 0, pa + OFF_DATA, 512, true));
}
static void a_get_id_one_byte(void)
{
    struct desc d[3];
    send_chain(d, req(d, 8, 0, pa + OFF_DATA, 1, true));
}
static void a_packed_wrong_wrap(void)
{
    struct desc d[3];
    unsigned n = req(d, 0, 0, pa + OFF_DATA, 512, true);
    for (unsigned i = 0; i + 1 < n; i++)
        d[i].flags |= D_NEXT;
    packed_publish(d, n, true);
}

struct attack {
    const char *name;
    attack_fn *fn;
    bool split, pack;
};

static const struct attack attacks[] = {
    {"desc_loop_through_next", a_desc_loop, true, false},
    {"desc_next_out_of_range", a_next_out_of_range, true, false},
    {"avail_head_out_of_range", a_avail_head_out_of_range, true, false},
    {"avail_index_jumps_past_queue_size", a_avail_idx_jump, true, false},
    {"indirect_table_outside_memory", a_indirect_outside_memory, true, true},
    {"indirect_inside_indirect", a_indirect_inside_indirect, true, true},
    {"indirect_table_of_length_0", a_indirect_len_0, true, true},
    {"indirect_loop_through_next", a_indirect_loop, true, false},
    {"buffer_outside_guest_memory", a_buffer_outside_memory, true, true},
    {"buffer_addr_plus_len_wraps_2_64", a_buffer_wraps_2_64, true, true},
    {"header_outside_guest_memory", a_header_outside_memory, true, true},
    {"header_shorter_than_16_bytes", a_header_short, true, true},
    {"header_in_writable_descriptor", a_header_writable, true, true},
    {"status_in_read_only_descriptor", a_status_read_only, true, true},
    {"status_in_zero_length_descriptor", a_status_zero_length, true, true},
    {"readable_after_writable", a_readable_after_writable, true, true},
    {"sector_range_past_capacity", a_sector_past_capacity, true, true},
    {"data_length_not_multiple_of_512", a_len_not_multiple_of_512, true, true},
    {"unknown_request_type", a_unknown_type, true, true},
    {"get_id_into_one_byte_buffer", a_get_id_one_byte, true, true},
    {"packed_wrong_wrap_counter", a_packed_wrong_wrap, false, true},
};

static uint64_t virt_to_phys(void *p)
{
    int fd = open("/proc/self/pagemap", O_RDONLY);
    uint64_t e = 0;
    uintptr_t v = (uintptr_t)p;
    if (fd < 0 || pread(fd, &e, 8, (off_t)(v / 4096 * 8)) != 8)
        fail("reading /proc/self/pagemap: %s", strerror(errno));
    close(fd);
    if (!(e & 1ull << 63) || (e & ((1ull << 55) - 1)) == 0)
        fail("pagemap gives no frame for the huge page (not root?)");
    return (e & ((1ull << 55) - 1)) * 4096 + (v & 4095);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc != 3 || (strcmp(argv[1], "split") != 0 && strcmp(argv[1], "packed") != 0)) {
        fprintf(stderr, "usage: vringattack split|packed PCI_ADDRESS\n");
        return 2;
    }
    packed = strcmp(argv[1], "packed") == 0;
    mem = mmap(NULL, HUGE, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE | MAP_LOCKED, -1, 0);
    if (mem == MAP_FAILED)
        fail("no 2 MiB huge page: %s (echo N > /proc/sys/vm/nr_hugepages)", strerror(errno));
    pa = virt_to_phys(mem);
    printf("vringattack: %s rings at guest-physical 0x%llx\n", argv[1], (unsigned long long)pa);
    pci_setup(argv[2]);
    dev_init();
    must_work("setup");
    unsigned n = 0;
    for (size_t i = 0; i < sizeof(attacks) / sizeof(attacks[0]); i++) {
        const struct attack *a = &attacks[i];
        if (packed ? !a->pack : !a->split)
            continue;
        dev_init();
        a->fn();
        report(a->name);
        dev_init();
        must_work(a->name);
        n++;
    }
    dev_reset();
    printf("vringattack: PASS %u %s-ring attacks; the device served good requests after each\n", n,
           argv[1]);
    return 0;
}
