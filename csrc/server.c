/* server.c - the producer: create, publish, control, readers, destroy. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>

/* The producer trusts nothing it reads back from the region: every client
 * maps it read-write.  What it needs to stay correct (geometry, schema and
 * static bytes, each slot's seq and frame id, its ring read positions,
 * frame_seq and write_index) lives here, in private memory; the region
 * only receives copies.  Values read from the region (pins, reader slots,
 * ring write positions) are hints, checked before use: a hostile writer
 * can deny service, never move our writes or reads out of their area. */
struct shmx_server {
    shmx_region r;
    shmx_schema schema;
    uint8_t *static_priv;    /* our copy of the static directory bytes */
    uint32_t static_used;    /* its length (the region's static_bytes_used is a copy) */
    uint64_t *slot_seq;      /* per slot: the (even) seq we last stored */
    uint64_t *slot_fid;      /* per slot: the frame id we last published there */
    uint64_t *ctl_read;      /* per reader slot: our read position in its control ring */
    uint32_t *appended;      /* per schema entry: generation it was appended in */
    uint32_t checksum_policy;
    uint32_t uid;            /* high half of every frame token of this server */
    uint32_t gen;            /* low half: current frame generation */
    int frame_open;
    uint32_t cur_slot;
    uint64_t cur_seq;        /* the odd seq value the open slot carries */
    uint32_t used, user_used, tlv_count;
    uint32_t last_slot;      /* slot of the latest published frame */
    uint64_t frame_seq;      /* last published frame id */
    uint32_t write_index;
    uint32_t seen_connected; /* readers_connected when legacy readers were last counted */
    int legacy_attached;
    uint64_t publishes;
    uint32_t futex_word;     /* the last even value we stored in ext->frame_futex */
    uint64_t last_reap_ns;
    int skipped_pinned;      /* the last claim_slot passed over a pinned slot */
    uint32_t ctl_cursor;
    int closed;
    shmx_wake_server *wake;  /* event-loop wake channel (wakefd.c); NULL: none */
};

static void free_private(shmx_server *s)
{
    shmx_schema_free(&s->schema);
    free(s->appended);
    free(s->static_priv);
    free(s->slot_seq);
    free(s->slot_fid);
    free(s->ctl_read);
}

static uint32_t next_uid(void)
{
    static uint32_t counter;
    uint32_t c = shmx_add_fetch_relaxed32(&counter, 1u);
    uint32_t v = ((uint32_t)(shmx_plat_random64() >> 32) ^ (c * 0x9E3779B9u)) & 0x7FFFFFFFu;
    /* Never 0, and under 2^31: a frame token (uid << 32 | gen) is then a
     * positive int64, which the Python binding returns in place of a
     * (negative) status from one call (pyshmx_server_begin). */
    return v ? v : 1u;
}

/* ------------------------------------------------------------------ create */

static shmx_status check_config(const shmx_server_config *cfg, uint64_t *dir_bytes)
{
    if (cfg->slots == 0) return shmx_fail(SHMX_EINVAL, "slots must be at least 1");
    if (cfg->slots > 65536) return shmx_fail(SHMX_EINVAL, "slots %u is over 65536", cfg->slots);
    if (cfg->reader_slots == 0 || cfg->reader_slots > SHMX_MAX_READER_SLOTS)
        return shmx_fail(SHMX_EINVAL, "reader_slots must be 1..%d, got %u", SHMX_MAX_READER_SLOTS,
                         cfg->reader_slots);
    if (cfg->frame_bytes_cap == 0) return shmx_fail(SHMX_EINVAL, "frame_bytes_cap must be at least 1");
    if (cfg->control_per_reader != 0 && cfg->control_per_reader < 64)
        return shmx_fail(SHMX_EINVAL, "control_per_reader must be 0 or at least 64, got %u",
                         cfg->control_per_reader);
    if (cfg->mode > 0777) return shmx_fail(SHMX_EINVAL, "mode 0%o is not a permission mode", cfg->mode);
    if (cfg->checksum > SHMX_CHECKSUM_NEVER)
        return shmx_fail(SHMX_EINVAL, "checksum policy %u is not one of AUTO/ALWAYS/NEVER", cfg->checksum);
    if (cfg->stream_count && !cfg->streams)
        return shmx_fail(SHMX_EINVAL, "stream_count is %u but streams is NULL", cfg->stream_count);
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < cfg->stream_count; i++) {
        const shmx_stream_spec *a = &cfg->streams[i];
        if (!a->name) return shmx_fail(SHMX_ENAME, "stream %u has no name", a->stream_id);
        size_t nl = strlen(a->name);
        if (nl == 0 || nl > SHMX_STREAM_NAME_MAX)
            return shmx_fail(SHMX_ENAME, "stream %u: name length %zu is not 1..%d", a->stream_id, nl,
                             SHMX_STREAM_NAME_MAX);
        if (shmx_dtype_size(a->dtype) == 0)
            return shmx_fail(SHMX_EINVAL, "stream '%s': unknown dtype code %u", a->name, a->dtype);
        if (a->components == 0)
            return shmx_fail(SHMX_EINVAL, "stream '%s': components must be at least 1", a->name);
        if (a->bytes_per_elem == 0)
            return shmx_fail(SHMX_EINVAL, "stream '%s': bytes_per_elem must be at least 1", a->name);
        /* One element is `components` values of the dtype: a mismatch made
         * readers fall back to raw bytes, silently. */
        if ((uint64_t)a->bytes_per_elem != (uint64_t)shmx_dtype_size(a->dtype) * a->components)
            return shmx_fail(SHMX_EINVAL,
                             "stream '%s': bytes_per_elem is %u, but %u component(s) of %s take %llu "
                             "bytes (bytes_per_elem is per element, not per component)",
                             a->name, a->bytes_per_elem, a->components, shmx_dtype_name(a->dtype),
                             (unsigned long long)shmx_dtype_size(a->dtype) * a->components);
        if (a->layout > SHMX_LAYOUT_AOS_VECTOR)
            return shmx_fail(SHMX_EINVAL, "stream '%s': unknown layout code %u", a->name, a->layout);
        if (a->extra_len && !a->extra)
            return shmx_fail(SHMX_EINVAL, "stream '%s': extra_len %u with no extra", a->name, a->extra_len);
        if (a->extra_len > (1u << 20))
            return shmx_fail(SHMX_ETOOBIG, "stream '%s': extra is over 1 MiB", a->name);
        for (uint32_t j = 0; j < i; j++) {
            if (cfg->streams[j].stream_id == a->stream_id)
                return shmx_fail(SHMX_EDUP, "stream id %u appears twice in the schema", a->stream_id);
            if (strcmp(cfg->streams[j].name, a->name) == 0)
                return shmx_fail(SHMX_EDUP, "stream name '%s' appears twice in the schema", a->name);
        }
        bytes += shmx_align64(sizeof(shmx_tlv_head) + sizeof(shmx_static_desc) + nl + a->extra_len,
                              SHMX_TLV_ALIGN);
    }
    *dir_bytes = bytes;
    return SHMX_OK;
}

