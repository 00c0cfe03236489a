/* region.c - open and validate a region; static directory; frame decoding;
 * reader slots.  Used by the server, the client and the inspector. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>

#define MAX_READER_SLOTS_ANY 4096u /* legacy regions; ours are <= 64 */
#define MAX_SLOTS_ANY 65536u       /* what shmx_server_create accepts */
#define MAX_SCHEMA_STREAMS 65536u  /* a directory claiming more is hostile */

shmx_status shmx_region_open(shmx_region *r, const char *name, const shmx_open_options *opt,
                             int writable)
{
    memset(r, 0, sizeof *r);
    r->map.fd = -1;
    shmx_status st = shmx_check_name(name);
    if (st != SHMX_OK) return st;
    if (name[0] == '/') name++;
    const char *dir = NULL;
    if (opt && opt->struct_size >= offsetof(shmx_open_options, dir) + sizeof(opt->dir)) dir = opt->dir;
    snprintf(r->name, sizeof r->name, "%s", name);
    if (dir) snprintf(r->dir, sizeof r->dir, "%s", dir);
    st = shmx_plat_path(dir, name, r->path, sizeof r->path);
    if (st != SHMX_OK) return st;
    st = shmx_plat_open(r->path, writable, &r->map);
    if (st != SHMX_OK) return st;
    st = shmx_region_validate(r);
    if (st != SHMX_OK) shmx_region_close(r);
    return st;
}

void shmx_region_close(shmx_region *r)
{
    shmx_plat_close(&r->map);
    r->gh = NULL;
    r->ext = NULL;
}

#define BAD(...) shmx_fail(SHMX_ECORRUPT, __VA_ARGS__)

static int area_fits(uint64_t off, uint64_t count, uint64_t stride, uint64_t size)
{
    return off <= size && count * stride <= size - off;
}

