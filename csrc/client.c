/* client.c - the consumer handle: attach a reader slot (readers.c), pin
 * and read frames (slots.c's reader half), latest and read_next, wait on
 * the frame futex, send control messages (ring.c's producer half).
 *
 * Owns: struct shmx_client, its decoded frame layouts and its validated
 * copy of the geometry (region.c).  Writes in the region: only its own
 * reader slot, its pin bits, its control ring's write side and the futex
 * word's sleeper bit.  Everything else it reads is checked before use. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>

#define NO_SLOT 0xFFFFFFFFu
#define WAIT_SLICE_NS 100000000LL /* look at the server's liveness this often */
#define SIZE_CHECK_NS 100000000ull /* and at the file's size, while reading */

struct shmx_client {
    shmx_region r;
    shmx_schema schema;
    shmx_open_options opt;
    char dir[SHMX_PATH_MAX];
    uint32_t reader_index;
    uint64_t pin_bit;
    uint64_t reader_id;
    uint32_t pinned_slot;    /* slot we hold a pin on (our regions) */
    uint32_t cur_slot;       /* slot whose decode describes the current frame */
    uint64_t last_id;        /* id of the last frame returned */
    uint64_t seen_seq;       /* frame_seq a read already looked at (see newer_frame) */
    shmx_frame_info cur;
    shmx_decoded *dec;       /* one per slot */
    uint64_t next_layout_id;
    int detached;
    uint64_t size_checked_ns; /* when check_reader last compared the file's size */
    int wake_fd;             /* event-loop wake channel (wakefd.c); -1: none yet */
    int from_oldest;         /* history: the first read_next takes the oldest frame */
};

/* ---------------------------------------------------------------- attach */

static shmx_status attach(shmx_client *c)
{
    shmx_region *r = &c->r;
    uint64_t id = shmx_plat_random64();
    for (uint32_t i = 0; i < r->reader_slots; i++) {
        if (!shmx_reader_attach(r, i, id)) continue;
        c->reader_index = i;
        c->pin_bit = i < 64 ? 1ull << i : 0;
        c->reader_id = id;
        return SHMX_OK;
    }
    return shmx_fail(SHMX_ENOREADER, "all %u reader slots of '%s' are in use", r->reader_slots, r->name);
}

static void unpin(shmx_client *c, uint32_t slot)
{
    if (slot != NO_SLOT && c->r.ext) shmx_slot_unpin(&c->r, slot, c->pin_bit);
}

void shmx_client_release(shmx_client *c)
{
    if (!c) return;
    unpin(c, c->pinned_slot);
    c->pinned_slot = NO_SLOT;
}

static void detach(shmx_client *c)
{
    if (c->detached || !c->r.map.base) return;
    c->detached = 1;
    /* In a child of fork() the pins, the slot and the lock are the
     * parent's: touch nothing. */
    if (shmx_plat_forked_since(c->r.map.fork_gen)) return;
    shmx_wake_client_close(&c->wake_fd);
    shmx_client_release(c);
    if (c->reader_index != NO_SLOT) shmx_reader_detach(&c->r, c->reader_index, c->reader_id);
    c->reader_index = NO_SLOT;
}

static void free_decoded(shmx_client *c)
{
    if (c->dec)
        for (uint32_t i = 0; i < c->r.slots; i++) free(c->dec[i].v);
    free(c->dec);
    c->dec = NULL;
}

static shmx_status client_open_into(shmx_client *c, const char *name)
{
    shmx_status st = shmx_region_open(&c->r, name, &c->opt, 1);
    if (st != SHMX_OK) return st;
    c->reader_index = NO_SLOT;
    c->pinned_slot = NO_SLOT;
    c->cur_slot = NO_SLOT;
    c->last_id = 0;
    c->seen_seq = 0;
    c->detached = 0;
    c->wake_fd = -1;
    c->from_oldest = c->opt.history != 0;
    memset(&c->cur, 0, sizeof c->cur);
    c->dec = calloc(c->r.slots, sizeof *c->dec);
    if (!c->dec) st = shmx_fail(SHMX_ENOMEM, "out of memory");
    if (st == SHMX_OK) st = shmx_schema_read(&c->r, &c->schema);
    if (st == SHMX_OK) st = attach(c);
    if (st != SHMX_OK) {
        free_decoded(c);
        shmx_schema_free(&c->schema);
        shmx_region_close(&c->r);
    }
    return st;
}

