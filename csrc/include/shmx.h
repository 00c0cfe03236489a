/*
 * shmx.h - the public C API of libshmx.
 *
 * One producer process streams frames (sets of typed, named streams) to many
 * consumer processes through one shared-memory region.  This header is the
 * whole contract: C, Go (cgo), Julia (ccall) and the Python extension (cffi)
 * all use exactly these declarations.
 *
 * ABI rules
 *   - Same SHMX_VERSION_MAJOR = ABI compatible (SONAME libshmx.so.1).
 *   - Status codes are never renumbered; new ones get new numbers.
 *   - Every struct passed in or out (except shmx_stream_spec, whose layout
 *     is fixed) starts with `struct_size`, so structs can grow at the end:
 *       input structs (shmx_server_config, shmx_open_options): fill them
 *         with their _init() function, which sets struct_size and the
 *         defaults; the library reads only the fields that fit in
 *         struct_size (a field beyond it takes its default); for
 *         shmx_server_config a struct_size of 0 or over what the library
 *         knows is refused (SHMX_EINVAL);
 *       output structs (shmx_header_info, shmx_stream_info,
 *         shmx_reader_info, shmx_frame_info, shmx_stream_view,
 *         shmx_control_msg) have no _init(): set struct_size to
 *         sizeof(the struct) before the call.  The library writes only the
 *         fields that fit and sets struct_size to the bytes it wrote; 0,
 *         or a size over what it knows, means "the full size this library
 *         knows" (so a caller built against a newer header gets the
 *         fields this library has, and sees how many in struct_size).
 *   - No inline functions: everything is callable through an FFI.
 *
 * Threading
 *   - A handle (shmx_server, shmx_client, shmx_inspector) is used by one
 *     thread at a time; different handles may be used from different threads.
 *   - The error message returned by shmx_last_error() is thread-local.
 *
 * fork()
 *   - A handle made before fork() is dead in the child: every call on it
 *     returns SHMX_EFORK, and closing or freeing it there releases only the
 *     child's memory (it never touches the parent's pins, reader slot,
 *     region or name).  At the fork the child closes its copies of the
 *     region descriptors and replaces its copies of the mappings by zero
 *     pages, so it does not keep the parent's liveness locks held after the
 *     parent died.  Open new handles in the child.  (POSIX only.)
 *
 * Trust
 *   - Every client maps the region read-write.  The server keeps its own
 *     copy of everything it needs and checks what it reads back; another
 *     process can deny service, never make a call of ours crash or write
 *     outside the region.  A region truncated under us is survived (see
 *     shmx_set_fault_handler).
 */
#ifndef SHMX_H
#define SHMX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SHMX_VERSION_MAJOR 1
#define SHMX_VERSION_MINOR 2
#define SHMX_VERSION_PATCH 0
#define SHMX_VERSION_NUMBER \
    (SHMX_VERSION_MAJOR * 10000 + SHMX_VERSION_MINOR * 100 + SHMX_VERSION_PATCH)

/* An embedder may define SHMX_API itself (e.g. empty for a static build). */
#ifndef SHMX_API
#  if defined(_WIN32) && defined(SHMX_BUILDING_DLL)
#    define SHMX_API __declspec(dllexport)
#  elif defined(__GNUC__) && __GNUC__ >= 4
#    define SHMX_API __attribute__((visibility("default")))
#  else
#    define SHMX_API
#  endif
#endif

/* ---------------------------------------------------------------- status */

/* X(name, value, message): one list generates the enum, the messages and
 * the names, so they cannot disagree.  Values are fixed forever. */
