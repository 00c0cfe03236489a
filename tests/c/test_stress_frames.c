/*
 * test_stress_frames.c - one producer thread and three reader threads, each
 * reader with its own shmx_client, for about SHMX_TEST_SECONDS (default 1.5)
 * seconds.  Every byte of every frame a reader gets is checked against the
 * pattern the producer wrote for that frame id, so a torn frame, a frame
 * overwritten under a pin, a wrong stream view or a lost frame in read_next
 * shows up as a mismatch.
 *
 *   reader 0: shmx_client_next only, busy polling: ids must be consecutive
 *             apart from the frames reported in `dropped`.
 *   reader 1: shmx_client_latest: ids never go backwards.
 *   reader 2: shmx_client_wait + next; now and then it holds its pin for a
 *             while and checks the frame again after the producer has moved
 *             on (the pinned slot must not be written).
 *
 * With three readers pinning and three slots, the producer meets SHMX_EBUSY
 * and retries, which is part of what is tested.
 *
 * Note for ThreadSanitizer runs: each client maps the region at its own
 * address, and TSan tracks memory by address, so it sees the library's
 * per-handle and process-wide state but not the cross-mapping accesses to
 * the shared region; those are what the byte checks here are for.
 */
#include "shmx_test.h"

#include <pthread.h>
#include <sched.h>

enum { ID_HEAD = 1, ID_BLOB = 2, ID_TAIL = 3 };
#define BLOB_MAX 60000u
#define READERS 3

static const shmx_stream_spec k_streams[] = {
    {ID_HEAD, SHMX_DT_U64, 4, SHMX_LAYOUT_AOS_VECTOR, 32, "head", NULL, 0},
    {ID_BLOB, SHMX_DT_U8, 1, SHMX_LAYOUT_SOA_SCALAR, 1, "blob", NULL, 0},
    {ID_TAIL, SHMX_DT_F64, 1, SHMX_LAYOUT_SOA_SCALAR, 8, "tail", NULL, 0},
};

static char g_name[128];
static uint64_t g_last_frame;   /* atomic: id of the final frame, 0 while running */
static uint64_t g_published;    /* atomic */
static int g_started;           /* atomic: readers attached */

/* Deterministic frame content: size and bytes follow from the frame id. */
static uint32_t blob_size(uint64_t k)
{
    uint64_t x = k * 0x9E3779B97F4A7C15ull;
    x ^= x >> 29;
    uint32_t n = (uint32_t)(x % BLOB_MAX) + 1u;
    if (k % 7 == 0) n = BLOB_MAX; /* full-size frames regularly */
    if (k % 11 == 0) n = 1;
    return n;
}

static void fill_blob(uint8_t *p, uint32_t n, uint64_t k)
{
    uint8_t seed = (uint8_t)(k * 131u);
    for (uint32_t i = 0; i < n; i++) p[i] = (uint8_t)(seed + i + (i >> 8) * 7u);
}

/* 0 when the blob is the one of frame k. */
static int blob_mismatch(const uint8_t *p, uint32_t n, uint64_t k)
{
    uint8_t seed = (uint8_t)(k * 131u);
    int bad = 0;
    for (uint32_t i = 0; i < n; i++) bad |= p[i] != (uint8_t)(seed + i + (i >> 8) * 7u);
    return bad;
}

/* ---------------------------------------------------------------- producer */

struct producer_stats {
    uint64_t busy, loans, controls;
};

