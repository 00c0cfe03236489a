/* copyhand.c - the machine's floor under the big-frame touch row: frames
 * copied by one process into a ring of slots and read in place by another,
 * with no library in between.
 *
 * The producer copies its SOURCES frames, in turn, into a ring of SLOTS
 * slots in a MAP_SHARED mapping, as fast as it can: slot n % SLOTS gets
 * source n % SOURCES under a per-slot seqlock, then the newest-frame word
 * is set to n.  A forked consumer busy-polls that word and reads one byte
 * of every page of each new frame in place (what the Python touch consumer
 * does), then checks the slot's sequence: a frame rewritten meanwhile is
 * not counted.  This is the work every copying transport's producer and
 * touch consumer do; what the transports add on top is theirs.
 *
 * The sources are anonymous memory advised MADV_HUGEPAGE, as numpy's
 * arrays of this size are (the Python producers' sources are numpy
 * arrays); neither process is pinned, as the peers' are not.
 *
 * usage: copyhand FRAME_BYTES SOURCES SLOTS SECONDS
 * prints JSON on one line: frames written and delivered, the delivered
 * rate and bytes per second, and the producer's copy time per frame.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u
#define MAX_SLOTS 64u

struct control {
    /* Every word the two processes share, each alone on its cache line. */
    _Alignas(64) uint64_t newest;              /* frame number of the newest frame (0: none) */
    _Alignas(64) uint64_t stop;                /* the producer is done */
    _Alignas(64) uint64_t ready;               /* the consumer is polling */
    _Alignas(64) uint64_t delivered;           /* the consumer's results */
    uint64_t first_ns, last_ns, sink;
    _Alignas(64) uint64_t seq[MAX_SLOTS * 8];  /* slot k's seqlock at [k * 8]: odd while written */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void consumer(struct control *ctl, const unsigned char *slots, size_t frame, unsigned nslots)
{
    uint64_t last = 0, got = 0, sink = 0, first_ns = 0, last_ns = 0;
    /* Release: pairs with the producer's acquire load of `ready`. */
    __atomic_store_n(&ctl->ready, 1, __ATOMIC_RELEASE);
    /* Acquire: pairs with the producer's release store of `stop`. */
    while (!__atomic_load_n(&ctl->stop, __ATOMIC_ACQUIRE)) {
        /* Acquire: pairs with the producer's release store of `newest`. */
        uint64_t n = __atomic_load_n(&ctl->newest, __ATOMIC_ACQUIRE);
        if (n == last) continue;
        unsigned k = (unsigned)(n % nslots);
        uint64_t *seq = &ctl->seq[k * 8];
        /* Acquire: pairs with the release store that closed the write. */
        uint64_t s0 = __atomic_load_n(seq, __ATOMIC_ACQUIRE);
        if (s0 & 1u) continue; /* being rewritten: look again */
        const volatile unsigned char *p = slots + (size_t)k * frame;
        uint64_t sum = 0;
        for (size_t off = 0; off < frame; off += PAGE) sum += p[off];
        /* Acquire fence: orders the reads above before the check below
         * (pairs with the producer's release fence after marking odd). */
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(seq, __ATOMIC_RELAXED) != s0) continue; /* rewritten meanwhile */
        uint64_t t = now_ns();
        if (got == 0) first_ns = t;
        last_ns = t;
        got++;
        sink += sum;
        last = n;
    }
    ctl->delivered = got;
    ctl->first_ns = first_ns;
    ctl->last_ns = last_ns;
    ctl->sink = sink;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s FRAME_BYTES SOURCES SLOTS SECONDS\n", argv[0]);
        return 2;
    }
    size_t frame = (size_t)atol(argv[1]);
    unsigned nsrc = (unsigned)atoi(argv[2]), nslots = (unsigned)atoi(argv[3]);
    double secs = atof(argv[4]);
    if (frame < PAGE || nsrc < 1 || nslots < 1 || nslots > MAX_SLOTS || secs <= 0) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    struct control *ctl = mmap(NULL, sizeof *ctl, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    unsigned char *slots = mmap(NULL, frame * nslots, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (ctl == MAP_FAILED || slots == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    memset(ctl, 0, sizeof *ctl);
    memset(slots, 1, frame * nslots);
    unsigned char **src = calloc(nsrc, sizeof *src);
    if (!src) return 1;
    for (unsigned i = 0; i < nsrc; i++) {
        src[i] = mmap(NULL, frame, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (src[i] == MAP_FAILED) {
            perror("mmap");
            return 1;
        }
        (void)madvise(src[i], frame, MADV_HUGEPAGE); /* best effort, as numpy's */
        for (size_t b = 0; b < frame; b++) src[i][b] = (unsigned char)((b * (2 * i + 1)) >> 3);
    }
    fflush(stdout);
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0) {
        consumer(ctl, slots, frame, nslots);
        _exit(0);
    }
    /* Acquire: pairs with the consumer's release store of `ready`. */
    while (!__atomic_load_n(&ctl->ready, __ATOMIC_ACQUIRE))
        usleep(1000);
    uint64_t n = 0, busy = 0, t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9), t = t0;
    while (t < end) {
        n++;
        unsigned k = (unsigned)(n % nslots);
        uint64_t *seq = &ctl->seq[k * 8];
        uint64_t s = __atomic_load_n(seq, __ATOMIC_RELAXED); /* only we write it */
        __atomic_store_n(seq, s + 1, __ATOMIC_RELAXED);
        /* Release fence: the odd mark is visible before any byte of the
         * copy (pairs with the consumer's acquire fence before its check). */
        __atomic_thread_fence(__ATOMIC_RELEASE);
        memcpy(slots + (size_t)k * frame, src[n % nsrc], frame);
        /* Release: the copy before the even mark (pairs with the
         * consumer's acquire load of the slot's sequence). */
        __atomic_store_n(seq, s + 2, __ATOMIC_RELEASE);
        /* Release: pairs with the consumer's acquire load of `newest`. */
        __atomic_store_n(&ctl->newest, n, __ATOMIC_RELEASE);
        uint64_t t1 = now_ns();
        busy += t1 - t;
        t = t1;
    }
    /* Release: pairs with the consumer's acquire load of `stop`. */
    __atomic_store_n(&ctl->stop, 1, __ATOMIC_RELEASE);
    int status = 0;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return 1;
    double window = ctl->delivered > 1 ? (double)(ctl->last_ns - ctl->first_ns) / 1e9 : 0.0;
    double fps = window > 0 ? (double)(ctl->delivered - 1) / window : 0.0;
    printf("{\"written\": %llu, \"delivered\": %llu, \"fps\": %.1f, \"gbps\": %.3f, \"copy_us\": %.2f, "
           "\"sink\": %llu}\n",
           (unsigned long long)n, (unsigned long long)ctl->delivered, fps, fps * (double)frame / 1e9,
           (double)busy / (double)n / 1000.0, (unsigned long long)(ctl->sink & 0xFFFF));
    return 0;
}