#define SHMX_STATUS_LIST(X)                                                   \
    X(OK, 0, "success")                                                       \
    X(EINVAL, -1, "invalid argument")                                         \
    X(ENAME, -2, "invalid region or stream name")                             \
    X(ENOENT, -3, "no such region")                                           \
    X(EEXIST, -4, "region exists and its owner is alive")                     \
    X(EACCES, -5, "permission denied")                                        \
    X(ENOSPC, -6, "not enough shared memory for the region")                  \
    X(ECORRUPT, -7, "not a valid shmx region")                                \
    X(EVERSION, -8, "unsupported layout version")                             \
    X(ETOOBIG, -9, "size over a limit")                                       \
    X(ESTREAM, -10, "stream id not in the schema")                            \
    X(ESIZE, -11, "data size does not match the stream")                      \
    X(EFULL, -12, "frame or ring has no room")                                \
    X(EHANDLE, -13, "stale or foreign frame handle")                          \
    X(EAGAIN, -14, "no frame available yet")                                  \
    X(ETIMEDOUT, -15, "timed out")                                            \
    X(ECLOSED, -16, "the server is gone")                                     \
    X(ENOREADER, -17, "no free reader slot")                                  \
    X(EBUSY, -18, "every frame slot is pinned by a reader")                   \
    X(ELEGACY, -19, "not supported on a legacy (shmx 1.0.1) region")          \
    X(ESYS, -20, "system call failed")                                        \
    X(ENOMEM, -21, "out of memory")                                           \
    X(EDUP, -22, "duplicate stream")                                          \
    X(EFORK, -23, "handle inherited across fork() cannot be used")           \
    X(EEVICTED, -24, "this reader was evicted by the server")

#define SHMX_X_ENUM_(name, value, msg) SHMX_##name = value,
typedef enum shmx_status { SHMX_STATUS_LIST(SHMX_X_ENUM_) SHMX_STATUS_MIN_ = -24 } shmx_status;
#undef SHMX_X_ENUM_

/* Short message for a status ("stream id not in the schema"). */
SHMX_API const char *shmx_strerror(int status);
/* Name of a status ("SHMX_ESTREAM"). */
SHMX_API const char *shmx_status_name(int status);
/* Detail of the last failure on this thread: which region, stream, errno. */
SHMX_API const char *shmx_last_error(void);
/* The OS error (errno on POSIX, GetLastError() on Windows) behind the last
 * failure on this thread, for callers that must branch on it (EACCES,
 * ENOSPC, EMFILE...); 0 when the failure had no OS cause.  Since 1.2. */
SHMX_API int shmx_last_errno(void);

/* The hash a region's header keeps of its static directory
 * (shmx_header_info.static_hash) for `bytes` bytes of one, as a recording
 * that restores a directory checks it.  Since 1.2. */
SHMX_API uint64_t shmx_static_hash(const void *data, uint32_t bytes);

/* Runtime version, to compare with the SHMX_VERSION_* macros. */
SHMX_API const char *shmx_version(void);
SHMX_API unsigned shmx_version_number(void);

/* ------------------------------------------------------------- constants */

enum shmx_dtype {
    SHMX_DT_BOOL = 1, SHMX_DT_I8 = 2, SHMX_DT_U8 = 3, SHMX_DT_I16 = 4,
    SHMX_DT_U16 = 5, SHMX_DT_I32 = 6, SHMX_DT_U32 = 7, SHMX_DT_I64 = 8,
    SHMX_DT_U64 = 9, SHMX_DT_F16 = 10, SHMX_DT_BF16 = 11, SHMX_DT_F32 = 12,
    SHMX_DT_F64 = 13
};
enum shmx_layout { SHMX_LAYOUT_SOA_SCALAR = 0, SHMX_LAYOUT_AOS_VECTOR = 1 };
enum shmx_tlv {
    SHMX_TLV_STATIC_DIR = 0x1000,
    SHMX_TLV_FRAME_STREAM = 0x2000,
    SHMX_TLV_CONTROL_USER = 0x3000
};
/* When the producer writes the legacy per-frame checksum. */
enum shmx_checksum_policy {
    SHMX_CHECKSUM_AUTO = 0,   /* only while a legacy reader is attached */
    SHMX_CHECKSUM_ALWAYS = 1,
    SHMX_CHECKSUM_NEVER = 2
};
/* Liveness of a process that owns a region or a reader slot. */
enum shmx_liveness { SHMX_DEAD = 0, SHMX_ALIVE = 1, SHMX_UNKNOWN = 2 };

/* Size of one frame's framing per stream: the slot holds frame_bytes_cap
 * bytes of user data plus this much for every schema stream. */
#define SHMX_FRAMING_PER_STREAM 40
/* Limits. */
#define SHMX_NAME_MAX 200
#define SHMX_MAX_READER_SLOTS 64
#define SHMX_STREAM_NAME_MAX 255

