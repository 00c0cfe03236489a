/*
 * test_win32.c - what is particular to Windows, checked under wine (or on
 * Windows): regions as named pagefile mappings that share the bare region
 * name with shmx 1.0.1, exclusive create, the default DACL, file-backed
 * regions in a directory, and several processes: a producer and a consumer
 * in lock step over frames and control rings, a blocked reader woken by a
 * publish from another process, and TerminateProcess of a producer and of
 * a reader in the middle of their work.  "test_win32.exe legacy PEER" runs
 * the exchanges with a shmx 1.0.1 C++ peer instead (tests/legacy_cpp/win_peer.cpp).
 *
 * The same executable is its own child: "test_win32.exe <role> <name> ...".
 * A child prints "<role>: N checks, M failed" on stderr and exits non-zero
 * on any failure.
 */
#include "shmx_test.h"

#include <windows.h>
#include <aclapi.h>

enum { ID_PIXELS = 1, ID_COUNT = 2 };
enum { MSG_ACK = 1, MSG_READY = 2, MSG_DONE = 3 };
#define PIXELS 1000u
#define STEP_TIMEOUT_NS 20000000000LL /* a hang guard, never a timing claim */

static const shmx_stream_spec k_streams[] = {
    {ID_PIXELS, SHMX_DT_U8, 1, SHMX_LAYOUT_SOA_SCALAR, 1, "pixels", NULL, 0},
    {ID_COUNT, SHMX_DT_U64, 1, SHMX_LAYOUT_SOA_SCALAR, 8, "counter", NULL, 0},
};

static void base_config(shmx_server_config *cfg)
{
    shmx_server_config_init(cfg);
    cfg->streams = k_streams;
    cfg->stream_count = 2;
    cfg->frame_bytes_cap = 4096;
    cfg->slots = 4;
    cfg->reader_slots = 4;
    cfg->control_per_reader = 256;
}

/* Frame `counter`: pixels (counter * 7 + i), then the counter. */
static shmx_status publish_counter(shmx_server *s, uint64_t counter)
{
    uint8_t px[PIXELS];
    for (uint32_t i = 0; i < PIXELS; i++) px[i] = (uint8_t)(counter * 7u + i);
    uint64_t frame;
    shmx_status st = shmx_server_begin_frame(s, &frame);
    if (st == SHMX_OK) st = shmx_server_append(s, frame, ID_PIXELS, px, PIXELS, PIXELS);
    if (st == SHMX_OK) st = shmx_server_append(s, frame, ID_COUNT, &counter, 8, 1);
    if (st == SHMX_OK) st = shmx_server_publish(s, frame, (double)counter);
    return st;
}

/* The counter of the client's current frame, after checking its pixels;
 * UINT64_MAX if they do not match it. */
static uint64_t frame_counter(shmx_client *c)
{
    shmx_stream_view v;
    memset(&v, 0, sizeof v);
    v.struct_size = sizeof v;
    uint64_t counter = 0;
    if (shmx_client_frame_stream(c, 1, &v) != SHMX_OK || v.bytes != 8) return UINT64_MAX;
    memcpy(&counter, v.data, 8);
    if (shmx_client_frame_stream(c, 0, &v) != SHMX_OK || v.bytes != PIXELS) return UINT64_MAX;
    const uint8_t *p = (const uint8_t *)v.data;
    for (uint32_t i = 0; i < PIXELS; i++)
        if (p[i] != (uint8_t)(counter * 7u + i)) return UINT64_MAX;
    return counter;
}

static int mapping_exists(const char *name)
{
    wchar_t w[256];
    MultiByteToWideChar(CP_UTF8, 0, name, -1, w, 256);
    HANDLE h = OpenFileMappingW(FILE_MAP_READ, FALSE, w);
    if (h) CloseHandle(h);
    return h != NULL;
}

/* Open a client, retrying while the region does not exist yet. */
static shmx_status open_retry(const char *name, shmx_client **c)
{
    uint64_t until = t_now_ns() + (uint64_t)STEP_TIMEOUT_NS;
    shmx_status st;
    while ((st = shmx_client_open(name, NULL, c)) == SHMX_ENOENT && t_now_ns() < until) Sleep(5);
    return st;
}

/* --------------------------------------------------------------- children */

typedef struct child {
    PROCESS_INFORMATION pi;
} child;

