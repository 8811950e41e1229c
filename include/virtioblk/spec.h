/* SPDX-License-Identifier: MIT */
/**
 * @file spec.h
 * @brief Constants and wire layouts from the virtio 1.2 specification.
 *
 * Every structure here is shared with an untrusted driver: all multi-byte
 * fields are little-endian. The library only runs on little-endian hosts
 * (checked at compile time), so the helpers below are plain loads/stores
 * that document intent.
 */
#ifndef VIRTIOBLK_SPEC_H
#define VIRTIOBLK_SPEC_H

#include <stdint.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "libvirtioblk supports little-endian hosts only"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/** @name Generic feature bits (virtio 1.2 section 6) */
/**@{*/
#define VBLK_F_INDIRECT_DESC   28 /**< Indirect descriptor tables. */
#define VBLK_F_EVENT_IDX       29 /**< used_event / avail_event suppression. */
#define VBLK_F_VERSION_1       32 /**< Modern (non-legacy) device. */
#define VBLK_F_ACCESS_PLATFORM 33 /**< Addresses go through an IOMMU. */
#define VBLK_F_RING_PACKED     34 /**< Packed virtqueue layout. */
#define VBLK_F_IN_ORDER        35 /**< Buffers are used in the order made available. */
/**@}*/

/** @name virtio-blk feature bits (virtio 1.2 section 5.2.3) */
/**@{*/
#define VBLK_F_SIZE_MAX     1  /**< size_max is valid. */
#define VBLK_F_SEG_MAX      2  /**< seg_max is valid. */
#define VBLK_F_GEOMETRY     4  /**< geometry is valid. */
#define VBLK_F_RO           5  /**< Device is read-only. */
#define VBLK_F_BLK_SIZE     6  /**< blk_size is valid. */
#define VBLK_F_FLUSH        9  /**< FLUSH requests supported. */
#define VBLK_F_TOPOLOGY     10 /**< Topology fields are valid. */
#define VBLK_F_CONFIG_WCE   11 /**< writeback field is writable. */
#define VBLK_F_MQ           12 /**< num_queues is valid. */
#define VBLK_F_DISCARD      13 /**< DISCARD requests supported. */
#define VBLK_F_WRITE_ZEROES 14 /**< WRITE_ZEROES requests supported. */
#define VBLK_F_LIFETIME     15 /**< GET_LIFETIME requests supported. */
#define VBLK_F_SECURE_ERASE 16 /**< SECURE_ERASE requests supported. */
#define VBLK_F_ZONED        17 /**< Zoned device: the zoned fields are valid. */
/**@}*/

/** Turns a feature bit number into a mask. */
#define VBLK_BIT(b) (1ULL << (b))

/** @name Device status bits (virtio 1.2 section 2.1) */
/**@{*/
#define VBLK_STATUS_ACKNOWLEDGE        1 /**< Guest OS noticed the device. */
#define VBLK_STATUS_DRIVER             2 /**< Guest OS has a driver for it. */
#define VBLK_STATUS_DRIVER_OK          4 /**< Driver is set up; the device may run. */
#define VBLK_STATUS_FEATURES_OK        8 /**< Feature negotiation is complete. */
#define VBLK_STATUS_DEVICE_NEEDS_RESET 64 /**< Device hit an unrecoverable error. */
#define VBLK_STATUS_FAILED             128 /**< Driver gave up on the device. */
/**@}*/

/** @name Descriptor flags (virtio 1.2 sections 2.7.5 and 2.8) */
/**@{*/
#define VBLK_DESC_F_NEXT     1u /**< Chain continues (split: via next; packed: next slot). */
#define VBLK_DESC_F_WRITE    2u /**< Buffer is device-writable. */
#define VBLK_DESC_F_INDIRECT 4u /**< Buffer holds an indirect descriptor table. */
#define VBLK_DESC_F_AVAIL    (1u << 7) /**< Packed: available flag (driver wrap counter). */
#define VBLK_DESC_F_USED     (1u << 15) /**< Packed: used flag (device wrap counter). */
/**@}*/