/* Bytes of one element of a dtype (0 for an unknown dtype). */
SHMX_API uint32_t shmx_dtype_size(uint32_t dtype);
/* "float32", "uint8", ... ("unknown" for an unknown code). */
SHMX_API const char *shmx_dtype_name(uint32_t dtype);
/* "scalar", "vector" ("unknown" otherwise). */
SHMX_API const char *shmx_layout_name(uint32_t layout);
/* SHMX_OK when `name` is a valid region name ([A-Za-z0-9._-], 1..200). */
SHMX_API shmx_status shmx_check_name(const char *name);
/* Legacy frame checksum: hi32 ^ lo32 of FNV-1a 64. */
SHMX_API uint32_t shmx_checksum32(const void *data, size_t bytes);
/* CLOCK_MONOTONIC in nanoseconds (the heartbeat clock). */
SHMX_API uint64_t shmx_now_ns(void);
/* The truncation guard.  Another process can shrink a region's file under
 * a live mapping; touching a page past the new end raises SIGBUS.  By
 * default libshmx installs, at its first mapping, a SIGBUS handler that
 * checks whether the address lies in a shmx mapping: if so it maps zero
 * pages over the part the file lost (held views then read zeros), and the
 * next call on that handle fails with SHMX_ECORRUPT; any other SIGBUS is
 * passed to the handler installed before (or the default action).
 * shmx_set_fault_handler(0) removes it (restoring the previous handler)
 * and keeps it from being installed; 1 installs it now.  The environment
 * variable SHMX_FAULT_HANDLER=0 has the effect of a 0 before the first
 * mapping.  Returns whether it was installed.  POSIX only (Windows cannot
 * shrink a mapped file).  Since 1.2. */
SHMX_API int shmx_set_fault_handler(int enable);

/* ----------------------------------------------------------------- types */

typedef struct shmx_server shmx_server;
typedef struct shmx_client shmx_client;
typedef struct shmx_inspector shmx_inspector;

/* One stream of the schema.  Fixed by the wire format: no struct_size,
 * this layout never changes. */
typedef struct shmx_stream_spec {
    uint32_t stream_id;
    uint32_t dtype;          /* SHMX_DT_* */
    uint32_t components;     /* per element, >= 1 */
    uint32_t layout;         /* SHMX_LAYOUT_* */
    uint32_t bytes_per_elem; /* >= 1 */
    const char *name;        /* UTF-8, NUL-terminated, 1..255 bytes, unique */
    const void *extra;       /* optional opaque metadata */
    uint32_t extra_len;
} shmx_stream_spec;

/* Input: fill with shmx_server_config_init(), then change fields. */
typedef struct shmx_server_config {
    uint32_t struct_size;
    uint32_t slots;              /* frame slots in the ring (default 3) */
    uint32_t reader_slots;       /* 1..64 (default 16) */
    uint32_t static_bytes_cap;   /* static directory bytes (default 4096) */
    uint32_t frame_bytes_cap;    /* user bytes per frame (default 65536) */
    uint32_t control_per_reader; /* control ring bytes per reader (default 4096, 0: none) */
    uint32_t mode;               /* file mode of the region (default 0600) */
    uint32_t checksum;           /* SHMX_CHECKSUM_* (default AUTO) */
    const shmx_stream_spec *streams;
    uint32_t stream_count;
    const char *dir;             /* NULL: $SHMX_DIR, else /dev/shm */
} shmx_server_config;

/* Input: fill with shmx_open_options_init(); NULL means all defaults. */
typedef struct shmx_open_options {
    uint32_t struct_size;
    const char *dir;             /* NULL: $SHMX_DIR, else /dev/shm */
    uint32_t history;            /* 1: the first shmx_client_next() returns the oldest
                                    frame still in the ring, not the newest (since 1.1) */
} shmx_open_options;

