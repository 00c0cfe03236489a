/* readers.c - the reader slots: attach, detach, reap, evict, report.
 *
 * ReaderSlot.in_use is the slot's state.  shmx 1.0.1 peers know only 0
 * (free) and 1 (taken, by a CAS 0 -> 1) and treat any other value as
 * taken; the states above 1 are ours:
 *
 *   0  FREE
 *   1  ATTACHED     counted in readers_connected
 *   2  FREEING      being freed, still counted (a detacher or reaper died
 *                   here: the next reaper finishes the job)
 *   3  ATTACHING    ours, lock held, fields being filled, not counted
 *   4  EVICTED      ours, pins dropped by reap_stale_readers, no longer
 *                   counted; its client learns it at its next call
 *   5  FREEING_UNCOUNTED   being freed, not counted
 *
 * Our readers hold the slot's OS liveness lock (platform.h) from before
 * they leave FREE until after they are back in it, so on a region with the
 * extension a slot in any state but FREE whose lock nobody holds was left
 * by a process that died mid-way: shmx_reader_reclaim() takes the lock and
 * finishes the job from wherever it was left.  Whoever frees a slot holds
 * its lock meanwhile, so two reclaimers never both free it.  A shmx 1.0.1
 * reader (ATTACHED, no mark) holds no lock and is only ever freed by the
 * heartbeat rule of shmx_server_reap_stale_readers.
 *
 * readers_connected is a hint: we decrement it with a floor of 0, so it
 * never wraps; a process killed between its increment (or decrement) and
 * the state store next to it leaves it off by one.
 *
 * Touches: the reader slots, the pin bits of the frame slots (to drop a
 * freed reader's pins), readers_connected.
 */
#include "internal.h"

#include <signal.h>
#include <stdlib.h>

enum {
    RS_FREE = 0,
    RS_ATTACHED = 1,
    RS_FREEING = 2,
    RS_ATTACHING = 3,
    RS_EVICTED = 4,
    RS_FREEING_UNCOUNTED = 5
};

void shmx_test_point(const char *point)
{
    /* Tests kill a process at a named step (SHMX_TEST_KILL_AT) to prove
     * every state it can leave is recovered.  Cold paths only. */
    const char *at = getenv("SHMX_TEST_KILL_AT");
    if (at && strcmp(at, point) == 0) shmx_plat_die();
}

static void connected_dec(const shmx_region *r)
{
    uint32_t *p = &r->gh->readers_connected;
    uint32_t v = shmx_load_relaxed32(p);
    /* Never below 0: a count already off (a peer died between its two
     * stores) must not wrap to 4 billion readers. */
    while (v != 0 && !shmx_cas32_update(p, &v, v - 1u)) {
    }
}

static int ours(const shmx_reader_slot *rs, uint32_t state)
{
    return state >= RS_FREEING || (state == RS_ATTACHED && rs->mark == SHMX_READER_MARK);
}

static void drop_pins(const shmx_region *r, uint32_t i)
{
    /* After the seq_cst RMWs the producer's claim sees the slots unpinned
     * by this reader (slots.c). */
    if (r->ext && i < 64) shmx_slot_unpin_all(r, 1ull << i);
}

/* Free slot i, found in `state`.  The caller holds the slot's lock (its own
 * reader's, or taken by reclaim), or the region is legacy and the caller
 * won the slot by CAS. */
static void free_slot(const shmx_region *r, uint32_t i, uint32_t state, int keep_id)
{
    shmx_reader_slot *rs = shmx_reader_at(r, i);
    int counted = state == RS_ATTACHED || state == RS_FREEING;
    /* seq_cst store: taken for everyone before we clear anything. */
    shmx_store_seqcst32(&rs->in_use, counted ? (uint32_t)RS_FREEING : (uint32_t)RS_FREEING_UNCOUNTED);
    shmx_test_point("free:claimed");
    drop_pins(r, i);
    /* reader_id is kept by a reader leaving on its own: the server names a
     * control message's sender from it, and a message sent just before
     * close() is usually polled after it.  The next attacher overwrites it. */
    if (!keep_id) shmx_store_relaxed64(&rs->reader_id, 0);
    shmx_store_relaxed64(&rs->heartbeat, 0);
    shmx_store_relaxed64(&rs->last_frame_seen, 0);
    if (r->ext) {
        rs->mark = 0;
        rs->pid = 0;
        rs->pid_start = 0;
        shmx_store_relaxed64(&rs->frames_read, 0);
        shmx_store_relaxed64(&rs->frames_dropped, 0);
    }
    shmx_test_point("free:cleared");
    if (counted) {
        connected_dec(r);
        shmx_store_relaxed32(&rs->in_use, RS_FREEING_UNCOUNTED);
    }
    shmx_test_point("free:uncounted");
    /* Release: the cleared fields are visible before the slot is free;
     * pairs with the attacher's CAS (seq_cst) on in_use. */
    shmx_store_release32(&rs->in_use, RS_FREE);
}

