/*
 * test_stress_control.c - control rings under load.
 *
 * Part 1 (deterministic): one client fills its ring while nobody drains it
 * until shmx_client_send_control returns SHMX_EFULL; the server then gets
 * every message exactly once, in order, and the client can send again.
 *
 * Part 2 (threads): CLIENTS client threads, each with its own shmx_client,
 * send sequence-numbered messages of pseudo-random sizes into small rings
 * (so they fill and wrap all the time) for about SHMX_TEST_SECONDS (default
 * 1) seconds; a message refused with SHMX_EFULL is retried unchanged.  The
 * server thread waits with shmx_server_wait_control and drains; it must get
 * every message exactly once and in order per client, with the right type,
 * sender, length and every body byte.  Now and then it polls with a buffer
 * that is too small and checks that SHMX_ETOOBIG keeps the message.
 */
#include "shmx_test.h"

#include <pthread.h>
#include <sched.h>

#define CLIENTS 4
#define RING_BYTES 512u     /* control_per_reader: 496 bytes of messages */
#define MAX_BODY 200u
#define TYPE_BASE 0x3100u
#define TYPE_END 0x3FFFu

static char g_name[128];
static uint64_t g_reader_ids[CLIENTS];   /* written before g_ready is bumped */
static int g_ready;                      /* atomic: clients attached */
static int g_drained;                    /* atomic: server has everything */

static uint32_t body_size(uint32_t client, uint32_t seq)
{
    uint32_t x = (seq + 1u) * 2654435761u ^ (client + 1u) * 40503u;
    x ^= x >> 15;
    uint32_t n = 8u + x % (MAX_BODY - 7u);
    if (seq % 13 == 0) n = 8;          /* the smallest (header only) */
    if (seq % 17 == 0) n = MAX_BODY;   /* the largest */
    return n;
}

static void fill_body(uint8_t *p, uint32_t n, uint32_t client, uint32_t seq)
{
    memcpy(p, &client, 4);
    memcpy(p + 4, &seq, 4);
    for (uint32_t i = 8; i < n; i++) p[i] = (uint8_t)(client * 37u + seq * 11u + i);
}

static int body_ok(const uint8_t *p, uint32_t n, uint32_t client, uint32_t seq)
{
    uint32_t c, q;
    if (n < 8) return 0;
    memcpy(&c, p, 4);
    memcpy(&q, p + 4, 4);
    if (c != client || q != seq) return 0;
    for (uint32_t i = 8; i < n; i++)
        if (p[i] != (uint8_t)(client * 37u + seq * 11u + i)) return 0;
    return 1;
}

/* ---------------------------------------------------------- part 1 */

static void test_fill_and_drain(void)
{
    char name[128];
    shmx_server_config cfg;
    shmx_server_config_init(&cfg);
    cfg.control_per_reader = RING_BYTES;
    cfg.reader_slots = 2;
    shmx_server *s = NULL;
    REQUIRE_OK(shmx_server_create(t_name(name, sizeof name, "ctl-fill"), &cfg, &s));
    shmx_client *c = NULL;
    REQUIRE_OK(shmx_client_open(name, NULL, &c));
    uint8_t body[MAX_BODY], rx[MAX_BODY];
    shmx_control_msg m;
    uint32_t sent = 0, got = 0;
    for (int round = 0; round < 50; round++) {
        /* Fill until refused. */
        uint32_t in_round = 0;
        for (;;) {
            uint32_t n = body_size(0, sent);
            fill_body(body, n, 0, sent);
            shmx_status st = shmx_client_send_control(c, TYPE_BASE, body, n);
            if (st == SHMX_EFULL) break;
            CHECK_OK(st);
            if (st != SHMX_OK) break;
            sent++;
            in_round++;
        }
        /* A refused send changes nothing the server sees. */
        CHECK(in_round >= 1 && in_round <= (RING_BYTES - 16u) / 16u);
        for (;;) {
            m.struct_size = sizeof m;
            shmx_status st = shmx_server_next_control(s, &m, rx, sizeof rx);
            if (st == SHMX_EAGAIN) break;
            CHECK_OK(st);
            if (st != SHMX_OK) break;
            CHECK(m.type == TYPE_BASE && m.length == body_size(0, got));
            CHECK(body_ok(rx, m.length, 0, got));
            CHECK(m.reader_id == shmx_client_reader_id(c));
            got++;
        }
        CHECK(got == sent);
    }
    CHECK(sent > 100);
    /* Sending works again after draining. */
    fill_body(body, 8, 0, sent);
    CHECK_OK(shmx_client_send_control(c, TYPE_BASE, body, 8));
    shmx_client_close(c);
    shmx_server_destroy(s);
}