shmx_status shmx_region_validate(shmx_region *r)
{
    const uint64_t size = r->map.size;
    shmx_global_header *gh = (shmx_global_header *)r->map.base;
    /* magic is stored last by a creating server (release); pairs with this
     * acquire so a fully initialised header is seen. */
    uint64_t magic = shmx_load_acquire64(&gh->magic);
    if (magic != SHMX_MAGIC)
        return BAD("'%s' is not a shmx region (magic 0x%016llx)", r->path,
                   (unsigned long long)magic);
    if (gh->endianness != SHMX_ENDIAN_TAG)
        return BAD("'%s' has endianness tag 0x%08x", r->path, gh->endianness);
    if (gh->ver_major != SHMX_LAYOUT_MAJOR)
        return shmx_fail(SHMX_EVERSION, "'%s' has layout v%u.%u, this library reads v2.x", r->path,
                         gh->ver_major, gh->ver_minor);
    shmx_region g = *r;
    g.session_id = gh->session_id;
    g.static_offset = gh->static_offset;
    g.static_cap = gh->static_bytes_cap;
    g.slots = gh->slots;
    g.slot_stride = gh->slot_stride;
    g.slots_offset = gh->slots_offset;
    g.slot_payload_cap = gh->frame_bytes_cap;
    g.reader_slots = gh->reader_slots;
    g.reader_stride = gh->reader_slot_stride;
    g.readers_offset = gh->readers_offset;
    g.control_offset = gh->control_offset;
    g.control_per_reader = gh->control_per_reader;
    g.control_stride = gh->control_stride;

    if (g.slots == 0) return BAD("'%s' has 0 frame slots", r->path);
    /* Readers scan every slot on each read: a huge count would only be
     * a way to make them spin. */
    if (g.slots > MAX_SLOTS_ANY) return BAD("'%s' has %u frame slots", r->path, g.slots);
    if (g.slot_payload_cap == 0) return BAD("'%s' has frame_bytes_cap 0", r->path);
    if ((uint64_t)g.slot_stride < SHMX_FRAME_HEADER_BYTES + (uint64_t)g.slot_payload_cap)
        return BAD("'%s': slot_stride %u cannot hold frame_bytes_cap %u", r->path, g.slot_stride,
                   g.slot_payload_cap);
    if ((g.slot_stride | g.slots_offset | g.readers_offset | g.reader_stride | g.static_offset |
         g.control_offset | g.control_stride) & 7u)
        return BAD("'%s': an area offset or stride is not 8-byte aligned", r->path);
    /* Readers write their slot, clients their ring, the producer its
     * frames: none of them may land on the header everyone reads. */
    if (g.slots_offset < sizeof(shmx_global_header) ||
        (g.reader_slots && g.readers_offset < sizeof(shmx_global_header)) ||
        (g.control_per_reader && g.reader_slots && g.control_offset < sizeof(shmx_global_header)))
        return BAD("'%s': an area overlaps the header", r->path);
    if (!area_fits(g.slots_offset, g.slots, g.slot_stride, size))
        return BAD("'%s': %u slots of %u bytes at %u exceed the %llu-byte region", r->path,
                   g.slots, g.slot_stride, g.slots_offset, (unsigned long long)size);
    if (g.static_offset < sizeof(shmx_global_header) ||
        !area_fits(g.static_offset, 1, g.static_cap, size))
        return BAD("'%s': static directory at %u (%u bytes) is outside the region", r->path,
                   g.static_offset, g.static_cap);
    if (g.reader_slots > MAX_READER_SLOTS_ANY)
        return BAD("'%s': %u reader slots", r->path, g.reader_slots);
    if (g.reader_slots && (g.reader_stride < sizeof(shmx_reader_slot) ||
                           !area_fits(g.readers_offset, g.reader_slots, g.reader_stride, size)))
        return BAD("'%s': reader slots are outside the region", r->path);
    if (g.control_per_reader) {
        if (g.control_per_reader < 32 || g.control_stride < g.control_per_reader ||
            !area_fits(g.control_offset, g.reader_slots, g.control_stride, size))
            return BAD("'%s': control rings are outside the region", r->path);
    }
    g.gh = gh;
    g.ext = NULL;
    g.user_frame_cap = g.slot_payload_cap;
    if (g.static_offset >= SHMX_MIN_STATIC_OFFSET) {
        shmx_ext_header *ext = (shmx_ext_header *)(r->map.base + SHMX_EXT_OFFSET);
        if (ext->magic == SHMX_EXT_MAGIC && ext->version == SHMX_EXT_VERSION) {
            if (g.reader_slots > SHMX_MAX_READER_SLOTS)
                return BAD("'%s': %u reader slots, a shmx region has at most %d", r->path,
                           g.reader_slots, SHMX_MAX_READER_SLOTS);
            /* Nothing may overlap the extension block we are about to use. */
            if (g.slots_offset < SHMX_MIN_STATIC_OFFSET ||
                (g.reader_slots && g.readers_offset < SHMX_MIN_STATIC_OFFSET) ||
                (g.control_per_reader && g.reader_slots && g.control_offset < SHMX_MIN_STATIC_OFFSET))
                return BAD("'%s': an area overlaps the header", r->path);
            g.ext = ext;
            uint32_t ucap = ext->user_frame_cap;
            if (ucap && ucap <= g.slot_payload_cap) g.user_frame_cap = ucap;
        }
    }
    *r = g;
    return SHMX_OK;
}

/* ------------------------------------------------------- static directory */

void shmx_schema_free(shmx_schema *s)
{
    for (uint32_t i = 0; i < s->count; i++) {
        free(s->e[i].name);
        free(s->e[i].extra);
    }
    free(s->e);
    memset(s, 0, sizeof *s);
}

