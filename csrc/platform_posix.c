/* platform_posix.c - Linux/POSIX implementation of platform.h. */
#define _GNU_SOURCE 1
#include "platform.h"
#include "internal.h"

#include <dirent.h>
#include <pthread.h>
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

/* ------------------------------------------------------- guarded mappings
 *
 * Every region mapping is entered in a fixed table that a SIGBUS handler
 * can read without locks.  When another process truncates the file, a
 * touch of a page beyond the new end raises SIGBUS; if the address lies in
 * one of our mappings, the handler maps anonymous zero pages over the part
 * of the mapping the file lost (from the new end, or the faulting page, to
 * the end), marks the mapping lost and returns: the instruction runs again
 * on the zero page.  Any other SIGBUS goes to the handler that was there
 * before ours.  This is what a JVM does for a truncated MappedByteBuffer.
 * The handler is installed at the first mapping unless the embedder turned
 * it off (shmx_set_fault_handler(0) or SHMX_FAULT_HANDLER=0).
 *
 * The same table serves fork(): the child closes every descriptor in it
 * (a child would otherwise keep the parent's OFD liveness locks held
 * after the parent died) and bumps shmx_plat_fork_gen, which makes every
 * inherited handle refuse to work.
 */
#define GUARD_MAX 1024
enum { GUARD_FREE = 0, GUARD_BUSY = 1, GUARD_ACTIVE = 2 };
typedef struct guard_entry {
    uint32_t state;          /* atomic: GUARD_* */
    uint32_t lost;           /* atomic: zero pages were mapped over part of it */
    uintptr_t base;
    uint64_t size;
    int fd;
    int writable;
} guard_entry;

static guard_entry guards[GUARD_MAX];
uint32_t shmx_plat_lost_any;
uint32_t shmx_plat_fork_gen;
static struct sigaction prev_sigbus;
static uint32_t handler_state; /* 0 never decided, 1 installed, 2 off */
static pthread_mutex_t handler_mu = PTHREAD_MUTEX_INITIALIZER;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    uintptr_t a = (uintptr_t)si->si_addr;
    for (int i = 0; i < GUARD_MAX; i++) {
        guard_entry *g = &guards[i];
        /* Acquire pairs with the release that made the entry active: base,
         * size and fd are the mapping's. */
        if (shmx_load_acquire32(&g->state) != GUARD_ACTIVE) continue;
        if (a < g->base || a - g->base >= g->size) continue;
        uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
        struct stat st;
        /* Without a descriptor (closed, or unreadable) all we know is that
         * this page is gone: replace from it on. */
        uint64_t now = g->size;
        if (g->fd >= 0 && fstat(g->fd, &st) == 0) now = st.st_size > 0 ? (uint64_t)st.st_size : 0;
        if (now > g->size) now = g->size;
        uintptr_t from = g->base + (uintptr_t)((now + page - 1) & ~(uint64_t)(page - 1));
        uintptr_t at = a & ~(page - 1);
        if (at < from) from = at; /* a fault below the end we see: that page on */
        void *p = mmap((void *)from, g->base + g->size - from,
                       g->writable ? PROT_READ | PROT_WRITE : PROT_READ,
                       MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) break;
        shmx_store_relaxed32(&g->lost, 1u);
        shmx_store_relaxed32(&shmx_plat_lost_any, 1u);
        return;
    }
    /* Not ours: whatever was there before decides. */
    if (prev_sigbus.sa_flags & SA_SIGINFO) {
        if (prev_sigbus.sa_sigaction) {
            prev_sigbus.sa_sigaction(sig, si, uc);
            return;
        }
    } else if (prev_sigbus.sa_handler != SIG_DFL && prev_sigbus.sa_handler != SIG_IGN) {
        prev_sigbus.sa_handler(sig);
        return;
    }
    /* Default action: put it back and let the fault happen again. */
    signal(sig, SIG_DFL);
}