/* ---------------------------------------------------------- part 2 */

struct client_arg {
    uint32_t index;
    uint32_t sent;
    uint64_t full;
};

static void *client_thread(void *p)
{
    struct client_arg *a = (struct client_arg *)p;
    shmx_client *c = NULL;
    REQUIRE_OK(shmx_client_open(g_name, NULL, &c));
    g_reader_ids[a->index] = shmx_client_reader_id(c);
    __atomic_fetch_add(&g_ready, 1, __ATOMIC_RELEASE);
    while (__atomic_load_n(&g_ready, __ATOMIC_ACQUIRE) < CLIENTS) sched_yield();

    uint8_t body[MAX_BODY];
    const uint64_t end = t_now_ns() + (uint64_t)(t_seconds(1.0) * 1e9);
    const uint64_t give_up = end + 20000000000ull;
    uint32_t seq = 0;
    int finished = 0;
    while (!finished) {
        uint64_t now = t_now_ns();
        if (now > give_up) {
            T_FAIL("client %u: could not send for 20 s (ring stuck full?)", a->index);
            break;
        }
        shmx_status st;
        if (now < end) {
            uint32_t n = body_size(a->index, seq);
            fill_body(body, n, a->index, seq);
            st = shmx_client_send_control(c, TYPE_BASE + a->index, body, n);
            if (st == SHMX_OK) seq++;
        } else {
            /* The last message says how many came before it. */
            st = shmx_client_send_control(c, TYPE_END, &seq, 4);
            if (st == SHMX_OK) finished = 1;
        }
        if (st == SHMX_EFULL) {
            a->full++;
            sched_yield();
        } else if (st != SHMX_OK) {
            CHECK_OK(st);
            break;
        }
    }
    a->sent = seq;
    /* Stay attached until the server has drained everything. */
    while (!__atomic_load_n(&g_drained, __ATOMIC_ACQUIRE) && t_now_ns() < give_up) t_sleep_us(1000);
    shmx_client_close(c);
    return NULL;
}

