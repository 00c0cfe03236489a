/*
 * shmx_test.h - the few helpers the C test programs share: checks that
 * report file, line and shmx_last_error(), unique region names, and a check
 * that a program leaves nothing behind in the shared-memory directory.
 *
 * Plain C99 + POSIX; every function is static so each test program is a
 * single translation unit.
 */
#ifndef SHMX_TEST_H
#define SHMX_TEST_H

#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmx.h"

/* Counted with atomic adds: the stress programs check from several threads. */
static int t_failures;
static int t_checks;
#define T_COUNT(var) __atomic_fetch_add(&(var), 1, __ATOMIC_RELAXED)

#define T_FAIL(...)                                                                \
    do {                                                                           \
        fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__);                     \
        fprintf(stderr, __VA_ARGS__);                                              \
        fprintf(stderr, "\n");                                                     \
        T_COUNT(t_failures);                                                       \
    } while (0)

/* A condition that must hold. */
#define CHECK(cond)                                                                \
    do {                                                                           \
        T_COUNT(t_checks);                                                         \
        if (!(cond)) T_FAIL("%s", #cond);                                          \
    } while (0)

/* A call that must return a given status; prints the library's detail. */
#define CHECK_ST(expr, want)                                                       \
    do {                                                                           \
        int got_ = (int)(expr);                                                    \
        T_COUNT(t_checks);                                                         \
        if (got_ != (int)(want))                                                   \
            T_FAIL("%s returned %s, expected %s (last error: %s)", #expr,         \
                   shmx_status_name(got_), shmx_status_name((int)(want)),          \
                   shmx_last_error());                                             \
    } while (0)

#define CHECK_OK(expr) CHECK_ST(expr, SHMX_OK)

/* Fatal variant for set-up steps the rest of a test depends on. */
#define REQUIRE_OK(expr)                                                           \
    do {                                                                           \
        int got_ = (int)(expr);                                                    \
        T_COUNT(t_checks);                                                         \
        if (got_ != SHMX_OK) {                                                     \
            T_FAIL("%s returned %s (last error: %s)", #expr, shmx_status_name(got_), \
                   shmx_last_error());                                             \
            t_finish_abort();                                                      \
        }                                                                          \
    } while (0)

#define REQUIRE(cond)                                                              \
    do {                                                                           \
        T_COUNT(t_checks);                                                         \
        if (!(cond)) {                                                             \
            T_FAIL("%s", #cond);                                                   \
            t_finish_abort();                                                      \
        }                                                                          \
    } while (0)

/* The last error mentions `needle`. */
#define CHECK_ERR_HAS(needle)                                                      \
    do {                                                                           \
        T_COUNT(t_checks);                                                         \
        if (!strstr(shmx_last_error(), (needle)))                                  \
            T_FAIL("last error '%s' does not mention '%s'", shmx_last_error(), (needle)); \
    } while (0)

/* ------------------------------------------------------------------ names */

static char t_prefix[64];

static const char *t_shm_dir(void)
{
    const char *d = getenv("SHMX_DIR");
    return (d && *d) ? d : "/dev/shm";
}

/* "shmxtest-c-<pid>-<n>-<tag>", unique per process and call.  A driver may
 * choose the prefix with SHMX_TEST_PREFIX (it must start with "shmxtest-")
 * to find leftovers of a program that crashed. */
static const char *t_name(char *buf, size_t cap, const char *tag)
{
    static unsigned counter;
    if (!t_prefix[0]) {
        const char *env = getenv("SHMX_TEST_PREFIX");
        if (env && strncmp(env, "shmxtest-", 9) == 0 && strlen(env) < 40)
            snprintf(t_prefix, sizeof t_prefix, "%s", env);
        else
            snprintf(t_prefix, sizeof t_prefix, "shmxtest-c-%ld-", (long)getpid());
    }
    snprintf(buf, cap, "%s%u-%s", t_prefix, ++counter, tag);
    return buf;
}

/* Files in the shm directory whose names start with this process's prefix. */
static inline int t_leftovers(int remove_them)
{
    if (!t_prefix[0]) return 0;
    DIR *d = opendir(t_shm_dir());
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, t_prefix, strlen(t_prefix)) != 0) continue;
        fprintf(stderr, "left behind: %s/%s\n", t_shm_dir(), e->d_name);
        n++;
        if (remove_them) {
            char path[1024];
            snprintf(path, sizeof path, "%s/%s", t_shm_dir(), e->d_name);
            unlink(path);
        }
    }
    closedir(d);
    return n;
}

static inline void t_finish_abort(void)
{
    t_leftovers(1);
    fprintf(stderr, "aborting after a failed requirement\n");
    exit(2);
}

/* Print the summary line the pytest driver reads and return the exit code. */
static inline int t_finish(const char *program)
{
    if (t_leftovers(1)) T_FAIL("regions were left in %s", t_shm_dir());
    int checks = __atomic_load_n(&t_checks, __ATOMIC_RELAXED);
    int failed = __atomic_load_n(&t_failures, __ATOMIC_RELAXED);
    printf("%s: %d checks, %d failed\n", program, checks, failed);
    return failed ? 1 : 0;
}

/* ------------------------------------------------------------------- misc */

static inline uint64_t t_now_ns(void) { return shmx_now_ns(); }

static inline void t_sleep_us(unsigned us)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(us / 1000000u);
    ts.tv_nsec = (long)(us % 1000000u) * 1000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* xorshift64*: a small per-thread generator (rand() shares state). */
static inline uint64_t t_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Test duration scale: SHMX_TEST_SECONDS overrides a program's default. */
static inline double t_seconds(double dflt)
{
    const char *s = getenv("SHMX_TEST_SECONDS");
    if (s && *s) {
        double v = strtod(s, NULL);
        if (v > 0) return v;
    }
    return dflt;
}

#endif /* SHMX_TEST_H */