/* Output: set struct_size = sizeof(shmx_header_info) before the call. */
typedef struct shmx_header_info {
    uint32_t struct_size;
    uint32_t version_major, version_minor;
    uint32_t extended;           /* 1: region has the shmx extension block */
    uint64_t magic;
    uint64_t session_id;
    uint64_t frame_seq;
    uint64_t total_bytes;
    uint64_t static_hash;
    uint32_t static_gen, static_bytes_used, static_bytes_cap;
    uint32_t slots, slot_stride, frame_bytes_cap, slot_payload_cap;
    uint32_t reader_slots, control_per_reader, readers_connected, write_index;
    uint32_t closed;             /* 1: the server destroyed the region */
    uint32_t owner_alive;        /* SHMX_ALIVE / SHMX_DEAD / SHMX_UNKNOWN */
    uint32_t checksum_policy;
    uint64_t owner_pid;
    uint64_t owner_heartbeat;
    uint64_t overruns;           /* publishes refused: every slot pinned */
} shmx_header_info;

/* Output: set struct_size = sizeof(shmx_stream_info) before the call. */
typedef struct shmx_stream_info {
    uint32_t struct_size;
    uint32_t stream_id, dtype, components, layout, bytes_per_elem;
    uint32_t name_len, extra_len;
    const char *name;            /* NUL-terminated; owned by the handle */
    const void *extra;           /* owned by the handle */
} shmx_stream_info;

/* Output, one per array element: set each struct_size = sizeof(shmx_reader_info). */
typedef struct shmx_reader_info {
    uint32_t struct_size;
    uint32_t index;
    uint32_t in_use;
    uint32_t legacy;             /* 1: attached by a shmx 1.0.1 reader */
    uint32_t alive;              /* SHMX_ALIVE / SHMX_DEAD / SHMX_UNKNOWN */
    uint64_t reader_id, heartbeat, last_frame_seen;
    uint64_t pid, frames_read, frames_dropped;
} shmx_reader_info;

/* A frame as seen by a client: valid until the client's next read call,
 * shmx_client_release() or close.  Output: set struct_size =
 * sizeof(shmx_frame_info) before the call (the reads accept out = NULL). */
typedef struct shmx_frame_info {
    uint32_t struct_size;
    uint32_t payload_bytes, tlv_count, stream_count;
    uint64_t frame_id;
    double sim_time;
    uint64_t dropped;            /* read_next: frames lost since the last one */
    uint64_t layout_id;          /* same id => same slot and same stream offsets */
    uint64_t dropped_total;      /* the sum of `dropped` since open (or reconnect); since 1.2 */
    uint64_t published;          /* frames published when this one was read: the header's frame_seq as
                                  * the read loaded it, before it took the frame (which may be newer);
                                  * 0 on a legacy region; since 1.2 */
} shmx_frame_info;

/* Output: set struct_size = sizeof(shmx_stream_view) before the call. */
typedef struct shmx_stream_view {
    uint32_t struct_size;
    uint32_t stream_id, elem_count, bytes;
    uint64_t offset;             /* from the region base */
    const void *data;
} shmx_stream_view;

/* Output: set struct_size = sizeof(shmx_control_msg) before the call. */
typedef struct shmx_control_msg {
    uint32_t struct_size;
    uint32_t type, length, reader_index;
    uint64_t reader_id;
} shmx_control_msg;

SHMX_API void shmx_server_config_init(shmx_server_config *cfg);
SHMX_API void shmx_open_options_init(shmx_open_options *opt);

/* ---------------------------------------------------------------- server */

/* Create a region (exclusive).  A stale region whose owner is dead is
 * reclaimed; a live owner makes this fail with SHMX_EEXIST naming its pid. */
SHMX_API shmx_status shmx_server_create(const char *name, const shmx_server_config *cfg,
                                        shmx_server **out);
/* Like shmx_server_create, but the static directory starts as these
 * `bytes` raw bytes (TLVs as shmx_server_write_static appends them; stream
 * descriptors among them make the schema) instead of one built from
 * cfg->streams, which must be empty: a mirror copies its source's
 * directory byte for byte, and no reader ever sees it without.  Since 1.2. */
SHMX_API shmx_status shmx_server_create_with_static(const char *name, const shmx_server_config *cfg,
                                                    const void *static_bytes, uint32_t bytes,
                                                    shmx_server **out);
