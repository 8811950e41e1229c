/* SPDX-License-Identifier: MIT */
/**
 * @file ring.h
 * @brief Ring arithmetic from the virtio 1.2 specification, written once.
 *
 * Small inline helpers that the device side, the driver side, the
 * transports, the tests and the fuzzers all use: the event-index test,
 * the packed ring's available/used flag tests, ring position advance with
 * its wrap counter, and the 16-bit off_wrap / 32-bit vring base encodings.
 * Freestanding: no OS calls, no allocation.
 */
#ifndef VIRTIOBLK_RING_H
#define VIRTIOBLK_RING_H

#include <stdbool.h>
#include <stdint.h>

#include "virtioblk/spec.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Bit 15 of an off_wrap value: the wrap counter; bits 0-14: the position. */
#define VBLK_WRAP_SHIFT 15
/** Mask of the position in an off_wrap value. */
#define VBLK_OFF_MASK 0x7fffu

/**
 * Event index test (virtio 1.2 2.7.10): true if @p event lies in the window
 * of entries [old, new) just made visible, i.e. the other side asked to be
 * notified when one of them is reached. All arithmetic is modulo 2^16.
 */
static inline bool vblk_need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx)
{
    return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old_idx);
}

/**
 * Packed ring (virtio 1.2 2.8.1): a descriptor is available when its AVAIL
 * flag equals the driver's wrap counter @p wrap (0 or 1) and its USED flag
 * does not.
 */
static inline bool vblk_packed_is_avail(uint16_t flags, uint8_t wrap)
{
    return !!(flags & VBLK_DESC_F_AVAIL) == wrap && !!(flags & VBLK_DESC_F_USED) != wrap;
}

/**
 * Packed ring (virtio 1.2 2.8.1): a descriptor is used when its AVAIL and
 * USED flags both equal the device's wrap counter @p wrap (0 or 1).
 */
static inline bool vblk_packed_is_used(uint16_t flags, uint8_t wrap)
{
    return !!(flags & VBLK_DESC_F_AVAIL) == wrap && !!(flags & VBLK_DESC_F_USED) == wrap;
}

/** The AVAIL/USED bits a driver sets to make a descriptor available in lap @p wrap. */
static inline uint16_t vblk_packed_avail_bits(uint8_t wrap)
{
    return wrap ? VBLK_DESC_F_AVAIL : VBLK_DESC_F_USED;
}

/** The AVAIL/USED bits a device sets to mark a descriptor used in lap @p wrap. */
static inline uint16_t vblk_packed_used_bits(uint8_t wrap)
{
    return wrap ? (uint16_t)(VBLK_DESC_F_AVAIL | VBLK_DESC_F_USED) : 0;
}

/**
 * Moves ring position (@p pos, @p wrap) forward by @p n <= @p size entries
 * in a ring of @p size entries, flipping the wrap counter when it passes
 * the end (virtio 1.2 2.8.1).
 */
static inline void vblk_ring_advance(uint16_t size, uint16_t *pos, uint8_t *wrap, uint32_t n)
{
    uint32_t p = (uint32_t)*pos + n;
    if (p >= size) {
        p -= size;
        *wrap ^= 1;
    }
    *pos = (uint16_t)p;
}

/** vblk_ring_advance() by one entry: the per-descriptor step of a walk. */
static inline void vblk_ring_next(uint16_t size, uint16_t *pos, uint8_t *wrap)
{
    if (++*pos == size) {
        *pos = 0;
        *wrap ^= 1;
    }
}

/** Encodes a position and wrap counter as an off_wrap value (virtio 1.2 2.8.10). */
static inline uint16_t vblk_off_wrap(uint16_t pos, uint8_t wrap)
{
    return (uint16_t)((pos & VBLK_OFF_MASK) | (unsigned)(wrap & 1) << VBLK_WRAP_SHIFT);
}

/** The position part of an off_wrap value. */
static inline uint16_t vblk_off_wrap_pos(uint16_t off_wrap)
{
    return (uint16_t)(off_wrap & VBLK_OFF_MASK);
}

/** The wrap counter part of an off_wrap value. */
static inline uint8_t vblk_off_wrap_wrap(uint16_t off_wrap)
{
    return (uint8_t)(off_wrap >> VBLK_WRAP_SHIFT);
}

#ifdef __cplusplus
}
#endif
#endif