static void *producer(void *arg)
{
    struct producer_stats *ps = (struct producer_stats *)arg;
    shmx_server *s = NULL;
    shmx_server_config cfg;
    shmx_server_config_init(&cfg);
    cfg.streams = k_streams;
    cfg.stream_count = 3;
    cfg.frame_bytes_cap = BLOB_MAX;
    cfg.slots = 3;
    cfg.reader_slots = 8;
    cfg.control_per_reader = 1024;
    REQUIRE_OK(shmx_server_create(g_name, &cfg, &s));
    /* Let the readers attach before the clock starts. */
    while (__atomic_load_n(&g_started, __ATOMIC_ACQUIRE) < READERS) t_sleep_us(1000);

    static uint8_t blob[BLOB_MAX];
    const uint64_t end = t_now_ns() + (uint64_t)(t_seconds(1.5) * 1e9);
    uint64_t k = 0;
    shmx_control_msg m;
    uint8_t cbuf[64];
    while (t_now_ns() < end) {
        uint64_t f;
        shmx_status st = shmx_server_begin_frame(s, &f);
        if (st == SHMX_EBUSY) { /* every slot pinned: nothing was touched */
            ps->busy++;
            sched_yield();
            continue;
        }
        REQUIRE_OK(st);
        k++;
        uint32_t n = blob_size(k);
        uint64_t head[4] = {k, n, (uint64_t)(k * 131u) & 0xFF, ~k};
        double tail = (double)k * 0.5;
        if (k & 1) { /* zero copy: write straight into the slot */
            void *dst = NULL;
            REQUIRE_OK(shmx_server_loan(s, f, ID_BLOB, n, &dst));
            fill_blob((uint8_t *)dst, n, k);
            ps->loans++;
        } else {
            fill_blob(blob, n, k);
            REQUIRE_OK(shmx_server_append(s, f, ID_BLOB, blob, n, n));
        }
        REQUIRE_OK(shmx_server_append(s, f, ID_HEAD, head, sizeof head, 1));
        REQUIRE_OK(shmx_server_append(s, f, ID_TAIL, &tail, 8, 1));
        REQUIRE_OK(shmx_server_publish(s, f, (double)k));
        __atomic_store_n(&g_published, k, __ATOMIC_RELEASE);
        /* Readers report progress over the control ring. */
        m.struct_size = sizeof m;
        while (shmx_server_next_control(s, &m, cbuf, sizeof cbuf) == SHMX_OK) {
            CHECK(m.type == SHMX_TLV_CONTROL_USER && m.length == 8);
            ps->controls++;
        }
        if ((k & 1023) == 0) {
            shmx_reader_info ri[8];
            uint32_t count = 0;
            for (int i = 0; i < 8; i++) ri[i].struct_size = sizeof ri[i];
            CHECK_OK(shmx_server_readers(s, ri, 8, &count));
            uint32_t live = 0;
            for (uint32_t i = 0; i < count; i++) live += ri[i].in_use && ri[i].alive == SHMX_ALIVE;
            CHECK(live == READERS);
        }
    }
    __atomic_store_n(&g_last_frame, k, __ATOMIC_RELEASE);
    /* Wait for the readers to finish before the region goes away (they
     * would cope, but then the last frames could not be checked). */
    const uint64_t give_up = t_now_ns() + 20000000000ull;
    shmx_header_info h;
    h.struct_size = sizeof h;
    do {
        t_sleep_us(2000);
        while (shmx_server_next_control(s, &m, cbuf, sizeof cbuf) == SHMX_OK) ps->controls++;
        CHECK_OK(shmx_server_header_info(s, &h));
    } while (h.readers_connected > 0 && t_now_ns() < give_up);
    CHECK(h.readers_connected == 0);
    CHECK(h.frame_seq == k);
    shmx_server_destroy(s);
    return NULL;
}

/* ----------------------------------------------------------------- readers */

struct reader_stats {
    int index;
    uint64_t frames, dropped, holds, first_id, last_id, bad;
};

/* Check the frame the client returned last; returns its id (0 on error). */
static uint64_t verify_current(shmx_client *c, const shmx_frame_info *fi, struct reader_stats *rs)
{
    shmx_stream_view v[3];
    if (fi->stream_count != 3) {
        T_FAIL("reader %d: frame %llu has %u streams", rs->index, (unsigned long long)fi->frame_id,
               fi->stream_count);
        rs->bad++;
        return 0;
    }
    for (uint32_t i = 0; i < 3; i++) {
        v[i].struct_size = sizeof v[i];
        if (shmx_client_frame_stream(c, i, &v[i]) != SHMX_OK) {
            T_FAIL("reader %d: frame_stream %u: %s", rs->index, i, shmx_last_error());
            rs->bad++;
            return 0;
        }
    }
    const shmx_stream_view *head = NULL, *blob = NULL, *tail = NULL;
    for (int i = 0; i < 3; i++) {
        if (v[i].stream_id == ID_HEAD) head = &v[i];
        if (v[i].stream_id == ID_BLOB) blob = &v[i];
        if (v[i].stream_id == ID_TAIL) tail = &v[i];
    }
    if (!head || !blob || !tail || head->bytes != 32 || tail->bytes != 8) {
        T_FAIL("reader %d: frame %llu: wrong stream set", rs->index, (unsigned long long)fi->frame_id);
        rs->bad++;
        return 0;
    }
    uint64_t h[4];
    double t;
    memcpy(h, head->data, sizeof h);
    memcpy(&t, tail->data, 8);
    uint64_t k = fi->frame_id;
    if (h[0] != k || h[3] != ~k || h[1] != blob_size(k) || blob->bytes != h[1] ||
        blob->elem_count != h[1] || t != (double)k * 0.5 || fi->sim_time != (double)k) {
        T_FAIL("reader %d: frame %llu: header/tail do not match (head id %llu, %llu bytes)", rs->index,
               (unsigned long long)k, (unsigned long long)h[0], (unsigned long long)h[1]);
        rs->bad++;
        return 0;
    }
    if (blob_mismatch((const uint8_t *)blob->data, blob->bytes, k)) {
        T_FAIL("reader %d: frame %llu: blob bytes differ", rs->index, (unsigned long long)k);
        rs->bad++;
        return 0;
    }
    return k;
}