/* Start `exe` (NULL: this program) with "<role> <name> <extra>". */
static int spawn_exe(child *ch, const char *exe_path, const char *role, const char *name,
                     const char *extra)
{
    char exe[MAX_PATH], cmd[1024];
    if (exe_path)
        snprintf(exe, sizeof exe, "%s", exe_path);
    else
        GetModuleFileNameA(NULL, exe, sizeof exe);
    snprintf(cmd, sizeof cmd, "\"%s\" %s %s %s", exe, role, name, extra ? extra : "");
    STARTUPINFOA si;
    memset(&si, 0, sizeof si);
    si.cb = sizeof si;
    memset(&ch->pi, 0, sizeof ch->pi);
    return CreateProcessA(NULL, cmd, NULL, NULL, TRUE, 0, NULL, NULL, &si, &ch->pi) ? 0 : -1;
}

static int spawn(child *ch, const char *role, const char *name, const char *extra)
{
    return spawn_exe(ch, NULL, role, name, extra);
}

/* Exit code of the child, waiting up to `ms`; -1 on a hang (then killed). */
static long reap(child *ch, DWORD ms)
{
    DWORD code = 0;
    if (WaitForSingleObject(ch->pi.hProcess, ms) != WAIT_OBJECT_0) {
        TerminateProcess(ch->pi.hProcess, 99);
        WaitForSingleObject(ch->pi.hProcess, INFINITE);
        code = (DWORD)-1;
    } else {
        GetExitCodeProcess(ch->pi.hProcess, &code);
    }
    CloseHandle(ch->pi.hProcess);
    CloseHandle(ch->pi.hThread);
    return (long)code;
}

static int child_finish(const char *role)
{
    int checks = __atomic_load_n(&t_checks, __ATOMIC_RELAXED);
    int failed = __atomic_load_n(&t_failures, __ATOMIC_RELAXED);
    fprintf(stderr, "child %s: %d checks, %d failed\n", role, checks, failed);
    return failed ? 1 : 0;
}

/* consumer <name> <lockstep> <free>: acknowledge each lock-step frame, then
 * follow a free-running producer with read_next until its last frame. */
static int role_consumer(const char *name, uint64_t lockstep, uint64_t free_frames)
{
    shmx_client *c = NULL;
    REQUIRE_OK(open_retry(name, &c));
    shmx_frame_info fi;
    memset(&fi, 0, sizeof fi);
    fi.struct_size = sizeof fi;
    for (uint64_t want = 1; want <= lockstep; want++) {
        uint64_t got = 0;
        for (;;) {
            shmx_status st = shmx_client_latest(c, &fi);
            if (st == SHMX_OK && (got = frame_counter(c)) >= want) break;
            CHECK(st == SHMX_OK || st == SHMX_EAGAIN);
            st = shmx_client_wait(c, STEP_TIMEOUT_NS);
            if (st != SHMX_OK) {
                CHECK_OK(st);
                shmx_client_free(c);
                return child_finish("consumer");
            }
        }
        CHECK(got == want);
        CHECK_OK(shmx_client_send_control(c, MSG_ACK, &got, 8));
    }
    /* Free-running: frame ids rise by one plus what was dropped. */
    uint64_t last_id = fi.frame_id, last_counter = lockstep, bad = 0, seen = 0;
    while (last_counter < lockstep + free_frames) {
        shmx_status st = shmx_client_next(c, &fi);
        if (st == SHMX_EAGAIN) {
            st = shmx_client_wait(c, STEP_TIMEOUT_NS);
            if (st != SHMX_OK) {
                CHECK_OK(st);
                break;
            }
            continue;
        }
        if (st != SHMX_OK) {
            CHECK_OK(st);
            break;
        }
        uint64_t counter = frame_counter(c);
        bad += counter == UINT64_MAX || counter <= last_counter ||
               fi.frame_id != last_id + 1 + fi.dropped;
        last_counter = counter == UINT64_MAX ? last_counter : counter;
        last_id = fi.frame_id;
        seen++;
        shmx_client_release(c);
    }
    CHECK(bad == 0);
    CHECK(seen > 0);
    CHECK_OK(shmx_client_send_control(c, MSG_DONE, &seen, 8));
    shmx_client_free(c);
    return child_finish("consumer");
}

/* producer <name> <busy>: create, publish frame 42 (busy: keep publishing
 * frames 43, 44, ... as fast as it can), and live until killed. */
