/* latest_micro.c - call costs of the C core, without any Python.
 *
 * Creates a region with 3 small streams, publishes one frame, attaches a
 * client, then times shmx_client_latest() on that unchanged frame (the
 * cost a polling reader pays when nothing new was published) and a whole
 * 3-stream publish (begin, 3 appends, publish).
 *
 * usage: latest_micro REGION_NAME ITERATIONS
 * prints JSON: nanoseconds per call, best of 25 batches (a preempted batch
 * does not count).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "shmx.h"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int publish3(shmx_server *s, const uint64_t *id, const double *t, const float *data)
{
    uint64_t f;
    if (shmx_server_begin_frame(s, &f) != SHMX_OK) return -1;
    if (shmx_server_append(s, f, 1, id, sizeof *id, 1) != SHMX_OK) return -1;
    if (shmx_server_append(s, f, 2, t, sizeof *t, 1) != SHMX_OK) return -1;
    if (shmx_server_append(s, f, 3, data, 10 * sizeof *data, 10) != SHMX_OK) return -1;
    return shmx_server_publish(s, f, *t) == SHMX_OK ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s REGION_NAME ITERATIONS\n", argv[0]);
        return 2;
    }
    long iters = atol(argv[2]);
    shmx_stream_spec specs[3] = {
        {1, SHMX_DT_U64, 1, SHMX_LAYOUT_SOA_SCALAR, 8, "frame_id", NULL, 0},
        {2, SHMX_DT_F64, 1, SHMX_LAYOUT_SOA_SCALAR, 8, "timestamp", NULL, 0},
        {3, SHMX_DT_F32, 1, SHMX_LAYOUT_SOA_SCALAR, 4, "data", NULL, 0},
    };
    shmx_server_config cfg;
    shmx_server_config_init(&cfg);
    cfg.slots = 4;
    cfg.streams = specs;
    cfg.stream_count = 3;
    shmx_server *s = NULL;
    shmx_client *c = NULL;
    if (shmx_server_create(argv[1], &cfg, &s) != SHMX_OK) {
        fprintf(stderr, "create: %s\n", shmx_last_error());
        return 1;
    }
    int rc = 1;
    uint64_t id = 7;
    double t = 1.5;
    float data[10] = {0};
    shmx_frame_info fi;
    fi.struct_size = sizeof fi;
    double best_pub = 1e18, best_latest = 1e18;
    if (shmx_client_open(argv[1], NULL, &c) != SHMX_OK) {
        fprintf(stderr, "open: %s\n", shmx_last_error());
        goto out;
    }
    for (int b = 0; b < 25; b++) {
        uint64_t t0 = now_ns();
        for (long i = 0; i < iters; i++)
            if (publish3(s, &id, &t, data) != 0) goto out;
        double ns = (double)(now_ns() - t0) / (double)iters;
        if (ns < best_pub) best_pub = ns;
    }
    if (shmx_client_latest(c, &fi) != SHMX_OK) goto out;
    for (int b = 0; b < 25; b++) {
        uint64_t t0 = now_ns();
        for (long i = 0; i < iters; i++)
            if (shmx_client_latest(c, &fi) != SHMX_OK) goto out;
        double ns = (double)(now_ns() - t0) / (double)iters;
        if (ns < best_latest) best_latest = ns;
    }
    printf("{\"c_latest_ns\": %.2f, \"c_publish3_ns\": %.2f, \"frame_id\": %llu}\n", best_latest, best_pub,
           (unsigned long long)fi.frame_id);
    rc = 0;
out:
    if (rc) fprintf(stderr, "failed: %s\n", shmx_last_error());
    shmx_client_close(c);
    shmx_server_destroy(s);
    return rc;
}