int shmx_reader_reclaim(const shmx_region *r, uint32_t i)
{
    if (!r->ext) return 0; /* a legacy region: nobody holds locks */
    shmx_reader_slot *rs = shmx_reader_at(r, i);
    uint32_t state = shmx_load_acquire32(&rs->in_use);
    if (state == RS_FREE || !ours(rs, state)) return 0;
    /* Held: its reader (or another reclaimer) is alive. */
    if (shmx_plat_lock(r->map.fd, SHMX_LOCK_READER(i)) != 0) return 0;
    shmx_test_point("reclaim:locked");
    /* With the lock nobody of ours changes the slot; a legacy attacher
     * could only have taken it from FREE. */
    state = shmx_load_acquire32(&rs->in_use);
    int freed = 0;
    if (state != RS_FREE && ours(rs, state)) {
        free_slot(r, i, state, 0);
        freed = 1;
    }
    shmx_plat_unlock(r->map.fd, SHMX_LOCK_READER(i));
    return freed;
}

int shmx_reader_attach(const shmx_region *r, uint32_t i, uint64_t reader_id)
{
    shmx_reader_slot *rs = shmx_reader_at(r, i);
    if (!r->ext) {
        /* shmx 1.0.1 protocol: CAS 0 -> 1, no lock, no mark. */
        if (!shmx_cas32(&rs->in_use, RS_FREE, RS_ATTACHED)) return 0;
        shmx_store_relaxed64(&rs->last_frame_seen, 0);
        shmx_store_release64(&rs->heartbeat, shmx_plat_now_ns());
        shmx_store_release64(&rs->reader_id, reader_id);
        shmx_fetch_add32(&r->gh->readers_connected, 1);
        return 1;
    }
    (void)shmx_reader_reclaim(r, i); /* its process died without leaving */
    if (shmx_load_acquire32(&rs->in_use) != RS_FREE) return 0;
    /* Lock first, then claim: whoever finds the slot taken and its lock
     * free knows its owner died. */
    if (shmx_plat_lock(r->map.fd, SHMX_LOCK_READER(i)) != 0) return 0;
    shmx_test_point("attach:locked");
    if (!shmx_cas32(&rs->in_use, RS_FREE, RS_ATTACHING)) {
        shmx_plat_unlock(r->map.fd, SHMX_LOCK_READER(i));
        return 0;
    }
    shmx_test_point("attach:claimed");
    rs->mark = SHMX_READER_MARK;
    rs->pid = shmx_plat_pid();
    rs->pid_start = shmx_plat_pid_start(rs->pid);
    shmx_store_relaxed64(&rs->frames_read, 0);
    shmx_store_relaxed64(&rs->frames_dropped, 0);
    shmx_store_relaxed64(&rs->last_frame_seen, 0);
    shmx_store_release64(&rs->heartbeat, shmx_plat_now_ns());
    shmx_store_release64(&rs->reader_id, reader_id);
    shmx_test_point("attach:filled");
    /* Release: the fields above before the slot shows as attached; a
     * server recounting legacy readers then sees our mark. */
    shmx_store_release32(&rs->in_use, RS_ATTACHED);
    shmx_test_point("attach:attached");
    shmx_fetch_add32(&r->gh->readers_connected, 1);
    return 1;
}

