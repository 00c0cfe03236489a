/*
 * platform.h - what libshmx needs from the operating system.  One file per
 * OS implements it: platform_posix.c, platform_win32.c.
 */
#ifndef SHMX_PLATFORM_H
#define SHMX_PLATFORM_H

#include <stdint.h>
#include "shmx.h"
#include "atomics.h"

#define SHMX_PATH_MAX 512

typedef struct shmx_map {
    int fd;          /* POSIX: the file descriptor; Windows: a handle-table index; -1: none */
    uint8_t *base;
    uint64_t size;
    int writable;
    int guard;        /* index in the platform's table of guarded mappings, -1: none */
    uint32_t fork_gen; /* shmx_plat_fork_gen when mapped: in a child, fd is not ours */
} shmx_map;
#define SHMX_MAP_NONE {-1, NULL, 0, 0, -1, 0}

/* Guarded mappings.  Another process may shrink the file under a live
 * mapping (ftruncate); a touch of a page past the new end would kill us
 * (SIGBUS on POSIX).  The platform replaces such pages by zero pages and
 * marks the mapping lost instead, so every caller checks this after it
 * touched the region and turns it into SHMX_ECORRUPT.  The flag is cheap:
 * one load of a process-wide counter while no mapping was ever lost. */
extern uint32_t shmx_plat_lost_any;
uint32_t shmx_plat_map_lost_slow(const shmx_map *m);
static inline uint32_t shmx_plat_map_lost(const shmx_map *m)
{
    return shmx_load_relaxed32(&shmx_plat_lost_any) ? shmx_plat_map_lost_slow(m) : 0u;
}

/* fork(): a handle made before the last fork() of this process is dead in
 * the child.  Handles record the generation at creation and compare it; the
 * platform also closes, in the child, every descriptor of a guarded mapping
 * so the child does not keep the parent's liveness locks alive. */
extern uint32_t shmx_plat_fork_gen;
/* Descriptors the child of a fork() closes (sockets of the wake channel):
 * on = 1 adds fd, 0 removes it (call before closing it). */
void shmx_plat_fork_closes(int fd, int on);
static inline uint32_t shmx_plat_forked_since(uint32_t gen)
{
    return shmx_load_relaxed32(&shmx_plat_fork_gen) != gen;
}

/* Build "<dir>/<name>" where dir is `dir`, else $SHMX_DIR, else /dev/shm. */
shmx_status shmx_plat_path(const char *dir, const char *name, char *out, size_t cap);
/* Create `path` exclusively with exactly `mode`, reserve `size` bytes (so a
 * full shm file system fails now, not with SIGBUS later), map read-write. */
shmx_status shmx_plat_create(const char *path, uint64_t size, uint32_t mode, shmx_map *out);
/* Open and map the whole file; read-only when !writable. */
shmx_status shmx_plat_open(const char *path, int writable, shmx_map *out);
void shmx_plat_unmap(shmx_map *m);   /* unmap, keep fd */
/* Re-read the file's size: 1 when it is smaller than the mapping. */
int shmx_plat_map_shrunk(const shmx_map *m);
void shmx_plat_close(shmx_map *m);   /* unmap and close fd */
void shmx_plat_close_fd(shmx_map *m); /* close fd, keep the mapping */
/* Atomically give the file at `from` the name `to`; fails if `to` exists
 * unless replace is set. */
shmx_status shmx_plat_rename(const char *from, const char *to, int replace);
int shmx_plat_unlink(const char *path);
/* 1 when `path` names the file mapped (or held) by m. */
int shmx_plat_same_file(const char *path, const shmx_map *m);
/* Remove the name `path` only if it still refers to the region mapped by
 * `m` (a successor may have taken the name); 0 when removed or when the OS
 * removes it by itself with the last handle (Windows named mappings). */
int shmx_plat_unlink_if_same(const char *path, const shmx_map *m);
/* Remove "<region_path>~shmx-new-<pid>-*" files left by creators that died
 * (kill -9) before naming their region: those whose liveness lock nobody
 * holds (a creator locks its file at once).  Returns how many. */
unsigned shmx_plat_remove_stale_temps(const char *region_path);

/* Liveness locks: an OS-released exclusive lock on byte `index` of the
 * lock area of the file, held by the open file description. */
#define SHMX_LOCK_SERVER 0u
#define SHMX_LOCK_READER(r) (1u + (r))
int shmx_plat_lock(int fd, uint32_t index);      /* 0 ok, 1 held by another, -1 error */
void shmx_plat_unlock(int fd, uint32_t index);
uint32_t shmx_plat_lock_probe(int fd, uint32_t index); /* SHMX_ALIVE/DEAD/UNKNOWN */

uint64_t shmx_plat_pid(void);
uint64_t shmx_plat_pid_start(uint64_t pid);      /* 0 if unknown */
uint32_t shmx_plat_pid_alive(uint64_t pid, uint64_t start);
uint64_t shmx_plat_random64(void);
uint64_t shmx_plat_now_ns(void);

/* Wait while *addr == expect, up to timeout_ns (<0: forever).  Returns 0 on
 * wake or value change, 1 on timeout, -1 on interruption. */
int shmx_plat_wait(uint32_t *addr, uint32_t expect, int64_t timeout_ns);
void shmx_plat_wake_all(uint32_t *addr);
/* 1 when the OS offers a real wait on a shared word (futex). */
int shmx_plat_has_futex(void);
void shmx_plat_sleep_ns(uint64_t ns);
/* End this process at once, as kill -9 would (test hooks). */
void shmx_plat_die(void);

#endif /* SHMX_PLATFORM_H */