static void write_static_dir(uint8_t *dst, const shmx_server_config *cfg)
{
    for (uint32_t i = 0; i < cfg->stream_count; i++) {
        const shmx_stream_spec *a = &cfg->streams[i];
        uint32_t nl = (uint32_t)strlen(a->name);
        shmx_tlv_head tlv = {SHMX_TLV_STATIC_DIR, (uint32_t)sizeof(shmx_static_desc) + nl + a->extra_len};
        shmx_static_desc d = {a->stream_id, a->dtype, a->components, a->layout,
                              a->bytes_per_elem, 0, nl, a->extra_len};
        memcpy(dst, &tlv, sizeof tlv);
        memcpy(dst + sizeof tlv, &d, sizeof d);
        memcpy(dst + sizeof tlv + sizeof d, a->name, nl);
        if (a->extra_len) memcpy(dst + sizeof tlv + sizeof d + nl, a->extra, a->extra_len);
        dst += shmx_align(sizeof tlv + tlv.length, SHMX_TLV_ALIGN);
    }
}

/* Both creates: `raw`/`raw_bytes` (with no cfg->streams) is the static
 * directory to start with, byte for byte, instead of one built from
 * cfg->streams. */
static shmx_status server_create(const char *name, const shmx_server_config *user_cfg,
                                 const void *raw, uint32_t raw_bytes, shmx_server **out);

shmx_status shmx_server_create(const char *name, const shmx_server_config *cfg, shmx_server **out)
{
    return server_create(name, cfg, NULL, 0, out);
}

shmx_status shmx_server_create_with_static(const char *name, const shmx_server_config *cfg,
                                           const void *static_bytes, uint32_t bytes, shmx_server **out)
{
    if (bytes && !static_bytes) {
        shmx_clear_error();
        if (out) *out = NULL;
        return shmx_fail(SHMX_EINVAL, "create_with_static: static_bytes is NULL");
    }
    if (bytes && cfg && cfg->struct_size >= offsetof(shmx_server_config, stream_count) + sizeof(uint32_t) &&
        cfg->stream_count) {
        shmx_clear_error();
        if (out) *out = NULL;
        return shmx_fail(SHMX_EINVAL, "create_with_static: give streams or a static directory, not both");
    }
    return server_create(name, cfg, static_bytes, bytes, out);
}

