/* platform_posix.c - Linux/POSIX implementation of platform.h. */
#define _GNU_SOURCE 1
#include "platform.h"
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

/* Lock bytes live far beyond any region (offsets are u32), so they never
 * overlap data and cost no memory. */
#define LOCK_AREA ((off_t)1 << 40)

shmx_status shmx_plat_path(const char *dir, const char *name, char *out, size_t cap)
{
    if (!dir || !*dir) dir = getenv("SHMX_DIR");
    if (!dir || !*dir) dir = "/dev/shm";
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap)
        return shmx_fail(SHMX_ENAME, "path '%s/%s' is too long", dir, name);
    return SHMX_OK;
}

static shmx_status errno_status(int e)
{
    switch (e) {
    case ENOENT: return SHMX_ENOENT;
    case EEXIST: return SHMX_EEXIST;
    case EACCES: case EPERM: case EROFS: return SHMX_EACCES;
    case ENOSPC: case EFBIG: case EDQUOT: return SHMX_ENOSPC;
    case ENOMEM: return SHMX_ENOMEM;
    case ENAMETOOLONG: return SHMX_ENAME;
    default: return SHMX_ESYS;
    }
}

shmx_status shmx_plat_create(const char *path, uint64_t size, uint32_t mode, shmx_map *out)
{
    memset(out, 0, sizeof *out);
    out->fd = -1;
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, (mode_t)(mode & 0777));
    if (fd < 0)
        return shmx_fail(errno_status(errno), "cannot create '%s': %s", path, strerror(errno));
    /* umask must not change what the caller asked for. */
    if (fchmod(fd, (mode_t)(mode & 0777)) != 0) {
        int e = errno;
        close(fd);
        unlink(path);
        return shmx_fail(errno_status(e), "cannot chmod '%s': %s", path, strerror(e));
    }
    int rc = posix_fallocate(fd, 0, (off_t)size);
    if (rc == EOPNOTSUPP || rc == EINVAL) rc = ftruncate(fd, (off_t)size) == 0 ? 0 : errno;
    if (rc != 0) {
        close(fd);
        unlink(path);
        return shmx_fail(errno_status(rc), "cannot reserve %llu bytes for '%s': %s",
                         (unsigned long long)size, path, strerror(rc));
    }
    void *p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        int e = errno;
        close(fd);
        unlink(path);
        return shmx_fail(errno_status(e), "cannot map '%s': %s", path, strerror(e));
    }
    out->fd = fd;
    out->base = (uint8_t *)p;
    out->size = size;
    out->writable = 1;
    return SHMX_OK;
}

shmx_status shmx_plat_open(const char *path, int writable, shmx_map *out)
{
    memset(out, 0, sizeof *out);
    out->fd = -1;
    /* O_NONBLOCK: a FIFO (or device) under the region's name must not hang
     * the open; it is refused as "not a regular file" below, and the flag
     * is cleared again for a real region. */
    int fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT) return shmx_fail(SHMX_ENOENT, "no region '%s'", path);
        return shmx_fail(errno_status(e), "cannot open '%s': %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return shmx_fail(SHMX_ESYS, "cannot stat '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return shmx_fail(SHMX_ECORRUPT, "'%s' is not a regular file", path);
    }
    (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    if ((uint64_t)st.st_size < 128u) {
        close(fd);
        return shmx_fail(SHMX_ECORRUPT, "'%s' is %lld bytes, too small for a shmx region", path,
                         (long long)st.st_size);
    }
    if ((uint64_t)st.st_size > 0xFFFFFFFFull) {
        close(fd);
        return shmx_fail(SHMX_ECORRUPT, "'%s' is larger than any shmx region", path);
    }
    void *p = mmap(NULL, (size_t)st.st_size, writable ? PROT_READ | PROT_WRITE : PROT_READ,
                   MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        int e = errno;
        close(fd);
        return shmx_fail(errno_status(e), "cannot map '%s': %s", path, strerror(e));
    }
    out->fd = fd;
    out->base = (uint8_t *)p;
    out->size = (uint64_t)st.st_size;
    out->writable = writable;
    return SHMX_OK;
}

void shmx_plat_unmap(shmx_map *m)
{
    if (m->base) munmap(m->base, (size_t)m->size);
    m->base = NULL;
}

void shmx_plat_close(shmx_map *m)
{
    shmx_plat_unmap(m);
    if (m->fd >= 0) close(m->fd);
    m->fd = -1;
}

shmx_status shmx_plat_rename(const char *from, const char *to, int replace)
{
    if (replace) {
        if (rename(from, to) == 0) return SHMX_OK;
    } else {
        /* link() fails with EEXIST instead of replacing: exclusive publish. */
        if (link(from, to) == 0) {
            unlink(from);
            return SHMX_OK;
        }
    }
    int e = errno;
    return shmx_fail(errno_status(e), "cannot name region '%s': %s", to, strerror(e));
}

int shmx_plat_unlink(const char *path) { return unlink(path) == 0 ? 0 : -1; }

