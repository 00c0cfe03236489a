/* common.c - what every handle shares and no region holds: the per-thread
 * error detail and OS cause, versions, status names, region-name rules,
 * the 1.0.1 hash and checksum, dtype sizes and names.  Touches no region. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>

#define STR2_(x) #x
#define STR_(x) STR2_(x)

static __thread char last_error[512];
static __thread int last_errno;    /* the OS cause of the last failure, 0: none */
static __thread int pending_errno; /* set by shmx_os_cause(), taken by the next shmx_fail() */

void shmx_os_cause(int err) { pending_errno = err; }

static void format_error(const char *fmt, va_list ap)
{
    /* Format into a scratch buffer first: an argument may be
     * shmx_last_error() itself (a detail wrapped with more context). */
    char msg[sizeof last_error];
    vsnprintf(msg, sizeof msg, fmt, ap);
    memcpy(last_error, msg, sizeof last_error);
}

shmx_status shmx_fail_wrap(shmx_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    format_error(fmt, ap);
    va_end(ap);
    return status;
}

shmx_status shmx_fail(shmx_status status, const char *fmt, ...)
{
    last_errno = pending_errno;
    pending_errno = 0;
    va_list ap;
    va_start(ap, fmt);
    format_error(fmt, ap);
    va_end(ap);
    return status;
}

void shmx_clear_error(void)
{
    last_error[0] = 0;
    last_errno = pending_errno = 0;
}

const char *shmx_last_error(void) { return last_error; }

int shmx_last_errno(void) { return last_errno; }

const char *shmx_strerror(int status)
{
    switch (status) {
#define X_(name, value, msg) case value: return msg;
        SHMX_STATUS_LIST(X_)
#undef X_
    default: return "unknown status";
    }
}

const char *shmx_status_name(int status)
{
    switch (status) {
#define X_(name, value, msg) case value: return "SHMX_" #name;
        SHMX_STATUS_LIST(X_)
#undef X_
    default: return "SHMX_UNKNOWN_STATUS";
    }
}

const char *shmx_version(void)
{
    return STR_(SHMX_VERSION_MAJOR) "." STR_(SHMX_VERSION_MINOR) "." STR_(SHMX_VERSION_PATCH);
}

unsigned shmx_version_number(void) { return SHMX_VERSION_NUMBER; }

uint32_t shmx_dtype_size(uint32_t dtype)
{
    static const uint8_t sizes[14] = {0, 1, 1, 1, 2, 2, 4, 4, 8, 8, 2, 2, 4, 8};
    return dtype < 14 ? sizes[dtype] : 0;
}

const char *shmx_dtype_name(uint32_t dtype)
{
    static const char *const names[14] = {"unknown", "bool",    "int8",    "uint8",   "int16",
                                          "uint16",  "int32",   "uint32",  "int64",   "uint64",
                                          "float16", "bfloat16", "float32", "float64"};
    return dtype < 14 ? names[dtype] : "unknown";
}

const char *shmx_layout_name(uint32_t layout)
{
    switch (layout) {
    case SHMX_LAYOUT_SOA_SCALAR: return "scalar";
    case SHMX_LAYOUT_AOS_VECTOR: return "vector";
    default: return "unknown";
    }
}

shmx_status shmx_check_name(const char *name)
{
    if (!name) return shmx_fail(SHMX_ENAME, "region name is NULL");
    if (name[0] == '/') name++; /* shmx 1.0.1 accepts "/name" for "name" */
    size_t n = strlen(name);
    if (n == 0) return shmx_fail(SHMX_ENAME, "region name is empty");
    if (n > SHMX_NAME_MAX)
        return shmx_fail(SHMX_ENAME, "region name is %zu characters, the limit is %d", n,
                         SHMX_NAME_MAX);
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return shmx_fail(SHMX_ENAME, "region name '%s' is reserved", name);
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '.' || ch == '_' || ch == '-';
        if (!ok)
            return shmx_fail(SHMX_ENAME,
                             "region name '%.64s' has character 0x%02x at %zu; allowed: "
                             "A-Z a-z 0-9 . _ -",
                             name, (unsigned)(unsigned char)ch, i);
    }
    return SHMX_OK;
}

uint64_t shmx_fnv1a64(const void *data, size_t n)
{
    const uint8_t *p = (const uint8_t *)data;
    /* shmx 1.0.1 seeds its "FNV-1a" with 1469598103934665603, one digit
     * short of the published basis 14695981039346656037.  Keep it: legacy
     * readers verify frame checksums and static_hash with this value. */
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

uint64_t shmx_static_hash(const void *data, uint32_t bytes)
{
    return data || !bytes ? shmx_fnv1a64(data, bytes) : 0;
}

uint32_t shmx_checksum32(const void *data, size_t bytes)
{
    uint64_t h = shmx_fnv1a64(data, bytes);
    return (uint32_t)((h >> 32) ^ (h & 0xFFFFFFFFu));
}

uint64_t shmx_now_ns(void) { return shmx_plat_now_ns(); }

void shmx_server_config_init(shmx_server_config *cfg)
{
    if (!cfg) return;
    memset(cfg, 0, sizeof *cfg);
    cfg->struct_size = (uint32_t)sizeof *cfg;
    cfg->slots = 3;
    cfg->reader_slots = 16;
    cfg->static_bytes_cap = 4096;
    cfg->frame_bytes_cap = 65536;
    cfg->control_per_reader = 4096;
    cfg->mode = 0600;
    cfg->checksum = SHMX_CHECKSUM_AUTO;
}

void shmx_open_options_init(shmx_open_options *opt)
{
    if (!opt) return;
    memset(opt, 0, sizeof *opt);
    opt->struct_size = (uint32_t)sizeof *opt;
}