/** Split ring: driver asks the device not to interrupt (avail->flags). */
#define VBLK_AVAIL_F_NO_INTERRUPT 1u
/** Split ring: device asks the driver not to kick (used->flags). */
#define VBLK_USED_F_NO_NOTIFY 1u

/** @name Packed ring event suppression flags (virtio 1.2 section 2.8.10) */
/**@{*/
#define VBLK_EVENT_F_ENABLE  0u /**< Notify on every event. */
#define VBLK_EVENT_F_DISABLE 1u /**< Do not notify. */
#define VBLK_EVENT_F_DESC    2u /**< Notify when the descriptor in off_wrap is reached (EVENT_IDX). */
/**@}*/

/** Largest queue size either ring format allows (2^15). */
#define VBLK_QUEUE_SIZE_MAX 32768u

/** Split ring descriptor (virtio 1.2 section 2.7.5). */
struct vblk_split_desc {
    uint64_t addr;  /**< Driver address of the buffer. */
    uint32_t len;   /**< Length in bytes. */
    uint16_t flags; /**< VBLK_DESC_F_*. */
    uint16_t next;  /**< Next descriptor when VBLK_DESC_F_NEXT is set. */
};

/** Split ring available ring header; ring[] and used_event follow. */
struct vblk_split_avail {
    uint16_t flags;  /**< VBLK_AVAIL_F_NO_INTERRUPT. */
    uint16_t idx;    /**< Free-running count of published heads. */
    uint16_t ring[]; /**< Heads; ring[size] is used_event with EVENT_IDX. */
};

/** Split ring used element (virtio 1.2 section 2.7.8). */
struct vblk_split_used_elem {
    uint32_t id;  /**< Head index of the completed chain. */
    uint32_t len; /**< Bytes written into the chain. */
};

/** Split ring used ring header; ring[] and avail_event follow. */
struct vblk_split_used {
    uint16_t flags; /**< VBLK_USED_F_NO_NOTIFY. */
    uint16_t idx;   /**< Free-running count of used elements. */
    struct vblk_split_used_elem ring[]; /**< avail_event follows ring[size-1]. */
};

/** Packed ring descriptor (virtio 1.2 section 2.8.13). */
struct vblk_packed_desc {
    uint64_t addr;  /**< Driver address of the buffer. */
    uint32_t len;   /**< Length in bytes. */
    uint16_t id;    /**< Buffer ID. */
    uint16_t flags; /**< VBLK_DESC_F_*. */
};

/** Packed ring event suppression structure (virtio 1.2 section 2.8.10). */
struct vblk_packed_event {
    uint16_t off_wrap; /**< Offset in bits 0..14, wrap counter in bit 15. */
    uint16_t flags;    /**< VBLK_EVENT_F_*. */
};

/** @name Split ring layout sizes (virtio 1.2 section 2.7) */
/**@{*/
/** Bytes of the descriptor table for a queue of @p n entries. */
#define VBLK_SPLIT_DESC_SIZE(n) (16u * (uint32_t)(n))
/** Bytes of the available ring, including used_event. */
#define VBLK_SPLIT_AVAIL_SIZE(n) (6u + 2u * (uint32_t)(n))
/** Bytes of the used ring, including avail_event. */
#define VBLK_SPLIT_USED_SIZE(n) (6u + 8u * (uint32_t)(n))
/**@}*/

/** @name virtio-blk request types (virtio 1.2 section 5.2.6) */
/**@{*/
#define VBLK_T_IN           0u /**< Read sectors. */
#define VBLK_T_OUT          1u /**< Write sectors. */
#define VBLK_T_FLUSH        4u /**< Make completed writes stable. */
#define VBLK_T_GET_ID       8u /**< Read the 20-byte device ID string. */
#define VBLK_T_GET_LIFETIME 10u /**< Read wear information. */
#define VBLK_T_DISCARD      11u /**< Deallocate ranges. */
#define VBLK_T_WRITE_ZEROES 13u /**< Zero ranges. */
#define VBLK_T_SECURE_ERASE 14u /**< Securely erase ranges. */
#define VBLK_T_ZONE_APPEND    15u /**< Write at the zone's write pointer (ZONED). */
#define VBLK_T_ZONE_REPORT    16u /**< Read zone descriptors (ZONED). */
#define VBLK_T_ZONE_OPEN      18u /**< Open a zone explicitly (ZONED). */
#define VBLK_T_ZONE_CLOSE     20u /**< Close a zone (ZONED). */
#define VBLK_T_ZONE_FINISH    22u /**< Make a zone full (ZONED). */
#define VBLK_T_ZONE_RESET     24u /**< Rewind a zone's write pointer (ZONED). */
#define VBLK_T_ZONE_RESET_ALL 26u /**< Reset every sequential zone (ZONED). */
/**@}*/