/* Mark the region closed, unlink its name, unmap, free.  NULL is fine. */
SHMX_API void shmx_server_destroy(shmx_server *s);
/* Like destroy, but keep the mapping (base stays valid) until
 * shmx_server_free(); for language bindings whose views outlive the call. */
SHMX_API void shmx_server_close(shmx_server *s);
/* Like shmx_server_close, but leave the name in place: readers see the
 * server gone (closed, owner dead), and listings keep showing the region
 * with a dead owner until a new create reclaims the name or shmx_unlink
 * removes it.  For a mirror whose source went away (shmx bridge).  Free
 * the handle with shmx_server_free().  Since 1.2. */
SHMX_API void shmx_server_close_keep_name(shmx_server *s);
SHMX_API void shmx_server_free(shmx_server *s);

/* Start a frame in a free slot.  An open frame that was never published is
 * abandoned (its handle becomes stale).  SHMX_EBUSY when every slot is
 * pinned by a reader: nothing already published is touched. */
SHMX_API shmx_status shmx_server_begin_frame(shmx_server *s, uint64_t *frame);
/* Copy `bytes` (== elem_count * bytes_per_elem) of stream data into the frame. */
SHMX_API shmx_status shmx_server_append(shmx_server *s, uint64_t frame, uint32_t stream_id,
                                        const void *data, uint64_t bytes, uint32_t elem_count);
/* Reserve a stream in the frame and return where to write it (zero copy). */
SHMX_API shmx_status shmx_server_loan(shmx_server *s, uint64_t frame, uint32_t stream_id,
                                      uint32_t elem_count, void **data);
/* Make the frame visible to readers, wake waiters.  Never blocks. */
SHMX_API shmx_status shmx_server_publish(shmx_server *s, uint64_t frame, double sim_time);
/* Publish with a frame id chosen by the caller instead of the next one:
 * a mirror repeats another region's ids, so its readers see the same ids
 * and read_next reports the same gaps (frame_id - last - 1 dropped).
 * SHMX_EINVAL unless frame_id is greater than the last published id (the
 * handle stays open then).  Since 1.2. */
SHMX_API shmx_status shmx_server_publish_as(shmx_server *s, uint64_t frame, double sim_time,
                                            uint64_t frame_id);
/* A whole frame holding one stream, in one call: begin, append, publish.
 * elem_count is bytes / bytes_per_elem (SHMX_ESIZE unless it divides
 * evenly).  Like begin_frame, it abandons a frame left open.  Since 1.1. */
SHMX_API shmx_status shmx_server_publish_stream(shmx_server *s, uint32_t stream_id, const void *data,
                                                uint64_t bytes, double sim_time);
/* One stream of a frame for shmx_server_publish_streams. */
typedef struct shmx_stream_data {
    uint32_t stream_id;
    uint32_t reserved;           /* 0 */
    const void *data;
    uint64_t bytes;              /* elem_count follows: bytes / bytes_per_elem */
} shmx_stream_data;

/* A whole frame of `count` streams in one call.  Everything is checked
 * first (ids in the schema, no id twice, whole elements, the frame fits
 * the slot with its framing); only then is a slot claimed, so a refused
 * frame costs no published frame.  The status names the stream at fault
 * by its index in `streams` and its id.  Like begin_frame, it abandons a
 * frame left open.  Since 1.2. */
SHMX_API shmx_status shmx_server_publish_streams(shmx_server *s, const shmx_stream_data *streams,
                                                 uint32_t count, double sim_time);
/* Append raw bytes to the static directory (shmx 1.0.1 semantics). */
SHMX_API shmx_status shmx_server_write_static(shmx_server *s, const void *data, uint32_t bytes);
/* Take the next control message from any reader (round robin).  Copies the
 * body into buf; SHMX_EAGAIN when there is none; SHMX_ETOOBIG (msg->length
 * set, message kept) when buf_cap is too small. */
SHMX_API shmx_status shmx_server_next_control(shmx_server *s, shmx_control_msg *msg, void *buf,
                                              uint32_t buf_cap);
/* Block until a control message may be there or the timeout (ns, <0: none). */
SHMX_API shmx_status shmx_server_wait_control(shmx_server *s, int64_t timeout_ns);
SHMX_API shmx_status shmx_server_readers(shmx_server *s, shmx_reader_info *out, uint32_t cap,
                                         uint32_t *count);
