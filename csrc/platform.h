/*
 * platform.h - what libshmx needs from the operating system.  One file per
 * OS implements it: platform_posix.c, platform_win32.c.
 */
#ifndef SHMX_PLATFORM_H
#define SHMX_PLATFORM_H

#include <stdint.h>
#include "shmx.h"

#define SHMX_PATH_MAX 512

typedef struct shmx_map {
    int fd;          /* POSIX: the file descriptor; Windows: a handle-table index; -1: none */
    uint8_t *base;
    uint64_t size;
    int writable;
} shmx_map;

/* Build "<dir>/<name>" where dir is `dir`, else $SHMX_DIR, else /dev/shm. */
shmx_status shmx_plat_path(const char *dir, const char *name, char *out, size_t cap);
/* Create `path` exclusively with exactly `mode`, reserve `size` bytes (so a
 * full shm file system fails now, not with SIGBUS later), map read-write. */
shmx_status shmx_plat_create(const char *path, uint64_t size, uint32_t mode, shmx_map *out);
/* Open and map the whole file; read-only when !writable. */
shmx_status shmx_plat_open(const char *path, int writable, shmx_map *out);
void shmx_plat_unmap(shmx_map *m);   /* unmap, keep fd */
void shmx_plat_close(shmx_map *m);   /* unmap and close fd */
/* Atomically give the file at `from` the name `to`; fails if `to` exists
 * unless replace is set. */
shmx_status shmx_plat_rename(const char *from, const char *to, int replace);
int shmx_plat_unlink(const char *path);
/* Remove the name `path` only if it still refers to the region mapped by
 * `m` (a successor may have taken the name); 0 when removed or when the OS
 * removes it by itself with the last handle (Windows named mappings). */
int shmx_plat_unlink_if_same(const char *path, const shmx_map *m);
/* Remove "<region_path>~shmx-new-<pid>-*" files left by creators that died
 * (kill -9) before naming their region; returns how many. */
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

#endif /* SHMX_PLATFORM_H */