shmx_status shmx_client_open(const char *name, const shmx_open_options *opt, shmx_client **out)
{
    shmx_clear_error();
    if (!out) return shmx_fail(SHMX_EINVAL, "shmx_client_open: out is NULL");
    *out = NULL;
    shmx_client *c = calloc(1, sizeof *c);
    if (!c) return shmx_fail(SHMX_ENOMEM, "out of memory");
    shmx_open_options_init(&c->opt);
    if (opt && opt->struct_size >= offsetof(shmx_open_options, dir) + sizeof(opt->dir) && opt->dir) {
        snprintf(c->dir, sizeof c->dir, "%s", opt->dir);
        c->opt.dir = c->dir;
    }
    if (opt && opt->struct_size >= offsetof(shmx_open_options, history) + sizeof(opt->history))
        c->opt.history = opt->history;
    shmx_status st = client_open_into(c, name);
    if (st != SHMX_OK) {
        free(c);
        return st;
    }
    *out = c;
    return SHMX_OK;
}

void shmx_client_detach(shmx_client *c)
{
    if (c) detach(c);
}

void shmx_client_free(shmx_client *c)
{
    if (!c) return;
    detach(c);
    free_decoded(c);
    shmx_schema_free(&c->schema);
    shmx_region_close(&c->r);
    free(c);
}

void shmx_client_close(shmx_client *c) { shmx_client_free(c); }

shmx_status shmx_client_reconnect(shmx_client *c)
{
    if (!c) return shmx_fail(SHMX_EINVAL, "reconnect: client is NULL");
    char name[SHMX_NAME_MAX + 1];
    snprintf(name, sizeof name, "%s", c->r.name);
    shmx_client fresh;
    memset(&fresh, 0, sizeof fresh);
    fresh.opt = c->opt;
    memcpy(fresh.dir, c->dir, sizeof fresh.dir);
    if (fresh.opt.dir) fresh.opt.dir = c->dir;
    shmx_status st = client_open_into(&fresh, name);
    if (st != SHMX_OK) return st;
    detach(c);
    free_decoded(c);
    shmx_schema_free(&c->schema);
    shmx_region_close(&c->r);
    *c = fresh;
    if (c->opt.dir) c->opt.dir = c->dir;
    return SHMX_OK;
}

/* ------------------------------------------------------------------ reads */

static shmx_status check_client(shmx_client *c, const char *what)
{
    if (!c) return shmx_fail(SHMX_EINVAL, "%s: client is NULL", what);
    if (c->detached) return shmx_fail(SHMX_ECLOSED, "%s: client of '%s' is closed", what, c->r.name);
    if (shmx_plat_forked_since(c->r.map.fork_gen))
        return shmx_fail(SHMX_EFORK, "%s: this client of '%s' was opened before fork(); open a new one in the child",
                         what, c->r.name);
    if (shmx_plat_map_lost(&c->r.map))
        return shmx_fail(SHMX_ECORRUPT, "%s: region '%s' was truncated by another process", what, c->r.name);
    return SHMX_OK;
}

/* A reader call: the checks above, that our reader slot is still ours,
 * and a heartbeat (what reap_stale_readers judges us by). */
static shmx_status check_reader(shmx_client *c, const char *what)
{
    shmx_status st = check_client(c, what);
    if (st != SHMX_OK || c->reader_index == NO_SLOT) return st;
    if (shmx_reader_evicted(&c->r, c->reader_index))
        return shmx_fail(SHMX_EEVICTED,
                         "%s: this reader of '%s' was evicted by the server (its heartbeat was older than the "
                         "server's timeout); close it and open a new one", what, c->r.name);
    uint64_t now = shmx_plat_now_ns();
    /* Our own cache line; the server only reads it. */
    shmx_store_relaxed64(&shmx_reader_at(&c->r, c->reader_index)->heartbeat, now);
    /* A reader that only touches pages the file kept (the header, its
     * pinned frame) would never fault on a truncation: look at the file's
     * size now and then (a system call, at most every SIZE_CHECK_NS). */
    if (now - c->size_checked_ns > SIZE_CHECK_NS) {
        c->size_checked_ns = now;
        if (shmx_plat_map_shrunk(&c->r.map))
            return shmx_fail(SHMX_ECORRUPT, "%s: region '%s' was truncated by another process", what,
                             c->r.name);
    }
    return SHMX_OK;
}