static shmx_status server_create(const char *name, const shmx_server_config *user_cfg,
                                 const void *raw, uint32_t raw_bytes, shmx_server **out)
{
    shmx_clear_error();
    if (!out) return shmx_fail(SHMX_EINVAL, "shmx_server_create: out is NULL");
    *out = NULL;
    shmx_server_config cfg;
    shmx_server_config_init(&cfg);
    if (user_cfg) {
        if (user_cfg->struct_size == 0 || user_cfg->struct_size > sizeof cfg)
            return shmx_fail(SHMX_EINVAL, "server config struct_size %u is invalid (use shmx_server_config_init)",
                             user_cfg->struct_size);
        memcpy(&cfg, user_cfg, user_cfg->struct_size);
        cfg.struct_size = (uint32_t)sizeof cfg;
        if (cfg.mode == 0) cfg.mode = 0600;
    }
    shmx_status st = shmx_check_name(name);
    if (st != SHMX_OK) return st;
    if (name[0] == '/') name++;
    uint64_t dir_bytes = 0;
    st = check_config(&cfg, &dir_bytes);
    if (st != SHMX_OK) return st;
    /* Framing room per schema stream: with a raw directory, per stream
     * descriptor in it, so the slot holds what the source's slot held. */
    uint32_t framed_streams = cfg.stream_count;
    if (raw_bytes) {
        shmx_schema parsed;
        memset(&parsed, 0, sizeof parsed);
        st = shmx_schema_parse(raw, raw_bytes, &parsed);
        if (st != SHMX_OK) return shmx_fail_wrap(st, "create_with_static: not a static directory: %s", shmx_last_error());
        framed_streams = parsed.count;
        shmx_schema_free(&parsed);
        dir_bytes = raw_bytes;
    }

    uint64_t static_cap = cfg.static_bytes_cap ? cfg.static_bytes_cap : dir_bytes;
    if (dir_bytes > static_cap)
        return shmx_fail(SHMX_ETOOBIG, "the schema needs %llu bytes, static_bytes_cap is %u",
                         (unsigned long long)dir_bytes, cfg.static_bytes_cap);
    static_cap = shmx_align64(static_cap ? static_cap : 64, SHMX_AREA_ALIGN);
    uint64_t payload_cap = (uint64_t)cfg.frame_bytes_cap + (uint64_t)SHMX_FRAMING_PER_STREAM * framed_streams;
    payload_cap = shmx_align64(payload_cap, SHMX_TLV_ALIGN);
    uint64_t cpr = shmx_align64(cfg.control_per_reader, SHMX_TLV_ALIGN);
    uint64_t slot_stride = SHMX_FRAME_HEADER_BYTES + shmx_align64(payload_cap, SHMX_AREA_ALIGN);
    uint64_t static_off = SHMX_MIN_STATIC_OFFSET;
    uint64_t readers_off = shmx_align64(static_off + static_cap, SHMX_AREA_ALIGN);
    uint64_t control_off = shmx_align64(readers_off + (uint64_t)cfg.reader_slots * sizeof(shmx_reader_slot), SHMX_AREA_ALIGN);
    uint64_t control_stride = shmx_align64(cpr, SHMX_AREA_ALIGN);
    uint64_t slots_off = shmx_align64(control_off + control_stride * cfg.reader_slots, SHMX_AREA_ALIGN);
    uint64_t total = slots_off + (uint64_t)cfg.slots * slot_stride;
    if (static_cap > 0xFFFFFFFFull || payload_cap > 0xFFFFFFFFull || total > 0xFFFFFFFFull)
        return shmx_fail(SHMX_ETOOBIG,
                         "region would be %llu bytes (%u slots of %llu); the layout's offsets "
                         "are 32-bit, so it must stay under 4 GiB",
                         (unsigned long long)total, cfg.slots, (unsigned long long)slot_stride);

    shmx_server *s = calloc(1, sizeof *s);
    if (!s) return shmx_fail(SHMX_ENOMEM, "out of memory");
    s->r.map = (shmx_map)SHMX_MAP_NONE;
    snprintf(s->r.name, sizeof s->r.name, "%s", name);
    if (cfg.dir) snprintf(s->r.dir, sizeof s->r.dir, "%s", cfg.dir);
    st = shmx_plat_path(cfg.dir, name, s->r.path, sizeof s->r.path);
    if (st != SHMX_OK) { free(s); return st; }
    char tmp[SHMX_PATH_MAX + 64];
    /* A creator killed before it named its region left its (fully
     * reserved) temporary file behind: free that memory now. */
    (void)shmx_plat_remove_stale_temps(s->r.path);

    /* Build the region under a temporary name, then give it the real name in
     * one step: no reader ever sees a half-initialised header. */
    for (int attempt = 0;; attempt++) {
        int n = snprintf(tmp, sizeof tmp, "%s~shmx-new-%llu-%08x", s->r.path,
                         (unsigned long long)shmx_plat_pid(), (unsigned)shmx_plat_random64());
        if (n < 0 || (size_t)n >= sizeof tmp) { free(s); return shmx_fail(SHMX_ENAME, "path too long"); }
        st = shmx_plat_create(tmp, total, cfg.mode, &s->r.map);
        if (st != SHMX_OK) { free(s); return st; }
        /* Lock, then check the temporary name is still ours: a cleaner
         * (remove_stale_temps in another creator) may have taken the
         * file for a dead creator's before we locked it. */
        if (shmx_plat_lock(s->r.map.fd, SHMX_LOCK_SERVER) == 0 && shmx_plat_same_file(tmp, &s->r.map)) break;
        shmx_plat_close(&s->r.map);
        if (attempt == 3) {
            free(s);
            return shmx_fail(SHMX_ESYS, "cannot take the liveness lock of a new region for '%s'", name);
        }
    }
    uint8_t *base = s->r.map.base;
    shmx_global_header *gh = (shmx_global_header *)base;
    shmx_ext_header *ext = (shmx_ext_header *)(base + SHMX_EXT_OFFSET);
    uint64_t session = shmx_plat_random64();
    gh->ver_major = SHMX_LAYOUT_MAJOR;
    gh->ver_minor = SHMX_LAYOUT_MINOR;
    gh->endianness = SHMX_ENDIAN_TAG;
    gh->session_id = session;
    gh->static_offset = (uint32_t)static_off;
    gh->static_bytes_cap = (uint32_t)static_cap;
    gh->slots = cfg.slots;
    gh->slot_stride = (uint32_t)slot_stride;
    gh->slots_offset = (uint32_t)slots_off;
    gh->frame_bytes_cap = (uint32_t)payload_cap;
    gh->reader_slots = cfg.reader_slots;
    gh->reader_slot_stride = (uint32_t)sizeof(shmx_reader_slot);
    gh->readers_offset = (uint32_t)readers_off;
    gh->control_offset = (uint32_t)control_off;
    gh->control_per_reader = (uint32_t)cpr;
    gh->control_stride = (uint32_t)control_stride;
    ext->magic = SHMX_EXT_MAGIC;
    ext->version = SHMX_EXT_VERSION;
    ext->size = (uint32_t)sizeof *ext;
    ext->owner_pid = shmx_plat_pid();
    ext->owner_start = shmx_plat_pid_start(ext->owner_pid);
    ext->owner_heartbeat = shmx_plat_now_ns();
    ext->checksum_policy = cfg.checksum;
    ext->user_frame_cap = cfg.frame_bytes_cap;
    if (raw_bytes) {
        memcpy(base + static_off, raw, raw_bytes);
        gh->static_bytes_used = raw_bytes;
        gh->static_hash = shmx_fnv1a64(base + static_off, raw_bytes);
        gh->static_gen = 1;
    } else if (cfg.stream_count) {
        write_static_dir(base + static_off, &cfg);
        gh->static_bytes_used = (uint32_t)dir_bytes;
        gh->static_hash = shmx_fnv1a64(base + static_off, (size_t)dir_bytes);
        gh->static_gen = 1;
    }
    for (uint32_t i = 0; i < cfg.slots; i++)
        ((shmx_frame_header *)(base + slots_off + (uint64_t)i * slot_stride))->session_id_copy = session;
    /* Everything above is visible before the magic (pairs with the acquire
     * load of magic in shmx_region_validate). */
    shmx_store_release64(&gh->magic, SHMX_MAGIC);

    st = shmx_region_validate(&s->r);
    /* Before the region has its name: nobody can know the session yet. */
    if (st == SHMX_OK) s->wake = shmx_wake_server_new(&s->r);
    if (st == SHMX_OK) {
        s->static_priv = calloc(1, s->r.static_cap ? s->r.static_cap : 1);
        s->slot_seq = calloc(s->r.slots, sizeof *s->slot_seq);
        s->slot_fid = calloc(s->r.slots, sizeof *s->slot_fid);
        s->ctl_read = calloc(s->r.reader_slots ? s->r.reader_slots : 1, sizeof *s->ctl_read);
        if (!s->static_priv || !s->slot_seq || !s->slot_fid || !s->ctl_read)
            st = shmx_fail(SHMX_ENOMEM, "out of memory");
    }
    if (st == SHMX_OK) {
        s->static_used = (uint32_t)dir_bytes;
        if (dir_bytes) memcpy(s->static_priv, base + static_off, (size_t)dir_bytes);
        st = shmx_schema_parse(s->static_priv, s->static_used, &s->schema);
    }
    if (st == SHMX_OK) st = shmx_name_take(tmp, s->r.path);
    if (st != SHMX_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", shmx_last_error());
        shmx_plat_close(&s->r.map);
        shmx_plat_unlink(tmp);
        free_private(s);
        shmx_wake_server_free(s->wake);
        free(s);
        return shmx_fail_wrap(st, "create '%s': %s", name, msg);
    }
    s->appended = calloc(s->schema.count ? s->schema.count : 1, sizeof *s->appended);
    if (!s->appended) {
        shmx_server_destroy(s);
        return shmx_fail(SHMX_ENOMEM, "out of memory");
    }
    s->checksum_policy = cfg.checksum;
    s->uid = next_uid();
    s->gen = 1;
    s->last_slot = cfg.slots - 1;
    s->seen_connected = 0xFFFFFFFFu;
    s->last_reap_ns = shmx_plat_now_ns();
    *out = s;
    return SHMX_OK;
}

/* The frame futex word counts publishes in steps of 2 (only we change
 * that part); readers set bit 0 before they sleep on it.  Returns the
 * previous value, sleeper bit included. */
