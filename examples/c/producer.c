/*
 * producer.c - publish frames with libshmx from plain C.
 *
 *   producer [--name NAME] [--frames N] [--bytes B] [--rate HZ]
 *            [--wait-readers R] [--expect-control M] [--linger-ms MS]
 *
 * The region has three streams, the "demo schema" every shmx example in C,
 * Go, Julia and Python agrees on:
 *
 *   id 1 "seq"     uint64 x 1   frame number k = 1, 2, ... N
 *   id 2 "pixels"  uint8  x B   byte i of frame k is (k + i) % 251
 *   id 3 "stamp"   float64 x 1  k / 1000.0 (also the frame's sim_time)
 *
 * so a consumer can check every byte it receives.  Control messages from
 * consumers ("ping 0", "ping 1", ... per consumer) are printed; with
 * --expect-control M the producer waits for M of them before it exits and
 * fails if any is malformed or out of order.
 *
 * Build: cc -std=c99 producer.c $(pkg-config --cflags --libs shmx)
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <shmx.h>

enum { STREAM_SEQ = 1, STREAM_PIXELS = 2, STREAM_STAMP = 3 };
#define MAX_READERS 16

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(ns / 1000000000u);
    ts.tv_nsec = (long)(ns % 1000000000u);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !g_stop) {
    }
}

static int fail(const char *what, shmx_status st)
{
    fprintf(stderr, "producer: %s: %s (%s)\n", what, shmx_strerror(st), shmx_last_error());
    return 1;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: producer [--name NAME] [--frames N] [--bytes B] [--rate HZ]\n"
            "                [--wait-readers R] [--expect-control M] [--linger-ms MS]\n");
}

/* Control messages: "ping <i>", numbered from 0 by each consumer. */
struct control_state {
    uint64_t reader_id[MAX_READERS];
    uint32_t next_ping[MAX_READERS];
    unsigned received, bad;
};