/* After a read that touched the region: a truncation met on the way (the
 * guard mapped zero pages) turns its result into an error. */
static shmx_status after_read(shmx_client *c, shmx_status st, const char *what)
{
    if (shmx_plat_map_lost(&c->r.map))
        return shmx_fail(SHMX_ECORRUPT, "%s: region '%s' was truncated by another process", what, c->r.name);
    return st;
}

static int pin_slot(shmx_client *c, uint32_t slot) { return shmx_slot_pin(&c->r, slot, c->pin_bit); }

static void note_read(shmx_client *c, uint64_t fid, uint64_t dropped)
{
    if (c->reader_index == NO_SLOT) return;
    shmx_reader_slot *rs = shmx_reader_at(&c->r, c->reader_index);
    /* Our own cache line; the server only reads these for reports. */
    shmx_store_relaxed64(&rs->last_frame_seen, fid);
    if (c->r.ext) {
        shmx_store_relaxed64(&rs->frames_read, rs->frames_read + 1);
        if (dropped) shmx_store_relaxed64(&rs->frames_dropped, rs->frames_dropped + dropped);
    }
}

/* Decode the pinned (or checksum-verified) slot and make it current. */
static shmx_status take_slot(shmx_client *c, uint32_t slot, uint64_t fid, uint64_t dropped)
{
    shmx_region *r = &c->r;
    shmx_frame_header *fh = shmx_slot_header(r, slot);
    uint32_t bytes = fh->payload_bytes;
    if (bytes > r->slot_payload_cap)
        return shmx_fail(SHMX_ECORRUPT, "'%s' slot %u: payload_bytes %u over the slot's %u", r->name, slot,
                         bytes, r->slot_payload_cap);
    uint64_t payload_off = (uint64_t)r->slots_offset + (uint64_t)slot * r->slot_stride + SHMX_FRAME_HEADER_BYTES;
    uint64_t layout_before = c->dec[slot].layout_id;
    shmx_status st = shmx_decode_payload(r, payload_off, bytes, &c->dec[slot], &c->next_layout_id);
    if (st != SHMX_OK) return st;
    if (r->ext && c->dec[slot].layout_id != layout_before) {
        /* A new stream layout: check each stream's count against its bytes
         * once (the same layout needs no second look).  Our producer never
         * writes a mismatch, so in our region it is forged; a shmx 1.0.1
         * producer checks nothing, and its frames are read as they are. */
        for (uint32_t k = 0; k < c->dec[slot].count; k++) {
            const shmx_stream_view *v = &c->dec[slot].v[k];
            const shmx_schema_entry *e = shmx_schema_find(&c->schema, v->stream_id);
            if (e && (uint64_t)v->elem_count * e->info.bytes_per_elem != v->bytes) {
                c->dec[slot].layout_id = 0; /* look again next time */
                return shmx_fail(SHMX_ECORRUPT,
                                 "'%s' slot %u: stream %u ('%s') has elem_count %u x %u bytes_per_elem, "
                                 "but %u bytes", r->name, slot, v->stream_id, e->name, v->elem_count,
                                 e->info.bytes_per_elem, v->bytes);
            }
        }
    }
    c->cur.struct_size = (uint32_t)sizeof c->cur;
    c->cur.payload_bytes = bytes;
    c->cur.tlv_count = fh->tlv_count;
    c->cur.stream_count = c->dec[slot].count;
    c->cur.frame_id = fid;
    c->cur.sim_time = fh->sim_time;
    c->cur.dropped = dropped;
    c->cur.dropped_total += dropped; /* cur is zeroed by open and reconnect */
    c->cur.layout_id = c->dec[slot].layout_id;
    c->cur_slot = slot;
    c->last_id = fid;
    note_read(c, fid, dropped);
    return SHMX_OK;
}

/* Make the frame in `slot`, which we have just pinned, the current one and
 * drop the pin on the previous one; on failure drop the new pin instead. */
static shmx_status switch_to(shmx_client *c, uint32_t slot, uint64_t fid, uint64_t dropped)
{
    shmx_status st = take_slot(c, slot, fid, dropped);
    if (st != SHMX_OK) {
        unpin(c, slot);
        return st;
    }
    unpin(c, c->pinned_slot);
    c->pinned_slot = slot;
    return SHMX_OK;
}