static uint32_t next_futex_word(shmx_server *s)
{
    s->futex_word += 2u;
    return shmx_exchange32(&s->r.ext->frame_futex, s->futex_word);
}

static void server_close(shmx_server *s, int unmap, int unlink_name)
{
    /* In a child of fork() the region, its name and its lock are the
     * parent's: only our own memory is let go. */
    if (shmx_plat_forked_since(s->r.map.fork_gen)) s->closed = 1;
    if (!s->closed && s->r.map.base) {
        s->closed = 1;
        shmx_ext_header *ext = s->r.ext;
        /* Readers load `closed` with acquire (shmx_server_liveness). */
        shmx_store_release32(&ext->closed, 1);
        next_futex_word(s);
        shmx_plat_wake_all(&ext->frame_futex);
        /* Closing our ends makes every client's wake fd readable (EOF). */
        shmx_wake_server_free(s->wake);
        s->wake = NULL;
        /* Unlink only if the name still refers to our file (we hold its
         * lock, so nobody else can have renamed over it meanwhile). */
        if (unlink_name) (void)shmx_plat_unlink_if_same(s->r.path, &s->r.map);
        shmx_plat_unlock(s->r.map.fd, SHMX_LOCK_SERVER);
    }
    if (unmap) {
        shmx_plat_close(&s->r.map);
    } else {
        shmx_plat_close_fd(&s->r.map);
    }
}

void shmx_server_close(shmx_server *s)
{
    if (s) server_close(s, 0, 1);
}

void shmx_server_close_keep_name(shmx_server *s)
{
    if (s) server_close(s, 0, 0);
}

void shmx_server_free(shmx_server *s)
{
    if (!s) return;
    server_close(s, 1, 1);
    free_private(s);
    free(s);
}

void shmx_server_destroy(shmx_server *s) { shmx_server_free(s); }

/* ---------------------------------------------------------------- publish */

static shmx_status check_open(shmx_server *s, const char *what)
{
    if (!s) return shmx_fail(SHMX_EINVAL, "%s: server is NULL", what);
    if (s->closed) return shmx_fail(SHMX_ECLOSED, "%s: server '%s' was destroyed", what, s->r.name);
    if (shmx_plat_forked_since(s->r.map.fork_gen))
        return shmx_fail(SHMX_EFORK, "%s: server '%s' was created before fork(); only the parent can use it",
                         what, s->r.name);
    if (shmx_plat_map_lost(&s->r.map))
        return shmx_fail(SHMX_ECORRUPT,
                         "%s: region '%s' was truncated by another process; destroy this server and create "
                         "it again", what, s->r.name);
    return SHMX_OK;
}

static shmx_status check_frame(shmx_server *s, uint64_t frame, const char *what)
{
    shmx_status st = check_open(s, what);
    if (st != SHMX_OK) return st;
    if ((uint32_t)(frame >> 32) != s->uid)
        return shmx_fail(SHMX_EHANDLE, "%s: frame handle belongs to another server", what);
    if (!s->frame_open || (uint32_t)frame != s->gen)
        return shmx_fail(SHMX_EHANDLE, "%s: frame handle is finished (published or replaced by a newer begin_frame)", what);
    return SHMX_OK;
}

static uint32_t reap_dead(shmx_server *s);
#define REAP_AFTER_PIN_NS 100000000ull /* 100 ms */

/* Make slot `cand` ours for writing, unless a reader pins it (the
 * handshake is slots.c's). */
static int try_claim(shmx_server *s, uint32_t cand)
{
    uint64_t seq = s->slot_seq[cand]; /* our own copy: the region's may be forged */
    if (!shmx_slot_claim(&s->r, cand, seq)) {
        s->skipped_pinned = 1;
        return 0;
    }
    s->cur_slot = cand;
    s->cur_seq = seq + 1;
    /* An abandoned frame leaves the slot odd; its next claim starts from
     * the even value after it. */
    s->slot_seq[cand] = seq + 2;
    return 1;
}

/* In a region of large frames, the slot written most recently among those
 * no reader needs any more is still in the CPU caches: writing it again
 * skips a trip to memory per cache line, and a reader that copies the
 * frame out finds it in the cache too.  No reader needs a frame older than
 * what every attached reader has already read (last_frame_seen; a reader
 * that read nothing yet keeps everything), and the latest frame is always
 * kept.  Returns the slot, or the number of slots when there is none.
 * Used for slots of SHMX_WARM_SLOT_MIN_BYTES and more. */
static uint32_t warm_slot(shmx_server *s)
{
    const shmx_region *r = &s->r;
    uint64_t passed = UINT64_MAX;
    for (uint32_t i = 0; i < r->reader_slots; i++) {
        shmx_reader_slot *rs = shmx_reader_at(r, i);
        if (!shmx_load_acquire32(&rs->in_use)) continue;
        uint64_t seen = shmx_load_relaxed64(&rs->last_frame_seen);
        if (seen < passed) passed = seen;
    }
    uint32_t best = r->slots;
    uint64_t best_id = 0;
    for (uint32_t k = 0; k < r->slots; k++) {
        if (k == s->last_slot) continue;
        uint64_t fid = s->slot_fid[k];
        if (fid < passed && (best == r->slots || fid > best_id)) {
            best = k;
            best_id = fid;
        }
    }
    return best;
}

/* Claim the slot of the oldest frame that no reader pins, as the ring order
 * does: in a region of large frames warm reuse leaves the frames out of
 * ring order, so there "next after the latest" is not the oldest any more.
 * Candidates go by (frame id, slot) upwards; the latest frame comes last. */
static int claim_oldest(shmx_server *s)
{
    const shmx_region *r = &s->r;
    const uint32_t n = r->slots;
    uint64_t prev_id = 0;
    uint32_t prev = n; /* none tried yet */
    for (uint32_t tries = 0; tries < n; tries++) {
        uint32_t best = n;
        uint64_t best_id = 0;
        for (uint32_t k = 0; k < n; k++) {
            uint64_t fid = s->slot_fid[k];
            if (prev < n && (fid < prev_id || (fid == prev_id && k <= prev))) continue;
            if (best == n || fid < best_id) {
                best = k;
                best_id = fid;
            }
        }
        if (best == n) break;
        if (try_claim(s, best)) return 1;
        prev = best;
        prev_id = best_id;
    }
    return 0;
}

static int legacy_readers_attached(shmx_server *s);

/* Take a slot for writing: the next in ring order that no reader pins; in
 * a region of large frames a warm one first (see warm_slot()) and then the
 * oldest frame's.  0 when every slot is pinned. */
