/*
 * wakefd.c - the event-loop wake channel: a file descriptor per party that
 * becomes readable when the other side has something (a frame for a
 * client, a control message for the server), so selectors, asyncio, trio
 * or Go's poller can watch a region like a socket, with no helper thread.
 *
 * Why this mechanism (the constraints: unrelated processes, nothing left
 * in the file system after kill -9 of either side, only who may open the
 * region gets in, no system call on publish unless a reader armed):
 *
 *   - A FIFO or a named unix socket in the region's directory is left
 *     behind by kill -9.  An eventfd cannot be handed to an unrelated
 *     process without a channel to pass it over, and pidfd_getfd needs
 *     ptrace rights (refused under Yama ptrace_scope >= 1).  A thread that
 *     futex-waits and writes an eventfd is a thread in every client.
 *   - Linux abstract-namespace unix sockets vanish with their last fd (a
 *     crash cleans up), need no file, and a connected socket receives only
 *     from its peer.  Both ends can check who the other is: SO_PEERCRED
 *     gives the peer's pid.
 *
 * So: the server listens (SOCK_SEQPACKET) on "\0shmx-wake.<session id>",
 * bound before the region gets its name (nobody can squat a name derived
 * from a session id nobody knows yet).  A client that wants an fd connects,
 * checks that the listener's pid is the region's owner pid, and sends a
 * hello {magic, reader slot index, reader id}.  The server accepts lazily
 * (only when a reader armed, or its own control fd is drained) and keeps a
 * connection only when the hello names a reader slot in use whose reader
 * id matches and whose pid is the peer's pid: knowing the reader id takes
 * the ability to read the region, writing it the ability to open it
 * read-write.  Strangers can at most make the server's control fd readable
 * spuriously (their connection is then closed) and fill the listen backlog
 * (a denial of service, like any process that can write the region).
 *
 * Wake protocol, frames (coalesced like the futex sleeper bit):
 *   client arm:    w = load(frame_futex); newer? -> ready
 *                  fetch_or(ext->wake_armed, bit)            (seq_cst)
 *                  load(frame_futex) != w or newer? -> ready  (seq_cst)
 *   server publish: exchange(frame_futex, next)               (seq_cst)
 *                  load(ext->wake_armed) != 0 ->               (seq_cst)
 *                      bits = exchange(wake_armed, 0); one send() per bit
 * Four seq_cst operations on two words (store buffering): either the
 * client sees the new futex word or the server sees its bit.  A publish
 * with no armed reader costs one load of a line readers write only when
 * they arm.  Control is the mirror image on ext->control_fd_armed and
 * control_futex, the client sending one byte on its connection.
 *
 * The server's end of a client's connection closes when the server
 * destroys the region or its process dies: the client's fd turns readable
 * (EOF) and arm reports SHMX_ECLOSED.
 *
 * Linux only (abstract sockets); elsewhere, and in another network
 * namespace than the server's, the calls fail with SHMX_ESYS and the
 * futex waits remain.
 */
/* accept4, struct ucred, SO_PEERCRED: not in strict C99/POSIX. */
#define _GNU_SOURCE 1
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#if defined(__linux__)
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#define SHMX_HAVE_WAKEFD 1
#endif

#define WAKE_HELLO_MAGIC 0x4B575853u /* "SXWK" */

typedef struct wake_hello {
    uint32_t magic, index;
    uint64_t reader_id;
} wake_hello;

typedef struct wake_conn {
    int fd;
    uint64_t reader_id; /* the hello's, checked against the slot */
} wake_conn;

struct shmx_wake_server {
    int listen_fd;
    int epoll_fd;       /* control_fd: the listener and every connection */
    uint32_t n;
    wake_conn conn[SHMX_MAX_READER_SLOTS];
};

#ifdef SHMX_HAVE_WAKEFD

static socklen_t wake_addr(uint64_t session, struct sockaddr_un *a)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    /* sun_path[0] = 0: the abstract namespace. */
    int n = snprintf(a->sun_path + 1, sizeof a->sun_path - 1, "shmx-wake.%016llx",
                     (unsigned long long)session);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

static uint64_t peer_pid(int fd)
{
    struct ucred cr;
    socklen_t len = sizeof cr;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0) return 0;
    return (uint64_t)cr.pid;
}