/** @name virtio-blk status byte values */
/**@{*/
#define VBLK_S_OK     0u /**< Success. */
#define VBLK_S_IOERR  1u /**< Device or driver error. */
#define VBLK_S_UNSUPP 2u /**< Request not supported. */
#define VBLK_S_ZONE_INVALID_CMD     3u /**< Zoned: the request breaks a zone rule. */
#define VBLK_S_ZONE_UNALIGNED_WP    4u /**< Zoned: a write not at the write pointer. */
#define VBLK_S_ZONE_OPEN_RESOURCE   5u /**< Zoned: max_open_zones would be exceeded. */
#define VBLK_S_ZONE_ACTIVE_RESOURCE 6u /**< Zoned: max_active_zones would be exceeded. */
/**@}*/

/** @name Zoned device models (virtio 1.2 5.2.4, zoned.model) */
/**@{*/
#define VBLK_Z_NONE 0u /**< Drive-managed or not zoned. */
#define VBLK_Z_HM   1u /**< Host-managed: sequential-write-required zones. */
#define VBLK_Z_HA   2u /**< Host-aware: sequential-write-preferred zones. */
/**@}*/

/** @name Zone types (virtio 1.2 5.2.6, z_type) */
/**@{*/
#define VBLK_ZT_CONV 1u /**< Conventional: random writes, no write pointer. */
#define VBLK_ZT_SWR  2u /**< Sequential write required. */
#define VBLK_ZT_SWP  3u /**< Sequential write preferred. */
/**@}*/

/** @name Zone states (virtio 1.2 5.2.6, z_state) */
/**@{*/
#define VBLK_ZS_NOT_WP  0u  /**< Conventional zone. */
#define VBLK_ZS_EMPTY   1u  /**< Write pointer at the zone start. */
#define VBLK_ZS_IOPEN   2u  /**< Implicitly open (by a write). */
#define VBLK_ZS_EOPEN   3u  /**< Explicitly open (ZONE_OPEN). */
#define VBLK_ZS_CLOSED  4u  /**< Written to, not open. */
#define VBLK_ZS_RDONLY  13u /**< Read-only (device failure). */
#define VBLK_ZS_FULL    14u /**< Written to capacity or finished. */
#define VBLK_ZS_OFFLINE 15u /**< Neither readable nor writable. */
/**@}*/

/** Length of the GET_ID answer (virtio 1.2 5.2.6). */
#define VBLK_ID_BYTES 20u
/** Sectors are always 512 bytes on the wire. */
#define VBLK_SECTOR_SIZE 512u
/** log2 of VBLK_SECTOR_SIZE. */
#define VBLK_SECTOR_SHIFT 9u

/** Request header at the start of every request (virtio 1.2 5.2.6). */
struct vblk_req_hdr {
    uint32_t type;   /**< VBLK_T_*. */
    uint32_t ioprio; /**< Ignored. */
    uint64_t sector; /**< Offset in 512-byte sectors. */
};

/** One range of a DISCARD / WRITE_ZEROES / SECURE_ERASE request. */
struct vblk_discard_wz_seg {
    uint64_t sector;      /**< First sector. */
    uint32_t num_sectors; /**< Number of sectors. */
    uint32_t flags;       /**< VBLK_WZ_F_UNMAP in bit 0, others reserved. */
};

/** WRITE_ZEROES may deallocate the range. */
#define VBLK_WZ_F_UNMAP 1u