static int role_producer(const char *name, int busy)
{
    shmx_server_config cfg;
    base_config(&cfg);
    shmx_server *s = NULL;
    REQUIRE_OK(shmx_server_create(name, &cfg, &s));
    CHECK_OK(publish_counter(s, 42));
    for (uint64_t n = 43; busy; n++) (void)publish_counter(s, n);
    Sleep(INFINITE);
    return 0;
}

/* reader <name>: attach, say ready over the control ring, read until killed. */
static int role_reader(const char *name)
{
    shmx_client *c = NULL;
    REQUIRE_OK(open_retry(name, &c));
    uint64_t pid = GetCurrentProcessId();
    CHECK_OK(shmx_client_send_control(c, MSG_READY, &pid, 8));
    shmx_frame_info fi;
    memset(&fi, 0, sizeof fi);
    fi.struct_size = sizeof fi;
    for (;;) {
        if (shmx_client_latest(c, &fi) == SHMX_OK) shmx_client_release(c);
        (void)shmx_client_wait(c, 1000000000LL);
    }
    return 0; /* not reached: killed */
}

/* waiter <name>: block in wait until the parent publishes, check the frame. */
static int role_waiter(const char *name)
{
    shmx_client *c = NULL;
    REQUIRE_OK(open_retry(name, &c));
    uint64_t pid = GetCurrentProcessId();
    CHECK_OK(shmx_client_send_control(c, MSG_READY, &pid, 8));
    CHECK_OK(shmx_client_wait(c, STEP_TIMEOUT_NS));
    shmx_frame_info fi;
    memset(&fi, 0, sizeof fi);
    fi.struct_size = sizeof fi;
    CHECK_OK(shmx_client_latest(c, &fi));
    CHECK(frame_counter(c) == 7);
    shmx_client_free(c);
    return child_finish("waiter");
}

/* ----------------------------------------------------------------- tests */

/* The next control message of the given type within the hang guard. */
static int next_msg(shmx_server *s, uint32_t type, uint64_t *value)
{
    uint64_t until = t_now_ns() + (uint64_t)STEP_TIMEOUT_NS;
    while (t_now_ns() < until) {
        shmx_control_msg m;
        memset(&m, 0, sizeof m);
        m.struct_size = sizeof m;
        uint64_t buf[32];
        shmx_status st = shmx_server_next_control(s, &m, buf, sizeof buf);
        if (st == SHMX_OK) {
            if (m.type != type || m.length != 8) return -1;
            memcpy(value, buf, 8);
            return 0;
        }
        if (st != SHMX_EAGAIN) return -1;
        st = shmx_server_wait_control(s, STEP_TIMEOUT_NS);
        if (st != SHMX_OK && st != SHMX_ETIMEDOUT) return -1;
    }
    return -1;
}

static void test_pagefile_region(void)
{
    char name[128];
    t_name(name, sizeof name, "pagefile");
    shmx_server_config cfg;
    base_config(&cfg);
    shmx_server *s = NULL, *s2 = NULL;
    REQUIRE_OK(shmx_server_create(name, &cfg, &s));
    /* The bare region name is the mapping's object name (as in 1.0.1). */
    CHECK(mapping_exists(name));
    CHECK_ST(shmx_server_create(name, &cfg, &s2), SHMX_EEXIST);
    CHECK_ERR_HAS("is open");
    char owner[64];
    snprintf(owner, sizeof owner, "its owner (pid %lu) is alive", (unsigned long)GetCurrentProcessId());
    CHECK_ERR_HAS(owner);
    CHECK(s2 == NULL);

    shmx_client *c = NULL;
    REQUIRE_OK(shmx_client_open(name, NULL, &c));
    CHECK(shmx_client_size(c) == shmx_server_size(s));
    CHECK_OK(publish_counter(s, 5));
    shmx_frame_info fi;
    memset(&fi, 0, sizeof fi);
    fi.struct_size = sizeof fi;
    CHECK_OK(shmx_client_latest(c, &fi));
    CHECK(frame_counter(c) == 5);
    shmx_client_release(c);
    CHECK(shmx_client_server_alive(c) == SHMX_ALIVE);

    shmx_inspector *in = NULL;
    REQUIRE_OK(shmx_inspector_open(name, NULL, &in));
    shmx_header_info hi;
    memset(&hi, 0, sizeof hi);
    hi.struct_size = sizeof hi;
    CHECK_OK(shmx_inspector_header_info(in, &hi));
    CHECK(hi.owner_alive == SHMX_ALIVE && hi.owner_pid == GetCurrentProcessId());
    CHECK(hi.readers_connected == 1 && hi.total_bytes == shmx_server_size(s));
    shmx_reader_info ri[4];
    uint32_t n = 0;
    memset(ri, 0, sizeof ri);
    for (int i = 0; i < 4; i++) ri[i].struct_size = sizeof ri[i];
    CHECK_OK(shmx_inspector_readers(in, ri, 4, &n));
    CHECK(n == 4 && ri[0].in_use && ri[0].alive == SHMX_ALIVE && ri[0].pid == GetCurrentProcessId());
    CHECK(!ri[1].in_use && ri[1].alive == SHMX_DEAD);
    shmx_inspector_close(in);

    /* No unlink on Windows: the name stays while a handle is open... */
    CHECK_ST(shmx_unlink(name, NULL, 1), SHMX_ESYS);
    shmx_server_destroy(s);
    CHECK_ST(shmx_client_wait(c, STEP_TIMEOUT_NS), SHMX_ECLOSED);
    CHECK(mapping_exists(name)); /* the client still holds it */
    shmx_client_free(c);
    /* ...and is gone with the last one: nothing stale to reclaim. */
    CHECK(!mapping_exists(name));
    CHECK_ST(shmx_client_open(name, NULL, &c), SHMX_ENOENT);
    CHECK_ST(shmx_unlink(name, NULL, 0), SHMX_ENOENT);
    REQUIRE_OK(shmx_server_create(name, &cfg, &s));
    shmx_server_destroy(s);
    CHECK(!mapping_exists(name));
}