static shmx_status schema_parse(const uint8_t *cur, const uint8_t *end, shmx_schema *out)
{
    uint32_t cap = 0;
    while ((size_t)(end - cur) >= sizeof(shmx_tlv_head)) {
        shmx_tlv_head tlv;
        memcpy(&tlv, cur, sizeof tlv);
        size_t avail = (size_t)(end - cur) - sizeof tlv;
        if (tlv.length > avail) break; /* truncated or appended raw bytes */
        if (tlv.type == SHMX_TLV_STATIC_DIR) {
            shmx_static_desc d;
            if (tlv.length < sizeof d) break;
            memcpy(&d, cur + sizeof tlv, sizeof d);
            if ((uint64_t)d.name_len + d.extra_len > tlv.length - sizeof d) break;
            if (out->count >= MAX_SCHEMA_STREAMS)
                return shmx_fail(SHMX_ECORRUPT, "the static directory holds more than %u streams",
                                 MAX_SCHEMA_STREAMS);
            if (out->count == cap) {
                uint32_t ncap = cap ? cap * 2 : 8;
                shmx_schema_entry *ne = realloc(out->e, ncap * sizeof *ne);
                if (!ne) return shmx_fail(SHMX_ENOMEM, "out of memory reading the schema");
                out->e = ne;
                cap = ncap;
            }
            shmx_schema_entry *e = &out->e[out->count];
            memset(e, 0, sizeof *e);
            const uint8_t *pname = cur + sizeof tlv + sizeof d;
            e->name = malloc((size_t)d.name_len + 1);
            e->extra = malloc(d.extra_len ? d.extra_len : 1);
            if (!e->name || !e->extra) {
                free(e->name);
                free(e->extra);
                return shmx_fail(SHMX_ENOMEM, "out of memory reading the schema");
            }
            memcpy(e->name, pname, d.name_len);
            e->name[d.name_len] = 0;
            memcpy(e->extra, pname + d.name_len, d.extra_len);
            e->info.struct_size = (uint32_t)sizeof e->info;
            e->info.stream_id = d.stream_id;
            e->info.dtype = d.element_type;
            e->info.components = d.components;
            e->info.layout = d.layout;
            e->info.bytes_per_elem = d.bytes_per_elem;
            e->info.name_len = d.name_len;
            e->info.extra_len = d.extra_len;
            e->info.name = e->name;
            e->info.extra = e->extra;
            out->count++;
        }
        uint64_t step = shmx_align64(sizeof tlv + (uint64_t)tlv.length, SHMX_TLV_ALIGN);
        if (step >= (uint64_t)(end - cur)) break;
        cur += step;
    }
    return SHMX_OK;
}

shmx_status shmx_schema_parse(const uint8_t *bytes, uint32_t used, shmx_schema *out)
{
    shmx_schema s;
    memset(&s, 0, sizeof s);
    shmx_status st = schema_parse(bytes, bytes + used, &s);
    if (st != SHMX_OK) {
        shmx_schema_free(&s);
        return st;
    }
    s.hash = shmx_fnv1a64(bytes, used);
    shmx_schema_free(out);
    *out = s;
    return SHMX_OK;
}

shmx_status shmx_schema_read(const shmx_region *r, shmx_schema *out)
{
    shmx_global_header *gh = r->gh;
    for (int attempt = 0; attempt < 64; attempt++) {
        shmx_schema s;
        memset(&s, 0, sizeof s);
        /* static_gen is bumped (release) after every static write; equal
         * values around the parse mean it saw one consistent directory. */
        uint32_t g1 = shmx_load_acquire32(&gh->static_gen);
        uint32_t used = shmx_load_acquire32(&gh->static_bytes_used);
        if (used > r->static_cap) used = r->static_cap;
        const uint8_t *base = r->map.base + r->static_offset;
        shmx_status st = schema_parse(base, base + used, &s);
        if (st != SHMX_OK) {
            shmx_schema_free(&s);
            return st;
        }
        s.hash = gh->static_hash;
        shmx_fence_acquire();
        uint32_t g2 = shmx_load_relaxed32(&gh->static_gen);
        if (g1 == g2) {
            s.gen = g1;
            shmx_schema_free(out);
            *out = s;
            return SHMX_OK;
        }
        shmx_schema_free(&s);
    }
    return shmx_fail(SHMX_EAGAIN, "'%s': the static directory kept changing", r->path);
}

