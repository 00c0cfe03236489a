/*
 * atomics.h - the only place that touches compiler atomics.
 *
 * Memory ordering in shmx, once in prose:
 *  - Data (frame payload, control message bodies, static directory) is
 *    written with plain stores and published by one store-release of an
 *    index (slot seq, write_index, ring write).  A reader's load-acquire of
 *    that index makes the data visible.
 *  - The pin handshake (reader pin vs. writer slot claim) needs store-load
 *    ordering on both sides (write one word, then read another, Dekker
 *    style), as does the control ring's waiter count vs. its futex word.
 *    Each side does a seq_cst read-modify-write and then a seq_cst load of
 *    the other word; all four are in the single total order of seq_cst
 *    operations, so at least one side sees the other.  The frame wake-up
 *    needs none of this: its sleeper bit lives in the futex word itself.
 *    (A locked RMW orders like a store + mfence on x86, at about half the
 *    cost; on AArch64 the ldaxr/stlxr + ldar sequence gives the same.)
 * Every call site names what it pairs with.
 */
#ifndef SHMX_ATOMICS_H
#define SHMX_ATOMICS_H

#include <stdint.h>

#if !defined(__GNUC__) && !defined(__clang__)
#error "shmx atomics: GCC/Clang/MinGW builtins are required (MSVC: Interlocked* port pending)"
#endif

static inline uint32_t shmx_load_relaxed32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline uint64_t shmx_load_relaxed64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline uint32_t shmx_load_acquire32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline uint64_t shmx_load_acquire64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline uint32_t shmx_load_seqcst32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline uint64_t shmx_load_seqcst64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void shmx_store_relaxed32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline void shmx_store_relaxed64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline void shmx_store_release32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline void shmx_store_release64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline uint32_t shmx_fetch_add32(uint32_t *p, uint32_t v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
static inline uint64_t shmx_fetch_add64(uint64_t *p, uint64_t v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
static inline uint32_t shmx_fetch_sub32(uint32_t *p, uint32_t v) { return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST); }
static inline uint32_t shmx_exchange32(uint32_t *p, uint32_t v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }
static inline uint32_t shmx_fetch_or32(uint32_t *p, uint32_t v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }
static inline uint64_t shmx_exchange64(uint64_t *p, uint64_t v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }
static inline uint64_t shmx_fetch_or64(uint64_t *p, uint64_t v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }
static inline uint64_t shmx_fetch_and64(uint64_t *p, uint64_t v) { return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST); }
static inline int shmx_cas32(uint32_t *p, uint32_t expect, uint32_t desired)
{
    return __atomic_compare_exchange_n(p, &expect, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
/* CAS that leaves the value it found in *expect when it fails (for loops). */
static inline int shmx_cas32_update(uint32_t *p, uint32_t *expect, uint32_t desired)
{
    return __atomic_compare_exchange_n(p, expect, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
}
static inline void shmx_store_seqcst32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static inline uint32_t shmx_add_fetch_relaxed32(uint32_t *p, uint32_t v) { return __atomic_add_fetch(p, v, __ATOMIC_RELAXED); }
static inline void shmx_fence_acquire(void) { __atomic_thread_fence(__ATOMIC_ACQUIRE); }

static inline void shmx_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#endif /* SHMX_ATOMICS_H */