/** GET_LIFETIME answer (virtio 1.2 5.2.6). */
struct vblk_lifetime {
    uint16_t pre_eol_info;                /**< 0 undefined, 1 normal, 2 warning, 3 urgent. */
    uint16_t device_lifetime_est_typ_a;   /**< Wear estimate, 10 % steps. */
    uint16_t device_lifetime_est_typ_b;   /**< Wear estimate, 10 % steps. */
};

/** virtio-blk configuration space (virtio 1.2 5.2.4), little-endian. */
struct vblk_config {
    uint64_t capacity; /**< In 512-byte sectors. */
    uint32_t size_max; /**< Largest segment (SIZE_MAX). */
    uint32_t seg_max;  /**< Most data segments per request (SEG_MAX). */
    struct {
        uint16_t cylinders;
        uint8_t heads;
        uint8_t sectors;
    } geometry;                     /**< GEOMETRY. */
    uint32_t blk_size;              /**< Logical block size (BLK_SIZE). */
    uint8_t physical_block_exp;     /**< TOPOLOGY: log2 logical blocks per physical. */
    uint8_t alignment_offset;       /**< TOPOLOGY. */
    uint16_t min_io_size;           /**< TOPOLOGY, in logical blocks. */
    uint32_t opt_io_size;           /**< TOPOLOGY, in logical blocks. */
    uint8_t writeback;              /**< CONFIG_WCE: 1 write-back, 0 write-through. */
    uint8_t unused0;                /**< Reserved. */
    uint16_t num_queues;            /**< MQ. */
    uint32_t max_discard_sectors;   /**< DISCARD. */
    uint32_t max_discard_seg;       /**< DISCARD. */
    uint32_t discard_sector_alignment;      /**< DISCARD. */
    uint32_t max_write_zeroes_sectors;      /**< WRITE_ZEROES. */
    uint32_t max_write_zeroes_seg;          /**< WRITE_ZEROES. */
    uint8_t write_zeroes_may_unmap;         /**< WRITE_ZEROES. */
    uint8_t unused1[3];                     /**< Reserved. */
    uint32_t max_secure_erase_sectors;      /**< SECURE_ERASE. */
    uint32_t max_secure_erase_seg;          /**< SECURE_ERASE. */
    uint32_t secure_erase_sector_alignment; /**< SECURE_ERASE. */
    /** ZONED: zoned characteristics (all read-only). */
    struct {
        uint32_t zone_sectors;       /**< Zone size in 512-byte sectors. */
        uint32_t max_open_zones;     /**< Most open zones; 0: no limit. */
        uint32_t max_active_zones;   /**< Most active zones; 0: no limit. */
        uint32_t max_append_sectors; /**< Largest ZONE_APPEND; 0: no ZONE_APPEND. */
        uint32_t write_granularity;  /**< Offset and size alignment of sequential writes, bytes. */
        uint8_t model;               /**< VBLK_Z_*. */
        uint8_t unused2[3];          /**< Reserved. */
    } zoned;
};

/** Bytes of struct vblk_config without the zoned fields. */
#define VBLK_CONFIG_SIZE_NO_ZONED 72u

/** Header of a ZONE_REPORT answer (virtio 1.2 5.2.6). */
struct vblk_zone_report {
    uint64_t nr_zones;    /**< Descriptors fully transferred after the header. */
    uint8_t reserved[56]; /**< Zero. */
};

/** One zone descriptor of a ZONE_REPORT answer (virtio 1.2 5.2.6). */
struct vblk_zone_descriptor {
    uint64_t z_cap;        /**< Writable sectors when empty. */
    uint64_t z_start;      /**< First sector of the zone. */
    uint64_t z_wp;         /**< Write pointer (undefined for CONV, RDONLY, FULL, OFFLINE). */
    uint8_t z_type;        /**< VBLK_ZT_*. */
    uint8_t z_state;       /**< VBLK_ZS_*. */
    uint8_t reserved[38];  /**< Zero. */
};

/** Bytes the device writes before the status byte of a ZONE_APPEND:
 * append_sector, at the start of the device-writable part (virtio 1.2 5.2.6). */
#define VBLK_ZONE_APPEND_INHDR 8u

#ifdef __cplusplus
}
#endif
#endif