/* The mapping's DACL: 0600 admits the creating user alone, 0644 adds
 * Everyone with read access only. */
static void check_dacl(uint32_t mode, int want_aces)
{
    char name[128];
    t_name(name, sizeof name, "dacl");
    shmx_server_config cfg;
    base_config(&cfg);
    cfg.mode = mode;
    shmx_server *s = NULL;
    REQUIRE_OK(shmx_server_create(name, &cfg, &s));
    wchar_t w[256];
    MultiByteToWideChar(CP_UTF8, 0, name, -1, w, 256);
    HANDLE h = OpenFileMappingW(READ_CONTROL, FALSE, w);
    CHECK(h != NULL);
    PACL dacl = NULL;
    PSECURITY_DESCRIPTOR sd = NULL;
    DWORD rc = h ? GetSecurityInfo(h, SE_KERNEL_OBJECT, DACL_SECURITY_INFORMATION, NULL, NULL, &dacl,
                                   NULL, &sd)
                 : 1;
    CHECK(rc == ERROR_SUCCESS && dacl != NULL);
    if (rc == ERROR_SUCCESS && dacl) {
        CHECK(dacl->AceCount == want_aces);
        HANDLE tok;
        union { TOKEN_USER tu; uint8_t raw[256]; } u;
        DWORD len = 0;
        CHECK(OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &tok));
        CHECK(GetTokenInformation(tok, TokenUser, &u, sizeof u, &len));
        CloseHandle(tok);
        ACCESS_ALLOWED_ACE *ace = NULL;
        CHECK(GetAce(dacl, 0, (void **)&ace) && ace->Header.AceType == ACCESS_ALLOWED_ACE_TYPE);
        if (ace) CHECK(EqualSid((PSID)&ace->SidStart, u.tu.User.Sid));
        if (want_aces == 2) {
            SID_IDENTIFIER_AUTHORITY world = {SECURITY_WORLD_SID_AUTHORITY};
            PSID everyone = NULL;
            CHECK(AllocateAndInitializeSid(&world, 1, SECURITY_WORLD_RID, 0, 0, 0, 0, 0, 0, 0, &everyone));
            ACCESS_ALLOWED_ACE *ace2 = NULL;
            CHECK(GetAce(dacl, 1, (void **)&ace2));
            if (ace2 && everyone) {
                CHECK(EqualSid((PSID)&ace2->SidStart, everyone));
                /* GENERIC_READ, or what it maps to for a section. */
                CHECK((ace2->Mask & (GENERIC_READ | SECTION_MAP_READ)) != 0);
                CHECK((ace2->Mask & (GENERIC_WRITE | GENERIC_ALL | SECTION_MAP_WRITE)) == 0);
            }
            if (everyone) FreeSid(everyone);
        }
    }
    if (sd) LocalFree(sd);
    if (h) CloseHandle(h);
    shmx_server_destroy(s);
}

static void test_dacl(void)
{
    check_dacl(0600, 1);
    check_dacl(0644, 2);
}