/* Free reader slots whose process is known dead, and evict readers whose
 * heartbeat is older than timeout (shmx 1.0.1 semantics): a live reader of
 * ours loses its pins and its next call returns SHMX_EEVICTED (its slot is
 * free once it closes or dies); a shmx 1.0.1 reader's slot is freed.  Our
 * clients heartbeat on every read and every 100 ms while they wait. */
SHMX_API shmx_status shmx_server_reap_stale_readers(shmx_server *s, uint64_t now_ns,
                                                    uint64_t timeout_ns, uint32_t *reaped);
/* Free reader slots whose process is known dead (lock released). */
SHMX_API shmx_status shmx_server_reap_dead_readers(shmx_server *s, uint32_t *reaped);
SHMX_API shmx_status shmx_server_header_info(shmx_server *s, shmx_header_info *out);
SHMX_API uint32_t shmx_server_stream_count(shmx_server *s);
SHMX_API shmx_status shmx_server_stream_info(shmx_server *s, uint32_t index, shmx_stream_info *out);
SHMX_API void *shmx_server_base(shmx_server *s);
SHMX_API uint64_t shmx_server_size(shmx_server *s);

/* ---------------------------------------------------------------- client */

SHMX_API shmx_status shmx_client_open(const char *name, const shmx_open_options *opt,
                                      shmx_client **out);
/* Leave the reader slot, drop the pin, unmap, free.  NULL is fine. */
SHMX_API void shmx_client_close(shmx_client *c);
/* Leave the reader slot and drop the pin, keep the mapping until
 * shmx_client_free() (for bindings whose views outlive the handle). */
SHMX_API void shmx_client_detach(shmx_client *c);
SHMX_API void shmx_client_free(shmx_client *c);

/* The latest complete frame, pinned until the next read call.  Never torn;
 * never older than a frame this client returned before. */
SHMX_API shmx_status shmx_client_latest(shmx_client *c, shmx_frame_info *out);
/* The next frame in publication order after the last one read;
 * out->dropped counts frames overwritten before they could be read. */
SHMX_API shmx_status shmx_client_next(shmx_client *c, shmx_frame_info *out);
/* Wait (ns, <0: forever) until a frame newer than the last one read is
 * published; returns SHMX_OK (then call latest/next) or SHMX_ETIMEDOUT. */
SHMX_API shmx_status shmx_client_wait(shmx_client *c, int64_t timeout_ns);
/* Stream i of the frame returned last. */
SHMX_API shmx_status shmx_client_frame_stream(shmx_client *c, uint32_t index,
                                              shmx_stream_view *out);
/* Drop the pin of the last frame. */
SHMX_API void shmx_client_release(shmx_client *c);
SHMX_API shmx_status shmx_client_send_control(shmx_client *c, uint32_t type, const void *data,
                                              uint32_t bytes);
SHMX_API shmx_status shmx_client_refresh_static(shmx_client *c);
/* Copy the static directory's bytes as they are now (never mixed with a
 * concurrent write_static_append) into buf; *bytes gets their length.
 * SHMX_ETOOBIG (with *bytes set) when cap is too small; buf may be NULL
 * with cap 0 to ask for the length.  Since 1.2. */
SHMX_API shmx_status shmx_client_copy_static(shmx_client *c, void *buf, uint32_t cap, uint32_t *bytes);
SHMX_API shmx_status shmx_client_header_info(shmx_client *c, shmx_header_info *out);
SHMX_API uint32_t shmx_client_stream_count(shmx_client *c);
SHMX_API shmx_status shmx_client_stream_info(shmx_client *c, uint32_t index, shmx_stream_info *out);
/* SHMX_ALIVE / SHMX_DEAD / SHMX_UNKNOWN (legacy region). */
SHMX_API uint32_t shmx_client_server_alive(shmx_client *c);
/* Reopen the region by name when its server was replaced. */
SHMX_API shmx_status shmx_client_reconnect(shmx_client *c);
SHMX_API void *shmx_client_base(shmx_client *c);
SHMX_API uint64_t shmx_client_size(shmx_client *c);
SHMX_API uint64_t shmx_client_reader_id(shmx_client *c);

