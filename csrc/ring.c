/* ring.c - the control rings, both halves: a client puts messages into
 * the ring of its reader slot (it is the only writer), the server takes
 * them out (the only reader).
 *
 * Ring of reader slot i: {u64 read, u64 write} then the message area of
 * control_per_reader - 16 bytes.  Positions only grow; a position p is at
 * byte 16 + p % area.  A message is a TLV {type, length} + body, padded to
 * 16; one that does not fit before the end of the area goes at its start,
 * after a type-0 TLV that pads to the end.  The writer stores the body,
 * then write (release); the reader loads write (acquire), copies the body
 * out, then stores read (release), which hands the space back.
 *
 * The server keeps its own read position (the region's copy is written
 * for the client to see): a hostile client can lose or scramble its own
 * messages, never make the server read outside the ring or loop.
 * Touches: the control rings, and the reader id of a message's sender.
 */
#include "internal.h"

/* Our read position, stored from our own copy.  Release: the body was
 * copied out before; pairs with the client's acquire load of read in
 * shmx_ring_put. */
static void ring_consumed(shmx_control_head *h, uint64_t *rd_priv, uint64_t rd)
{
    *rd_priv = rd;
    shmx_store_release64(&h->read, rd);
}

int shmx_ring_has_data(const shmx_region *r, uint32_t i, uint64_t rd_priv)
{
    /* Pairs with the client's store-release of write after the body. */
    return shmx_load_acquire64(&((shmx_control_head *)shmx_control_at(r, i))->write) != rd_priv;
}

shmx_status shmx_ring_take(const shmx_region *r, uint32_t i, uint64_t *rd_priv, shmx_control_msg *msg,
                           void *buf, uint32_t buf_cap)
{
    const uint64_t cap = r->control_per_reader;
    const uint64_t ring = cap - 16u;
    uint8_t *c = shmx_control_at(r, i);
    shmx_control_head *h = (shmx_control_head *)c;
    uint64_t rd = *rd_priv; /* ours: the region's copy may be forged */
    /* Pairs with the client's store-release of write after the body. */
    uint64_t wv = shmx_load_acquire64(&h->write);
    if (wv - rd > ring) {
        /* The client's write position is not within a ring of ours:
         * its counters were rewritten (or the ring was reset).  Resume
         * from the read position the region shows if that one is
         * consistent with write (parsing is bounds-checked either
         * way), else drop what is there. */
        uint64_t hint = shmx_load_relaxed64(&h->read);
        if (wv - hint > ring) {
            ring_consumed(h, rd_priv, wv);
            return SHMX_EAGAIN;
        }
        rd = hint;
    }
    while (rd != wv) {
        /* rd only moves forward by at most what is left, so it meets wv
         * exactly: a hostile ring can drop its own messages, never make
         * this loop run away past wv. */
        const uint64_t left = wv - rd;
        const uint64_t off = 16u + rd % ring;
        const uint64_t to_end = cap - off;
        if (to_end < sizeof(shmx_tlv_head)) { /* no head fits: the writer wrapped */
            if (to_end > left) { rd = wv; break; }
            rd += to_end;
            continue;
        }
        shmx_tlv_head tlv;
        memcpy(&tlv, c + off, sizeof tlv);
        uint64_t body = shmx_align64(sizeof tlv + (uint64_t)tlv.length, SHMX_TLV_ALIGN);
        if (body > to_end) {
            if (tlv.type == 0 && to_end <= left) { rd += to_end; continue; } /* pad to the end */
            rd = wv; /* corrupt message: drop the rest of this ring */
            break;
        }
        if (body > left) { rd = wv; break; }
        if (tlv.type == 0) { rd += body; continue; }
        if (tlv.length > buf_cap || (tlv.length && !buf)) {
            ring_consumed(h, rd_priv, rd);
            /* Only if the caller's struct has the field (struct_size
             * rule): an older, smaller struct must not be written past. */
            if (msg->struct_size == 0 ||
                msg->struct_size >= offsetof(shmx_control_msg, length) + sizeof msg->length)
                msg->length = tlv.length;
            return shmx_fail(SHMX_ETOOBIG, "poll_control: message of %u bytes, buffer is %u", tlv.length, buf_cap);
        }
        shmx_control_msg m;
        m.struct_size = (uint32_t)sizeof m;
        m.type = tlv.type;
        m.length = tlv.length;
        m.reader_index = i;
        m.reader_id = shmx_load_acquire64(&shmx_reader_at(r, i)->reader_id);
        if (tlv.length) memcpy(buf, c + off + sizeof tlv, tlv.length);
        ring_consumed(h, rd_priv, rd + body);
        SHMX_COPY_OUT(msg, &m);
        return SHMX_OK;
    }
    ring_consumed(h, rd_priv, rd);
    return SHMX_EAGAIN;
}