static shmx_status return_current(shmx_client *c, shmx_frame_info *out)
{
    c->cur.dropped = 0;
    if (out) SHMX_COPY_OUT(out, &c->cur);
    return SHMX_OK;
}

/* A shmx 1.0.1 producer neither pins nor seqlocks: verify the checksum. */
static shmx_status legacy_latest(shmx_client *c, shmx_frame_info *out)
{
    shmx_region *r = &c->r;
    for (int attempt = 0; attempt < 8; attempt++) {
        uint32_t w = shmx_load_acquire32(&r->gh->write_index);
        if (w == 0) return shmx_fail(SHMX_EAGAIN, "'%s': no frame published yet", r->name);
        uint32_t slot = (w - 1u) % r->slots;
        shmx_frame_header *fh = shmx_slot_header(r, slot);
        uint64_t fid = shmx_load_acquire64(&fh->frame_id);
        uint32_t bytes = fh->payload_bytes;
        if (bytes == 0 || bytes > r->slot_payload_cap || fh->session_id_copy != r->session_id) continue;
        if (shmx_checksum32(shmx_slot_payload(r, slot), bytes) != fh->checksum) continue;
        if (fid < c->last_id) return return_current(c, out);
        shmx_status st = take_slot(c, slot, fid, 0);
        if (st != SHMX_OK) return st;
        return return_current(c, out);
    }
    return shmx_fail(SHMX_EAGAIN, "'%s': the latest frame did not pass its checksum", r->name);
}

/* Pin the newest complete frame whose id is at least min_id, from any slot,
 * and make it current.  SHMX_EAGAIN when no slot holds one.  Looking at
 * every slot (not only the one write_index names) covers the cases where
 * write_index misleads: the producer keeps rewriting the latest slot
 * because readers pin all the others, or a legacy writer is between its
 * stores (ours stores write_index before frame_seq). */
/* The highest frame id a slot can honestly hold now.  Publish stores a
 * slot's frame_id, then its even seq (release), and frame_seq after that:
 * a reader that acquired the even seq of frame F sees frame_seq >= F - 1.
 * A slot claiming more was forged; taking it would make ids go backwards
 * afterwards (and blind every later read). */
static uint64_t id_limit(const shmx_client *c)
{
    uint64_t fs = shmx_load_acquire64(&c->r.gh->frame_seq);
    return fs == UINT64_MAX ? fs : fs + 1;
}

static shmx_status take_newest(shmx_client *c, uint64_t min_id, uint64_t fseq)
{
    shmx_region *r = &c->r;
    for (int attempt = 0; attempt < 8; attempt++) {
        uint32_t best = NO_SLOT;
        uint64_t best_id = 0;
        /* Usually the slot write_index names holds frame fseq: pin it
         * straight away and skip the scan.  Pinning first (an RMW) fetches
         * the slot header, a line the producer has just written, in one
         * cache transaction; reading it first and then pinning took two.
         * write_index's acquire pairs with publish's store-release. */
        uint32_t w = shmx_load_acquire32(&r->gh->write_index);
        uint32_t hint = w != 0 ? (w - 1u) % r->slots : NO_SLOT;
        if (hint != NO_SLOT && hint != c->pinned_slot && pin_slot(c, hint)) {
            shmx_frame_header *fh = shmx_slot_header(r, hint);
            uint64_t fid = shmx_load_relaxed64(&fh->frame_id); /* pinned, seq even: stable */
            /* A frame newer than fseq (published since we loaded it) is
             * complete too: pinned with an even seq. */
            if (fid >= fseq && fid >= min_id && fid <= id_limit(c) && fh->session_id_copy == r->session_id)
                return switch_to(c, hint, fid, 0);
            unpin(c, hint);
        }
        const uint64_t limit = id_limit(c);
        for (uint32_t s = 0; s < r->slots; s++) {
            shmx_frame_header *fh = shmx_slot_header(r, s);
            if (SHMX_SEQ_WRITING(shmx_load_acquire64(&fh->seq))) continue;
            uint64_t fid = shmx_load_relaxed64(&fh->frame_id);
            if (fid >= min_id && fid > best_id && fid <= limit && fh->session_id_copy == r->session_id) {
                best = s;
                best_id = fid;
            }
        }
        if (best == NO_SLOT) return SHMX_EAGAIN;
        if (best == c->pinned_slot) return SHMX_OK; /* ours is still the newest */
        if (!pin_slot(c, best)) continue;           /* claimed meanwhile: look again */
        /* Pinned with an even seq, the slot cannot change now; it may hold a
         * newer frame than the scan saw, never an incomplete one. */
        shmx_frame_header *fh = shmx_slot_header(r, best);
        uint64_t fid = shmx_load_relaxed64(&fh->frame_id);
        if (fid < min_id || fid > id_limit(c) || fh->session_id_copy != r->session_id) {
            unpin(c, best);
            continue;
        }
        return switch_to(c, best, fid, 0);
    }
    return SHMX_EAGAIN;
}