static void drop_conn(shmx_wake_server *w, uint32_t i);

shmx_wake_server *shmx_wake_server_new(const shmx_region *r)
{
    if (!r->ext) return NULL;
    shmx_wake_server *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->n = r->reader_slots < SHMX_MAX_READER_SLOTS ? r->reader_slots : SHMX_MAX_READER_SLOTS;
    for (uint32_t i = 0; i < SHMX_MAX_READER_SLOTS; i++) w->conn[i].fd = -1;
    w->epoll_fd = -1;
    w->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_un a;
    socklen_t len = wake_addr(r->session_id, &a);
    if (w->listen_fd < 0 || bind(w->listen_fd, (struct sockaddr *)&a, len) != 0 ||
        listen(w->listen_fd, SHMX_MAX_READER_SLOTS) != 0) {
        if (w->listen_fd >= 0) close(w->listen_fd);
        free(w);
        return NULL; /* no wake channel: clients' wait_fd fails, futex waits work */
    }
    shmx_plat_fork_closes(w->listen_fd, 1);
    return w;
}

void shmx_wake_server_free(shmx_wake_server *w)
{
    if (!w) return;
    for (uint32_t i = 0; i < SHMX_MAX_READER_SLOTS; i++) drop_conn(w, i);
    if (w->epoll_fd >= 0) {
        shmx_plat_fork_closes(w->epoll_fd, 0);
        close(w->epoll_fd);
    }
    if (w->listen_fd >= 0) {
        shmx_plat_fork_closes(w->listen_fd, 0);
        close(w->listen_fd);
    }
    free(w);
}

static void drop_conn(shmx_wake_server *w, uint32_t i)
{
    if (w->conn[i].fd < 0) return;
    if (w->epoll_fd >= 0) epoll_ctl(w->epoll_fd, EPOLL_CTL_DEL, w->conn[i].fd, NULL);
    shmx_plat_fork_closes(w->conn[i].fd, 0);
    close(w->conn[i].fd);
    w->conn[i].fd = -1;
}

/* Accept every queued connection; keep those whose hello checks out. */
static void accept_pending(shmx_wake_server *w, const shmx_region *r)
{
    for (;;) {
        int fd = accept4(w->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return; /* EAGAIN: none left (or an error: try next time) */
        wake_hello h;
        ssize_t got = recv(fd, &h, sizeof h, MSG_DONTWAIT);
        uint64_t pid = peer_pid(fd);
        int ok = got == (ssize_t)sizeof h && h.magic == WAKE_HELLO_MAGIC && h.index < w->n;
        if (ok) {
            shmx_reader_slot *rs = shmx_reader_at(r, h.index);
            /* Hints from the region, checked against what the kernel says. */
            ok = shmx_load_acquire32(&rs->in_use) == 1u &&
                 shmx_load_acquire64(&rs->reader_id) == h.reader_id && h.reader_id != 0 &&
                 pid != 0 && shmx_load_relaxed64(&rs->pid) == pid;
        }
        if (!ok) {
            close(fd);
            continue;
        }
        drop_conn(w, h.index); /* a former reader of that slot */
        shmx_plat_fork_closes(fd, 1);
        w->conn[h.index].fd = fd;
        w->conn[h.index].reader_id = h.reader_id;
        if (w->epoll_fd >= 0) {
            struct epoll_event ev;
            memset(&ev, 0, sizeof ev);
            ev.events = EPOLLIN;
            ev.data.u32 = h.index;
            epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, fd, &ev);
        }
    }
}