static int claim_slot(shmx_server *s)
{
    const uint32_t n = s->r.slots;
    s->skipped_pinned = 0;
    if (s->r.slot_stride >= SHMX_WARM_SLOT_MIN_BYTES) {
        /* Not while a shmx 1.0.1 reader is attached: it reads without a
         * pin, checksumming for milliseconds, and warm reuse would rewrite
         * the frame before the latest two publishes later. */
        if (s->frame_seq > 0 && !legacy_readers_attached(s)) {
            uint32_t warm = warm_slot(s);
            if (warm < n && try_claim(s, warm)) return 1;
        }
        return claim_oldest(s);
    }
    for (uint32_t k = 1; k <= n; k++)
        if (try_claim(s, (s->last_slot + k) % n)) return 1;
    return 0;
}

shmx_status shmx_server_begin_frame(shmx_server *s, uint64_t *frame)
{
    shmx_status st = check_open(s, "begin_frame");
    if (st != SHMX_OK) return st;
    if (!frame) return shmx_fail(SHMX_EINVAL, "begin_frame: frame is NULL");
    s->gen++;
    if (s->gen == 0) s->gen = 1;
    if (!s->frame_open) {
        if (!claim_slot(s) && !(reap_dead(s) && claim_slot(s))) {
            shmx_fetch_add64(&s->r.ext->overruns, 1);
            return shmx_fail(SHMX_EBUSY,
                             "begin_frame: all %u slots of '%s' are pinned by readers holding "
                             "frames; the frame was not started (use more slots than readers)",
                             s->r.slots, s->r.name);
        }
        s->frame_open = 1;
        /* A pin held by a reader that died (kill -9) would keep its slot out
         * of the ring forever: when we had to step over a pin, look for dead
         * readers (rate limited: each look costs a system call per reader). */
        if (s->skipped_pinned) {
            uint64_t now = shmx_plat_now_ns();
            if (now - s->last_reap_ns > REAP_AFTER_PIN_NS) reap_dead(s);
        }
    }
    /* An unpublished open frame is abandoned: its slot is reused as is. */
    s->used = s->user_used = s->tlv_count = 0;
    *frame = ((uint64_t)s->uid << 32) | s->gen;
    return SHMX_OK;
}

/* Write the framing of a stream that has passed every check (schema entry
 * idx, not yet in the open frame, `need` bytes with framing that fit the
 * slot) and return where its data goes. */
static uint8_t *place_stream(shmx_server *s, uint32_t idx, uint32_t stream_id, uint64_t bytes,
                             uint32_t elem_count, uint64_t need)
{
    uint8_t *p = shmx_slot_payload(&s->r, s->cur_slot) + s->used;
    shmx_tlv_head tlv = {SHMX_TLV_FRAME_STREAM, (uint32_t)(sizeof(shmx_frame_stream_head) + bytes)};
    shmx_frame_stream_head fs = {stream_id, elem_count, (uint32_t)bytes, 0};
    memcpy(p, &tlv, sizeof tlv);
    memcpy(p + sizeof tlv, &fs, sizeof fs);
    uint64_t head = sizeof tlv + sizeof fs;
    /* Zero the padding so identical frames are identical bytes. */
    memset(p + head + bytes, 0, (size_t)(need - head - bytes));
    s->appended[idx] = s->gen;
    s->used += (uint32_t)need;
    s->user_used += (uint32_t)bytes;
    s->tlv_count++;
    return p + head;
}

static shmx_status reserve_stream(shmx_server *s, uint64_t frame, uint32_t stream_id,
                                  uint64_t bytes, uint32_t elem_count, uint8_t **dst,
                                  const char *what)
{
    shmx_status st = check_frame(s, frame, what);
    if (st != SHMX_OK) return st;
    const shmx_schema_entry *e = shmx_schema_find(&s->schema, stream_id);
    if (!e) return shmx_fail(SHMX_ESTREAM, "%s: stream id %u is not in the schema of '%s'", what, stream_id, s->r.name);
    uint32_t idx = (uint32_t)(e - s->schema.e);
    if (s->appended[idx] == s->gen)
        return shmx_fail(SHMX_EDUP, "%s: stream %u ('%s') is already in this frame", what, stream_id, e->name);
    uint64_t want = (uint64_t)elem_count * e->info.bytes_per_elem;
    if (bytes != want)
        return shmx_fail(SHMX_ESIZE,
                         "%s: stream %u ('%s'): %llu bytes given, %u elements x %u bytes_per_elem = %llu",
                         what, stream_id, e->name, (unsigned long long)bytes, elem_count,
                         e->info.bytes_per_elem, (unsigned long long)want);
    /* The limit is the slot, not the running sum of user bytes: the slot holds
     * frame_bytes_cap plus SHMX_FRAMING_PER_STREAM per schema stream, and a few
     * small streams next to one that fills frame_bytes_cap (the documented 1.0.1
     * video example: 1920*1080*3 pixels + width + height, frame_bytes_cap =
     * 1920*1080*3) fit in the framing room the big one leaves.  Counting user
     * bytes strictly refused that example.  One stream over the cap never fits. */
    if (bytes > s->r.user_frame_cap)
        return shmx_fail(SHMX_ETOOBIG, "%s: stream %u ('%s') is %llu bytes, frame_bytes_cap is %u",
                         what, stream_id, e->name, (unsigned long long)bytes, s->r.user_frame_cap);
    uint64_t need = shmx_align64(sizeof(shmx_tlv_head) + sizeof(shmx_frame_stream_head) + bytes, SHMX_TLV_ALIGN);
    if (need > (uint64_t)s->r.slot_payload_cap - s->used)
        return shmx_fail(SHMX_ETOOBIG,
                         "%s: stream %u ('%s'): the frame would hold %llu bytes of data, more than "
                         "frame_bytes_cap %u and its framing room allow",
                         what, stream_id, e->name, (unsigned long long)(s->user_used + bytes),
                         s->r.user_frame_cap);
    *dst = place_stream(s, idx, stream_id, bytes, elem_count, need);
    return SHMX_OK;
}

shmx_status shmx_server_append(shmx_server *s, uint64_t frame, uint32_t stream_id,
                               const void *data, uint64_t bytes, uint32_t elem_count)
{
    if (!data && bytes) return shmx_fail(SHMX_EINVAL, "append: data is NULL");
    uint8_t *dst;
    shmx_status st = reserve_stream(s, frame, stream_id, bytes, elem_count, &dst, "append_stream");
    if (st == SHMX_OK && bytes) memcpy(dst, data, (size_t)bytes);
    return st;
}