static shmx_status client_latest(shmx_client *c, shmx_frame_info *out);

shmx_status shmx_client_latest(shmx_client *c, shmx_frame_info *out)
{
    shmx_status st = check_reader(c, "latest");
    if (st != SHMX_OK) return st;
    return after_read(c, client_latest(c, out), "latest");
}

static shmx_status client_latest(shmx_client *c, shmx_frame_info *out)
{
    shmx_status st;
    shmx_region *r = &c->r;
    if (!r->ext) return legacy_latest(c, out);
    /* Pairs with the store-release of frame_seq in publish, which comes
     * after the frame's slot seq went even: frame fseq is complete (or
     * already replaced by a newer one). */
    uint64_t fseq = shmx_load_acquire64(&r->gh->frame_seq);
    c->seen_seq = fseq;
    c->cur.published = fseq;
    if (fseq == 0) return shmx_fail(SHMX_EAGAIN, "'%s': no frame published yet", r->name);
    /* Fast path: the frame we hold is the newest published. */
    if (c->pinned_slot != NO_SLOT && c->last_id >= fseq) return return_current(c, out);
    /* Never older than what we returned before; after release() the same
     * frame may be returned again. */
    uint64_t min_id = c->pinned_slot != NO_SLOT ? c->last_id + 1 : (c->last_id ? c->last_id : 1);
    st = take_newest(c, min_id, fseq);
    if (st == SHMX_OK || c->pinned_slot != NO_SLOT) return return_current(c, out);
    if (st != SHMX_EAGAIN) return st;
    return shmx_fail(SHMX_EAGAIN, "'%s': no complete frame newer than %llu", r->name,
                     (unsigned long long)c->last_id);
}

static shmx_status client_next(shmx_client *c, shmx_frame_info *out);

shmx_status shmx_client_next(shmx_client *c, shmx_frame_info *out)
{
    shmx_status st = check_reader(c, "read_next");
    if (st != SHMX_OK) return st;
    return after_read(c, client_next(c, out), "read_next");
}

