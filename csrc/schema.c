/* schema.c - the static directory: parse it (from the region, or from the
 * server's private copy), copy it out, look streams up.  The directory is
 * TLVs of type SHMX_TLV_STATIC_DIR holding one stream descriptor each, in
 * any order, possibly followed by raw bytes a write_static_append added
 * (shmx 1.0.1 semantics): parsing stops at the first record that does not
 * fit.  Touches: the static area of a region, read-only. */
#include "internal.h"

#include <stdlib.h>

#define MAX_SCHEMA_STREAMS 65536u  /* a directory claiming more is hostile */

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
