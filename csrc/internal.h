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
/* The same, wrapping an earlier failure: keeps its OS cause (errno). */
shmx_status shmx_fail_wrap(shmx_status status, const char *fmt, ...) SHMX_PRINTF(2, 3);
/* The OS error behind the failure the next shmx_fail() records. */
void shmx_os_cause(int err);
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

/* Slots at least this large are reused warm first (server.c, warm_slot):
 * the producer then leaves ring order, which read_next's shortcut for a
 * lapped reader (client.c) relies on below this size. */
#define SHMX_WARM_SLOT_MIN_BYTES (1u << 20)

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
/* Parse a directory held in private memory (the server's own copy). */
shmx_status shmx_schema_parse(const uint8_t *bytes, uint32_t used, shmx_schema *out);
void shmx_schema_free(shmx_schema *s);
shmx_status shmx_schema_info(const shmx_schema *s, uint32_t index, shmx_stream_info *out);
/* Copy the used static directory bytes, consistent with one static_gen. */
shmx_status shmx_static_copy(const shmx_region *r, void *buf, uint32_t cap, uint32_t *bytes);
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

/* create.c: lock the file `path` names (proving its owner dead) and check
 * the name still refers to it; *held keeps the lock (close it to drop).
 * force: take the file even when its owner lives or it is no region. */
shmx_status shmx_name_lock(const char *path, int force, shmx_map *held);
/* Give the file `tmp` the name `path`: exclusively, or over a dead owner's
 * region while holding its lock.  Fails naming a live owner. */
shmx_status shmx_name_take(const char *tmp, const char *path);

void shmx_header_fill(const shmx_region *r, shmx_header_info *out);
uint32_t shmx_server_liveness(const shmx_region *r);

/* slots.c: the seqlock and pin handshake (see there).  claim: 1 when the
 * slot is ours to write (seq now even_seq + 1); complete: publish it with
 * the next even seq; pin: 1 when pinned on a complete frame. */
int shmx_slot_claim(const shmx_region *r, uint32_t slot, uint64_t even_seq);
void shmx_slot_complete(const shmx_region *r, uint32_t slot, uint64_t even_seq);
int shmx_slot_pin(const shmx_region *r, uint32_t slot, uint64_t bit);
void shmx_slot_unpin(const shmx_region *r, uint32_t slot, uint64_t bit);
void shmx_slot_unpin_all(const shmx_region *r, uint64_t bit);

/* ring.c: the control rings (see there).  take: the next message of ring
 * i from *rd_priv on (SHMX_EAGAIN: none); put: one message into ring i
 * (*padded: padding was committed although the message did not fit). */
int shmx_ring_has_data(const shmx_region *r, uint32_t i, uint64_t rd_priv);
shmx_status shmx_ring_take(const shmx_region *r, uint32_t i, uint64_t *rd_priv, shmx_control_msg *msg,
                           void *buf, uint32_t buf_cap);
shmx_status shmx_ring_put(const shmx_region *r, uint32_t i, uint32_t type, const void *data, uint32_t bytes,
                          int *padded);

/* readers.c: the reader-slot state machine (see there). */
int shmx_reader_attach(const shmx_region *r, uint32_t i, uint64_t reader_id); /* 1: slot i is ours */
void shmx_reader_detach(const shmx_region *r, uint32_t i, uint64_t reader_id);
/* Free slot i if a process died holding it in any state; 1 when freed. */
int shmx_reader_reclaim(const shmx_region *r, uint32_t i);
/* Evict slot i if its heartbeat is older than timeout; 1 when evicted. */
int shmx_reader_evict(const shmx_region *r, uint32_t i, uint64_t now_ns, uint64_t timeout_ns);
/* 1 when our attached slot i was taken from us (evicted). */
int shmx_reader_evicted(const shmx_region *r, uint32_t i);
void shmx_reader_fill(const shmx_region *r, uint32_t i, shmx_reader_info *out);
uint32_t shmx_reader_liveness(const shmx_region *r, uint32_t i);
shmx_status shmx_readers_list(const shmx_region *r, shmx_reader_info *out, uint32_t cap,
                              uint32_t *count);
/* Tests: die here when SHMX_TEST_KILL_AT names this point. */
void shmx_test_point(const char *point);

/* wakefd.c: the event-loop wake channel (see the comment at its top). */
typedef struct shmx_wake_server shmx_wake_server;
shmx_wake_server *shmx_wake_server_new(const shmx_region *r); /* NULL: no channel */
void shmx_wake_server_free(shmx_wake_server *w);
/* Called by publish when ext->wake_armed is non-zero. */
void shmx_wake_publish(shmx_wake_server *w, const shmx_region *r);
shmx_status shmx_wake_server_fd(shmx_wake_server *w, int *fd);
shmx_status shmx_wake_server_arm(shmx_wake_server *w, const shmx_region *r,
                                 int (*has_data)(const void *ctx, uint32_t), const void *ctx);
shmx_status shmx_wake_client_connect(const shmx_region *r, uint32_t index, uint64_t reader_id, int *out);
int shmx_wake_client_drain(int fd); /* 1: the server closed its end */
void shmx_wake_client_close(int *fd);
void shmx_wake_client_send_control(const shmx_region *r, uint32_t index, uint64_t reader_id, int *fd);

/* Copy a struct out honouring the caller's struct_size. */
#define SHMX_COPY_OUT(dst, src)                                                  \
    do {                                                                         \
        uint32_t sz_ = (dst)->struct_size;                                       \
        if (sz_ == 0 || sz_ > sizeof(*(src))) sz_ = (uint32_t)sizeof(*(src));    \
        memcpy((dst), (src), sz_);                                               \
        (dst)->struct_size = sz_;                                                \
    } while (0)

#endif /* SHMX_INTERNAL_H */