static shmx_status client_next(shmx_client *c, shmx_frame_info *out)
{
    shmx_status st;
    shmx_region *r = &c->r;
    if (!r->ext) return shmx_fail(SHMX_ELEGACY, "read_next: '%s' is a shmx 1.0.1 region (no ordered reads)", r->name);
    /* A late joiner with history starts at frame 1: the scan below then
     * takes the oldest frame the ring still holds. */
    if (c->last_id == 0 && !c->from_oldest) return client_latest(c, out);
    const uint64_t target = c->last_id + 1;
    uint64_t fseq = 0;
    for (int attempt = 0; attempt < 64; attempt++) {
        /* Pairs with the store-release of frame_seq in publish: every frame
         * up to fseq is complete (or already overwritten by a newer one). */
        fseq = shmx_load_acquire64(&r->gh->frame_seq);
        c->cur.published = fseq; /* for the caller's backlog (published - frame_id) */
        if (fseq < target) return shmx_fail(SHMX_EAGAIN, "'%s': no frame after %llu yet", r->name,
                                            (unsigned long long)c->last_id);
        uint32_t best = NO_SLOT;
        uint64_t best_id = UINT64_MAX;
        /* The producer fills slots round robin, so frame target usually
         * sits in the slot after ours: start there, and stop at it (each
         * slot header looked at is a line the producer writes). */
        uint32_t first = c->cur_slot == NO_SLOT ? 0 : c->cur_slot + 1;
        /* Lapped: frame target's slot was taken again (unless a pin kept
         * it).  Below the warm-reuse size the producer keeps ring order,
         * so the oldest frame left sits in the slot write_index names
         * next and the frames after it climb: start from a slot and take
         * the first frame found, rather than reading every slot header
         * (each a cache miss while the producer writes them).  Not from
         * the oldest frame's slot, though: that is the one the producer
         * rewrites next, and a reader that resumes there races it for
         * every slot after, so it is lapped again at once.  A quarter of
         * the ring further on, it has that many frames' lead (a busy-
         * polling reader of a producer twice as fast, 64 slots, on the
         * 2-core bench VM: 1.7-1.9M frames/s from the oldest, 1.9-2.25M/s
         * from there); `dropped` counts what it passed over.  A frame
         * that only another reader's pin kept alive out of order may be
         * passed over too.  write_index's acquire pairs with publish's
         * store-release (which precedes its store of frame_seq). */
        int lapped = fseq - target >= r->slots - 1u && r->slot_stride < SHMX_WARM_SLOT_MIN_BYTES;
        /* A history reader's first read wants the oldest frame itself. */
        if (lapped) first = (shmx_load_acquire32(&r->gh->write_index) + (c->last_id ? r->slots / 4 : 0)) % r->slots;
        for (uint32_t k = 0; k < r->slots; k++) {
            uint32_t s = first + k; /* first <= slots, k < slots */
            if (s >= r->slots) s -= r->slots;
            shmx_frame_header *fh = shmx_slot_header(r, s);
            if (SHMX_SEQ_WRITING(shmx_load_acquire64(&fh->seq))) continue;
            uint64_t fid = shmx_load_relaxed64(&fh->frame_id);
            if (fid >= target && fid < best_id && fid <= fseq + 1) {
                best = s;
                best_id = fid;
                if (fid == target || lapped) break;
            }
        }
        if (best == NO_SLOT) continue;
        if (!pin_slot(c, best)) continue;
        shmx_frame_header *fh = shmx_slot_header(r, best);
        if (shmx_load_relaxed64(&fh->frame_id) != best_id || fh->session_id_copy != r->session_id) {
            unpin(c, best);
            continue;
        }
        /* The frames before the oldest retained one were gone before a
         * history reader joined: not counted as dropped. */
        st = switch_to(c, best, best_id, c->last_id == 0 ? 0 : best_id - target);
        if (st != SHMX_OK) return st;
        c->from_oldest = 0;
        if (out) SHMX_COPY_OUT(out, &c->cur);
        return SHMX_OK;
    }
    /* Every frame after ours was being rewritten: wait for the next publish. */
    c->seen_seq = fseq;
    return shmx_fail(SHMX_EAGAIN, "'%s': the ring kept moving under read_next", r->name);
}

/* A frame newer than the last one read may be obtainable.  Not just
 * frame_seq > last_id: the newest frames can all be gone (their slots taken
 * again by the producer, which was then killed mid-write), and a waiter
 * that kept being told "newer" would spin on the same frame forever and
 * never notice its server died.  Reads record the frame_seq they looked at
 * in seen_seq; only a publish after that wakes the waiter again. */
static int newer_frame(const shmx_client *c)
{
    uint64_t known = c->last_id > c->seen_seq ? c->last_id : c->seen_seq;
    uint64_t fseq = shmx_load_acquire64(&c->r.gh->frame_seq);
    /* Below what a read saw: frame_seq was forged (the producer stores
     * its own count again at its next publish) and must not blind us. */
    return fseq > known || fseq < c->seen_seq;
}

/* A shmx 1.0.1 producer bumps frame_seq as publish_frame starts, then
 * checksums the payload, and only then stores frame_id and write_index
 * (both release).  frame_seq alone therefore announces a frame that a read
 * cannot find yet: a waiter woke, read, and got "no frame yet" or its old
 * frame back (seen with 4 MiB frames, where the checksum takes
 * milliseconds).  On a legacy region a frame is there once write_index
 * names a slot whose frame_id is newer than the last one we returned. */
static int legacy_newer_frame(const shmx_client *c)
{
    const shmx_region *r = &c->r;
    /* Pairs with the legacy producer's release store of write_index, which
     * follows its release store of the slot's frame_id. */
    uint32_t w = shmx_load_acquire32(&r->gh->write_index);
    if (w == 0) return 0;
    return shmx_load_acquire64(&shmx_slot_header(r, (w - 1u) % r->slots)->frame_id) > c->last_id;
}

