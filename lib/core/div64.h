/* SPDX-License-Identifier: MIT */
/*
 * 64-by-32-bit division for the core. On a 32-bit CPU the compiler turns a
 * 64-bit '/' or '%' into a call to its runtime (__aeabi_uldivmod on ARM),
 * which firmware linking only the core does not have: the core needs
 * nothing but memcpy, memset, memmove and memcmp (docs/embedding.md).
 * Powers of two (zone sizes, granularities) take a shift and a mask; other
 * divisors a short shift-and-subtract loop, off the hot path. Not installed.
 */
#ifndef VBLK_CORE_DIV64_H
#define VBLK_CORE_DIV64_H

#include <stdint.h>

/* @n / @d, with @n % @d in *@rem; @d must not be 0. */
static inline uint64_t div64_32(uint64_t n, uint32_t d, uint32_t *rem)
{
    if (!(d & (d - 1))) {
        *rem = (uint32_t)(n & (d - 1));
        return n >> __builtin_ctz(d);
    }
#if UINTPTR_MAX > 0xffffffffu
    *rem = (uint32_t)(n % d);
    return n / d;
#else
    uint64_t q = 0, r = 0;
    for (int i = 63; i >= 0; i--) {
        r = (r << 1) | ((n >> i) & 1);
        if (r >= d) {
            r -= d;
            q |= (uint64_t)1 << i;
        }
    }
    *rem = (uint32_t)r;
    return q;
#endif
}

/* @n % @d; @d must not be 0. */
static inline uint32_t mod64_32(uint64_t n, uint32_t d)
{
    uint32_t rem;
    (void)div64_32(n, d, &rem);
    return rem;
}

#endif