shmx_status shmx_server_loan(shmx_server *s, uint64_t frame, uint32_t stream_id,
                             uint32_t elem_count, void **data)
{
    if (!data) return shmx_fail(SHMX_EINVAL, "loan: data is NULL");
    *data = NULL;
    const shmx_schema_entry *e = s ? shmx_schema_find(&s->schema, stream_id) : NULL;
    uint64_t bytes = e ? (uint64_t)elem_count * e->info.bytes_per_elem : 0;
    uint8_t *dst;
    shmx_status st = reserve_stream(s, frame, stream_id, bytes, elem_count, &dst, "loan");
    if (st == SHMX_OK) *data = dst;
    return st;
}

shmx_status shmx_server_publish_stream(shmx_server *s, uint32_t stream_id, const void *data,
                                      uint64_t bytes, double sim_time)
{
    shmx_status st = check_open(s, "publish_stream");
    if (st != SHMX_OK) return st;
    /* Refuse bad input before a slot is claimed: claiming one gives up the
     * oldest published frame. */
    if (!data && bytes) return shmx_fail(SHMX_EINVAL, "publish_stream: data is NULL");
    const shmx_schema_entry *e = shmx_schema_find(&s->schema, stream_id);
    if (!e)
        return shmx_fail(SHMX_ESTREAM, "publish_stream: stream id %u is not in the schema of '%s'", stream_id,
                         s->r.name);
    uint32_t bpe = e->info.bytes_per_elem;
    if (bpe == 0 || bytes % bpe)
        return shmx_fail(SHMX_ESIZE, "publish_stream: stream %u ('%s'): %llu bytes is not a whole number of "
                         "%u-byte elements", stream_id, e->name, (unsigned long long)bytes, bpe);
    if (bytes > s->r.user_frame_cap ||
        shmx_align64(sizeof(shmx_tlv_head) + sizeof(shmx_frame_stream_head) + bytes, SHMX_TLV_ALIGN) >
            s->r.slot_payload_cap)
        return shmx_fail(SHMX_ETOOBIG, "publish_stream: stream %u ('%s') is %llu bytes, frame_bytes_cap is %u",
                         stream_id, e->name, (unsigned long long)bytes, s->r.user_frame_cap);
    uint64_t frame;
    st = shmx_server_begin_frame(s, &frame);
    if (st == SHMX_OK) st = shmx_server_append(s, frame, stream_id, data, bytes, (uint32_t)(bytes / bpe));
    if (st == SHMX_OK) st = shmx_server_publish(s, frame, sim_time);
    return st;
}

/* The streams whose schema entries publish_streams keeps from its check
 * pass (the rest find theirs again through append). */
#define PUBLISH_STREAMS_FAST 16

shmx_status shmx_server_publish_streams(shmx_server *s, const shmx_stream_data *streams, uint32_t count,
                                       double sim_time)
{
    shmx_status st = check_open(s, "publish");
    if (st != SHMX_OK) return st;
    if (count && !streams) return shmx_fail(SHMX_EINVAL, "publish: streams is NULL");
    /* Refuse bad input before a slot is claimed: claiming one gives up the
     * oldest published frame. */
    uint64_t need = 0;
    uint32_t found[PUBLISH_STREAMS_FAST];
    for (uint32_t i = 0; i < count; i++) {
        const shmx_stream_data *d = &streams[i];
        const shmx_schema_entry *e = shmx_schema_find(&s->schema, d->stream_id);
        if (!e)
            return shmx_fail(SHMX_ESTREAM, "publish: stream %u (id %u) is not in the schema of '%s'", i,
                             d->stream_id, s->r.name);
        for (uint32_t j = 0; j < i; j++) /* a frame holds a few streams: a scan is cheapest */
            if (streams[j].stream_id == d->stream_id)
                return shmx_fail(SHMX_EDUP, "publish: stream '%s' (id %u) is given twice", e->name, d->stream_id);
        uint32_t bpe = e->info.bytes_per_elem;
        st = SHMX_OK;
        if (!d->data && d->bytes)
            st = shmx_fail(SHMX_EINVAL, "publish: stream '%s' (id %u): data is NULL", e->name, d->stream_id);
        else if (bpe == 0 || d->bytes % bpe)
            st = shmx_fail(SHMX_ESIZE, "publish: stream '%s' (id %u): %llu bytes is not a whole number of %u-byte "
                           "elements", e->name, d->stream_id, (unsigned long long)d->bytes, bpe);
        else if (d->bytes > s->r.user_frame_cap || d->bytes / bpe > UINT32_MAX)
            st = shmx_fail(SHMX_ETOOBIG, "publish: stream '%s' (id %u) is %llu bytes, frame_bytes_cap is %u",
                           e->name, d->stream_id, (unsigned long long)d->bytes, s->r.user_frame_cap);
        need += shmx_align64(sizeof(shmx_tlv_head) + sizeof(shmx_frame_stream_head) + d->bytes, SHMX_TLV_ALIGN);
        if (st == SHMX_OK && need > s->r.slot_payload_cap)
            st = shmx_fail(SHMX_ETOOBIG, "publish: with stream '%s' (id %u) the frame would hold %llu bytes with "
                           "its framing, the slot holds %u", e->name, d->stream_id, (unsigned long long)need,
                           s->r.slot_payload_cap);
        if (st != SHMX_OK) return st;
        if (i < PUBLISH_STREAMS_FAST) found[i] = (uint32_t)(e - s->schema.e);
    }
    uint64_t frame;
    st = shmx_server_begin_frame(s, &frame);
    if (st != SHMX_OK) return st;
    /* A frame begun before this call may hold streams already: then each
     * append checks again, as it does past the first PUBLISH_STREAMS_FAST. */
    const int fresh = s->used == 0 && s->tlv_count == 0;
    for (uint32_t i = 0; i < count && st == SHMX_OK; i++) {
        const shmx_stream_data *d = &streams[i];
        if (!fresh || i >= PUBLISH_STREAMS_FAST) {
            const shmx_schema_entry *e = shmx_schema_find(&s->schema, d->stream_id);
            st = shmx_server_append(s, frame, d->stream_id, d->data, d->bytes,
                                    (uint32_t)(d->bytes / e->info.bytes_per_elem));
            continue;
        }
        /* Checked above against this frame, empty but for the streams
         * placed in this loop: the entries are distinct, and the framed
         * sizes together fit the slot. */
        const shmx_schema_entry *e = &s->schema.e[found[i]];
        uint64_t framed = shmx_align64(sizeof(shmx_tlv_head) + sizeof(shmx_frame_stream_head) + d->bytes,
                                       SHMX_TLV_ALIGN);
        uint8_t *dst = place_stream(s, found[i], d->stream_id, d->bytes,
                                    (uint32_t)(d->bytes / e->info.bytes_per_elem), framed);
        if (d->bytes) memcpy(dst, d->data, (size_t)d->bytes);
    }
    if (st == SHMX_OK) st = shmx_server_publish(s, frame, sim_time);
    return st;
}

