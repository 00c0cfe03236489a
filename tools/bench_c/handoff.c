/* handoff.c - the machine's floor under a one-way hand-off between two
 * processes, with no library in between.
 *
 * A producer process and a consumer process (forked) share one anonymous
 * MAP_SHARED mapping.  At HZ messages per second the producer writes a
 * CLOCK_MONOTONIC stamp into the slot of message n and then stores n into
 * the sequence word; the consumer takes its own stamp as soon as it sees n.
 * One-way latency = consumer stamp - producer stamp, the same definition
 * the Python peers' latency runs use (tools/bench_peers/common.py).
 *
 *   futex  the consumer sleeps in FUTEX_WAIT on the sequence word and the
 *          producer calls FUTEX_WAKE after each store: the cheapest blocking
 *          wake-up the kernel offers (what a blocking read costs at least).
 *   spin   the consumer spins on the sequence word: the floor of a polling
 *          reader.
 *
 * With CORE_A CORE_B the producer is pinned to CORE_A and the consumer to
 * CORE_B (cross-core: for futex, the wake-up of a sleeping other core);
 * without, neither is pinned and the scheduler places them, as it places
 * the peers' processes.
 *
 * usage: handoff futex|spin COUNT HZ [CORE_A CORE_B]
 * prints JSON on one line: {"mode": ..., "samples_ns": [...]} (the first
 * WARMUP messages are not in it); the driver computes the percentiles.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RING 64     /* stamps kept; the producer reuses a slot RING messages later */
#define WARMUP 20

struct shared {
    /* The sequence word, alone on its cache line: the only word both
     * processes write to or spin on.  uint32_t because futex words are. */
    _Alignas(64) uint32_t seq;
    _Alignas(64) uint32_t ready;      /* the consumer is about to wait */
    _Alignas(64) uint64_t stamp[RING]; /* producer's stamp of message n, at n % RING */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void pin(int core)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(core, &set);
    sched_setaffinity(0, sizeof set, &set); /* best effort: a missing core leaves it unpinned */
}

static long futex(uint32_t *addr, int op, uint32_t val)
{
    /* Not FUTEX_PRIVATE_FLAG: the word is shared between two processes. */
    return syscall(SYS_futex, addr, op, val, NULL, NULL, 0);
}

static void consumer(struct shared *sh, int use_futex, long count)
{
    uint64_t *lat = malloc(sizeof *lat * (size_t)count);
    if (!lat) _exit(1);
    uint32_t last = 0;
    long got = 0;
    /* Release: pairs with the producer's acquire load of `ready` (it starts
     * only after we exist; the first message may still find us awake). */
    __atomic_store_n(&sh->ready, 1, __ATOMIC_RELEASE);
    while (last < (uint32_t)count) {
        /* Acquire: pairs with the producer's release store of seq, so the
         * stamp it wrote before that store is visible below. */
        uint32_t s = __atomic_load_n(&sh->seq, __ATOMIC_ACQUIRE);
        if (s == last) {
            if (use_futex)
                futex(&sh->seq, FUTEX_WAIT, last); /* returns at once if seq moved since the load */
            continue;
        }
        uint64_t t = now_ns();
        /* Relaxed is enough: ordered after the acquire load of seq; the
         * slot is not rewritten for RING more messages (RING/HZ seconds). */
        uint64_t sent = __atomic_load_n(&sh->stamp[s % RING], __ATOMIC_RELAXED);
        if (s > WARMUP && got < count)
            lat[got++] = t - sent;
        last = s;
    }
    printf("{\"mode\": \"%s\", \"samples_ns\": [", use_futex ? "futex" : "spin");
    for (long i = 0; i < got; i++)
        printf(i ? ",%llu" : "%llu", (unsigned long long)lat[i]);
    printf("]}\n");
    fflush(stdout);
    free(lat);
}

static void sleep_until(uint64_t target)
{
    /* Sleep to 300 us before the target, then spin: the stamp is then taken
     * on time however coarse the timer (as the Python producers do). */
    uint64_t now = now_ns();
    if (target > now + 400000) {
        uint64_t wake = target - 300000;
        struct timespec ts = {(time_t)(wake / 1000000000u), (long)(wake % 1000000000u)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
        }
    }
    while (now_ns() < target) {
    }
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 6) {
        fprintf(stderr, "usage: %s futex|spin COUNT HZ [CORE_A CORE_B]\n", argv[0]);
        return 2;
    }
    int use_futex = strcmp(argv[1], "futex") == 0;
    if (!use_futex && strcmp(argv[1], "spin") != 0) {
        fprintf(stderr, "mode must be futex or spin\n");
        return 2;
    }
    long count = atol(argv[2]) + WARMUP;
    double hz = atof(argv[3]);
    int pinned = argc == 6;
    int core_a = pinned ? atoi(argv[4]) : 0, core_b = pinned ? atoi(argv[5]) : 1;
    if (count <= WARMUP || hz <= 0 || count >= (long)UINT32_MAX) {
        fprintf(stderr, "bad COUNT or HZ\n");
        return 2;
    }
    struct shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    memset(sh, 0, sizeof *sh);
    fflush(stdout);
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0) {
        if (pinned) pin(core_b);
        consumer(sh, use_futex, count);
        _exit(0);
    }
    if (pinned) pin(core_a);
    /* Acquire: pairs with the consumer's release store of `ready`. */
    while (!__atomic_load_n(&sh->ready, __ATOMIC_ACQUIRE))
        usleep(1000);
    usleep(20000); /* let it reach its wait */
    uint64_t period = (uint64_t)(1e9 / hz);
    uint64_t t0 = now_ns() + 1000000;
    for (uint32_t n = 1; n <= (uint32_t)count; n++) {
        sleep_until(t0 + n * period);
        /* Relaxed: published by the release store of seq just below. */
        __atomic_store_n(&sh->stamp[n % RING], now_ns(), __ATOMIC_RELAXED);
        /* Release: pairs with the consumer's acquire load of seq. */
        __atomic_store_n(&sh->seq, n, __ATOMIC_RELEASE);
        if (use_futex)
            futex(&sh->seq, FUTEX_WAKE, 1);
    }
    int status = 0;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    munmap(sh, sizeof *sh);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