static void install_locked(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, &prev_sigbus) == 0) handler_state = 1;
}

int shmx_set_fault_handler(int enable)
{
    pthread_mutex_lock(&handler_mu);
    int was = handler_state == 1;
    if (enable && handler_state != 1) {
        install_locked();
    } else if (!enable) {
        if (handler_state == 1) (void)sigaction(SIGBUS, &prev_sigbus, NULL);
        handler_state = 2;
    }
    pthread_mutex_unlock(&handler_mu);
    return was;
}

/* Other descriptors the child closes, stored as fd + 1 (0: a free entry). */
#define FORK_CLOSE_MAX 256
static int fork_close[FORK_CLOSE_MAX];

void shmx_plat_fork_closes(int fd, int on)
{
    if (fd < 0) return;
    pthread_mutex_lock(&handler_mu);
    for (int i = 0; i < FORK_CLOSE_MAX; i++) {
        if (on ? fork_close[i] == 0 : fork_close[i] == fd + 1) {
            fork_close[i] = on ? fd + 1 : 0;
            break;
        }
    }
    pthread_mutex_unlock(&handler_mu);
}

static void fork_prepare(void) { pthread_mutex_lock(&handler_mu); }
static void fork_parent(void) { pthread_mutex_unlock(&handler_mu); }
static void fork_child(void)
{
    /* Only this thread exists now.  The liveness locks are OFD locks: they
     * end when the last reference to the open file description goes, and
     * a descriptor is one reference, a shared mapping of the file another.
     * So the child closes its copies of the descriptors and puts zero
     * pages over its copies of the mappings (its views then read zeros
     * instead of crashing); the locks held there end with the parent. */
    for (int i = 0; i < GUARD_MAX; i++) {
        guard_entry *g = &guards[i];
        if (shmx_load_acquire32(&g->state) != GUARD_ACTIVE) continue;
        if (g->fd >= 0) close(g->fd);
        g->fd = -1;
        (void)mmap((void *)g->base, g->size, PROT_READ | PROT_WRITE,
                   MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    }
    for (int i = 0; i < FORK_CLOSE_MAX; i++) {
        if (fork_close[i]) close(fork_close[i] - 1);
        fork_close[i] = 0;
    }
    (void)shmx_add_fetch_relaxed32(&shmx_plat_fork_gen, 1u);
    pthread_mutex_unlock(&handler_mu);
}

static void guard_once(void)
{
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

static void guard_add(shmx_map *m)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, guard_once);
    pthread_mutex_lock(&handler_mu);
    if (handler_state == 0) {
        const char *env = getenv("SHMX_FAULT_HANDLER");
        if (env && strcmp(env, "0") == 0)
            handler_state = 2;
        else
            install_locked();
    }
    m->guard = -1;
    m->fork_gen = shmx_load_relaxed32(&shmx_plat_fork_gen);
    for (int i = 0; i < GUARD_MAX; i++) {
        guard_entry *g = &guards[i];
        if (g->state != GUARD_FREE) continue;
        g->base = (uintptr_t)m->base;
        g->size = m->size;
        g->fd = m->fd;
        g->writable = m->writable;
        g->lost = 0;
        /* Release: the fields above before the handler may use them. */
        shmx_store_release32(&g->state, GUARD_ACTIVE);
        m->guard = i;
        break;
    }
    pthread_mutex_unlock(&handler_mu);
}

static void guard_remove(shmx_map *m)
{
    if (m->guard < 0) return;
    pthread_mutex_lock(&handler_mu);
    /* Out of the handler's sight before the pages go away. */
    shmx_store_release32(&guards[m->guard].state, GUARD_FREE);
    pthread_mutex_unlock(&handler_mu);
    m->guard = -1;
}

uint32_t shmx_plat_map_lost_slow(const shmx_map *m)
{
    if (m->guard < 0 || !m->base) return 0;
    return shmx_load_relaxed32(&guards[m->guard].lost);
}

