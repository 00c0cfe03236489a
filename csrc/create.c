/* create.c - who may own a region's name.
 *
 * Three acts change what a name refers to: create (give a new region the
 * name, replacing a dead owner's), reclaim, and unlink (shmx rm).  All of
 * them go through shmx_name_lock(): lock the liveness lock of the file the
 * name refers to, then check that the name still refers to that file.  The
 * lock is what a live server holds, so holding it proves the owner dead;
 * and since only the holder of the lock of the file at the name changes
 * the name, the check after the lock means nobody can have swapped the
 * file since.  Two reclaimers racing over one dead owner therefore
 * serialise on its lock; the loser finds the winner's file at the name,
 * fails to lock it, and names the winner.
 *
 * Touches: the name (through platform.h) and the header of the file it
 * names, read-only apart from the lock.
 */
#include "internal.h"

#include <stdio.h>

/* How long a locker keeps trying while the lock of a dead owner's file is
 * held: by another reclaimer, which renames within microseconds. */
#define NAME_LOCK_PATIENCE_NS 2000000000ull

shmx_status shmx_name_lock(const char *path, int force, shmx_map *held)
{
    *held = (shmx_map)SHMX_MAP_NONE;
    uint64_t deadline = shmx_plat_now_ns() + NAME_LOCK_PATIENCE_NS;
    for (;;) {
        shmx_region old;
        memset(&old, 0, sizeof old);
        old.map = (shmx_map)SHMX_MAP_NONE;
        snprintf(old.path, sizeof old.path, "%s", path);
        shmx_status st = shmx_plat_open(path, 1, &old.map);
        if (st == SHMX_ENOENT) return st;
        if (st != SHMX_OK) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", shmx_last_error());
            return shmx_fail_wrap(SHMX_EEXIST, "'%s' exists and cannot be opened: %s", path, msg);
        }
        st = shmx_region_validate(&old);
        if (!force && (st != SHMX_OK || !old.ext)) {
            shmx_plat_close(&old.map);
            if (st != SHMX_OK)
                return shmx_fail(SHMX_ECORRUPT, "'%s' exists and is not a shmx region; remove it first", path);
            return shmx_fail(SHMX_EEXIST,
                             "'%s' exists and belongs to a shmx 1.0.1 server whose liveness is "
                             "unknown; remove it first (shmx rm --force)",
                             path);
        }
        uint64_t pid = st == SHMX_OK && old.ext ? old.ext->owner_pid : 0;
        uint64_t start = st == SHMX_OK && old.ext ? old.ext->owner_start : 0;
        int lk = shmx_plat_lock(old.map.fd, SHMX_LOCK_SERVER);
        if (lk != 0 && !force) {
            shmx_plat_close(&old.map);
            /* The header names a dead process, yet the lock is held: a
             * reclaimer holds it and is about to rename.  Look again. */
            if (lk == 1 && shmx_plat_pid_alive(pid, start) == SHMX_DEAD && shmx_plat_now_ns() < deadline) {
                shmx_plat_sleep_ns(200000);
                continue;
            }
            return shmx_fail(SHMX_EEXIST, "'%s' exists and its owner (pid %llu) is alive", path,
                             (unsigned long long)pid);
        }
        if (!shmx_plat_same_file(path, &old.map)) {
            shmx_plat_close(&old.map); /* the name moved on: look at its new file */
            if (shmx_plat_now_ns() >= deadline)
                return shmx_fail(SHMX_EEXIST, "'%s' kept being replaced", path);
            continue;
        }
        shmx_plat_unmap(&old.map);
        *held = old.map;
        return SHMX_OK;
    }
}

shmx_status shmx_name_take(const char *tmp, const char *path)
{
    for (int attempt = 0; attempt < 8; attempt++) {
        shmx_status st = shmx_plat_rename(tmp, path, 0);
        if (st != SHMX_EEXIST) return st;
        shmx_map held;
        st = shmx_name_lock(path, 0, &held);
        if (st == SHMX_ENOENT) continue; /* it vanished: the exclusive name again */
        if (st == SHMX_ECORRUPT) return SHMX_EEXIST; /* the name is taken, by something else */
        if (st != SHMX_OK) return st;
        /* Replace the dead owner's file while we hold its lock. */
        st = shmx_plat_rename(tmp, path, 1);
        shmx_plat_close(&held);
        return st;
    }
    return shmx_fail(SHMX_EEXIST, "'%s' kept appearing and vanishing", path);
}

shmx_status shmx_unlink(const char *name, const char *dir, int force)
{
    shmx_clear_error();
    shmx_status st = shmx_check_name(name);
    if (st != SHMX_OK) return st;
    if (name[0] == '/') name++;
    char path[SHMX_PATH_MAX];
    st = shmx_plat_path(dir, name, path, sizeof path);
    if (st != SHMX_OK) return st;
    shmx_map held;
    st = shmx_name_lock(path, force, &held);
    if (st != SHMX_OK && st != SHMX_ENOENT && force) {
        /* Not even a file we can open (a FIFO, a tiny file): force means
         * remove whatever the name refers to. */
        if (shmx_plat_unlink(path) != 0) return shmx_fail(SHMX_ESYS, "cannot remove '%s'", path);
        return SHMX_OK;
    }
    if (st == SHMX_EEXIST || st == SHMX_ECORRUPT) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", shmx_last_error());
        return shmx_fail_wrap(st, "%s; use force", msg);
    }
    if (st != SHMX_OK) return st;
    /* The name refers to the file we hold (locked unless forced). */
    int rc = shmx_plat_unlink(path);
    shmx_plat_close(&held);
    if (rc != 0) return shmx_fail(SHMX_ESYS, "cannot remove '%s'", path);
    return SHMX_OK;
}