static void test_file_backed(void)
{
    char tmp[MAX_PATH], dir[MAX_PATH], path[MAX_PATH + 128], name[128];
    GetTempPathA(sizeof tmp, tmp);
    snprintf(dir, sizeof dir, "%sshmx-win32-%lu-%08x", tmp, (unsigned long)GetCurrentProcessId(),
             (unsigned)(t_now_ns() & 0xFFFFFFFFu));
    REQUIRE(CreateDirectoryA(dir, NULL) || GetLastError() == ERROR_ALREADY_EXISTS);
    t_name(name, sizeof name, "file");
    snprintf(path, sizeof path, "%s\\%s", dir, name);
    shmx_server_config cfg;
    base_config(&cfg);
    cfg.dir = dir;
    shmx_server *s = NULL, *s2 = NULL;
    REQUIRE_OK(shmx_server_create(name, &cfg, &s));
    CHECK(GetFileAttributesA(path) != INVALID_FILE_ATTRIBUTES);
    CHECK(!mapping_exists(name)); /* a file, not a named mapping */
    CHECK_ST(shmx_server_create(name, &cfg, &s2), SHMX_EEXIST);
    shmx_open_options opt;
    shmx_open_options_init(&opt);
    opt.dir = dir;
    shmx_client *c = NULL;
    CHECK_ST(shmx_client_open(name, NULL, &c), SHMX_ENOENT);
    REQUIRE_OK(shmx_client_open(name, &opt, &c));
    CHECK_OK(publish_counter(s, 9));
    shmx_frame_info fi;
    memset(&fi, 0, sizeof fi);
    fi.struct_size = sizeof fi;
    CHECK_OK(shmx_client_latest(c, &fi));
    CHECK(frame_counter(c) == 9);
    shmx_client_release(c);
    CHECK(shmx_client_server_alive(c) == SHMX_ALIVE);
    /* A read-only opener finds the same liveness objects. */
    shmx_inspector *in = NULL;
    REQUIRE_OK(shmx_inspector_open(name, &opt, &in));
    shmx_header_info hi;
    memset(&hi, 0, sizeof hi);
    hi.struct_size = sizeof hi;
    CHECK_OK(shmx_inspector_header_info(in, &hi));
    CHECK(hi.owner_alive == SHMX_ALIVE && hi.readers_connected == 1);
    shmx_server_destroy(s);
    CHECK(shmx_client_server_alive(c) == SHMX_DEAD);
    CHECK_OK(shmx_inspector_header_info(in, &hi));
    CHECK(hi.owner_alive == SHMX_DEAD && hi.closed == 1);
    shmx_inspector_close(in);
    shmx_client_free(c);
    CHECK(GetFileAttributesA(path) == INVALID_FILE_ATTRIBUTES);
    /* No temporary files either. */
    char glob[MAX_PATH + 8];
    snprintf(glob, sizeof glob, "%s\\*", dir);
    WIN32_FIND_DATAA fd;
    HANDLE f = FindFirstFileA(glob, &fd);
    int others = 0;
    if (f != INVALID_HANDLE_VALUE) {
        do others += strcmp(fd.cFileName, ".") != 0 && strcmp(fd.cFileName, "..") != 0;
        while (FindNextFileA(f, &fd));
        FindClose(f);
    }
    CHECK(others == 0);
    CHECK(RemoveDirectoryA(dir));
}

static void test_lockstep_processes(void)
{
    char name[128];
    t_name(name, sizeof name, "lockstep");
    shmx_server_config cfg;
    base_config(&cfg);
    shmx_server *s = NULL;
    REQUIRE_OK(shmx_server_create(name, &cfg, &s));
    const uint64_t lockstep = 200, free_frames = 3000;
    char extra[64];
    snprintf(extra, sizeof extra, "%llu %llu", (unsigned long long)lockstep,
             (unsigned long long)free_frames);
    child ch;
    REQUIRE(spawn(&ch, "consumer", name, extra) == 0);
    /* Each step needs the consumer's wake-up by our publish and ours by its
     * control message: a lost wake-up would stall here until the guard. */
    uint64_t t0 = t_now_ns();
    int acked = 0;
    for (uint64_t i = 1; i <= lockstep; i++) {
        CHECK_OK(publish_counter(s, i));
        uint64_t got = 0;
        if (next_msg(s, MSG_ACK, &got) != 0 || got != i) {
            T_FAIL("no ack for frame %llu (got %llu)", (unsigned long long)i, (unsigned long long)got);
            break;
        }
        acked++;
    }
    uint64_t t1 = t_now_ns();
    CHECK(acked == (int)lockstep);
    for (uint64_t i = lockstep + 1; i <= lockstep + free_frames; i++) {
        shmx_status st;
        while ((st = publish_counter(s, i)) == SHMX_EBUSY) Sleep(0);
        CHECK_OK(st);
    }
    uint64_t seen = 0;
    CHECK(next_msg(s, MSG_DONE, &seen) == 0 && seen > 0 && seen <= free_frames);
    CHECK(reap(&ch, 30000) == 0);
    printf("lockstep: %d round trips across processes, %.1f us each; consumer saw %llu of %llu "
           "free-running frames\n",
           acked, acked ? (double)(t1 - t0) / acked / 1000.0 : 0.0, (unsigned long long)seen,
           (unsigned long long)free_frames);
    shmx_server_destroy(s);
}