shmx_status shmx_static_copy(const shmx_region *r, void *buf, uint32_t cap, uint32_t *bytes)
{
    shmx_global_header *gh = r->gh;
    for (int attempt = 0; attempt < 64; attempt++) {
        /* As in shmx_schema_read: equal static_gen around the copy means
         * no write_static_append ran meanwhile (acquire pairs with its
         * release increment; the fence keeps the copy before the re-load). */
        uint32_t g1 = shmx_load_acquire32(&gh->static_gen);
        uint32_t used = shmx_load_acquire32(&gh->static_bytes_used);
        if (used > r->static_cap) used = r->static_cap;
        *bytes = used;
        if (used > cap || (used && !buf))
            return shmx_fail(SHMX_ETOOBIG, "copy_static: the static directory of '%s' is %u bytes, the buffer %u",
                             r->name, used, cap);
        if (used) memcpy(buf, r->map.base + r->static_offset, used);
        shmx_fence_acquire();
        if (shmx_load_relaxed32(&gh->static_gen) == g1) return SHMX_OK;
    }
    return shmx_fail(SHMX_EAGAIN, "copy_static: the static directory of '%s' kept changing", r->name);
}

shmx_status shmx_schema_info(const shmx_schema *s, uint32_t index, shmx_stream_info *out)
{
    if (!out) return shmx_fail(SHMX_EINVAL, "stream info: out is NULL");
    if (index >= s->count)
        return shmx_fail(SHMX_EINVAL, "stream index %u out of range (%u streams)", index, s->count);
    SHMX_COPY_OUT(out, &s->e[index].info);
    return SHMX_OK;
}

const shmx_schema_entry *shmx_schema_find(const shmx_schema *s, uint32_t stream_id)
{
    for (uint32_t i = 0; i < s->count; i++)
        if (s->e[i].info.stream_id == stream_id) return &s->e[i];
    return NULL;
}

/* ---------------------------------------------------------- frame decoding */

/* The TLV walk of a payload at base + payload_off (a region, or a copy of
 * a payload); offsets in the views are from base. */
static shmx_status decode_tlvs(const uint8_t *base, uint64_t payload_off, uint32_t bytes, shmx_decoded *out,
                               uint64_t *next_layout_id)
{
    const uint8_t *p = base + payload_off;
    uint32_t off = 0, n = 0;
    int same = (out->payload_bytes == bytes);
    while (bytes - off >= sizeof(shmx_tlv_head)) {
        shmx_tlv_head tlv;
        memcpy(&tlv, p + off, sizeof tlv);
        uint32_t avail = bytes - off - (uint32_t)sizeof tlv;
        if (tlv.length > avail)
            return shmx_fail(SHMX_ECORRUPT, "frame TLV at %u claims %u bytes, %u left", off,
                             tlv.length, avail);
        if (tlv.type == SHMX_TLV_FRAME_STREAM) {
            shmx_frame_stream_head fs;
            if (tlv.length < sizeof fs)
                return shmx_fail(SHMX_ECORRUPT, "frame stream TLV at %u is %u bytes", off,
                                 tlv.length);
            memcpy(&fs, p + off + sizeof tlv, sizeof fs);
            if (fs.bytes_payload > tlv.length - sizeof fs)
                return shmx_fail(SHMX_ECORRUPT, "stream %u claims %u bytes in a %u-byte TLV",
                                 fs.stream_id, fs.bytes_payload, tlv.length);
            if (n == out->cap) {
                uint32_t ncap = out->cap ? out->cap * 2 : 8;
                shmx_stream_view *nv = realloc(out->v, ncap * sizeof *nv);
                if (!nv) return shmx_fail(SHMX_ENOMEM, "out of memory decoding a frame");
                out->v = nv;
                out->cap = ncap;
                same = 0;
            }
            shmx_stream_view *v = &out->v[n];
            uint64_t data_off = payload_off + off + sizeof tlv + sizeof fs;
            if (same && n < out->count &&
                (v->stream_id != fs.stream_id || v->elem_count != fs.elem_count ||
                 v->bytes != fs.bytes_payload || v->offset != data_off))
                same = 0;
            v->struct_size = (uint32_t)sizeof *v;
            v->stream_id = fs.stream_id;
            v->elem_count = fs.elem_count;
            v->bytes = fs.bytes_payload;
            v->offset = data_off;
            v->data = base + data_off;
            n++;
        }
        uint64_t step = shmx_align64((uint64_t)sizeof tlv + tlv.length, SHMX_TLV_ALIGN);
        if (step >= (uint64_t)(bytes - off)) break;
        off += (uint32_t)step;
    }
    if (n != out->count) same = 0;
    out->count = n;
    out->payload_bytes = bytes;
    if (!same || out->layout_id == 0) out->layout_id = ++*next_layout_id;
    return SHMX_OK;
}

