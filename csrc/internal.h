/* internal.h - shared between the libshmx sources; never installed. */
#ifndef SHMX_INTERNAL_H
#define SHMX_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "shmx.h"
#include "atomics.h"
#include "layout.h"
#include "platform.h"

#if defined(__MINGW32__)
/* MinGW builds with __USE_MINGW_ANSI_STDIO (C99 printf): check against that. */
#define SHMX_PRINTF(a, b) __attribute__((format(gnu_printf, a, b)))
#define SHMX_HIDDEN
#elif defined(__GNUC__)
#define SHMX_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define SHMX_HIDDEN __attribute__((visibility("hidden")))
#else
#define SHMX_PRINTF(a, b)
#define SHMX_HIDDEN
#endif

/* Record the detail of a failure for shmx_last_error(); returns status. */
shmx_status shmx_fail(shmx_status status, const char *fmt, ...) SHMX_PRINTF(2, 3);
void shmx_clear_error(void);

static inline uint32_t shmx_align(uint32_t x, uint32_t a) { return (x + (a - 1u)) & ~(a - 1u); }
static inline uint64_t shmx_align64(uint64_t x, uint64_t a) { return (x + (a - 1u)) & ~(a - 1u); }
uint64_t shmx_fnv1a64(const void *data, size_t n);

/* Region geometry, validated once at open and then used for every bound
 * check: a hostile peer rewriting the header later cannot move us out of
 * the mapping. */
typedef struct shmx_region {
    shmx_map map;
    shmx_global_header *gh;
    shmx_ext_header *ext;     /* NULL for a legacy (shmx 1.0.1) region */
    char name[SHMX_NAME_MAX + 1];
    char dir[SHMX_PATH_MAX];
    char path[SHMX_PATH_MAX];
    uint64_t session_id;
    uint32_t static_offset, static_cap;
    uint32_t slots, slot_stride, slots_offset, slot_payload_cap, user_frame_cap;
    uint32_t reader_slots, reader_stride, readers_offset;
    uint32_t control_offset, control_per_reader, control_stride;
} shmx_region;

/* Map and validate a region by name (writable for clients, not inspectors). */
shmx_status shmx_region_open(shmx_region *r, const char *name, const shmx_open_options *opt,
                             int writable);
/* Check the header of a mapped region and fill the geometry. */
shmx_status shmx_region_validate(shmx_region *r);
void shmx_region_close(shmx_region *r);

static inline shmx_frame_header *shmx_slot_header(const shmx_region *r, uint32_t slot)
{
    return (shmx_frame_header *)(r->map.base + r->slots_offset + (uint64_t)slot * r->slot_stride);
}
static inline uint8_t *shmx_slot_payload(const shmx_region *r, uint32_t slot)
{
    return r->map.base + r->slots_offset + (uint64_t)slot * r->slot_stride + SHMX_FRAME_HEADER_BYTES;
}
static inline shmx_reader_slot *shmx_reader_at(const shmx_region *r, uint32_t i)
{
    return (shmx_reader_slot *)(r->map.base + r->readers_offset + (uint64_t)i * r->reader_stride);
}
static inline uint8_t *shmx_control_at(const shmx_region *r, uint32_t i)
{
    return r->map.base + r->control_offset + (uint64_t)i * r->control_stride;
}

/* Parsed static directory. */
typedef struct shmx_schema_entry {
    shmx_stream_info info;
    char *name;
    uint8_t *extra;
} shmx_schema_entry;

typedef struct shmx_schema {
    uint32_t count;
    shmx_schema_entry *e;
    uint32_t gen;
    uint64_t hash;
} shmx_schema;

shmx_status shmx_schema_read(const shmx_region *r, shmx_schema *out);
void shmx_schema_free(shmx_schema *s);
shmx_status shmx_schema_info(const shmx_schema *s, uint32_t index, shmx_stream_info *out);
const shmx_schema_entry *shmx_schema_find(const shmx_schema *s, uint32_t stream_id);

/* Decoded frame: stream views into one slot. */
typedef struct shmx_decoded {
    uint32_t count, cap;
    shmx_stream_view *v;
    uint64_t layout_id;
    uint32_t payload_bytes;
} shmx_decoded;

/* Decode the TLVs of a payload that lies at region offset `payload_off`.
 * Every length is checked against `bytes`.  Keeps `out->layout_id` when
 * the stream layout is unchanged, else takes *next_layout_id. */
shmx_status shmx_decode_payload(const shmx_region *r, uint64_t payload_off, uint32_t bytes,
                                shmx_decoded *out, uint64_t *next_layout_id);

void shmx_header_fill(const shmx_region *r, shmx_header_info *out);
uint32_t shmx_server_liveness(const shmx_region *r);
void shmx_reader_fill(const shmx_region *r, uint32_t i, shmx_reader_info *out);
uint32_t shmx_reader_liveness(const shmx_region *r, uint32_t i);
/* Free reader slot i (clear its pins first).  Caller decided it is dead. */
void shmx_reader_reap(const shmx_region *r, uint32_t i);
shmx_status shmx_readers_list(const shmx_region *r, shmx_reader_info *out, uint32_t cap,
                              uint32_t *count);

/* Copy a struct out honouring the caller's struct_size. */
#define SHMX_COPY_OUT(dst, src)                                                  \
    do {                                                                         \
        uint32_t sz_ = (dst)->struct_size;                                       \
        if (sz_ == 0 || sz_ > sizeof(*(src))) sz_ = (uint32_t)sizeof(*(src));    \
        memcpy((dst), (src), sz_);                                               \
        (dst)->struct_size = sz_;                                                \
    } while (0)

#endif /* SHMX_INTERNAL_H */
