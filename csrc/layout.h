/*
 * layout.h - the shared-memory wire format (layout v2.0, byte-compatible
 * with shmx 1.0.1) plus our extension block.  Every offset is asserted at
 * compile time; all fields are little-endian.
 *
 * Region:  GlobalHeader(128) | Extension(128) | static dir | reader slots |
 *          control rings | frame slots          (each area 64-aligned)
 */
#ifndef SHMX_LAYOUT_H
#define SHMX_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#define SHMX_MAGIC 0x48494E415F53484DULL
#define SHMX_LAYOUT_MAJOR 2u
#define SHMX_LAYOUT_MINOR 0u
#define SHMX_ENDIAN_TAG 0x01020304u

#define SHMX_EXT_MAGIC 0x31545845584D4853ULL /* "SHMXEXT1" */
#define SHMX_EXT_VERSION 1u
#define SHMX_READER_MARK 0x584D4853u /* "SHMX" in ReaderSlot.pad */

#define SHMX_TLV_ALIGN 16u
#define SHMX_AREA_ALIGN 64u
#define SHMX_FRAME_HEADER_BYTES 64u

/* Frame slot seqlock: odd while the producer owns the slot. */
#define SHMX_SEQ_WRITING(seq) (((seq)&1u) != 0u)

typedef struct shmx_global_header {
    uint64_t magic;              /* @0 */
    uint32_t ver_major;          /* @8 */
    uint32_t ver_minor;          /* @12 */
    uint32_t endianness;         /* @16 */
    uint32_t pad0;               /* @20 */
    uint64_t session_id;         /* @24 */
    uint32_t static_gen;         /* @32 atomic */
    uint32_t pad1;               /* @36 */
    uint64_t static_hash;        /* @40 */
    uint32_t static_offset;      /* @48 */
    uint32_t static_bytes_cap;   /* @52 */
    uint32_t static_bytes_used;  /* @56 */
    uint32_t slots;              /* @60 */
    uint32_t slot_stride;        /* @64 */
    uint32_t slots_offset;       /* @68 */
    uint32_t frame_bytes_cap;    /* @72 slot payload capacity (with framing) */
    uint32_t reader_slots;       /* @76 */
    uint32_t reader_slot_stride; /* @80 */
    uint32_t readers_offset;     /* @84 */
    uint32_t control_offset;     /* @88 */
    uint32_t control_per_reader; /* @92 */
    uint32_t control_stride;     /* @96 */
    uint32_t pad2;               /* @100 */
    uint64_t frame_seq;          /* @104 atomic */
    uint32_t write_index;        /* @112 atomic */
    uint32_t readers_connected;  /* @116 atomic */
    uint32_t reserve_index;      /* @120 atomic (legacy writers only) */
    uint32_t pad3;               /* @124 */
} shmx_global_header;

/* Our extension at offset 128.  Two cache lines: the first is written by the
 * producer only, the second by readers only. */
typedef struct shmx_ext_header {
    /* producer-written line, @128 */
    uint64_t magic;              /* @128 SHMX_EXT_MAGIC */
    uint32_t version;            /* @136 */
    uint32_t size;               /* @140 sizeof(shmx_ext_header) */
    uint64_t owner_pid;          /* @144 */
    uint64_t owner_start;        /* @152 process start time (pid reuse) */
    uint64_t owner_heartbeat;    /* @160 atomic, CLOCK_MONOTONIC ns */
    uint32_t closed;             /* @168 atomic */
    uint32_t checksum_policy;    /* @172 */
    uint32_t frame_futex;        /* @176 atomic: +2 on every publish; bit 0 = a reader sleeps on it */
    uint32_t control_waiters;    /* @180 atomic: server threads waiting */
    uint32_t user_frame_cap;     /* @184 frame_bytes_cap as the user asked */
    uint32_t lock_base_hi;       /* @188 reserved */
    /* reader-written line, @192 */
    uint32_t frame_waiters;      /* @192 reserved (was a waiter count; the sleeper bit is in frame_futex) */
    uint32_t control_futex;      /* @196 atomic: bumped on every control send */
    uint64_t overruns;           /* @200 atomic (written by the producer; rare) */
    uint64_t wake_armed;         /* @208 atomic: bit r = reader slot r armed its wake fd (wakefd.c) */
    uint64_t control_fd_armed;   /* @216 atomic: 1 = the server armed its control fd (wakefd.c) */
    uint64_t reserved[4];        /* @224 */
} shmx_ext_header;

typedef struct shmx_frame_header {
    uint64_t session_id_copy;    /* @0 */
    uint64_t frame_id;           /* @8 atomic */
    double sim_time;             /* @16 */
    uint32_t payload_bytes;      /* @24 */
    uint32_t tlv_count;          /* @28 */
    uint32_t checksum;           /* @32 legacy checksum32 of the payload */
    uint32_t pad0;               /* @36 */
    uint64_t seq;                /* @40 reserved[0]: slot seqlock (ours) */
    uint64_t pins;               /* @48 reserved[1]: bit r = reader slot r pins it */
    uint64_t pad1;               /* @56 */
} shmx_frame_header;

typedef struct shmx_reader_slot {
    uint64_t reader_id;          /* @0 atomic */
    uint64_t heartbeat;          /* @8 atomic */
    uint64_t last_frame_seen;    /* @16 atomic */
    uint32_t in_use;             /* @24 atomic */
    uint32_t mark;               /* @28 pad: SHMX_READER_MARK for our readers */
    uint64_t pid;                /* @32 reserved[0] */
    uint64_t frames_read;        /* @40 reserved[1] */
    uint64_t frames_dropped;     /* @48 reserved[2] */
    uint64_t pid_start;          /* @56 reserved[3] */
} shmx_reader_slot;