int shmx_plat_unlink_if_same(const char *path, const shmx_map *m)
{
    struct stat a, b;
    if (stat(path, &a) == 0 && fstat(m->fd, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev)
        return shmx_plat_unlink(path);
    return -1;
}

unsigned shmx_plat_remove_stale_temps(const char *region_path)
{
    /* Split "<dir>/<name>"; the temporary names are "<name>~shmx-new-<pid>-<hex>". */
    char dir[SHMX_PATH_MAX], prefix[SHMX_PATH_MAX];
    const char *slash = strrchr(region_path, '/');
    if (!slash) return 0;
    size_t dl = (size_t)(slash - region_path);
    if (dl == 0) dl = 1; /* "/name": the root directory */
    if (dl >= sizeof dir) return 0;
    memcpy(dir, region_path, dl);
    dir[dl] = 0;
    int pn = snprintf(prefix, sizeof prefix, "%s~shmx-new-", slash + 1);
    if (pn < 0 || (size_t)pn >= sizeof prefix) return 0;
    DIR *d = opendir(dir);
    if (!d) return 0;
    unsigned removed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, (size_t)pn) != 0) continue;
        char *end = NULL;
        errno = 0;
        unsigned long long pid = strtoull(e->d_name + pn, &end, 10);
        if (errno || !end || *end != '-' || pid == 0 || pid > 0x7FFFFFFF) continue;
        /* Its creator is gone: nobody will ever rename or remove it. */
        if (kill((pid_t)pid, 0) != 0 && errno == ESRCH && unlinkat(dirfd(d), e->d_name, 0) == 0)
            removed++;
    }
    closedir(d);
    return removed;
}

static void lock_init(struct flock *fl, short type, uint32_t index)
{
    memset(fl, 0, sizeof *fl);
    fl->l_type = type;
    fl->l_whence = SEEK_SET;
    fl->l_start = LOCK_AREA + (off_t)index;
    fl->l_len = 1;
}

int shmx_plat_lock(int fd, uint32_t index)
{
    struct flock fl;
    lock_init(&fl, F_WRLCK, index);
    if (fcntl(fd, F_OFD_SETLK, &fl) == 0) return 0;
    return (errno == EAGAIN || errno == EACCES) ? 1 : -1;
}

void shmx_plat_unlock(int fd, uint32_t index)
{
    struct flock fl;
    lock_init(&fl, F_UNLCK, index);
    (void)fcntl(fd, F_OFD_SETLK, &fl);
}

uint32_t shmx_plat_lock_probe(int fd, uint32_t index)
{
    /* F_RDLCK probe works on a read-only fd and conflicts with the holder's
     * write lock; GETLK never changes any lock. */
    struct flock fl;
    lock_init(&fl, F_RDLCK, index);
    if (fcntl(fd, F_OFD_GETLK, &fl) != 0) return SHMX_UNKNOWN;
    return fl.l_type == F_UNLCK ? SHMX_DEAD : SHMX_ALIVE;
}

uint64_t shmx_plat_pid(void) { return (uint64_t)getpid(); }

uint64_t shmx_plat_pid_start(uint64_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%llu/stat", (unsigned long long)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* Field 22 (starttime); the command name in field 2 may hold spaces,
     * so count from the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p) return 0;
    int field = 2;
    while (*p && field < 22) {
        if (*p == ' ') field++;
        p++;
    }
    return strtoull(p, NULL, 10);
}

uint32_t shmx_plat_pid_alive(uint64_t pid, uint64_t start)
{
    if (pid == 0 || pid > 0x7FFFFFFF) return SHMX_UNKNOWN;
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) return SHMX_DEAD;
    if (start) {
        uint64_t now = shmx_plat_pid_start(pid);
        if (now && now != start) return SHMX_DEAD; /* pid was reused */
    }
    return SHMX_ALIVE;
}

uint64_t shmx_plat_random64(void)
{
    uint64_t v = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, &v, sizeof v) != (ssize_t)sizeof v) v = 0;
        close(fd);
    }
    if (v == 0) v = shmx_plat_now_ns() ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ull;
    return v;
}

uint64_t shmx_plat_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int shmx_plat_has_futex(void)
{
#if defined(__linux__)
    return 1;
#else
    return 0;
#endif
}

void shmx_plat_sleep_ns(uint64_t ns)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(ns / 1000000000ull);
    ts.tv_nsec = (long)(ns % 1000000000ull);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int shmx_plat_wait(uint32_t *addr, uint32_t expect, int64_t timeout_ns)
{
#if defined(__linux__)
    struct timespec ts, *tp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000);
        ts.tv_nsec = (long)(timeout_ns % 1000000000);
        tp = &ts;
    }
    /* Not FUTEX_PRIVATE: the word is shared between processes. */
    long rc = syscall(SYS_futex, addr, FUTEX_WAIT, expect, tp, NULL, 0);
    if (rc == 0) return 0;
    if (errno == ETIMEDOUT) return 1;
    if (errno == EINTR) return -1;
    return 0; /* EAGAIN: value already changed */
#else
    (void)addr;
    (void)expect;
    shmx_plat_sleep_ns(timeout_ns < 0 || timeout_ns > 1000000 ? 1000000u : (uint64_t)timeout_ns);
    return 0;
#endif
}

void shmx_plat_wake_all(uint32_t *addr)
{
#if defined(__linux__)
    (void)syscall(SYS_futex, addr, FUTEX_WAKE, 0x7FFFFFFF, NULL, NULL, 0);
#else
    (void)addr;
#endif
}