void shmx_wake_publish(shmx_wake_server *w, const shmx_region *r)
{
    /* Pairs with the client's fetch_or in shmx_wake_client_arm (see top). */
    uint64_t bits = shmx_exchange64(&r->ext->wake_armed, 0);
    int accepted = 0;
    for (uint32_t i = 0; i < w->n && bits; i++) {
        uint64_t bit = 1ull << i;
        if (!(bits & bit)) continue;
        bits &= ~bit;
        uint64_t id = shmx_load_acquire64(&shmx_reader_at(r, i)->reader_id);
        if ((w->conn[i].fd < 0 || w->conn[i].reader_id != id) && !accepted) {
            accept_pending(w, r);
            accepted = 1;
        }
        if (w->conn[i].fd < 0 || w->conn[i].reader_id != id) continue; /* a forged bit */
        if (send(w->conn[i].fd, "f", 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && errno != EAGAIN &&
            errno != EWOULDBLOCK)
            drop_conn(w, i); /* its reader closed */
    }
}

shmx_status shmx_wake_server_fd(shmx_wake_server *w, int *fd)
{
    if (!w) return shmx_fail(SHMX_ESYS, "control_fd: this server has no wake channel");
    if (w->epoll_fd < 0) {
        int ep = epoll_create1(EPOLL_CLOEXEC);
        if (ep < 0) return shmx_fail(SHMX_ESYS, "control_fd: epoll_create1: %s", strerror(errno));
        struct epoll_event ev;
        memset(&ev, 0, sizeof ev);
        ev.events = EPOLLIN;
        ev.data.u32 = 0xFFFFFFFFu;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, w->listen_fd, &ev) != 0) {
            close(ep);
            return shmx_fail(SHMX_ESYS, "control_fd: epoll_ctl: %s", strerror(errno));
        }
        w->epoll_fd = ep;
        shmx_plat_fork_closes(ep, 1);
        for (uint32_t i = 0; i < w->n; i++) {
            if (w->conn[i].fd < 0) continue;
            ev.data.u32 = i;
            epoll_ctl(ep, EPOLL_CTL_ADD, w->conn[i].fd, &ev);
        }
    }
    *fd = w->epoll_fd;
    return SHMX_OK;
}

/* Drain the control fd, arm it, and say whether a message may be there
 * already (has_data looks at the rings). */
shmx_status shmx_wake_server_arm(shmx_wake_server *w, const shmx_region *r,
                                 int (*has_data)(const void *ctx, uint32_t), const void *ctx)
{
    int fd;
    shmx_status st = shmx_wake_server_fd(w, &fd);
    if (st != SHMX_OK) return st;
    struct epoll_event ev[SHMX_MAX_READER_SLOTS + 1];
    int n = epoll_wait(w->epoll_fd, ev, SHMX_MAX_READER_SLOTS + 1, 0);
    for (int k = 0; k < n; k++) {
        uint32_t i = ev[k].data.u32;
        if (i == 0xFFFFFFFFu) {
            accept_pending(w, r);
            continue;
        }
        if (i >= w->n || w->conn[i].fd < 0) continue;
        char buf[64];
        for (;;) {
            ssize_t got = recv(w->conn[i].fd, buf, sizeof buf, MSG_DONTWAIT);
            if (got > 0) continue;
            if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
                drop_conn(w, i); /* its client closed */
            break;
        }
    }
    shmx_ext_header *ext = r->ext;
    uint32_t word = shmx_load_seqcst32(&ext->control_futex);
    for (uint32_t i = 0; i < r->reader_slots; i++)
        if (has_data(ctx, i)) return SHMX_OK;
    /* Arm, then look again: pairs with the client's seq_cst bump of
     * control_futex then seq_cst load of control_fd_armed. */
    shmx_exchange64(&ext->control_fd_armed, 1);
    if (shmx_load_seqcst32(&ext->control_futex) != word) return SHMX_OK;
    for (uint32_t i = 0; i < r->reader_slots; i++)
        if (has_data(ctx, i)) return SHMX_OK;
    return SHMX_EAGAIN;
}

/* ------------------------------------------------------------------ client */