void shmx_reader_detach(const shmx_region *r, uint32_t i, uint64_t reader_id)
{
    shmx_reader_slot *rs = shmx_reader_at(r, i);
    if (!r->ext) {
        /* No lock on a legacy region: claim 1 -> 2 and check it is still
         * ours (a 1.0.1 server may have reaped us by heartbeat age and
         * another reader taken the slot). */
        for (int spin = 0; spin < 1000000; spin++) {
            if (shmx_cas32(&rs->in_use, RS_ATTACHED, RS_FREEING)) {
                if (shmx_load_acquire64(&rs->reader_id) != reader_id) {
                    shmx_store_release32(&rs->in_use, RS_ATTACHED);
                    return;
                }
                free_slot(r, i, RS_FREEING, 1);
                return;
            }
            if (shmx_load_acquire32(&rs->in_use) != RS_FREEING) return;
            shmx_cpu_relax();
        }
        return;
    }
    /* We hold the slot's lock: nobody else frees it.  Only eviction moved
     * it (ATTACHED -> EVICTED). */
    uint32_t state = shmx_load_acquire32(&rs->in_use);
    shmx_test_point("detach:locked");
    if (state == RS_ATTACHED || state == RS_EVICTED) free_slot(r, i, state, 1);
    shmx_plat_unlock(r->map.fd, SHMX_LOCK_READER(i));
}

int shmx_reader_evicted(const shmx_region *r, uint32_t i)
{
    return r->ext && shmx_load_relaxed32(&shmx_reader_at(r, i)->in_use) != RS_ATTACHED;
}

int shmx_reader_evict(const shmx_region *r, uint32_t i, uint64_t now_ns, uint64_t timeout_ns)
{
    shmx_reader_slot *rs = shmx_reader_at(r, i);
    uint32_t state = shmx_load_acquire32(&rs->in_use);
    if (state == RS_EVICTED) {
        drop_pins(r, i); /* an evictor may have died before it dropped them */
        return 0;
    }
    if (state != RS_ATTACHED) return 0;
    uint64_t hb = shmx_load_acquire64(&rs->heartbeat);
    if (hb == 0 || now_ns <= hb || now_ns - hb <= timeout_ns) return 0;
    if (rs->mark != SHMX_READER_MARK || !r->ext) {
        /* A shmx 1.0.1 reader has no lock and no pins: its heartbeat is all
         * we know, and freeing its slot is what 1.0.1 does. */
        if (!shmx_cas32(&rs->in_use, RS_ATTACHED, RS_FREEING)) return 0;
        free_slot(r, i, RS_FREEING, 0);
        return 1;
    }
    /* One of ours, alive (it holds its lock) but silent: take its pins so
     * the producer can reuse the slots it held.  seq_cst CAS, then the pin
     * RMWs; its client checks its state at every call. */
    if (!shmx_cas32(&rs->in_use, RS_ATTACHED, RS_EVICTED)) return 0;
    connected_dec(r);
    shmx_test_point("evict:marked");
    drop_pins(r, i);
    return 1;
}

uint32_t shmx_reader_liveness(const shmx_region *r, uint32_t i)
{
    shmx_reader_slot *rs = shmx_reader_at(r, i);
    uint32_t state = shmx_load_acquire32(&rs->in_use);
    if (state == RS_FREE) return SHMX_DEAD;
    if (!r->ext || !ours(rs, state)) return SHMX_UNKNOWN; /* legacy reader: no lock */
    return shmx_plat_lock_probe(r->map.fd, SHMX_LOCK_READER(i));
}

void shmx_reader_fill(const shmx_region *r, uint32_t i, shmx_reader_info *out)
{
    shmx_reader_slot *rs = shmx_reader_at(r, i);
    memset(out, 0, sizeof *out);
    out->struct_size = (uint32_t)sizeof *out;
    out->index = i;
    uint32_t state = shmx_load_acquire32(&rs->in_use);
    out->in_use = state != RS_FREE;
    out->reader_id = shmx_load_acquire64(&rs->reader_id);
    out->heartbeat = shmx_load_acquire64(&rs->heartbeat);
    out->last_frame_seen = shmx_load_acquire64(&rs->last_frame_seen);
    out->legacy = out->in_use && !ours(rs, state);
    if (out->in_use && !out->legacy) {
        out->pid = rs->pid;
        out->frames_read = shmx_load_relaxed64(&rs->frames_read);
        out->frames_dropped = shmx_load_relaxed64(&rs->frames_dropped);
    }
    out->alive = shmx_reader_liveness(r, i);
}

shmx_status shmx_readers_list(const shmx_region *r, shmx_reader_info *out, uint32_t cap,
                              uint32_t *count)
{
    if (!count) return shmx_fail(SHMX_EINVAL, "readers: count is NULL");
    uint32_t n = r->reader_slots < cap ? r->reader_slots : cap;
    for (uint32_t i = 0; i < n && out; i++) {
        shmx_reader_info info;
        shmx_reader_fill(r, i, &info);
        SHMX_COPY_OUT(&out[i], &info);
    }
    *count = r->reader_slots;
    return SHMX_OK;
}