static void test_cross_process_wake(void)
{
    char name[128];
    t_name(name, sizeof name, "wake");
    shmx_server_config cfg;
    base_config(&cfg);
    shmx_server *s = NULL;
    REQUIRE_OK(shmx_server_create(name, &cfg, &s));
    child ch;
    REQUIRE(spawn(&ch, "waiter", name, NULL) == 0);
    uint64_t pid = 0;
    CHECK(next_msg(s, MSG_READY, &pid) == 0 && pid == ch.pi.dwProcessId);
    Sleep(200); /* let it fall asleep; the result does not depend on it */
    CHECK_OK(publish_counter(s, 7));
    CHECK(reap(&ch, 30000) == 0);
    shmx_server_destroy(s);
}

static void test_kill_producer(int busy)
{
    char name[128];
    t_name(name, sizeof name, busy ? "kill-busy-producer" : "kill-producer");
    child ch;
    REQUIRE(spawn(&ch, "producer", name, busy ? "1" : "0") == 0);
    shmx_client *c = NULL;
    REQUIRE_OK(open_retry(name, &c));
    shmx_frame_info fi;
    memset(&fi, 0, sizeof fi);
    fi.struct_size = sizeof fi;
    shmx_status st;
    while ((st = shmx_client_latest(c, &fi)) == SHMX_EAGAIN) (void)shmx_client_wait(c, STEP_TIMEOUT_NS);
    CHECK_OK(st);
    CHECK(frame_counter(c) >= 42);
    shmx_client_release(c);
    CHECK(shmx_client_server_alive(c) == SHMX_ALIVE);
    shmx_header_info hi;
    memset(&hi, 0, sizeof hi);
    hi.struct_size = sizeof hi;
    CHECK_OK(shmx_client_header_info(c, &hi));
    CHECK(hi.owner_pid == ch.pi.dwProcessId && hi.owner_alive == SHMX_ALIVE);
    if (busy) Sleep(50); /* killed in the middle of a publish, most likely */
    REQUIRE(TerminateProcess(ch.pi.hProcess, 9));
    CHECK(reap(&ch, 30000) == 9);
    CHECK(shmx_client_server_alive(c) == SHMX_DEAD);
    /* The last complete frame is still readable and intact. */
    st = shmx_client_latest(c, &fi);
    CHECK(st == SHMX_OK || st == SHMX_EAGAIN);
    if (st == SHMX_OK) {
        CHECK(frame_counter(c) != UINT64_MAX);
        shmx_client_release(c);
    }
    /* A waiting reader learns that the producer is gone. */
    CHECK_ST(shmx_client_wait(c, STEP_TIMEOUT_NS), SHMX_ECLOSED);
    CHECK_ERR_HAS("gone");
    CHECK(mapping_exists(name));
    shmx_client_free(c);
    CHECK(!mapping_exists(name)); /* no stale region */
    shmx_server_config cfg;
    base_config(&cfg);
    shmx_server *s = NULL;
    CHECK_OK(shmx_server_create(name, &cfg, &s));
    shmx_server_destroy(s);
}

