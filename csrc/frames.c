/* frames.c - decoding a frame's payload: the TLV walk that turns a slot's
 * (or a copied payload's) bytes into stream views, every length checked
 * against the payload's size.  Touches nothing but what it is given. */
#include "internal.h"

#include <stdlib.h>

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
