/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the guest memory map. Regions are added and removed at
 * fuzzed driver and host addresses (including ones near 2^64), ranges are
 * translated and dirty pages logged, and every answer is compared with a
 * plain model: a sorted array searched linearly and a bitmap set bit by
 * bit.
 *
 * Host pointers are never dereferenced by the map (only compared and
 * offset), so they are arbitrary values here; the dirty log is a real
 * buffer of exactly its declared size.
 *
 * Input: operations until the input ends (see the switch below).
 */
#include "fuzz_common.h"

#define MODEL_MAX 64u
#define MAX_IOV   8u
#define MAX_LOG   64u

struct model_region {
    uint64_t addr, size;
    uintptr_t host;
};

struct model {
    struct model_region r[MODEL_MAX];
    unsigned n;
    uint8_t log[MAX_LOG];
    size_t log_len;
    bool logging;
};

static struct vblk_mem g_mem;
static struct model g_model;

/* Answers the miss handler gives, in order (a lazily filled map, as VDUSE
 * does it). */
struct miss_answer {
    uint64_t addr, size;
    uintptr_t host;
};
static struct miss_answer g_answers[4];
static unsigned g_nanswers;
static unsigned g_misses;

static int model_add(uint64_t addr, uint64_t size, uintptr_t host);

static int on_miss(void *opaque, struct vblk_mem *mem, uint64_t addr)
{
    FUZZ_CHECK(opaque == &g_answers && mem == &g_mem);
    g_misses++;
    /* Covered addresses never reach the handler. */
    for (unsigned i = 0; i < g_model.n; i++)
        FUZZ_CHECK(addr - g_model.r[i].addr >= g_model.r[i].size);
    if (g_nanswers == 0)
        return -EFAULT;
    struct miss_answer a = g_answers[0];
    memmove(&g_answers[0], &g_answers[1], --g_nanswers * sizeof(a));
    if (g_model.n == MODEL_MAX)
        return -ENOSPC;
    int want = model_add(a.addr, a.size, a.host);
    int rc = vblk_mem_add(mem, a.addr, a.size, (void *)a.host, NULL);
    FUZZ_CHECK(rc == want);
    return rc;
}

/* Addresses cluster in a small window (so ranges touch and overlap) or sit
 * near the top of the address space. */
static uint64_t pick_addr(struct fuzz_in *in)
{
    uint8_t sel = in_u8(in);
    switch (sel & 3) {
    case 0:
    case 1:
        return (uint64_t)in_u8(in) << ((sel >> 2) & 15);
    case 2:
        return UINT64_MAX - in_u16(in);
    default:
        return in_u64(in);
    }
}

static uint64_t pick_len(struct fuzz_in *in)
{
    uint8_t sel = in_u8(in);
    switch (sel & 3) {
    case 0:
    case 1:
        return (uint64_t)in_u8(in) << ((sel >> 2) & 15);
    case 2:
        return UINT64_MAX - in_u8(in);
    default:
        return in_u64(in);
    }
}

static const struct model_region *model_find(uint64_t addr)
{
    for (unsigned i = 0; i < g_model.n; i++)
        if (addr - g_model.r[i].addr < g_model.r[i].size)
            return &g_model.r[i];
    return NULL;
}

static int model_add(uint64_t addr, uint64_t size, uintptr_t host)
{
    if (size == 0 || host == 0)
        return -EINVAL;
    if (addr + (size - 1) < addr || host + (size - 1) < host)
        return -EINVAL;
    for (unsigned i = 0; i < g_model.n; i++) {
        const struct model_region *r = &g_model.r[i];
        uint64_t r_last = r->addr + (r->size - 1), last = addr + (size - 1);
        if (!(last < r->addr || addr > r_last))
            return -EEXIST;
    }
    if (g_model.n == MODEL_MAX)
        return -ENOSPC;
    unsigned pos = 0;
    while (pos < g_model.n && g_model.r[pos].addr < addr)
        pos++;
    memmove(&g_model.r[pos + 1], &g_model.r[pos], (g_model.n - pos) * sizeof(g_model.r[0]));
    g_model.r[pos] = (struct model_region){addr, size, host};
    g_model.n++;
    return 0;
}

static void check_regions(void)
{
    FUZZ_CHECK(vblk_mem_count(&g_mem) == g_model.n);
    for (unsigned i = 0; i < g_model.n; i++) {
        const struct vblk_mem_region *r = vblk_mem_region_at(&g_mem, i);
        FUZZ_CHECK(r && r->addr == g_model.r[i].addr && r->size == g_model.r[i].size &&
                   (uintptr_t)r->host == g_model.r[i].host);
    }
    FUZZ_CHECK(vblk_mem_region_at(&g_mem, g_model.n) == NULL);
}

static void model_log(uint64_t addr, uint64_t len)
{
    if (!g_model.logging || len == 0)
        return;
    uint64_t nbits = g_model.log_len * 8;
    uint64_t first = addr >> 12;
    uint64_t last = addr + (len - 1) < addr ? UINT64_MAX >> 12 : (addr + (len - 1)) >> 12;
    for (uint64_t pg = first; pg <= last && pg < nbits; pg++)
        g_model.log[pg >> 3] |= (uint8_t)(1u << (pg & 7));
}