static void drain_control(shmx_server *s, struct control_state *cs)
{
    shmx_control_msg msg;
    char body[256];
    for (;;) {
        memset(&msg, 0, sizeof msg);
        msg.struct_size = sizeof msg;
        shmx_status st = shmx_server_next_control(s, &msg, body, sizeof body - 1);
        if (st == SHMX_EAGAIN) return;
        if (st != SHMX_OK) { /* SHMX_ETOOBIG: not one of ours; skip it */
            char *big = malloc(msg.length ? msg.length : 1);
            if (big && shmx_server_next_control(s, &msg, big, msg.length) == SHMX_OK)
                fprintf(stderr, "producer: unexpected %u-byte control message\n", msg.length);
            free(big);
            cs->bad++;
            continue;
        }
        body[msg.length] = 0;
        cs->received++;
        uint32_t r = msg.reader_index < MAX_READERS ? msg.reader_index : MAX_READERS - 1;
        if (cs->reader_id[r] != msg.reader_id) { /* a new consumer in this slot */
            cs->reader_id[r] = msg.reader_id;
            cs->next_ping[r] = 0;
        }
        char want[32];
        snprintf(want, sizeof want, "ping %u", cs->next_ping[r]);
        int ok = msg.type == SHMX_TLV_CONTROL_USER && strlen(body) == msg.length && strcmp(body, want) == 0;
        printf("producer: control from reader %016llx (slot %u): type 0x%x '%s'%s\n",
               (unsigned long long)msg.reader_id, msg.reader_index, msg.type, body,
               ok ? "" : "  <-- unexpected");
        if (!ok) cs->bad++;
        cs->next_ping[r]++;
    }
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* line by line, also into a pipe */
    const char *name = "shmx-c-demo";
    unsigned long frames = 100, bytes = 4096, wait_readers = 0, expect_control = 0;
    double rate = 100.0;
    long linger_ms = 5000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage();
            return 0;
        }
        if (!v) {
            usage();
            return 2;
        }
        i++;
        if (!strcmp(a, "--name")) name = v;
        else if (!strcmp(a, "--frames")) frames = strtoul(v, NULL, 10);
        else if (!strcmp(a, "--bytes")) bytes = strtoul(v, NULL, 10);
        else if (!strcmp(a, "--rate")) rate = strtod(v, NULL);
        else if (!strcmp(a, "--wait-readers")) wait_readers = strtoul(v, NULL, 10);
        else if (!strcmp(a, "--expect-control")) expect_control = strtoul(v, NULL, 10);
        else if (!strcmp(a, "--linger-ms")) linger_ms = strtol(v, NULL, 10);
        else {
            usage();
            return 2;
        }
    }
    if (bytes == 0 || bytes > (1ul << 30)) {
        fprintf(stderr, "producer: --bytes must be 1..2^30\n");
        return 2;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    /* The schema.  bytes_per_elem is the size of one whole element. */
    const shmx_stream_spec streams[] = {
        {STREAM_SEQ, SHMX_DT_U64, 1, SHMX_LAYOUT_SOA_SCALAR, 8, "seq", NULL, 0},
        {STREAM_PIXELS, SHMX_DT_U8, 1, SHMX_LAYOUT_SOA_SCALAR, 1, "pixels", NULL, 0},
        {STREAM_STAMP, SHMX_DT_F64, 1, SHMX_LAYOUT_SOA_SCALAR, 8, "stamp", NULL, 0},
    };
    shmx_server_config cfg;
    shmx_server_config_init(&cfg); /* defaults, and struct_size for ABI growth */
    cfg.streams = streams;
    cfg.stream_count = 3;
    cfg.frame_bytes_cap = (uint32_t)bytes + 16; /* user bytes of the largest frame */
    cfg.slots = 4;
    cfg.reader_slots = MAX_READERS;

    shmx_server *s = NULL;
    shmx_status st = shmx_server_create(name, &cfg, &s);
    if (st != SHMX_OK) return fail("create", st);
    printf("producer: region '%s' (%llu bytes), %lu frames of %lu pixel bytes\n", name,
           (unsigned long long)shmx_server_size(s), frames, bytes);

    struct control_state cs;
    memset(&cs, 0, sizeof cs);
    shmx_header_info hi;
    memset(&hi, 0, sizeof hi);
    hi.struct_size = sizeof hi;

    /* Optionally wait for consumers, so they see every frame. */
    uint64_t deadline = shmx_now_ns() + 10000000000ull;
    while (wait_readers && !g_stop) {
        shmx_server_header_info(s, &hi);
        if (hi.readers_connected >= wait_readers) break;
        if (shmx_now_ns() > deadline) {
            fprintf(stderr, "producer: no %lu readers after 10 s\n", wait_readers);
            shmx_server_destroy(s);
            return 1;
        }
        drain_control(s, &cs);
        sleep_ns(1000000);
    }

    const uint64_t period = rate > 0 ? (uint64_t)(1e9 / rate) : 0;
    uint64_t next_at = shmx_now_ns();
    unsigned long published = 0, busy = 0;
    for (uint64_t k = 1; k <= frames && !g_stop; k++) {
        uint64_t frame;
        st = shmx_server_begin_frame(s, &frame);
        if (st == SHMX_EBUSY) { /* every slot pinned by a reader: try again */
            busy++;
            k--;
            sleep_ns(100000);
            continue;
        }
        if (st != SHMX_OK) break;
        /* Zero copy: reserve the pixels in the slot and write them there. */
        void *pixels = NULL;
        st = shmx_server_loan(s, frame, STREAM_PIXELS, (uint32_t)bytes, &pixels);
        if (st != SHMX_OK) break;
        uint8_t *p = (uint8_t *)pixels;
        for (unsigned long i = 0; i < bytes; i++) p[i] = (uint8_t)((k + i) % 251u);
        double stamp = (double)k / 1000.0;
        st = shmx_server_append(s, frame, STREAM_SEQ, &k, sizeof k, 1);
        if (st == SHMX_OK) st = shmx_server_append(s, frame, STREAM_STAMP, &stamp, sizeof stamp, 1);
        if (st == SHMX_OK) st = shmx_server_publish(s, frame, stamp);
        if (st != SHMX_OK) break;
        published++;
        drain_control(s, &cs);
        if (period) {
            next_at += period;
            uint64_t now = shmx_now_ns();
            if (next_at > now) sleep_ns(next_at - now);
            else next_at = now;
        }
    }
    if (st != SHMX_OK) {
        int rc = fail("publish", st);
        shmx_server_destroy(s);
        return rc;
    }

    /* Wait for the expected control messages, then for the consumers to
     * leave (they can read the last frames even after we are gone, but
     * then they would not know we are done on purpose). */
    deadline = shmx_now_ns() + 10000000000ull;
    while (cs.received < expect_control && !g_stop && shmx_now_ns() < deadline) {
        shmx_server_wait_control(s, 100000000);
        drain_control(s, &cs);
    }
    deadline = shmx_now_ns() + (uint64_t)(linger_ms > 0 ? linger_ms : 0) * 1000000ull;
    while (!g_stop && shmx_now_ns() < deadline) {
        drain_control(s, &cs);
        shmx_server_header_info(s, &hi);
        if (hi.readers_connected == 0) break;
        sleep_ns(5000000);
    }
    drain_control(s, &cs);
    shmx_server_destroy(s);
    printf("producer: published %lu frames (%lu retries on busy slots), %u control messages\n",
           published, busy, cs.received);
    if (cs.received < expect_control) {
        fprintf(stderr, "producer: expected %lu control messages, got %u\n", expect_control, cs.received);
        return 1;
    }
    if (cs.bad) {
        fprintf(stderr, "producer: %u malformed control messages\n", cs.bad);
        return 1;
    }
    return g_stop && published < frames ? 130 : 0;
}