shmx_status shmx_ring_put(const shmx_region *r, uint32_t i, uint32_t type, const void *data, uint32_t bytes,
                          int *padded)
{
    *padded = 0;
    uint8_t *ch = shmx_control_at(r, i);
    shmx_control_head *h = (shmx_control_head *)ch;
    const uint64_t cap = r->control_per_reader, ring = cap - 16u;
    const uint64_t need = shmx_align64(sizeof(shmx_tlv_head) + (uint64_t)bytes, SHMX_TLV_ALIGN);
    if (need > ring)
        return shmx_fail(SHMX_ETOOBIG, "send_control: a %u-byte message needs %llu bytes, the ring holds %llu",
                         bytes, (unsigned long long)need, (unsigned long long)ring);
    /* Pairs with the server's store-release of read after it copied the
     * message out: the space before `read` is free again. */
    uint64_t rv = shmx_load_acquire64(&h->read);
    uint64_t wv = shmx_load_relaxed64(&h->write); /* we are the only writer */
    uint64_t in_use = wv - rv;
    if (in_use > ring) return shmx_fail(SHMX_ECORRUPT, "send_control: ring counters of '%s' are corrupt", r->name);
    uint64_t off = 16u + wv % ring;
    uint64_t to_end = cap - off;
    if (need > to_end) {
        /* The message does not fit before the end: pad to the end and go on
         * at the start.  The padding is committed by itself, even when the
         * message must then wait.  Were it written only together with the
         * message, a message longer than the room left before the end would
         * need pad + need > ring while the write position sits mid-ring, and
         * would get SHMX_EFULL forever, even from an empty ring. */
        if (in_use + to_end > ring)
            return shmx_fail(SHMX_EFULL, "send_control: ring full (%llu of %llu bytes unread, message needs %llu)",
                             (unsigned long long)in_use, (unsigned long long)ring, (unsigned long long)need);
        if (to_end >= sizeof(shmx_tlv_head)) {
            shmx_tlv_head p = {0, (uint32_t)(to_end - sizeof(shmx_tlv_head))};
            memcpy(ch + off, &p, sizeof p);
        }
        wv += to_end;
        in_use += to_end;
        off = 16u;
        /* Padding before index; pairs with the server's acquire load of write. */
        shmx_store_release64(&h->write, wv);
        if (in_use + need > ring) {
            *padded = 1; /* the caller wakes a sleeping server to drain it */
            return shmx_fail(SHMX_EFULL, "send_control: ring full (%llu of %llu bytes unread, message needs %llu)",
                             (unsigned long long)in_use, (unsigned long long)ring, (unsigned long long)need);
        }
    }
    if (in_use + need > ring)
        return shmx_fail(SHMX_EFULL, "send_control: ring full (%llu of %llu bytes unread, message needs %llu)",
                         (unsigned long long)in_use, (unsigned long long)ring, (unsigned long long)need);
    shmx_tlv_head t = {type, bytes};
    memcpy(ch + off, &t, sizeof t);
    if (bytes) memcpy(ch + off + sizeof t, data, bytes);
    memset(ch + off + sizeof t + bytes, 0, (size_t)(need - sizeof t - bytes));
    /* Body before index; pairs with the server's acquire load of write. */
    shmx_store_release64(&h->write, wv + need);
    return SHMX_OK;
}
