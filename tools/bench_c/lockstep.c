/* lockstep.c - cross-process round trip through the library's blocking
 * calls: the server publishes frame k and sleeps in wait_control; the
 * client, asleep in shmx_client_wait, wakes, reads frame k and answers with
 * a control message that wakes the server.  One round trip is two
 * cross-process wake-ups (futex on Linux, named semaphores on Windows), so
 * it measures the platform layer where it differs most.  Plain C99 over the
 * public API only: the same source builds for Linux and (mingw) Windows.
 *
 * usage: lockstep client NAME N     (start first, or at the same time)
 *        lockstep server NAME N     prints JSON: median and p99 round trip
 *                                   in microseconds, and frames per second
 *                                   of the whole lock-step run
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmx.h"

static const shmx_stream_spec k_streams[] = {
    {1, SHMX_DT_U64, 1, SHMX_LAYOUT_SOA_SCALAR, 8, "seq", NULL, 0},
};

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int run_server(const char *name, uint32_t n)
{
    shmx_server_config cfg;
    shmx_server_config_init(&cfg);
    cfg.streams = k_streams;
    cfg.stream_count = 1;
    cfg.frame_bytes_cap = 64;
    cfg.reader_slots = 2;
    cfg.control_per_reader = 256;
    shmx_server *s = NULL;
    if (shmx_server_create(name, &cfg, &s) != SHMX_OK) {
        fprintf(stderr, "create: %s\n", shmx_last_error());
        return 1;
    }
    shmx_header_info hi;
    memset(&hi, 0, sizeof hi);
    hi.struct_size = sizeof hi;
    uint64_t give_up = shmx_now_ns() + 30000000000ull;
    while (shmx_server_header_info(s, &hi) == SHMX_OK && hi.readers_connected == 0 && shmx_now_ns() < give_up)
        (void)shmx_server_wait_control(s, 1000000);
    uint64_t *rtt = calloc(n, sizeof *rtt);
    if (!rtt) return 1;
    uint64_t t_start = shmx_now_ns();
    for (uint64_t k = 1; k <= n; k++) {
        uint64_t t0 = shmx_now_ns();
        if (shmx_server_publish_stream(s, 1, &k, 8, (double)k) != SHMX_OK) {
            fprintf(stderr, "publish: %s\n", shmx_last_error());
            return 1;
        }
        for (;;) {
            shmx_control_msg m;
            memset(&m, 0, sizeof m);
            m.struct_size = sizeof m;
            uint64_t got = 0;
            shmx_status st = shmx_server_next_control(s, &m, &got, sizeof got);
            if (st == SHMX_OK && got == k) break;
            if (st == SHMX_EAGAIN && shmx_server_wait_control(s, 5000000000LL) == SHMX_ETIMEDOUT) {
                fprintf(stderr, "no answer to frame %llu\n", (unsigned long long)k);
                return 1;
            }
        }
        rtt[k - 1] = shmx_now_ns() - t0;
    }
    double secs = (double)(shmx_now_ns() - t_start) / 1e9;
    qsort(rtt, n, sizeof *rtt, cmp_u64);
    printf("{\"round_trips\": %u, \"median_us\": %.1f, \"p99_us\": %.1f, \"frames_per_s\": %.0f}\n",
           (unsigned)n, (double)rtt[n / 2] / 1e3, (double)rtt[(uint64_t)n * 99 / 100] / 1e3, n / secs);
    free(rtt);
    shmx_server_destroy(s);
    return 0;
}

static int run_client(const char *name, uint32_t n)
{
    shmx_client *c = NULL;
    uint64_t give_up = shmx_now_ns() + 30000000000ull;
    while (shmx_client_open(name, NULL, &c) != SHMX_OK) {
        if (shmx_now_ns() > give_up) {
            fprintf(stderr, "open: %s\n", shmx_last_error());
            return 1;
        }
    }
    shmx_frame_info fi;
    memset(&fi, 0, sizeof fi);
    fi.struct_size = sizeof fi;
    uint64_t last = 0;
    while (last < n) {
        shmx_status st = shmx_client_wait(c, 5000000000LL);
        if (st != SHMX_OK) {
            fprintf(stderr, "wait: %s\n", shmx_last_error());
            return 1;
        }
        if (shmx_client_latest(c, &fi) != SHMX_OK) continue;
        shmx_stream_view v;
        memset(&v, 0, sizeof v);
        v.struct_size = sizeof v;
        uint64_t k = 0;
        if (shmx_client_frame_stream(c, 0, &v) == SHMX_OK && v.bytes == 8) memcpy(&k, v.data, 8);
        shmx_client_release(c);
        if (k > last) {
            last = k;
            (void)shmx_client_send_control(c, 1, &k, 8);
        }
    }
    shmx_client_free(c);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s server|client NAME N\n", argv[0]);
        return 2;
    }
    uint32_t n = (uint32_t)strtoul(argv[3], NULL, 10);
    if (n == 0) return 2;
    if (strcmp(argv[1], "server") == 0) return run_server(argv[2], n);
    if (strcmp(argv[1], "client") == 0) return run_client(argv[2], n);
    return 2;
}