static void *reader(void *arg)
{
    struct reader_stats *rs = (struct reader_stats *)arg;
    shmx_client *c = NULL;
    uint64_t deadline = t_now_ns() + 5000000000ull;
    shmx_status st;
    while ((st = shmx_client_open(g_name, NULL, &c)) == SHMX_ENOENT && t_now_ns() < deadline) t_sleep_us(500);
    REQUIRE_OK(st);
    __atomic_fetch_add(&g_started, 1, __ATOMIC_RELEASE);

    uint64_t rng = 0x1234567ull + (uint64_t)rs->index * 0x9E37ull;
    shmx_frame_info fi;
    uint64_t stop_by = t_now_ns() + (uint64_t)(t_seconds(1.5) * 1e9) + 20000000000ull;
    for (;;) {
        uint64_t last = __atomic_load_n(&g_last_frame, __ATOMIC_ACQUIRE);
        if (last && rs->last_id >= last) break;
        if (t_now_ns() > stop_by) {
            T_FAIL("reader %d: gave up at frame %llu", rs->index, (unsigned long long)rs->last_id);
            break;
        }
        memset(&fi, 0, sizeof fi);
        fi.struct_size = sizeof fi;
        if (rs->index == 2) {
            st = shmx_client_wait(c, 50000000);
            if (st == SHMX_ETIMEDOUT) continue;
            if (st != SHMX_OK) { CHECK_OK(st); break; }
        }
        st = rs->index == 1 ? shmx_client_latest(c, &fi) : shmx_client_next(c, &fi);
        if (st == SHMX_EAGAIN) {
            if (rs->index != 2) sched_yield();
            continue;
        }
        if (st != SHMX_OK) { CHECK_OK(st); break; }
        uint64_t k = fi.frame_id;
        if (k == rs->last_id && rs->index == 1) { /* latest: nothing new */
            sched_yield();
            continue;
        }
        if (k <= rs->last_id) {
            T_FAIL("reader %d: frame %llu after %llu", rs->index, (unsigned long long)k,
                   (unsigned long long)rs->last_id);
            rs->bad++;
        }
        if (rs->index != 1 && rs->last_id != 0 && k != rs->last_id + 1 + fi.dropped) {
            T_FAIL("reader %d: frame %llu after %llu with %llu dropped", rs->index, (unsigned long long)k,
                   (unsigned long long)rs->last_id, (unsigned long long)fi.dropped);
            rs->bad++;
        }
        if (verify_current(c, &fi, rs) != k) break;
        if (rs->frames == 0) rs->first_id = k;
        rs->frames++;
        rs->dropped += fi.dropped;
        rs->last_id = k;
        /* Hold the pin while the producer goes on, then check again. */
        if (rs->index == 2 && (t_rand(&rng) & 15) == 0) {
            uint64_t seen = __atomic_load_n(&g_published, __ATOMIC_ACQUIRE);
            uint64_t until = t_now_ns() + 20000000ull;
            while (__atomic_load_n(&g_published, __ATOMIC_ACQUIRE) < seen + 4 &&
                   !__atomic_load_n(&g_last_frame, __ATOMIC_ACQUIRE) && t_now_ns() < until)
                t_sleep_us(100);
            if (verify_current(c, &fi, rs) != k) break;
            rs->holds++;
        }
        if ((rs->frames & 255) == 0) {
            st = shmx_client_send_control(c, SHMX_TLV_CONTROL_USER, &rs->frames, 8);
            if (st != SHMX_EFULL) CHECK_OK(st);
        }
    }
    shmx_client_close(c);
    return NULL;
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    t_name(g_name, sizeof g_name, "stress-frames");
    pthread_t pt, rt[READERS];
    struct producer_stats ps;
    struct reader_stats rs[READERS];
    memset(&ps, 0, sizeof ps);
    memset(rs, 0, sizeof rs);
    REQUIRE(pthread_create(&pt, NULL, producer, &ps) == 0);
    for (int i = 0; i < READERS; i++) {
        rs[i].index = i;
        REQUIRE(pthread_create(&rt[i], NULL, reader, &rs[i]) == 0);
    }
    for (int i = 0; i < READERS; i++) pthread_join(rt[i], NULL);
    pthread_join(pt, NULL);

    uint64_t last = __atomic_load_n(&g_last_frame, __ATOMIC_ACQUIRE);
    printf("published %llu frames (%llu loaned), %llu begin_frame EBUSY, %llu control messages\n",
           (unsigned long long)last, (unsigned long long)ps.loans, (unsigned long long)ps.busy,
           (unsigned long long)ps.controls);
    for (int i = 0; i < READERS; i++) {
        printf("reader %d: %llu frames checked, %llu dropped, %llu pin holds, last %llu\n", i,
               (unsigned long long)rs[i].frames, (unsigned long long)rs[i].dropped,
               (unsigned long long)rs[i].holds, (unsigned long long)rs[i].last_id);
        CHECK(rs[i].bad == 0);
        CHECK(rs[i].frames > 0);
        CHECK(rs[i].last_id == last);
    }
    CHECK(last >= 10);
    /* The in-order readers account for every frame from their first one:
     * each was either read or reported dropped. */
    for (int i = 0; i < READERS; i += 2)
        CHECK(rs[i].frames + rs[i].dropped == last - rs[i].first_id + 1);
    return t_finish("test_stress_frames");
}