int shmx_plat_map_shrunk(const shmx_map *m)
{
    struct stat st;
    if (m->fd < 0 || shmx_plat_forked_since(m->fork_gen)) return 0;
    return fstat(m->fd, &st) == 0 && (uint64_t)st.st_size < m->size;
}

shmx_status shmx_plat_path(const char *dir, const char *name, char *out, size_t cap)
{
    if (!dir || !*dir) dir = getenv("SHMX_DIR");
    if (!dir || !*dir) dir = "/dev/shm";
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap)
        return shmx_fail(SHMX_ENAME, "path '%s/%s' is too long", dir, name);
    return SHMX_OK;
}

/* The status for an OS error; also hands it to the shmx_fail() that
 * follows as the failure's cause (shmx_last_errno). */
static shmx_status errno_status(int e)
{
    shmx_os_cause(e);
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
    out->guard = -1;
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
    guard_add(out);
    return SHMX_OK;
}

shmx_status shmx_plat_open(const char *path, int writable, shmx_map *out)
{
    memset(out, 0, sizeof *out);
    out->fd = -1;
    out->guard = -1;
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
        return shmx_fail(errno_status(e), "cannot stat '%s': %s", path, strerror(e));
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
    guard_add(out);
    return SHMX_OK;
}

void shmx_plat_unmap(shmx_map *m)
{
    guard_remove(m);
    if (m->base) munmap(m->base, (size_t)m->size);
    m->base = NULL;
}

void shmx_plat_close_fd(shmx_map *m)
{
    if (m->guard >= 0) {
        pthread_mutex_lock(&handler_mu);
        guards[m->guard].fd = -1;
        pthread_mutex_unlock(&handler_mu);
    }
    if (m->fd >= 0 && !shmx_plat_forked_since(m->fork_gen)) close(m->fd);
    m->fd = -1;
}

void shmx_plat_close(shmx_map *m)
{
    shmx_plat_unmap(m);
    /* In a child of fork() the descriptor was closed at the fork (its
     * number may name another file by now). */
    if (m->fd >= 0 && !shmx_plat_forked_since(m->fork_gen)) close(m->fd);
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

int shmx_plat_same_file(const char *path, const shmx_map *m)
{
    struct stat a, b;
    return m->fd >= 0 && stat(path, &a) == 0 && fstat(m->fd, &b) == 0 && a.st_ino == b.st_ino &&
           a.st_dev == b.st_dev;
}

int shmx_plat_unlink_if_same(const char *path, const shmx_map *m)
{
    return shmx_plat_same_file(path, m) ? shmx_plat_unlink(path) : -1;
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
        /* Its creator holds the liveness lock from the moment it made the
         * file (a zombie or a process of another pid namespace too, while
         * it has the file open): a free lock means nobody will ever rename
         * or remove it.  Not kill(pid, 0): pids of other namespaces lie. */
        int fd = openat(dirfd(d), e->d_name, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0) continue;
        struct stat a, b;
        if (shmx_plat_lock(fd, SHMX_LOCK_SERVER) == 0 && fstat(fd, &a) == 0 &&
            fstatat(dirfd(d), e->d_name, &b, AT_SYMLINK_NOFOLLOW) == 0 && a.st_ino == b.st_ino &&
            a.st_dev == b.st_dev && unlinkat(dirfd(d), e->d_name, 0) == 0)
            removed++;
        close(fd);
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

void shmx_plat_die(void)
{
    raise(SIGKILL);
    _exit(137);
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
    if (errno == EAGAIN) return 0; /* the value already changed */
    /* The futex is unusable here (a seccomp filter's EPERM, ENOSYS, or
     * EFAULT on a page the file lost): poll instead of spinning.  The
     * caller looks at the word again, as after any wake-up. */
    shmx_plat_sleep_ns(timeout_ns < 0 || timeout_ns > 1000000 ? 1000000u : (uint64_t)timeout_ns);
    return 0;
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