typedef struct shmx_tlv_head {
    uint32_t type;
    uint32_t length;
} shmx_tlv_head;

typedef struct shmx_static_desc {
    uint32_t stream_id, element_type, components, layout, bytes_per_elem, reserved, name_len,
        extra_len;
} shmx_static_desc;

typedef struct shmx_frame_stream_head {
    uint32_t stream_id, elem_count, bytes_payload, reserved;
} shmx_frame_stream_head;

/* Control ring header; messages from byte 16. */
typedef struct shmx_control_head {
    uint64_t read;               /* @0 atomic, written by the server */
    uint64_t write;              /* @8 atomic, written by the client */
} shmx_control_head;

#define SHMX_ASSERT_OFF(T, f, off) _Static_assert(offsetof(T, f) == (off), #T "." #f)
#define SHMX_ASSERT_SIZE(T, n) _Static_assert(sizeof(T) == (n), "sizeof " #T)

SHMX_ASSERT_OFF(shmx_global_header, magic, 0);
SHMX_ASSERT_OFF(shmx_global_header, ver_major, 8);
SHMX_ASSERT_OFF(shmx_global_header, ver_minor, 12);
SHMX_ASSERT_OFF(shmx_global_header, endianness, 16);
SHMX_ASSERT_OFF(shmx_global_header, session_id, 24);
SHMX_ASSERT_OFF(shmx_global_header, static_gen, 32);
SHMX_ASSERT_OFF(shmx_global_header, static_hash, 40);
SHMX_ASSERT_OFF(shmx_global_header, static_offset, 48);
SHMX_ASSERT_OFF(shmx_global_header, static_bytes_cap, 52);
SHMX_ASSERT_OFF(shmx_global_header, static_bytes_used, 56);
SHMX_ASSERT_OFF(shmx_global_header, slots, 60);
SHMX_ASSERT_OFF(shmx_global_header, slot_stride, 64);
SHMX_ASSERT_OFF(shmx_global_header, slots_offset, 68);
SHMX_ASSERT_OFF(shmx_global_header, frame_bytes_cap, 72);
SHMX_ASSERT_OFF(shmx_global_header, reader_slots, 76);
SHMX_ASSERT_OFF(shmx_global_header, reader_slot_stride, 80);
SHMX_ASSERT_OFF(shmx_global_header, readers_offset, 84);
SHMX_ASSERT_OFF(shmx_global_header, control_offset, 88);
SHMX_ASSERT_OFF(shmx_global_header, control_per_reader, 92);
SHMX_ASSERT_OFF(shmx_global_header, control_stride, 96);
SHMX_ASSERT_OFF(shmx_global_header, frame_seq, 104);
SHMX_ASSERT_OFF(shmx_global_header, write_index, 112);
SHMX_ASSERT_OFF(shmx_global_header, readers_connected, 116);
SHMX_ASSERT_OFF(shmx_global_header, reserve_index, 120);
SHMX_ASSERT_SIZE(shmx_global_header, 128);

SHMX_ASSERT_OFF(shmx_ext_header, magic, 0);
SHMX_ASSERT_OFF(shmx_ext_header, owner_pid, 16);
SHMX_ASSERT_OFF(shmx_ext_header, owner_heartbeat, 32);
SHMX_ASSERT_OFF(shmx_ext_header, closed, 40);
SHMX_ASSERT_OFF(shmx_ext_header, frame_futex, 48);
SHMX_ASSERT_OFF(shmx_ext_header, frame_waiters, 64);
SHMX_ASSERT_OFF(shmx_ext_header, control_futex, 68);
SHMX_ASSERT_OFF(shmx_ext_header, wake_armed, 80);
SHMX_ASSERT_OFF(shmx_ext_header, control_fd_armed, 88);
SHMX_ASSERT_SIZE(shmx_ext_header, 128);
#define SHMX_EXT_OFFSET 128u
#define SHMX_MIN_STATIC_OFFSET 256u

SHMX_ASSERT_OFF(shmx_frame_header, session_id_copy, 0);
SHMX_ASSERT_OFF(shmx_frame_header, frame_id, 8);
SHMX_ASSERT_OFF(shmx_frame_header, sim_time, 16);
SHMX_ASSERT_OFF(shmx_frame_header, payload_bytes, 24);
SHMX_ASSERT_OFF(shmx_frame_header, tlv_count, 28);
SHMX_ASSERT_OFF(shmx_frame_header, checksum, 32);
SHMX_ASSERT_OFF(shmx_frame_header, seq, 40);
SHMX_ASSERT_OFF(shmx_frame_header, pins, 48);
SHMX_ASSERT_SIZE(shmx_frame_header, 64);

SHMX_ASSERT_OFF(shmx_reader_slot, reader_id, 0);
SHMX_ASSERT_OFF(shmx_reader_slot, heartbeat, 8);
SHMX_ASSERT_OFF(shmx_reader_slot, last_frame_seen, 16);
SHMX_ASSERT_OFF(shmx_reader_slot, in_use, 24);
SHMX_ASSERT_OFF(shmx_reader_slot, mark, 28);
SHMX_ASSERT_OFF(shmx_reader_slot, pid, 32);
SHMX_ASSERT_SIZE(shmx_reader_slot, 64);

SHMX_ASSERT_SIZE(shmx_tlv_head, 8);
SHMX_ASSERT_SIZE(shmx_static_desc, 32);
SHMX_ASSERT_SIZE(shmx_frame_stream_head, 16);
SHMX_ASSERT_SIZE(shmx_control_head, 16);

#endif /* SHMX_LAYOUT_H */