static void test_kill_reader(void)
{
    char name[128];
    t_name(name, sizeof name, "kill-reader");
    shmx_server_config cfg;
    base_config(&cfg);
    shmx_server *s = NULL;
    REQUIRE_OK(shmx_server_create(name, &cfg, &s));
    CHECK_OK(publish_counter(s, 1));
    child ch;
    REQUIRE(spawn(&ch, "reader", name, NULL) == 0);
    uint64_t pid = 0;
    CHECK(next_msg(s, MSG_READY, &pid) == 0 && pid == ch.pi.dwProcessId);
    for (uint64_t i = 2; i < 200; i++) (void)publish_counter(s, i); /* it reads meanwhile */
    shmx_reader_info ri[4];
    memset(ri, 0, sizeof ri);
    for (int i = 0; i < 4; i++) ri[i].struct_size = sizeof ri[i];
    uint32_t n = 0;
    CHECK_OK(shmx_server_readers(s, ri, 4, &n));
    CHECK(ri[0].in_use && ri[0].alive == SHMX_ALIVE && ri[0].pid == ch.pi.dwProcessId);
    uint32_t reaped = 99;
    CHECK_OK(shmx_server_reap_dead_readers(s, &reaped));
    CHECK(reaped == 0);
    REQUIRE(TerminateProcess(ch.pi.hProcess, 9));
    CHECK(reap(&ch, 30000) == 9);
    CHECK_OK(shmx_server_readers(s, ri, 4, &n));
    CHECK(ri[0].in_use && ri[0].alive == SHMX_DEAD);
    CHECK_OK(shmx_server_reap_dead_readers(s, &reaped));
    CHECK(reaped == 1);
    shmx_header_info hi;
    memset(&hi, 0, sizeof hi);
    hi.struct_size = sizeof hi;
    CHECK_OK(shmx_server_header_info(s, &hi));
    CHECK(hi.readers_connected == 0);
    /* Its pins are gone: every slot can be written again. */
    for (uint64_t i = 200; i < 210; i++) CHECK_OK(publish_counter(s, i));
    shmx_server_destroy(s);
}

/* ------------------------------------------------- shmx 1.0.1 C++ peer */

enum { LEGACY_ACK = 0x51, LEGACY_BLOB = 64 };
static const shmx_stream_spec k_legacy_streams[] = {
    {1, SHMX_DT_U64, 1, SHMX_LAYOUT_SOA_SCALAR, 8, "seq", NULL, 0},
    {2, SHMX_DT_U8, 1, SHMX_LAYOUT_SOA_SCALAR, 1, "blob", NULL, 0},
};

static int legacy_blob_ok(const uint8_t *p, uint64_t seq)
{
    for (uint32_t i = 0; i < LEGACY_BLOB; i++)
        if (p[i] != (uint8_t)(seq * 3u + i)) return 0;
    return 1;
}

/* The 1.0.1 server (tests/legacy_cpp/win_peer.cpp) publishes, our client
 * checks schema and bytes and acknowledges each frame over control. */
static void test_legacy_server_our_client(const char *peer)
{
    char name[128];
    t_name(name, sizeof name, "legacy-server");
    const uint64_t n = 50;
    child ch;
    REQUIRE(spawn_exe(&ch, peer, "server", name, "50") == 0);
    shmx_client *c = NULL;
    REQUIRE_OK(open_retry(name, &c));
    shmx_header_info hi;
    memset(&hi, 0, sizeof hi);
    hi.struct_size = sizeof hi;
    CHECK_OK(shmx_client_header_info(c, &hi));
    CHECK(hi.extended == 0 && hi.owner_alive == SHMX_UNKNOWN);
    CHECK(shmx_client_stream_count(c) == 2);
    shmx_stream_info si;
    memset(&si, 0, sizeof si);
    si.struct_size = sizeof si;
    CHECK_OK(shmx_client_stream_info(c, 0, &si));
    CHECK(si.stream_id == 1 && strcmp(si.name, "seq") == 0 && si.dtype == SHMX_DT_U64);
    CHECK_OK(shmx_client_stream_info(c, 1, &si));
    CHECK(si.stream_id == 2 && strcmp(si.name, "blob") == 0);
    shmx_frame_info fi;
    memset(&fi, 0, sizeof fi);
    fi.struct_size = sizeof fi;
    uint64_t last = 0, bad = 0, until = t_now_ns() + (uint64_t)STEP_TIMEOUT_NS;
    while (last < n && t_now_ns() < until) {
        if (shmx_client_latest(c, &fi) != SHMX_OK) {
            (void)shmx_client_wait(c, 100000000LL);
            continue;
        }
        shmx_stream_view v[2];
        memset(v, 0, sizeof v);
        v[0].struct_size = v[1].struct_size = sizeof v[0];
        uint64_t k = 0;
        if (shmx_client_frame_stream(c, 0, &v[0]) == SHMX_OK && v[0].bytes == 8 &&
            shmx_client_frame_stream(c, 1, &v[1]) == SHMX_OK) {
            memcpy(&k, v[0].data, 8);
            if (k != last) {
                bad += k < last || v[1].bytes != LEGACY_BLOB ||
                       !legacy_blob_ok((const uint8_t *)v[1].data, k) || fi.sim_time != (double)k;
                last = k;
                CHECK_OK(shmx_client_send_control(c, LEGACY_ACK, &k, 8));
            }
        }
        shmx_client_release(c);
    }
    CHECK(last == n && bad == 0);
    CHECK(reap(&ch, 30000) == 0);
    shmx_client_free(c);
    CHECK(!mapping_exists(name));
}