static void check_map(uint64_t addr, uint64_t len, unsigned max)
{
    struct vblk_iov iov[MAX_IOV];
    int rc = vblk_mem_map(&g_mem, addr, len, iov, max);

    /* Model: walk region by region, in the same order of checks. */
    int want = 0;
    unsigned n = 0;
    struct vblk_iov exp[MAX_IOV];
    if (len != 0 && addr + (len - 1) < addr) {
        want = -EFAULT;
    } else {
        uint64_t a = addr, left = len;
        while (left) {
            const struct model_region *r = model_find(a);
            if (!r) {
                want = -EFAULT;
                break;
            }
            if (n == max) {
                want = -ENOBUFS;
                break;
            }
            uint64_t off = a - r->addr, chunk = r->size - off;
            if (chunk > left)
                chunk = left;
            exp[n].base = (void *)(r->host + (uintptr_t)off);
            exp[n].len = (size_t)chunk;
            n++;
            a += chunk;
            left -= chunk;
        }
        if (want == 0)
            want = (int)n;
    }
    FUZZ_CHECK(rc == want);
    for (int i = 0; i < rc; i++)
        FUZZ_CHECK(iov[i].base == exp[i].base && iov[i].len == exp[i].len);
}

static void check_ptr(uint64_t addr, uint64_t len)
{
    void *p = vblk_mem_ptr(&g_mem, addr, len);
    const struct model_region *r = model_find(addr);
    void *want = NULL;
    if (r && len <= r->size - (addr - r->addr))
        want = (void *)(r->host + (uintptr_t)(addr - r->addr));
    FUZZ_CHECK(p == want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    uint8_t *log = NULL;
    vblk_mem_init(&g_mem);
    memset(&g_model, 0, sizeof(g_model));
    g_nanswers = 0;

    while (in.n > 0) {
        uint8_t op = in_u8(&in);
        switch (op % 9) {
        case 0:
        case 1: {
            uint64_t addr = pick_addr(&in), len = pick_len(&in);
            uintptr_t host =
                (op & 8) ? (uintptr_t)in_u64(&in) : (uintptr_t)0x10000000 + in_u16(&in) * 4096u;
            if (g_model.n == MODEL_MAX)
                break;
            int want = model_add(addr, len, host);
            int rc = vblk_mem_add(&g_mem, addr, len, (void *)host, NULL);
            FUZZ_CHECK(rc == want);
            check_regions();
            break;
        }
        case 2: {
            /* Remove an existing region, or a near miss. */
            uint8_t sel = in_u8(&in);
            uint64_t addr, len;
            if (g_model.n && !(sel & 0x80)) {
                const struct model_region *r = &g_model.r[sel % g_model.n];
                addr = r->addr;
                len = r->size + ((sel & 0x40) ? 1 : 0);
            } else {
                addr = pick_addr(&in);
                len = pick_len(&in);
            }
            unsigned idx = g_model.n;
            for (unsigned i = 0; i < g_model.n; i++)
                if (g_model.r[i].addr == addr && g_model.r[i].size == len)
                    idx = i;
            struct vblk_mem_region removed;
            int rc = vblk_mem_remove(&g_mem, addr, len, &removed);
            if (idx == g_model.n) {
                FUZZ_CHECK(rc == -ENOENT);
            } else {
                FUZZ_CHECK(rc == 0 && removed.addr == addr && removed.size == len &&
                           (uintptr_t)removed.host == g_model.r[idx].host);
                memmove(&g_model.r[idx], &g_model.r[idx + 1],
                        (g_model.n - idx - 1) * sizeof(g_model.r[0]));
                g_model.n--;
            }
            check_regions();
            break;
        }
        case 3: {
            uint64_t addr = pick_addr(&in), len = pick_len(&in);
            check_map(addr, len, in_u8(&in) % (MAX_IOV + 1));
            check_regions();
            break;
        }
        case 4: {
            uint64_t addr = pick_addr(&in), len = pick_len(&in);
            check_ptr(addr, len);
            check_regions();
            break;
        }
        case 5: {
            /* Install, resize or remove the dirty log. */
            size_t len = in_u8(&in) % (MAX_LOG + 1);
            free(log);
            log = NULL;
            if (len) {
                log = calloc(1, len);
                FUZZ_CHECK(log);
            }
            vblk_mem_set_log(&g_mem, log, len);
            FUZZ_CHECK(vblk_mem_logging(&g_mem) == (log != NULL));
            g_model.logging = log != NULL;
            g_model.log_len = len;
            memset(g_model.log, 0, sizeof(g_model.log));
            break;
        }
        case 6: {
            uint64_t addr = pick_addr(&in), len = pick_len(&in);
            vblk_mem_log_write(&g_mem, addr, len);
            model_log(addr, len);
            if (log)
                FUZZ_CHECK(memcmp(log, g_model.log, g_model.log_len) == 0);
            break;
        }
        case 7: {
            uint8_t sel = in_u8(&in);
            if (sel & 1) {
                vblk_mem_set_miss(&g_mem, (sel & 2) ? on_miss : NULL, &g_answers);
                break;
            }
            if (g_nanswers == 4)
                break;
            struct miss_answer *a = &g_answers[g_nanswers++];
            a->addr = pick_addr(&in);
            a->size = pick_len(&in);
            a->host = (uintptr_t)0x20000000 + in_u16(&in) * 4096u;
            break;
        }
        default: {
            /* Log by host address: a region's host range, or anywhere. */
            uint8_t sel = in_u8(&in);
            uintptr_t host;
            uint64_t len = pick_len(&in);
            if (g_model.n && !(sel & 0x80))
                host = g_model.r[sel % g_model.n].host + in_u16(&in);
            else
                host = (uintptr_t)in_u64(&in);
            vblk_mem_log_host(&g_mem, (const void *)host, len);
            for (unsigned i = 0; i < g_model.n; i++) {
                const struct model_region *r = &g_model.r[i];
                if (host - r->host < r->size) {
                    uint64_t off = host - r->host;
                    model_log(r->addr + off, len < r->size - off ? len : r->size - off);
                    break;
                }
            }
            if (log)
                FUZZ_CHECK(memcmp(log, g_model.log, g_model.log_len) == 0);
            break;
        }
        }
    }
    free(log);
    return 0;
}