shmx_status shmx_wake_client_connect(const shmx_region *r, uint32_t index, uint64_t reader_id, int *out)
{
    if (!r->ext) return shmx_fail(SHMX_ELEGACY, "wait_fd: '%s' is a shmx 1.0.1 region (no wake channel)", r->name);
    if (index >= SHMX_MAX_READER_SLOTS) return shmx_fail(SHMX_EINVAL, "wait_fd: no reader slot");
    /* Non-blocking: a full listen backlog fails (EAGAIN) instead of blocking. */
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return shmx_fail(SHMX_ESYS, "wait_fd: socket: %s", strerror(errno));
    struct sockaddr_un a;
    socklen_t len = wake_addr(r->session_id, &a);
    if (connect(fd, (struct sockaddr *)&a, len) != 0) {
        int e = errno;
        close(fd);
        if (shmx_load_acquire32(&r->ext->closed) || shmx_server_liveness(r) == SHMX_DEAD)
            return shmx_fail(SHMX_ECLOSED, "wait_fd: the server of '%s' is gone", r->name);
        return shmx_fail(SHMX_ESYS, "wait_fd: cannot reach the wake channel of '%s' (%s; another "
                                    "network namespace?)", r->name, strerror(e));
    }
    /* The listener is the region's owner, not someone squatting the name. */
    uint64_t pid = peer_pid(fd);
    if (pid == 0 || pid != shmx_load_relaxed64(&r->ext->owner_pid)) {
        close(fd);
        return shmx_fail(SHMX_EACCES, "wait_fd: the wake channel of '%s' belongs to pid %llu, not "
                                      "to the region's owner", r->name, (unsigned long long)pid);
    }
    wake_hello h = {WAKE_HELLO_MAGIC, index, reader_id};
    if (send(fd, &h, sizeof h, MSG_NOSIGNAL) != (ssize_t)sizeof h) {
        int e = errno;
        close(fd);
        return shmx_fail(SHMX_ESYS, "wait_fd: hello to the server of '%s': %s", r->name, strerror(e));
    }
    shmx_plat_fork_closes(fd, 1);
    *out = fd;
    return SHMX_OK;
}

int shmx_wake_client_drain(int fd)
{
    /* One recv: the server sends at most one record per arm (it clears
     * our bit as it sends), and we arm only after draining.  Should a
     * second record be there, the fd stays readable: one spurious wake. */
    char buf[64];
    for (;;) {
        ssize_t got = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (got > 0) return 0;
        if (got < 0 && errno == EINTR) continue;
        return got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK); /* 1: server gone */
    }
}

void shmx_wake_client_close(int *fd)
{
    if (*fd >= 0) {
        shmx_plat_fork_closes(*fd, 0);
        close(*fd);
    }
    *fd = -1;
}

void shmx_wake_client_send_control(const shmx_region *r, uint32_t index, uint64_t reader_id, int *fd)
{
    /* seq_cst load after the caller's seq_cst bump of control_futex; pairs
     * with the server's exchange of control_fd_armed then load of the
     * word (shmx_wake_server_arm).  One byte per arm: whoever clears the
     * flag sends it. */
    if (!r->ext || !shmx_load_seqcst64(&r->ext->control_fd_armed)) return;
    if (!shmx_exchange64(&r->ext->control_fd_armed, 0)) return;
    if (*fd < 0 && shmx_wake_client_connect(r, index, reader_id, fd) != SHMX_OK) return;
    send(*fd, "c", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
}

#else /* no abstract unix sockets: no wake channel */

shmx_wake_server *shmx_wake_server_new(const shmx_region *r) { (void)r; return NULL; }
void shmx_wake_server_free(shmx_wake_server *w) { (void)w; }
void shmx_wake_publish(shmx_wake_server *w, const shmx_region *r) { (void)w; (void)r; }
shmx_status shmx_wake_server_fd(shmx_wake_server *w, int *fd)
{
    (void)w; (void)fd;
    return shmx_fail(SHMX_ESYS, "control_fd: no wake channel on this platform");
}
shmx_status shmx_wake_server_arm(shmx_wake_server *w, const shmx_region *r,
                                 int (*has_data)(const void *ctx, uint32_t), const void *ctx)
{
    (void)w; (void)r; (void)has_data; (void)ctx;
    return shmx_fail(SHMX_ESYS, "control_fd: no wake channel on this platform");
}
shmx_status shmx_wake_client_connect(const shmx_region *r, uint32_t index, uint64_t reader_id, int *out)
{
    (void)r; (void)index; (void)reader_id; (void)out;
    return shmx_fail(SHMX_ESYS, "wait_fd: no wake channel on this platform");
}
int shmx_wake_client_drain(int fd) { (void)fd; return 0; }
void shmx_wake_client_close(int *fd) { *fd = -1; }
void shmx_wake_client_send_control(const shmx_region *r, uint32_t index, uint64_t reader_id, int *fd)
{
    (void)r; (void)index; (void)reader_id; (void)fd;
}

#endif