shmx_status shmx_client_wait(shmx_client *c, int64_t timeout_ns)
{
    shmx_status st = check_reader(c, "wait");
    if (st != SHMX_OK) return st;
    shmx_region *r = &c->r;
    uint64_t start = shmx_plat_now_ns();
    uint64_t deadline = timeout_ns < 0 ? UINT64_MAX : start + (uint64_t)timeout_ns;
    if (!r->ext) {
        /* Legacy producer: no futex word to wait on; poll, backing off. */
        uint64_t nap = 20000;
        for (;;) {
            if (legacy_newer_frame(c)) return SHMX_OK;
            uint64_t now = shmx_plat_now_ns();
            if (now >= deadline) return SHMX_ETIMEDOUT;
            uint64_t left = deadline - now;
            shmx_plat_sleep_ns(nap < left ? nap : left);
            if (nap < 1000000) nap *= 2;
            st = check_reader(c, "wait");
            if (st != SHMX_OK) return st;
        }
    }
    shmx_ext_header *ext = r->ext;
    for (;;) {
        uint32_t word = shmx_load_acquire32(&ext->frame_futex);
        if (newer_frame(c)) return SHMX_OK;
        if (shmx_load_acquire32(&ext->closed))
            return shmx_fail(SHMX_ECLOSED, "'%s': the server destroyed the region", r->name);
        uint64_t now = shmx_plat_now_ns();
        if (now >= deadline) return SHMX_ETIMEDOUT;
        uint64_t left = deadline - now;
        if (left > (uint64_t)WAIT_SLICE_NS) left = WAIT_SLICE_NS;
        /* Announce the sleep: set the sleeper bit of the word (RMW).  If a
         * publish replaced the word since we read it (its counter part
         * changed), look again instead of sleeping.  Otherwise the next
         * publish's exchange of the word returns our bit and wakes us: one
         * variable, so its modification order alone orders the two. */
        uint32_t now_word = shmx_fetch_or32(&ext->frame_futex, 1u);
        int rc = 0;
        if ((now_word | 1u) == (word | 1u) && !newer_frame(c))
            rc = shmx_plat_wait(&ext->frame_futex, word | 1u, (int64_t)left);
        if (rc == 1 && !newer_frame(c) && shmx_server_liveness(r) == SHMX_DEAD)
            return shmx_fail(SHMX_ECLOSED, "'%s': the server process is gone", r->name);
        /* The heartbeat (a waiting reader is never stale) and, at most
         * every SIZE_CHECK_NS, the file's size: not an fstat per wake-up,
         * which sat between the producer's wake and every frame. */
        st = check_reader(c, "wait");
        if (st != SHMX_OK) return st;
    }
}

shmx_status shmx_client_frame_stream(shmx_client *c, uint32_t index, shmx_stream_view *out)
{
    if (!c || !out) return shmx_fail(SHMX_EINVAL, "frame_stream: NULL argument");
    if (c->cur_slot == NO_SLOT) return shmx_fail(SHMX_EAGAIN, "frame_stream: no frame read yet");
    shmx_decoded *d = &c->dec[c->cur_slot];
    if (index >= d->count)
        return shmx_fail(SHMX_EINVAL, "frame_stream: index %u, the frame has %u streams", index, d->count);
    SHMX_COPY_OUT(out, &d->v[index]);
    return SHMX_OK;
}

/* ---------------------------------------------------------------- control */

static void notify_control(const shmx_region *r)
{
    if (!r->ext) return;
    /* seq_cst bump then seq_cst load of waiters; pairs with the server's
     * increment of control_waiters before its futex wait. */
    shmx_fetch_add32(&r->ext->control_futex, 1);
    if (shmx_load_seqcst32(&r->ext->control_waiters) != 0)
        shmx_plat_wake_all(&r->ext->control_futex);
}

shmx_status shmx_client_send_control(shmx_client *c, uint32_t type, const void *data, uint32_t bytes)
{
    shmx_status st = check_client(c, "send_control");
    if (st != SHMX_OK) return st;
    shmx_region *r = &c->r;
    if (r->control_per_reader == 0) return shmx_fail(SHMX_EINVAL, "send_control: '%s' has no control rings", r->name);
    if (type == 0) return shmx_fail(SHMX_EINVAL, "send_control: type 0 is reserved for ring padding");
    if (bytes && !data) return shmx_fail(SHMX_EINVAL, "send_control: data is NULL");
    if (c->reader_index == NO_SLOT) return shmx_fail(SHMX_ENOREADER, "send_control: no reader slot");
    int padded = 0;
    st = shmx_ring_put(r, c->reader_index, type, data, bytes, &padded);
    if (padded) notify_control(r); /* so a sleeping server drains the padding */
    if (st != SHMX_OK) return st;
    shmx_store_relaxed64(&shmx_reader_at(r, c->reader_index)->heartbeat, shmx_plat_now_ns());
    notify_control(r);
    shmx_wake_client_send_control(r, c->reader_index, c->reader_id, &c->wake_fd);
    return SHMX_OK;
}