shmx_status shmx_decode_payload(const shmx_region *r, uint64_t payload_off, uint32_t bytes,
                                shmx_decoded *out, uint64_t *next_layout_id)
{
    return decode_tlvs(r->map.base, payload_off, bytes, out, next_layout_id);
}

shmx_status shmx_frame_streams(const void *payload, uint32_t bytes, shmx_stream_view *out, uint32_t cap,
                               uint32_t *count)
{
    if (!count || (bytes && !payload) || (cap && !out))
        return shmx_fail(SHMX_EINVAL, "frame_streams: NULL argument");
    shmx_decoded d;
    memset(&d, 0, sizeof d);
    uint64_t layout = 0;
    shmx_status st = decode_tlvs((const uint8_t *)payload, 0, bytes, &d, &layout);
    if (st == SHMX_OK) {
        for (uint32_t i = 0; i < d.count && i < cap; i++) SHMX_COPY_OUT(&out[i], &d.v[i]);
        *count = d.count;
    }
    free(d.v);
    return st;
}

/* ------------------------------------------------------------ info, readers */

uint32_t shmx_server_liveness(const shmx_region *r)
{
    if (!r->ext) return SHMX_UNKNOWN;
    if (shmx_load_acquire32(&r->ext->closed)) return SHMX_DEAD;
    return shmx_plat_lock_probe(r->map.fd, SHMX_LOCK_SERVER);
}

void shmx_header_fill(const shmx_region *r, shmx_header_info *info)
{
    const shmx_global_header *gh = r->gh;
    memset(info, 0, sizeof *info);
    info->struct_size = (uint32_t)sizeof *info;
    info->version_major = gh->ver_major;
    info->version_minor = gh->ver_minor;
    info->extended = r->ext != NULL;
    info->magic = gh->magic;
    info->session_id = r->session_id;
    info->frame_seq = shmx_load_acquire64((uint64_t *)&gh->frame_seq);
    info->total_bytes = r->map.size;
    info->static_hash = gh->static_hash;
    info->static_gen = shmx_load_acquire32((uint32_t *)&gh->static_gen);
    info->static_bytes_used = shmx_load_acquire32((uint32_t *)&gh->static_bytes_used);
    info->static_bytes_cap = r->static_cap;
    info->slots = r->slots;
    info->slot_stride = r->slot_stride;
    info->frame_bytes_cap = r->user_frame_cap;
    info->slot_payload_cap = r->slot_payload_cap;
    info->reader_slots = r->reader_slots;
    info->control_per_reader = r->control_per_reader;
    info->readers_connected = shmx_load_acquire32((uint32_t *)&gh->readers_connected);
    info->write_index = shmx_load_acquire32((uint32_t *)&gh->write_index);
    info->owner_alive = shmx_server_liveness(r);
    if (r->ext) {
        info->closed = shmx_load_acquire32(&r->ext->closed);
        info->checksum_policy = r->ext->checksum_policy;
        info->owner_pid = r->ext->owner_pid;
        info->owner_heartbeat = shmx_load_relaxed64(&r->ext->owner_heartbeat);
        info->overruns = shmx_load_relaxed64(&r->ext->overruns);
    } else {
        info->checksum_policy = SHMX_CHECKSUM_ALWAYS;
    }
}