static int legacy_readers_attached(shmx_server *s)
{
    uint32_t rc = shmx_load_relaxed32(&s->r.gh->readers_connected);
    if (rc != s->seen_connected || (s->publishes & 255u) == 0) {
        s->seen_connected = rc;
        s->legacy_attached = 0;
        for (uint32_t i = 0; i < s->r.reader_slots; i++) {
            shmx_reader_slot *rs = shmx_reader_at(&s->r, i);
            if (shmx_load_acquire32(&rs->in_use) && rs->mark != SHMX_READER_MARK) {
                s->legacy_attached = 1;
                break;
            }
        }
    }
    return s->legacy_attached;
}

shmx_status shmx_server_publish(shmx_server *s, uint64_t frame, double sim_time)
{
    shmx_status st = check_frame(s, frame, "publish_frame");
    if (st != SHMX_OK) return st;
    shmx_region *r = &s->r;
    shmx_frame_header *fh = shmx_slot_header(r, s->cur_slot);
    uint8_t *payload = shmx_slot_payload(r, s->cur_slot);
    s->publishes++;
    fh->session_id_copy = r->session_id;
    fh->sim_time = sim_time;
    fh->payload_bytes = s->used;
    fh->tlv_count = s->tlv_count;
    int sum = s->checksum_policy == SHMX_CHECKSUM_ALWAYS ||
              (s->checksum_policy == SHMX_CHECKSUM_AUTO && legacy_readers_attached(s));
    fh->checksum = sum ? shmx_checksum32(payload, s->used) : 0;
    uint64_t fid = ++s->frame_seq;
    s->slot_fid[s->cur_slot] = fid;
    shmx_store_relaxed64(&fh->frame_id, fid);
    shmx_slot_complete(r, s->cur_slot, s->cur_seq + 1);
    /* write_index w names slot (w-1) % slots, as shmx 1.0.1 readers expect;
     * it is never 0 (0 means "no frame yet"). */
    uint32_t n = r->slots, slot = s->cur_slot;
    uint32_t delta = (slot + n - (s->write_index ? (s->write_index - 1u) % n : n - 1u)) % n;
    uint32_t w = s->write_index + (delta ? delta : n);
    if (w < s->write_index || w == 0) w = slot + 1u;
    s->write_index = w;
    /* Pairs with the acquire load of write_index in every reader. */
    shmx_store_release32(&r->gh->write_index, w);
    shmx_store_relaxed32(&r->gh->reserve_index, w);
    /* frame_seq last, pairing with the acquire loads of it in our readers:
     * one that sees frame fid also sees write_index name its slot, so it
     * pins that slot at once instead of scanning for the frame. */
    shmx_store_release64(&r->gh->frame_seq, fid);
    s->last_slot = slot;
    s->frame_open = 0;
    s->gen++;
    if (s->gen == 0) s->gen = 1;
    shmx_ext_header *ext = r->ext;
    /* Replace the futex word by the next even value (seq_cst RMW; its
     * release orders the frame before it).  Bit 0 of the old value says a
     * reader set it before sleeping (shmx_client_wait): only then is
     * there a system call, once per sleep, not once per frame. */
    if (next_futex_word(s) & 1u) shmx_plat_wake_all(&ext->frame_futex);
    /* seq_cst load after the seq_cst exchange above: pairs with a reader
     * arming its wake fd (wakefd.c).  No system call unless one did. */
    if (s->wake && shmx_load_seqcst64(&ext->wake_armed)) shmx_wake_publish(s->wake, r);
    if ((s->publishes & 63u) == 0) {
        uint64_t now = shmx_plat_now_ns();
        shmx_store_relaxed64(&ext->owner_heartbeat, now);
        if (now - s->last_reap_ns > 500000000ull) reap_dead(s);
    }
    return SHMX_OK;
}

/* The mirror's publish: frame_id becomes the next id, so frame_seq (and
 * every id-based choice: warm slots, read_next's gap count) sees ids with
 * gaps, which they handle as frames already gone. */
shmx_status shmx_server_publish_as(shmx_server *s, uint64_t frame, double sim_time, uint64_t frame_id)
{
    shmx_status st = check_frame(s, frame, "publish_as");
    if (st != SHMX_OK) return st;
    if (frame_id <= s->frame_seq)
        return shmx_fail(SHMX_EINVAL, "publish_as: frame id %llu is not after the last published frame %llu of '%s'",
                         (unsigned long long)frame_id, (unsigned long long)s->frame_seq, s->r.name);
    const uint64_t last = s->frame_seq;
    s->frame_seq = frame_id - 1u;
    st = shmx_server_publish(s, frame, sim_time);
    if (st != SHMX_OK) s->frame_seq = last;
    return st;
}

shmx_status shmx_server_write_static(shmx_server *s, const void *data, uint32_t bytes)
{
    shmx_status st = check_open(s, "write_static_append");
    if (st != SHMX_OK) return st;
    if (bytes == 0) return SHMX_OK;
    if (!data) return shmx_fail(SHMX_EINVAL, "write_static_append: data is NULL");
    /* Our own length, never the region's static_bytes_used: anyone can
     * write that, and it would aim this copy anywhere. */
    uint32_t used = s->static_used;
    if (bytes > s->r.static_cap - used)
        return shmx_fail(SHMX_ETOOBIG, "write_static_append: %u bytes do not fit, %u of %u used", bytes, used,
                         s->r.static_cap);
    memcpy(s->static_priv + used, data, bytes);
    s->static_used = used + bytes;
    shmx_global_header *gh = s->r.gh;
    uint8_t *base = s->r.map.base + s->r.static_offset;
    /* Rewrite the whole directory from our copy, so a reader also gets
     * back what a hostile writer changed before it. */
    memcpy(base, s->static_priv, s->static_used);
    /* The directory bytes are visible before the new length; pairs with
     * the acquire load of static_bytes_used in shmx_schema_read. */
    shmx_store_release32(&gh->static_bytes_used, s->static_used);
    gh->static_hash = shmx_fnv1a64(s->static_priv, s->static_used);
    /* Pairs with the acquire/compare of static_gen in shmx_schema_read. */
    shmx_fetch_add32(&gh->static_gen, 1);
    /* A valid appended stream descriptor extends the schema.  The parse
     * reads our copy, which only ever grows, so it never loses a stream. */
    shmx_schema fresh;
    memset(&fresh, 0, sizeof fresh);
    if (shmx_schema_parse(s->static_priv, s->static_used, &fresh) == SHMX_OK && fresh.count > s->schema.count) {
        uint32_t *na = calloc(fresh.count, sizeof *na);
        if (na) {
            memcpy(na, s->appended, s->schema.count * sizeof *na);
            free(s->appended);
            s->appended = na;
            shmx_schema_free(&s->schema);
            s->schema = fresh;
            return SHMX_OK;
        }
    }
    shmx_schema_free(&fresh);
    return SHMX_OK;
}

