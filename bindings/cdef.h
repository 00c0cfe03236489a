/* The cffi declarations of shmx.h.  set_source() includes the real header,
 * so the compiler checks every line here against it; tests/test_abi.py
 * fails when a shmx_* function of the header is missing here. */
typedef enum shmx_status {
    SHMX_OK, SHMX_EINVAL, SHMX_ENAME, SHMX_ENOENT, SHMX_EEXIST, SHMX_EACCES, SHMX_ENOSPC,
    SHMX_ECORRUPT, SHMX_EVERSION, SHMX_ETOOBIG, SHMX_ESTREAM, SHMX_ESIZE, SHMX_EFULL,
    SHMX_EHANDLE, SHMX_EAGAIN, SHMX_ETIMEDOUT, SHMX_ECLOSED, SHMX_ENOREADER, SHMX_EBUSY,
    SHMX_ELEGACY, SHMX_ESYS, SHMX_ENOMEM, SHMX_EDUP, SHMX_EFORK, SHMX_EEVICTED, ...
} shmx_status;

#define SHMX_VERSION_MAJOR ...
#define SHMX_VERSION_MINOR ...
#define SHMX_VERSION_PATCH ...
#define SHMX_FRAMING_PER_STREAM ...
#define SHMX_NAME_MAX ...
#define SHMX_MAX_READER_SLOTS ...
#define SHMX_STREAM_NAME_MAX ...

enum shmx_dtype {
    SHMX_DT_BOOL, SHMX_DT_I8, SHMX_DT_U8, SHMX_DT_I16, SHMX_DT_U16, SHMX_DT_I32, SHMX_DT_U32,
    SHMX_DT_I64, SHMX_DT_U64, SHMX_DT_F16, SHMX_DT_BF16, SHMX_DT_F32, SHMX_DT_F64, ...
};
enum shmx_layout { SHMX_LAYOUT_SOA_SCALAR, SHMX_LAYOUT_AOS_VECTOR, ... };
enum shmx_tlv { SHMX_TLV_STATIC_DIR, SHMX_TLV_FRAME_STREAM, SHMX_TLV_CONTROL_USER, ... };
enum shmx_checksum_policy { SHMX_CHECKSUM_AUTO, SHMX_CHECKSUM_ALWAYS, SHMX_CHECKSUM_NEVER, ... };
enum shmx_liveness { SHMX_DEAD, SHMX_ALIVE, SHMX_UNKNOWN, ... };

const char *shmx_strerror(int status);
const char *shmx_status_name(int status);
const char *shmx_last_error(void);
int shmx_last_errno(void);
uint64_t shmx_static_hash(const void *data, uint32_t bytes);
const char *shmx_version(void);
unsigned shmx_version_number(void);
uint32_t shmx_dtype_size(uint32_t dtype);
const char *shmx_dtype_name(uint32_t dtype);
const char *shmx_layout_name(uint32_t layout);
shmx_status shmx_check_name(const char *name);
uint32_t shmx_checksum32(const void *data, size_t bytes);
uint64_t shmx_now_ns(void);
int shmx_set_fault_handler(int enable);

typedef struct shmx_server shmx_server;
typedef struct shmx_client shmx_client;
typedef struct shmx_inspector shmx_inspector;

typedef struct shmx_stream_spec {
    uint32_t stream_id; uint32_t dtype; uint32_t components; uint32_t layout;
    uint32_t bytes_per_elem; const char *name; const void *extra; uint32_t extra_len;
} shmx_stream_spec;

typedef struct shmx_server_config {
    uint32_t struct_size; uint32_t slots; uint32_t reader_slots; uint32_t static_bytes_cap;
    uint32_t frame_bytes_cap; uint32_t control_per_reader; uint32_t mode; uint32_t checksum;
    const shmx_stream_spec *streams; uint32_t stream_count; const char *dir;
} shmx_server_config;

