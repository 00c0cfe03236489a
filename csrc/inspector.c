/* inspector.c - the read-only view of a region: maps it read-only
 * (region.c), attaches no reader slot, writes nothing.  Owns struct
 * shmx_inspector and its decoded schema; reads headers, slot headers,
 * reader slots and frames (frames.c) the way shmx ls / inspect / top show
 * them, each value checked as a client checks it. */
#include "internal.h"

#include <stdlib.h>

struct shmx_inspector {
    shmx_region r;
    shmx_schema schema;
};

shmx_status shmx_inspector_open(const char *name, const shmx_open_options *opt, shmx_inspector **out)
{
    shmx_clear_error();
    if (!out) return shmx_fail(SHMX_EINVAL, "shmx_inspector_open: out is NULL");
    *out = NULL;
    shmx_inspector *in = calloc(1, sizeof *in);
    if (!in) return shmx_fail(SHMX_ENOMEM, "out of memory");
    shmx_status st = shmx_region_open(&in->r, name, opt, 0);
    if (st == SHMX_OK) {
        st = shmx_schema_read(&in->r, &in->schema);
        if (st != SHMX_OK) shmx_region_close(&in->r);
    }
    if (st != SHMX_OK) {
        free(in);
        return st;
    }
    *out = in;
    return SHMX_OK;
}

void shmx_inspector_close(shmx_inspector *in)
{
    if (!in) return;
    shmx_schema_free(&in->schema);
    shmx_region_close(&in->r);
    free(in);
}

shmx_status shmx_inspector_header_info(shmx_inspector *in, shmx_header_info *out)
{
    if (!in || !out) return shmx_fail(SHMX_EINVAL, "header_info: NULL argument");
    shmx_header_info info;
    shmx_header_fill(&in->r, &info);
    SHMX_COPY_OUT(out, &info);
    return SHMX_OK;
}

shmx_status shmx_inspector_refresh_static(shmx_inspector *in)
{
    if (!in) return shmx_fail(SHMX_EINVAL, "refresh_static: inspector is NULL");
    return shmx_schema_read(&in->r, &in->schema);
}

uint32_t shmx_inspector_stream_count(shmx_inspector *in) { return in ? in->schema.count : 0; }

shmx_status shmx_inspector_stream_info(shmx_inspector *in, uint32_t index, shmx_stream_info *out)
{
    if (!in) return shmx_fail(SHMX_EINVAL, "stream_info: inspector is NULL");
    return shmx_schema_info(&in->schema, index, out);
}

shmx_status shmx_inspector_readers(shmx_inspector *in, shmx_reader_info *out, uint32_t cap, uint32_t *count)
{
    if (!in) return shmx_fail(SHMX_EINVAL, "readers: inspector is NULL");
    return shmx_readers_list(&in->r, out, cap, count);
}

shmx_status shmx_inspector_copy_latest(shmx_inspector *in, shmx_frame_info *info, void *buf, uint32_t buf_cap)
{
    if (!in || !info) return shmx_fail(SHMX_EINVAL, "copy_latest: NULL argument");
    shmx_region *r = &in->r;
    if (shmx_plat_map_lost(&r->map) || shmx_plat_map_shrunk(&r->map))
        return shmx_fail(SHMX_ECORRUPT, "copy_latest: region '%s' was truncated by another process", r->name);
    for (int attempt = 0; attempt < 64; attempt++) {
        uint32_t w = shmx_load_acquire32(&r->gh->write_index);
        if (w == 0) return shmx_fail(SHMX_EAGAIN, "'%s': no frame published yet", r->name);
        uint32_t slot = (w - 1u) % r->slots;
        shmx_frame_header *fh = shmx_slot_header(r, slot);
        /* Classic seqlock read (we cannot pin: read-only mapping).  The
         * acquire pairs with publish's store-release of the even seq. */
        uint64_t s1 = shmx_load_acquire64(&fh->seq);
        if (r->ext && SHMX_SEQ_WRITING(s1)) continue;
        uint32_t bytes = fh->payload_bytes;
        if (bytes > r->slot_payload_cap) continue;
        if (bytes > buf_cap || (bytes && !buf)) {
            info->payload_bytes = bytes;
            return shmx_fail(SHMX_ETOOBIG, "copy_latest: frame is %u bytes, buffer %u", bytes, buf_cap);
        }
        shmx_frame_info fi;
        memset(&fi, 0, sizeof fi);
        fi.struct_size = (uint32_t)sizeof fi;
        fi.frame_id = shmx_load_relaxed64(&fh->frame_id);
        fi.sim_time = fh->sim_time;
        fi.payload_bytes = bytes;
        fi.tlv_count = fh->tlv_count;
        uint32_t sum = fh->checksum;
        uint64_t session = fh->session_id_copy;
        if (bytes) memcpy(buf, shmx_slot_payload(r, slot), bytes);
        /* Order the copy before the second seq load. */
        shmx_fence_acquire();
        uint64_t s2 = shmx_load_relaxed64(&fh->seq);
        if (s1 != s2 || fi.frame_id == 0 || session != r->session_id) continue;
        if (!r->ext && shmx_checksum32(buf, bytes) != sum) continue;
        if (shmx_plat_map_lost(&r->map))
            return shmx_fail(SHMX_ECORRUPT, "copy_latest: region '%s' was truncated by another process", r->name);
        SHMX_COPY_OUT(info, &fi);
        return SHMX_OK;
    }
    return shmx_fail(SHMX_EAGAIN, "'%s': could not copy a stable frame", r->name);
}