static void test_threads(void)
{
    shmx_server_config cfg;
    shmx_server_config_init(&cfg);
    cfg.control_per_reader = RING_BYTES;
    cfg.reader_slots = 8;
    shmx_server *s = NULL;
    REQUIRE_OK(shmx_server_create(t_name(g_name, sizeof g_name, "ctl-threads"), &cfg, &s));
    pthread_t th[CLIENTS];
    struct client_arg args[CLIENTS];
    memset(args, 0, sizeof args);
    for (uint32_t i = 0; i < CLIENTS; i++) {
        args[i].index = i;
        REQUIRE(pthread_create(&th[i], NULL, client_thread, &args[i]) == 0);
    }
    while (__atomic_load_n(&g_ready, __ATOMIC_ACQUIRE) < CLIENTS) t_sleep_us(500);

    uint32_t expect[CLIENTS] = {0}, ring_of[CLIENTS];
    int ended[CLIENTS] = {0}, n_ended = 0;
    for (int i = 0; i < CLIENTS; i++) ring_of[i] = 0xFFFFFFFFu;
    uint8_t rx[MAX_BODY], tiny[4];
    uint64_t received = 0, waits = 0, toobig = 0;
    const uint64_t give_up = t_now_ns() + (uint64_t)(t_seconds(1.0) * 1e9) + 25000000000ull;
    shmx_control_msg m;
    while (n_ended < CLIENTS) {
        if (t_now_ns() > give_up) {
            T_FAIL("server: gave up with %d of %d clients finished", n_ended, CLIENTS);
            break;
        }
        shmx_status st = shmx_server_wait_control(s, 50000000);
        waits++;
        if (st == SHMX_ETIMEDOUT) continue;
        REQUIRE_OK(st);
        for (;;) {
            memset(&m, 0, sizeof m);
            m.struct_size = sizeof m;
            if ((received % 97) == 5) {
                st = shmx_server_next_control(s, &m, tiny, sizeof tiny);
                if (st == SHMX_ETOOBIG) {
                    CHECK(m.length > sizeof tiny && m.length <= MAX_BODY);
                    toobig++;
                } else if (st == SHMX_OK) {
                    CHECK(m.length <= sizeof tiny); /* only an end message fits */
                    CHECK(m.type == TYPE_END);
                    memcpy(rx, tiny, m.length);
                    goto have_message;
                }
                m.struct_size = sizeof m;
            }
            st = shmx_server_next_control(s, &m, rx, sizeof rx);
            if (st == SHMX_EAGAIN) break;
            REQUIRE_OK(st);
        have_message:
            received++;
            uint32_t who;
            if (m.type == TYPE_END) {
                /* Identify the sender by its reader id. */
                who = CLIENTS;
                for (uint32_t i = 0; i < CLIENTS; i++)
                    if (g_reader_ids[i] == m.reader_id) who = i;
                REQUIRE(who < CLIENTS && !ended[who] && m.length == 4);
                uint32_t total;
                memcpy(&total, rx, 4);
                CHECK(total == expect[who]);
                ended[who] = 1;
                n_ended++;
                continue;
            }
            who = m.type - TYPE_BASE;
            if (who >= CLIENTS) {
                T_FAIL("server: message of type 0x%x", m.type);
                continue;
            }
            CHECK(!ended[who]);
            CHECK(m.reader_id == g_reader_ids[who]);
            if (ring_of[who] == 0xFFFFFFFFu) ring_of[who] = m.reader_index;
            CHECK(m.reader_index == ring_of[who]);
            if (m.length != body_size(who, expect[who]) || !body_ok(rx, m.length, who, expect[who])) {
                uint32_t q = 0;
                if (m.length >= 8) memcpy(&q, rx + 4, 4);
                T_FAIL("client %u: expected message %u (%u bytes), got seq %u (%u bytes)", who,
                       expect[who], body_size(who, expect[who]), q, m.length);
            }
            expect[who]++;
        }
    }
    /* Nothing after the end messages. */
    m.struct_size = sizeof m;
    CHECK_ST(shmx_server_next_control(s, &m, rx, sizeof rx), SHMX_EAGAIN);
    __atomic_store_n(&g_drained, 1, __ATOMIC_RELEASE);
    uint64_t full = 0;
    for (uint32_t i = 0; i < CLIENTS; i++) {
        pthread_join(th[i], NULL);
        CHECK(args[i].sent == expect[i]);
        CHECK(args[i].sent > 0);
        full += args[i].full;
        printf("client %u: %u messages, %llu EFULL retries\n", i, args[i].sent,
               (unsigned long long)args[i].full);
    }
    printf("server: %llu messages, %llu waits, %llu ETOOBIG polls\n", (unsigned long long)received,
           (unsigned long long)waits, (unsigned long long)toobig);
    CHECK(full > 0); /* the rings really were full at times */
    shmx_server_destroy(s);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    test_fill_and_drain();
    test_threads();
    return t_finish("test_stress_control");
}