typedef struct shmx_open_options { uint32_t struct_size; const char *dir; uint32_t history; } shmx_open_options;

typedef struct shmx_header_info {
    uint32_t struct_size; uint32_t version_major; uint32_t version_minor; uint32_t extended;
    uint64_t magic; uint64_t session_id; uint64_t frame_seq; uint64_t total_bytes;
    uint64_t static_hash; uint32_t static_gen; uint32_t static_bytes_used; uint32_t static_bytes_cap;
    uint32_t slots; uint32_t slot_stride; uint32_t frame_bytes_cap; uint32_t slot_payload_cap;
    uint32_t reader_slots; uint32_t control_per_reader; uint32_t readers_connected;
    uint32_t write_index; uint32_t closed; uint32_t owner_alive; uint32_t checksum_policy;
    uint64_t owner_pid; uint64_t owner_heartbeat; uint64_t overruns;
} shmx_header_info;

typedef struct shmx_stream_info {
    uint32_t struct_size; uint32_t stream_id; uint32_t dtype; uint32_t components;
    uint32_t layout; uint32_t bytes_per_elem; uint32_t name_len; uint32_t extra_len;
    const char *name; const void *extra;
} shmx_stream_info;

typedef struct shmx_reader_info {
    uint32_t struct_size; uint32_t index; uint32_t in_use; uint32_t legacy; uint32_t alive;
    uint64_t reader_id; uint64_t heartbeat; uint64_t last_frame_seen;
    uint64_t pid; uint64_t frames_read; uint64_t frames_dropped;
} shmx_reader_info;

typedef struct shmx_frame_info {
    uint32_t struct_size; uint32_t payload_bytes; uint32_t tlv_count; uint32_t stream_count;
    uint64_t frame_id; double sim_time; uint64_t dropped; uint64_t layout_id; uint64_t dropped_total;
    uint64_t published;
} shmx_frame_info;

typedef struct shmx_stream_view {
    uint32_t struct_size; uint32_t stream_id; uint32_t elem_count; uint32_t bytes;
    uint64_t offset; const void *data;
} shmx_stream_view;

typedef struct shmx_stream_data {
    uint32_t stream_id; uint32_t reserved; const void *data; uint64_t bytes;
} shmx_stream_data;

typedef struct shmx_control_msg {
    uint32_t struct_size; uint32_t type; uint32_t length; uint32_t reader_index; uint64_t reader_id;
} shmx_control_msg;

void shmx_server_config_init(shmx_server_config *cfg);
void shmx_open_options_init(shmx_open_options *opt);

shmx_status shmx_server_create(const char *name, const shmx_server_config *cfg, shmx_server **out);
void shmx_server_destroy(shmx_server *s);
shmx_status shmx_server_create_with_static(const char *name, const shmx_server_config *cfg,
                                           const void *static_bytes, uint32_t bytes, shmx_server **out);
void shmx_server_close(shmx_server *s);
void shmx_server_close_keep_name(shmx_server *s);
void shmx_server_free(shmx_server *s);
shmx_status shmx_server_begin_frame(shmx_server *s, uint64_t *frame);
shmx_status shmx_server_append(shmx_server *s, uint64_t frame, uint32_t stream_id,
                               const void *data, uint64_t bytes, uint32_t elem_count);
shmx_status shmx_server_loan(shmx_server *s, uint64_t frame, uint32_t stream_id,
                             uint32_t elem_count, void **data);
shmx_status shmx_server_publish(shmx_server *s, uint64_t frame, double sim_time);
shmx_status shmx_server_publish_as(shmx_server *s, uint64_t frame, double sim_time, uint64_t frame_id);
shmx_status shmx_server_publish_stream(shmx_server *s, uint32_t stream_id, const void *data,
                                      uint64_t bytes, double sim_time);
shmx_status shmx_server_publish_streams(shmx_server *s, const shmx_stream_data *streams, uint32_t count,
                                       double sim_time);
