/* pingpong.c - the machine's cross-core cache-line round trip.
 *
 * Two threads, pinned to two cores, pass a counter back and forth through
 * one cache line: the ping thread writes an odd value and spins until the
 * pong thread answers with the next even one.  One round trip moves the
 * line core A -> core B -> core A, which is the floor under any
 * shared-memory hand-off between two processes on these cores.
 *
 * usage: pingpong CORE_A CORE_B ROUND_TRIPS BATCHES
 * prints JSON: the nanoseconds per round trip of every batch.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static struct { _Alignas(64) uint64_t v; char pad[56]; } line;
static long trips;
static int batches;

static void pin(int core)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(core, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set); /* best effort */
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *pong(void *arg)
{
    pin(*(int *)arg);
    uint64_t expect = 1;
    long total = trips * batches;
    for (long i = 0; i < total; i++) {
        while (__atomic_load_n(&line.v, __ATOMIC_ACQUIRE) != expect)
            __builtin_ia32_pause();
        __atomic_store_n(&line.v, expect + 1, __ATOMIC_RELEASE);
        expect += 2;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s CORE_A CORE_B ROUND_TRIPS BATCHES\n", argv[0]);
        return 2;
    }
    int core_a = atoi(argv[1]), core_b = atoi(argv[2]);
    trips = atol(argv[3]);
    batches = atoi(argv[4]);
    pthread_t t;
    if (pthread_create(&t, NULL, pong, &core_b) != 0) return 1;
    pin(core_a);
    uint64_t v = 0;
    printf("{\"ns_per_round_trip\": [");
    for (int b = 0; b < batches; b++) {
        uint64_t t0 = now_ns();
        for (long i = 0; i < trips; i++) {
            __atomic_store_n(&line.v, v + 1, __ATOMIC_RELEASE);
            while (__atomic_load_n(&line.v, __ATOMIC_ACQUIRE) != v + 2)
                __builtin_ia32_pause();
            v += 2;
        }
        printf("%s%.2f", b ? ", " : "", (double)(now_ns() - t0) / (double)trips);
    }
    printf("]}\n");
    pthread_join(t, NULL);
    return 0;
}