/* ---------------------------------------------------- event-loop fds
 * A file descriptor to hand to poll/epoll/select, asyncio's add_reader,
 * trio's wait_readable or Go's poller, instead of a blocking wait (Linux:
 * a connected abstract-namespace unix socket; nothing in the file system).
 * The protocol, the same for both sides:
 *     for (;;) {
 *         st = shmx_client_arm_fd(c);
 *         if (st == SHMX_EAGAIN) { poll(fd, POLLIN); continue; }
 *         if (st != SHMX_OK) break;           (SHMX_ECLOSED: server gone)
 *         shmx_client_latest(c, &fi) or shmx_client_next(c, &fi) ...
 *     }
 * Arming is what makes the producer signal the fd, once (coalesced like the
 * futex sleeper bit): a producer makes no system call for a reader that did
 * not arm.  A readable fd is a hint; arm again to know.  The fd belongs to
 * the handle (do not close it); it is closed by close/detach, and changes
 * after shmx_client_reconnect.  Fails with SHMX_ESYS where there is no such
 * channel (not Linux, another network namespace than the server's) and
 * SHMX_ELEGACY on a shmx 1.0.1 region.  Since 1.2. */

/* The client's wake fd: readable once armed and a frame newer than the
 * last one read is published, or the server is gone.  Since 1.2. */
SHMX_API shmx_status shmx_client_wait_fd(shmx_client *c, int *fd);
/* Drain the fd and arm it.  SHMX_OK: a frame newer than the last one read
 * is there now (read it, do not wait); SHMX_EAGAIN: armed, wait until the
 * fd is readable, then call again; SHMX_ECLOSED: the server is gone.
 * Since 1.2. */
SHMX_API shmx_status shmx_client_arm_fd(shmx_client *c);
/* The server's control fd: readable once armed and a client sends a
 * control message (also, spuriously, when a client connects or leaves).
 * Since 1.2. */
SHMX_API shmx_status shmx_server_control_fd(shmx_server *s, int *fd);
/* Drain and arm it.  SHMX_OK: a message may be there now (call
 * shmx_server_next_control); SHMX_EAGAIN: armed, wait for the fd.
 * Since 1.2. */
SHMX_API shmx_status shmx_server_arm_control_fd(shmx_server *s);

/* ------------------------------------------------------------- inspector */

/* Read-only: maps the region read-only, attaches no reader slot. */
SHMX_API shmx_status shmx_inspector_open(const char *name, const shmx_open_options *opt,
                                         shmx_inspector **out);
SHMX_API void shmx_inspector_close(shmx_inspector *in);
SHMX_API shmx_status shmx_inspector_header_info(shmx_inspector *in, shmx_header_info *out);
SHMX_API shmx_status shmx_inspector_refresh_static(shmx_inspector *in);
SHMX_API uint32_t shmx_inspector_stream_count(shmx_inspector *in);
SHMX_API shmx_status shmx_inspector_stream_info(shmx_inspector *in, uint32_t index,
                                                shmx_stream_info *out);
SHMX_API shmx_status shmx_inspector_readers(shmx_inspector *in, shmx_reader_info *out,
                                            uint32_t cap, uint32_t *count);
/* Copy the latest frame's payload (TLVs) into buf, seqlock-checked. */
SHMX_API shmx_status shmx_inspector_copy_latest(shmx_inspector *in, shmx_frame_info *info,
                                                void *buf, uint32_t buf_cap);

/* The streams of a frame payload copied out with
 * shmx_inspector_copy_latest: fills up to `cap` views (offset and data
 * point into `payload`) and sets *count to the number of streams.  Every
 * length is checked against `bytes`.  Since 1.2. */
SHMX_API shmx_status shmx_frame_streams(const void *payload, uint32_t bytes, shmx_stream_view *out,
                                        uint32_t cap, uint32_t *count);

/* Remove a region by name when its owner is dead (force: even when alive). */
SHMX_API shmx_status shmx_unlink(const char *name, const char *dir, int force);

#ifdef __cplusplus
}
#endif
#endif /* SHMX_H */