shmx_status shmx_server_write_static(shmx_server *s, const void *data, uint32_t bytes);
shmx_status shmx_server_next_control(shmx_server *s, shmx_control_msg *msg, void *buf, uint32_t buf_cap);
shmx_status shmx_server_wait_control(shmx_server *s, int64_t timeout_ns);
shmx_status shmx_server_readers(shmx_server *s, shmx_reader_info *out, uint32_t cap, uint32_t *count);
shmx_status shmx_server_reap_stale_readers(shmx_server *s, uint64_t now_ns, uint64_t timeout_ns, uint32_t *reaped);
shmx_status shmx_server_reap_dead_readers(shmx_server *s, uint32_t *reaped);
shmx_status shmx_server_header_info(shmx_server *s, shmx_header_info *out);
uint32_t shmx_server_stream_count(shmx_server *s);
shmx_status shmx_server_stream_info(shmx_server *s, uint32_t index, shmx_stream_info *out);
void *shmx_server_base(shmx_server *s);
uint64_t shmx_server_size(shmx_server *s);

shmx_status shmx_client_open(const char *name, const shmx_open_options *opt, shmx_client **out);
void shmx_client_close(shmx_client *c);
void shmx_client_detach(shmx_client *c);
void shmx_client_free(shmx_client *c);
shmx_status shmx_client_latest(shmx_client *c, shmx_frame_info *out);
shmx_status shmx_client_next(shmx_client *c, shmx_frame_info *out);
shmx_status shmx_client_wait(shmx_client *c, int64_t timeout_ns);
shmx_status shmx_client_frame_stream(shmx_client *c, uint32_t index, shmx_stream_view *out);
void shmx_client_release(shmx_client *c);
shmx_status shmx_client_send_control(shmx_client *c, uint32_t type, const void *data, uint32_t bytes);
shmx_status shmx_client_refresh_static(shmx_client *c);
shmx_status shmx_client_copy_static(shmx_client *c, void *buf, uint32_t cap, uint32_t *bytes);
shmx_status shmx_client_header_info(shmx_client *c, shmx_header_info *out);
uint32_t shmx_client_stream_count(shmx_client *c);
shmx_status shmx_client_stream_info(shmx_client *c, uint32_t index, shmx_stream_info *out);
uint32_t shmx_client_server_alive(shmx_client *c);
shmx_status shmx_client_reconnect(shmx_client *c);
void *shmx_client_base(shmx_client *c);
uint64_t shmx_client_size(shmx_client *c);
uint64_t shmx_client_reader_id(shmx_client *c);
shmx_status shmx_client_wait_fd(shmx_client *c, int *fd);
shmx_status shmx_client_arm_fd(shmx_client *c);
shmx_status shmx_server_control_fd(shmx_server *s, int *fd);
shmx_status shmx_server_arm_control_fd(shmx_server *s);

shmx_status shmx_inspector_open(const char *name, const shmx_open_options *opt, shmx_inspector **out);
void shmx_inspector_close(shmx_inspector *in);
shmx_status shmx_inspector_header_info(shmx_inspector *in, shmx_header_info *out);
shmx_status shmx_inspector_refresh_static(shmx_inspector *in);
uint32_t shmx_inspector_stream_count(shmx_inspector *in);
shmx_status shmx_inspector_stream_info(shmx_inspector *in, uint32_t index, shmx_stream_info *out);
shmx_status shmx_inspector_readers(shmx_inspector *in, shmx_reader_info *out, uint32_t cap, uint32_t *count);
shmx_status shmx_inspector_copy_latest(shmx_inspector *in, shmx_frame_info *info, void *buf, uint32_t buf_cap);

shmx_status shmx_frame_streams(const void *payload, uint32_t bytes, shmx_stream_view *out, uint32_t cap,
                               uint32_t *count);
shmx_status shmx_unlink(const char *name, const char *dir, int force);