/* ----------------------------------------------------------------- control */

static int ring_has_data(const shmx_server *s, uint32_t i) { return shmx_ring_has_data(&s->r, i, s->ctl_read[i]); }

static int ring_has_data_ctx(const void *server, uint32_t i) { return ring_has_data(server, i); }

shmx_status shmx_server_next_control(shmx_server *s, shmx_control_msg *msg, void *buf, uint32_t buf_cap)
{
    shmx_status st = check_open(s, "poll_control");
    if (st != SHMX_OK) return st;
    if (!msg) return shmx_fail(SHMX_EINVAL, "poll_control: msg is NULL");
    shmx_region *r = &s->r;
    if (r->control_per_reader == 0) return SHMX_EAGAIN;
    for (uint32_t k = 0; k < r->reader_slots; k++) {
        uint32_t i = (s->ctl_cursor + k) % r->reader_slots;
        st = shmx_ring_take(r, i, &s->ctl_read[i], msg, buf, buf_cap);
        if (st == SHMX_EAGAIN) continue;
        if (st == SHMX_OK) s->ctl_cursor = (i + 1) % r->reader_slots;
        return st;
    }
    return SHMX_EAGAIN;
}

shmx_status shmx_server_wait_control(shmx_server *s, int64_t timeout_ns)
{
    shmx_status st = check_open(s, "wait_control");
    if (st != SHMX_OK) return st;
    shmx_region *r = &s->r;
    if (r->control_per_reader == 0) return shmx_fail(SHMX_EINVAL, "wait_control: the region has no control rings");
    shmx_ext_header *ext = r->ext;
    uint64_t deadline = timeout_ns < 0 ? UINT64_MAX : shmx_plat_now_ns() + (uint64_t)timeout_ns;
    for (;;) {
        uint32_t word = shmx_load_acquire32(&ext->control_futex);
        for (uint32_t i = 0; i < r->reader_slots; i++)
            if (ring_has_data(s, i)) return SHMX_OK;
        uint64_t now = shmx_plat_now_ns();
        if (now >= deadline) return SHMX_ETIMEDOUT;
        uint64_t left = deadline - now;
        /* shmx 1.0.1 clients never bump the futex word: look again often. */
        if (legacy_readers_attached(s) && left > 5000000u) left = 5000000u;
        /* Announce ourselves (seq_cst RMW) before sleeping; pairs with the
         * client's seq_cst bump of control_futex then load of waiters. */
        shmx_fetch_add32(&ext->control_waiters, 1);
        int has = 0;
        for (uint32_t i = 0; i < r->reader_slots && !has; i++) has = ring_has_data(s, i);
        if (!has) shmx_plat_wait(&ext->control_futex, word, (int64_t)(left > INT64_MAX ? INT64_MAX : left));
        shmx_fetch_sub32(&ext->control_waiters, 1);
        if (has) return SHMX_OK;
    }
}

/* ----------------------------------------------------------------- readers */

static uint32_t reap_dead(shmx_server *s)
{
    uint32_t n = 0;
    s->last_reap_ns = shmx_plat_now_ns();
    for (uint32_t i = 0; i < s->r.reader_slots; i++) n += (uint32_t)shmx_reader_reclaim(&s->r, i);
    return n;
}

shmx_status shmx_server_readers(shmx_server *s, shmx_reader_info *out, uint32_t cap, uint32_t *count)
{
    shmx_status st = check_open(s, "snapshot_readers");
    if (st != SHMX_OK) return st;
    return shmx_readers_list(&s->r, out, cap, count);
}

shmx_status shmx_server_reap_dead_readers(shmx_server *s, uint32_t *reaped)
{
    shmx_status st = check_open(s, "reap_dead_readers");
    if (st != SHMX_OK) return st;
    uint32_t n = reap_dead(s);
    if (reaped) *reaped = n;
    return SHMX_OK;
}

shmx_status shmx_server_reap_stale_readers(shmx_server *s, uint64_t now_ns, uint64_t timeout_ns, uint32_t *reaped)
{
    shmx_status st = check_open(s, "reap_stale_readers");
    if (st != SHMX_OK) return st;
    uint32_t n = reap_dead(s);
    for (uint32_t i = 0; i < s->r.reader_slots; i++) n += (uint32_t)shmx_reader_evict(&s->r, i, now_ns, timeout_ns);
    if (reaped) *reaped = n;
    return SHMX_OK;
}

shmx_status shmx_server_header_info(shmx_server *s, shmx_header_info *out)
{
    if (!s || !out) return shmx_fail(SHMX_EINVAL, "header_info: NULL argument");
    if (!s->r.map.base) return shmx_fail(SHMX_ECLOSED, "header_info: server '%s' was destroyed", s->r.name);
    shmx_header_info info;
    shmx_header_fill(&s->r, &info);
    info.owner_alive = s->closed ? SHMX_DEAD : SHMX_ALIVE; /* our own lock: we know */
    SHMX_COPY_OUT(out, &info);
    return SHMX_OK;
}

uint32_t shmx_server_stream_count(shmx_server *s) { return s ? s->schema.count : 0; }

shmx_status shmx_server_stream_info(shmx_server *s, uint32_t index, shmx_stream_info *out)
{
    if (!s) return shmx_fail(SHMX_EINVAL, "stream_info: server is NULL");
    return shmx_schema_info(&s->schema, index, out);
}

void *shmx_server_base(shmx_server *s) { return s ? s->r.map.base : NULL; }
uint64_t shmx_server_size(shmx_server *s) { return s && s->r.map.base ? s->r.map.size : 0; }

/* ------------------------------------------------------- event-loop fds */

shmx_status shmx_server_control_fd(shmx_server *s, int *fd)
{
    shmx_status st = check_open(s, "control_fd");
    if (st != SHMX_OK) return st;
    if (!fd) return shmx_fail(SHMX_EINVAL, "control_fd: fd is NULL");
    return shmx_wake_server_fd(s->wake, fd);
}

shmx_status shmx_server_arm_control_fd(shmx_server *s)
{
    shmx_status st = check_open(s, "arm_control_fd");
    if (st != SHMX_OK) return st;
    if (s->r.control_per_reader == 0)
        return shmx_fail(SHMX_EINVAL, "arm_control_fd: the region has no control rings");
    return shmx_wake_server_arm(s->wake, &s->r, ring_has_data_ctx, s);
}