/* Our server publishes in lock step with the 1.0.1 client's control acks. */
static void test_our_server_legacy_client(const char *peer)
{
    char name[128];
    t_name(name, sizeof name, "legacy-client");
    shmx_server_config cfg;
    shmx_server_config_init(&cfg);
    cfg.streams = k_legacy_streams;
    cfg.stream_count = 2;
    cfg.frame_bytes_cap = 4096;
    cfg.slots = 4;
    cfg.reader_slots = 4;
    cfg.control_per_reader = 256;
    shmx_server *s = NULL;
    REQUIRE_OK(shmx_server_create(name, &cfg, &s));
    child ch;
    REQUIRE(spawn_exe(&ch, peer, "client", name, "50") == 0);
    /* Publish once it is attached: checksum AUTO then sees a legacy reader
     * (1.0.1 refuses frames without a checksum). */
    shmx_header_info hi;
    memset(&hi, 0, sizeof hi);
    hi.struct_size = sizeof hi;
    uint64_t until = t_now_ns() + (uint64_t)STEP_TIMEOUT_NS;
    while (shmx_server_header_info(s, &hi) == SHMX_OK && hi.readers_connected == 0 && t_now_ns() < until)
        Sleep(2);
    CHECK(hi.readers_connected == 1);
    int acked = 0;
    for (uint64_t k = 1; k <= 50; k++) {
        uint8_t b[LEGACY_BLOB];
        for (uint32_t i = 0; i < LEGACY_BLOB; i++) b[i] = (uint8_t)(k * 3u + i);
        uint64_t frame;
        CHECK_OK(shmx_server_begin_frame(s, &frame));
        CHECK_OK(shmx_server_append(s, frame, 1, &k, 8, 1));
        CHECK_OK(shmx_server_append(s, frame, 2, b, LEGACY_BLOB, LEGACY_BLOB));
        CHECK_OK(shmx_server_publish(s, frame, (double)k));
        uint64_t got = 0;
        if (next_msg(s, LEGACY_ACK, &got) != 0 || got != k) break;
        acked++;
    }
    CHECK(acked == 50);
    CHECK(reap(&ch, 30000) == 0);
    shmx_reader_info ri[4];
    memset(ri, 0, sizeof ri);
    for (int i = 0; i < 4; i++) ri[i].struct_size = sizeof ri[i];
    uint32_t cnt = 0;
    CHECK_OK(shmx_server_readers(s, ri, 4, &cnt));
    CHECK(!ri[0].in_use); /* it detached cleanly */
    shmx_server_destroy(s);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc == 3 && strcmp(argv[1], "legacy") == 0) {
        /* test_win32.exe legacy PEER: tests/legacy_cpp/win_peer.cpp, built for
         * Windows, against our library in both directions. */
        test_legacy_server_our_client(argv[2]);
        test_our_server_legacy_client(argv[2]);
        return t_finish("test_win32_legacy");
    }
    if (argc >= 3) {
        const char *role = argv[1], *name = argv[2];
        if (strcmp(role, "consumer") == 0 && argc >= 5)
            return role_consumer(name, strtoull(argv[3], NULL, 10), strtoull(argv[4], NULL, 10));
        if (strcmp(role, "producer") == 0 && argc >= 4) return role_producer(name, atoi(argv[3]));
        if (strcmp(role, "reader") == 0) return role_reader(name);
        if (strcmp(role, "waiter") == 0) return role_waiter(name);
        fprintf(stderr, "unknown role '%s'\n", role);
        return 2;
    }
    test_pagefile_region();
    test_dacl();
    test_file_backed();
    test_lockstep_processes();
    test_cross_process_wake();
    test_kill_producer(0);
    test_kill_producer(1);
    test_kill_reader();
    return t_finish("test_win32");
}