/* ------------------------------------------------------------------- info */

shmx_status shmx_client_refresh_static(shmx_client *c)
{
    shmx_status st = check_client(c, "refresh_static");
    if (st != SHMX_OK) return st;
    return shmx_schema_read(&c->r, &c->schema);
}

shmx_status shmx_client_copy_static(shmx_client *c, void *buf, uint32_t cap, uint32_t *bytes)
{
    shmx_status st = check_client(c, "copy_static");
    if (st != SHMX_OK) return st;
    if (!bytes) return shmx_fail(SHMX_EINVAL, "copy_static: bytes is NULL");
    return shmx_static_copy(&c->r, buf, cap, bytes);
}

shmx_status shmx_client_header_info(shmx_client *c, shmx_header_info *out)
{
    if (!c || !out) return shmx_fail(SHMX_EINVAL, "header_info: NULL argument");
    if (!c->r.map.base) return shmx_fail(SHMX_ECLOSED, "header_info: client is closed");
    shmx_header_info info;
    shmx_header_fill(&c->r, &info);
    SHMX_COPY_OUT(out, &info);
    return SHMX_OK;
}

uint32_t shmx_client_stream_count(shmx_client *c) { return c ? c->schema.count : 0; }

shmx_status shmx_client_stream_info(shmx_client *c, uint32_t index, shmx_stream_info *out)
{
    if (!c) return shmx_fail(SHMX_EINVAL, "stream_info: client is NULL");
    return shmx_schema_info(&c->schema, index, out);
}

uint32_t shmx_client_server_alive(shmx_client *c)
{
    if (!c || !c->r.map.base) return SHMX_UNKNOWN;
    return shmx_server_liveness(&c->r);
}

void *shmx_client_base(shmx_client *c) { return c ? c->r.map.base : NULL; }
uint64_t shmx_client_size(shmx_client *c) { return c && c->r.map.base ? c->r.map.size : 0; }
uint64_t shmx_client_reader_id(shmx_client *c) { return c ? c->reader_id : 0; }

/* ------------------------------------------------------- event-loop fds */

shmx_status shmx_client_wait_fd(shmx_client *c, int *fd)
{
    shmx_status st = check_client(c, "wait_fd");
    if (st != SHMX_OK) return st;
    if (!fd) return shmx_fail(SHMX_EINVAL, "wait_fd: fd is NULL");
    if (c->wake_fd < 0) {
        if (c->reader_index == NO_SLOT) return shmx_fail(SHMX_ENOREADER, "wait_fd: no reader slot");
        st = shmx_wake_client_connect(&c->r, c->reader_index, c->reader_id, &c->wake_fd);
        if (st != SHMX_OK) return st;
    }
    *fd = c->wake_fd;
    return SHMX_OK;
}

shmx_status shmx_client_arm_fd(shmx_client *c)
{
    int fd;
    shmx_status st = shmx_client_wait_fd(c, &fd);
    if (st != SHMX_OK) return st;
    shmx_region *r = &c->r;
    shmx_ext_header *ext = r->ext;
    int gone = shmx_wake_client_drain(fd);
    uint32_t word = shmx_load_seqcst32(&ext->frame_futex);
    if (newer_frame(c)) return SHMX_OK;
    if (gone || shmx_load_acquire32(&ext->closed))
        return shmx_fail(SHMX_ECLOSED, "'%s': the server is gone", r->name);
    /* Arm, then look again: pairs with the producer's seq_cst exchange of
     * frame_futex then seq_cst load of wake_armed (wakefd.c, top). */
    shmx_fetch_or64(&ext->wake_armed, c->pin_bit);
    if ((shmx_load_seqcst32(&ext->frame_futex) | 1u) != (word | 1u) || newer_frame(c)) return SHMX_OK;
    return shmx_fail(SHMX_EAGAIN, "'%s': no frame newer than %llu yet; wait for the fd", r->name,
                     (unsigned long long)c->last_id);
}
