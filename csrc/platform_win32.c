/* platform_win32.c - Windows implementation of platform.h.
 *
 * It owns every place where Windows differs from POSIX for libshmx:
 *
 * - Names.  Without a directory a region is a named, pagefile-backed file
 *   mapping (CreateFileMappingW / OpenFileMappingW) whose object name is the
 *   bare region name, exactly as shmx 1.0.1 names it on Windows, so the two
 *   find each other.  Such a "path" never holds '\\', '/' or ':' (region
 *   names cannot), which is how the functions below tell it from a file
 *   path.  With a directory (shm_dir / SHMX_DIR) the region is an ordinary
 *   file mapped the same way.
 * - Lifetime.  A named mapping vanishes with its last handle: a region can
 *   never outlive every process that used it, so there are no stale regions
 *   to reclaim, and "unlink" has nothing to remove.  A live name cannot be
 *   taken over either: ERROR_ALREADY_EXISTS from CreateFileMappingW is a
 *   refusal (SHMX_EEXIST), never an attach.
 * - Publication.  POSIX builds the region under a temporary name and renames
 *   it; a named mapping cannot be renamed, so shmx_plat_create() strips the
 *   "~shmx-new-<pid>-<hex>" suffix the server uses (the convention
 *   shmx_plat_remove_stale_temps() already knows) and creates the final
 *   name at once, exclusively; shmx_plat_rename() then has nothing to do.  A
 *   reader that opens the name before the creator stored the magic sees a
 *   zero first word and is told "not there yet" (SHMX_ENOENT), as it would
 *   be on POSIX.
 * - Liveness.  A "lock" on byte `index` is a named event created
 *   exclusively (ERROR_ALREADY_EXISTS: held by someone else) and kept open;
 *   the event is never signalled, only its existence counts.  The OS closes
 *   the handle when the process dies and the object vanishes with it.  A
 *   probe opens the name and closes it again: found (or access denied) is
 *   alive, not found is dead; nothing is ever acquired, so a probe cannot
 *   make a holder lose its lock.  Not a named mutex: a mutex belongs to a
 *   thread, so a client opened on one thread could not be closed on another
 *   and would read as dead once its thread exited.  Not LockFileEx: a
 *   pagefile mapping has no file to lock, and Windows has no way to test a
 *   byte lock without taking it.  The events are keyed by the mapping name,
 *   or for a file by its volume serial and file index, which survive the
 *   rename from the temporary name.
 * - Wake-ups.  WaitOnAddress only wakes threads of its own process, so a
 *   shared word gets a named semaphore plus a waiter count in a small named
 *   mapping; a waker reads the count and makes a system call only when it is
 *   not zero (the protocol's own sleeper bit already keeps it from even
 *   looking when nobody sleeps).
 * - Permissions.  Every object is created with an explicit DACL: the
 *   creating user gets full access; `mode` bits for group or others
 *   (0044 read, 0022 write) grant the same to Everyone, since Windows has no
 *   owning group to map 0070 to.  The default 0600 thus admits the creating
 *   user only.
 *
 * The "fd" of a shmx_map is an index into a process-wide table of open
 * regions (the handles, the key of the named objects, the locks held and the
 * wake objects); protocol code only passes it back to these functions.
 */
#define WIN32_LEAN_AND_MEAN 1
#ifndef _WIN32_WINNT
#define _WIN32_WINNT 0x0601
#endif
#include "platform.h"
#include "internal.h"

#include <windows.h>
#include <bcrypt.h>
#include <sddl.h>

#include <stdio.h>
#include <stdlib.h>

#define TEMP_MARK "~shmx-new-"
#define KEY_MAX 280
#define LOCKS 65 /* SHMX_LOCK_SERVER and SHMX_LOCK_READER(0..63) */
#define WAKES 4  /* shared words one region waits on (frame, control) */
#define TABLE_MAX 4096

typedef struct wake_obj {
    uint32_t off;           /* of the word within the region */
    HANDLE sem;             /* released once per counted waiter */
    HANDLE count_map;
    volatile LONG *waiters; /* in count_map: sleepers not yet released */
} wake_obj;

typedef struct win_region {
    HANDLE file;            /* file-backed region: the file, else NULL */
    HANDLE section;         /* the file mapping */
    uint8_t *base;          /* current view (for wait-address lookup) */
    uint64_t size;
    int file_backed;
    wchar_t key[KEY_MAX];   /* prefix of the named liveness/wake objects */
    HANDLE locks[LOCKS];
    wake_obj wake[WAKES];
    uint32_t nwake;
} win_region;

static SRWLOCK table_lock = SRWLOCK_INIT;
static win_region *table[TABLE_MAX];
static int table_hi; /* one past the highest index ever used */

/* ----------------------------------------------------------------- helpers */

/* The text of a Win32 error code: "text (code N)". */
static const char *win_error_text(DWORD code, char *buf, size_t cap)
{
    char msg[256];
    DWORD n = FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, NULL, code,
                             0, msg, (DWORD)sizeof msg, NULL);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r' || msg[n - 1] == '.')) n--;
    msg[n] = 0;
    snprintf(buf, cap, "%s (error %lu)", n ? msg : "system error", (unsigned long)code);
    return buf;
}

static shmx_status win_status(DWORD e)
{
    switch (e) {
    case ERROR_FILE_NOT_FOUND: case ERROR_PATH_NOT_FOUND: return SHMX_ENOENT;
    case ERROR_ALREADY_EXISTS: case ERROR_FILE_EXISTS: return SHMX_EEXIST;
    case ERROR_ACCESS_DENIED: case ERROR_SHARING_VIOLATION: case ERROR_WRITE_PROTECT:
        return SHMX_EACCES;
    case ERROR_DISK_FULL: case ERROR_HANDLE_DISK_FULL: case ERROR_COMMITMENT_LIMIT:
        return SHMX_ENOSPC;
    case ERROR_NOT_ENOUGH_MEMORY: case ERROR_OUTOFMEMORY: return SHMX_ENOMEM;
    case ERROR_FILENAME_EXCED_RANGE: case ERROR_INVALID_NAME: return SHMX_ENAME;
    default: return SHMX_ESYS;
    }
}

#define FAIL_WIN(code, ...)                                                       \
    do {                                                                          \
        char ebuf_[320], mbuf_[SHMX_PATH_MAX + 64];                               \
        DWORD c_ = (code);                                                        \
        snprintf(mbuf_, sizeof mbuf_, __VA_ARGS__);                               \
        return shmx_fail(win_status(c_), "%s: %s", mbuf_, win_error_text(c_, ebuf_, sizeof ebuf_)); \
    } while (0)

static int to_wide(const char *s, wchar_t *out, size_t cap)
{
    int n = MultiByteToWideChar(CP_UTF8, 0, s, -1, out, (int)cap);
    return n > 0 ? 0 : -1;
}

/* A pagefile mapping's path is the bare region name. */
static int is_file_path(const char *path) { return strpbrk(path, "\\/:") != NULL; }

/* The final name behind a server's temporary name (or `path` itself). */
static void final_name(const char *path, char *out, size_t cap)
{
    snprintf(out, cap, "%s", path);
    char *mark = strstr(out, TEMP_MARK);
    if (mark) *mark = 0;
}

/* A DACL for `mode`: the creating user always, Everyone for group/other bits. */
static int make_security(uint32_t mode, int sync_object, SECURITY_ATTRIBUTES *sa)
{
    memset(sa, 0, sizeof *sa);
    sa->nLength = sizeof *sa;
    HANDLE tok = NULL;
    if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &tok)) return -1;
    union { TOKEN_USER tu; uint8_t raw[256]; } u;
    DWORD len = 0;
    BOOL ok = GetTokenInformation(tok, TokenUser, &u, (DWORD)sizeof u, &len);
    CloseHandle(tok);
    if (!ok) return -1;
    wchar_t *sid = NULL;
    if (!ConvertSidToStringSidW(u.tu.User.Sid, &sid)) return -1;
    const wchar_t *other = L"";
    if (mode & 0066) {
        /* Named events/semaphores carry no data: a peer that may read the
         * region must also be able to wait and wake. */
        if (sync_object) other = L"(A;;GA;;;WD)";
        else if (mode & 0022) other = L"(A;;GRGW;;;WD)";
        else other = L"(A;;GR;;;WD)";
    }
    wchar_t sddl[256];
    _snwprintf(sddl, sizeof sddl / sizeof sddl[0], L"D:P(A;;GA;;;%ls)%ls", sid, other);
    sddl[sizeof sddl / sizeof sddl[0] - 1] = 0;
    LocalFree(sid);
    PSECURITY_DESCRIPTOR sd = NULL;
    if (!ConvertStringSecurityDescriptorToSecurityDescriptorW(sddl, SDDL_REVISION_1, &sd, NULL))
        return -1;
    sa->lpSecurityDescriptor = sd;
    sa->bInheritHandle = FALSE;
    return 0;
}

static void free_security(SECURITY_ATTRIBUTES *sa)
{
    if (sa->lpSecurityDescriptor) LocalFree(sa->lpSecurityDescriptor);
    sa->lpSecurityDescriptor = NULL;
}

/* ------------------------------------------------------------ region table */

static int table_add(win_region *w)
{
    AcquireSRWLockExclusive(&table_lock);
    int fd = -1;
    for (int i = 0; i < TABLE_MAX; i++)
        if (!table[i]) {
            table[i] = w;
            fd = i;
            if (i >= table_hi) table_hi = i + 1;
            break;
        }
    ReleaseSRWLockExclusive(&table_lock);
    return fd;
}

static win_region *table_get(int fd)
{
    if (fd < 0 || fd >= TABLE_MAX) return NULL;
    AcquireSRWLockShared(&table_lock);
    win_region *w = table[fd];
    ReleaseSRWLockShared(&table_lock);
    return w;
}

static void region_free(win_region *w)
{
    for (int i = 0; i < LOCKS; i++)
        if (w->locks[i]) CloseHandle(w->locks[i]);
    for (uint32_t i = 0; i < w->nwake; i++) {
        if (w->wake[i].waiters) UnmapViewOfFile((void *)w->wake[i].waiters);
        if (w->wake[i].count_map) CloseHandle(w->wake[i].count_map);
        if (w->wake[i].sem) CloseHandle(w->wake[i].sem);
    }
    if (w->section) CloseHandle(w->section);
    if (w->file) CloseHandle(w->file);
    free(w);
}

/* Key of the named objects: the mapping name, or the file's identity. */
static int set_key(win_region *w, const char *final_path)
{
    if (!w->file_backed) {
        wchar_t name[SHMX_PATH_MAX];
        if (to_wide(final_path, name, SHMX_PATH_MAX) != 0) return -1;
        _snwprintf(w->key, KEY_MAX, L"%ls", name);
    } else {
        /* The file index names the file on its volume, and the volume is
         * named by its mount path (wine reports the volume serial number
         * differently for handles of different access, so not that). */
        BY_HANDLE_FILE_INFORMATION fi;
        wchar_t wpath[SHMX_PATH_MAX], vol[SHMX_PATH_MAX];
        if (!GetFileInformationByHandle(w->file, &fi)) return -1;
        if (to_wide(final_path, wpath, SHMX_PATH_MAX) != 0 || !GetVolumePathNameW(wpath, vol, SHMX_PATH_MAX))
            return -1;
        for (wchar_t *v = vol; *v; v++)
            if (*v >= L'a' && *v <= L'z') *v = (wchar_t)(*v - L'a' + L'A'); /* drive letters */
        _snwprintf(w->key, KEY_MAX, L"shmx#file-%016llx-%08lx%08lx",
                   (unsigned long long)shmx_fnv1a64(vol, wcslen(vol) * sizeof(wchar_t)),
                   (unsigned long)fi.nFileIndexHigh, (unsigned long)fi.nFileIndexLow);
    }
    w->key[KEY_MAX - 1] = 0;
    return 0;
}

static void object_name(const win_region *w, const wchar_t *what, uint32_t n, wchar_t *out, size_t cap)
{
    _snwprintf(out, cap, L"%ls#%ls-%lu", w->key, what, (unsigned long)n);
    out[cap - 1] = 0;
}

/* ------------------------------------------------------------------- paths */

shmx_status shmx_plat_path(const char *dir, const char *name, char *out, size_t cap)
{
    if (!dir || !*dir) dir = getenv("SHMX_DIR");
    int n;
    if (!dir || !*dir)
        n = snprintf(out, cap, "%s", name); /* a pagefile mapping: the bare name */
    else
        n = snprintf(out, cap, "%s\\%s", dir, name);
    if (n < 0 || (size_t)n >= cap)
        return shmx_fail(SHMX_ENAME, "path '%s\\%s' is too long", dir ? dir : "", name);
    return SHMX_OK;
}

/* Map the whole section; fill `out` and register the region. */
static shmx_status finish_map(win_region *w, const char *shown, const char *final_path, uint64_t size,
                              int writable, shmx_map *out)
{
    void *p = MapViewOfFile(w->section, writable ? FILE_MAP_READ | FILE_MAP_WRITE : FILE_MAP_READ, 0,
                            0, (SIZE_T)size);
    if (!p) {
        DWORD e = GetLastError();
        region_free(w);
        FAIL_WIN(e, "cannot map '%s'", shown);
    }
    w->base = (uint8_t *)p;
    w->size = size;
    if (set_key(w, final_path) != 0) {
        DWORD e = GetLastError();
        UnmapViewOfFile(p);
        region_free(w);
        FAIL_WIN(e, "cannot identify '%s'", shown);
    }
    int fd = table_add(w);
    if (fd < 0) {
        UnmapViewOfFile(p);
        region_free(w);
        return shmx_fail(SHMX_ENOMEM, "'%s': more than %d regions open in this process", shown,
                         TABLE_MAX);
    }
    out->fd = fd;
    out->base = (uint8_t *)p;
    out->size = size;
    out->writable = writable;
    return SHMX_OK;
}

typedef struct {
    void *base;
    ULONG attributes;
    LARGE_INTEGER size;
} section_basic_info;
typedef LONG(WINAPI *nt_query_section_fn)(HANDLE, int, void *, ULONG, ULONG *);

/* The exact size of a section (a view's size is rounded up to pages). */
static uint64_t section_size(HANDLE section, const void *view)
{
    static nt_query_section_fn query;
    if (!query) {
        HMODULE nt = GetModuleHandleW(L"ntdll.dll");
        if (nt) query = (nt_query_section_fn)(void (*)(void))GetProcAddress(nt, "NtQuerySection");
    }
    section_basic_info info;
    if (query && query(section, 0 /* SectionBasicInformation */, &info, (ULONG)sizeof info, NULL) == 0)
        return (uint64_t)info.size.QuadPart;
    MEMORY_BASIC_INFORMATION mbi;
    if (VirtualQuery(view, &mbi, sizeof mbi) == sizeof mbi) return (uint64_t)mbi.RegionSize;
    return 0;
}

/* ", its owner (pid N) is alive" for the refusal of a live name, read from
 * the existing region's extension block when it has one (the POSIX path
 * names the owner too, from the protocol's check of the old region; here
 * the refusal comes first, so the platform reads the two fields itself). */
static void describe_owner(HANDLE section, char *out, size_t cap)
{
    out[0] = 0;
    const uint8_t *v = (const uint8_t *)MapViewOfFile(section, FILE_MAP_READ, 0, 0, 0);
    if (!v) return;
    const shmx_global_header *gh = (const shmx_global_header *)v;
    const shmx_ext_header *ext = (const shmx_ext_header *)(v + SHMX_EXT_OFFSET);
    if (section_size(section, v) >= SHMX_MIN_STATIC_OFFSET &&
        __atomic_load_n(&gh->magic, __ATOMIC_ACQUIRE) == SHMX_MAGIC && ext->magic == SHMX_EXT_MAGIC) {
        uint64_t pid = ext->owner_pid;
        const char *state = __atomic_load_n(&ext->closed, __ATOMIC_ACQUIRE) ? "closed it"
                            : shmx_plat_pid_alive(pid, ext->owner_start) == SHMX_DEAD ? "is dead"
                                                                                     : "is alive";
        snprintf(out, cap, ", its owner (pid %llu) %s", (unsigned long long)pid, state);
    }
    UnmapViewOfFile(v);
}

shmx_status shmx_plat_create(const char *path, uint64_t size, uint32_t mode, shmx_map *out)
{
    memset(out, 0, sizeof *out);
    out->fd = -1;
    char final[SHMX_PATH_MAX];
    win_region *w = calloc(1, sizeof *w);
    if (!w) return shmx_fail(SHMX_ENOMEM, "out of memory");
    SECURITY_ATTRIBUTES sa;
    if (make_security(mode, 0, &sa) != 0) {
        DWORD e = GetLastError();
        free(w);
        FAIL_WIN(e, "cannot build the security descriptor for '%s'", path);
    }
    DWORD hi = (DWORD)(size >> 32), lo = (DWORD)(size & 0xFFFFFFFFu);
    if (!is_file_path(path)) {
        /* The final name at once (see the top of this file). */
        final_name(path, final, sizeof final);
        wchar_t wname[SHMX_PATH_MAX];
        if (to_wide(final, wname, SHMX_PATH_MAX) != 0) {
            free_security(&sa);
            free(w);
            return shmx_fail(SHMX_ENAME, "region name '%s' is not valid UTF-8", final);
        }
        /* SEC_COMMIT charges the whole size now: an exhausted pagefile fails
         * here instead of faulting on a later touch. */
        w->section = CreateFileMappingW(INVALID_HANDLE_VALUE, &sa, PAGE_READWRITE | SEC_COMMIT, hi, lo, wname);
        DWORD e = GetLastError();
        free_security(&sa);
        if (!w->section) {
            free(w);
            FAIL_WIN(e, "cannot create '%s'", final);
        }
        if (e == ERROR_ALREADY_EXISTS) {
            char owner[96];
            describe_owner(w->section, owner, sizeof owner);
            region_free(w);
            return shmx_fail(SHMX_EEXIST,
                             "cannot create '%s': a region of that name is open%s (on Windows it "
                             "lasts until its last handle is closed)",
                             final, owner);
        }
        shmx_status st = finish_map(w, final, final, size, 1, out);
        if (st == SHMX_OK) {
            /* An opener learns the size from the section, which may round
             * it up to whole pages (wine does): report the same figure. */
            uint64_t seen = section_size(w->section, out->base);
            if (seen > size && seen <= 0xFFFFFFFFull) {
                w->size = seen;
                out->size = seen;
            }
        }
        return st;
    }
    final_name(path, final, sizeof final);
    wchar_t wpath[SHMX_PATH_MAX];
    if (to_wide(path, wpath, SHMX_PATH_MAX) != 0) {
        free_security(&sa);
        free(w);
        return shmx_fail(SHMX_ENAME, "path '%s' is not valid UTF-8", path);
    }
    w->file_backed = 1;
    w->file = CreateFileW(wpath, GENERIC_READ | GENERIC_WRITE,
                          FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, &sa, CREATE_NEW,
                          FILE_ATTRIBUTE_NORMAL, NULL);
    free_security(&sa);
    if (w->file == INVALID_HANDLE_VALUE) {
        DWORD e = GetLastError();
        free(w);
        FAIL_WIN(e, "cannot create '%s'", path);
    }
    LARGE_INTEGER end;
    end.QuadPart = (LONGLONG)size;
    if (!SetFilePointerEx(w->file, end, NULL, FILE_BEGIN) || !SetEndOfFile(w->file)) {
        DWORD e = GetLastError();
        region_free(w);
        DeleteFileW(wpath);
        FAIL_WIN(e, "cannot reserve %llu bytes for '%s'", (unsigned long long)size, path);
    }
    w->section = CreateFileMappingW(w->file, NULL, PAGE_READWRITE, hi, lo, NULL);
    if (!w->section) {
        DWORD e = GetLastError();
        region_free(w);
        DeleteFileW(wpath);
        FAIL_WIN(e, "cannot map '%s'", path);
    }
    shmx_status st = finish_map(w, path, final, size, 1, out);
    if (st != SHMX_OK) DeleteFileW(wpath);
    return st;
}

shmx_status shmx_plat_open(const char *path, int writable, shmx_map *out)
{
    memset(out, 0, sizeof *out);
    out->fd = -1;
    wchar_t wpath[SHMX_PATH_MAX];
    if (to_wide(path, wpath, SHMX_PATH_MAX) != 0)
        return shmx_fail(SHMX_ENAME, "path '%s' is not valid UTF-8", path);
    win_region *w = calloc(1, sizeof *w);
    if (!w) return shmx_fail(SHMX_ENOMEM, "out of memory");
    DWORD access = writable ? FILE_MAP_READ | FILE_MAP_WRITE : FILE_MAP_READ;
    uint64_t size = 0;
    if (!is_file_path(path)) {
        w->section = OpenFileMappingW(access, FALSE, wpath);
        if (!w->section) {
            DWORD e = GetLastError();
            free(w);
            if (e == ERROR_FILE_NOT_FOUND) return shmx_fail(SHMX_ENOENT, "no region '%s'", path);
            FAIL_WIN(e, "cannot open '%s'", path);
        }
        void *probe = MapViewOfFile(w->section, FILE_MAP_READ, 0, 0, 0);
        if (!probe) {
            DWORD e = GetLastError();
            region_free(w);
            FAIL_WIN(e, "cannot map '%s'", path);
        }
        size = section_size(w->section, probe);
        uint64_t first = size >= 8 ? __atomic_load_n((uint64_t *)probe, __ATOMIC_ACQUIRE) : 0;
        UnmapViewOfFile(probe);
        if (size >= 128 && first == 0) {
            /* Created, not yet initialised (see the top of this file). */
            region_free(w);
            return shmx_fail(SHMX_ENOENT, "no region '%s' yet (its creator is still initialising it)", path);
        }
    } else {
        w->file_backed = 1;
        w->file = CreateFileW(wpath, writable ? GENERIC_READ | GENERIC_WRITE : GENERIC_READ,
                              FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL,
                              OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, NULL);
        if (w->file == INVALID_HANDLE_VALUE) {
            DWORD e = GetLastError();
            free(w);
            if (e == ERROR_FILE_NOT_FOUND || e == ERROR_PATH_NOT_FOUND)
                return shmx_fail(SHMX_ENOENT, "no region '%s'", path);
            FAIL_WIN(e, "cannot open '%s'", path);
        }
        if (GetFileType(w->file) != FILE_TYPE_DISK) {
            region_free(w);
            return shmx_fail(SHMX_ECORRUPT, "'%s' is not a regular file", path);
        }
        LARGE_INTEGER fs;
        if (!GetFileSizeEx(w->file, &fs)) {
            DWORD e = GetLastError();
            region_free(w);
            FAIL_WIN(e, "cannot size '%s'", path);
        }
        size = (uint64_t)fs.QuadPart;
    }
    if (size < 128u) {
        region_free(w);
        return shmx_fail(SHMX_ECORRUPT, "'%s' is %llu bytes, too small for a shmx region", path,
                         (unsigned long long)size);
    }
    if (size > 0xFFFFFFFFull) {
        region_free(w);
        return shmx_fail(SHMX_ECORRUPT, "'%s' is larger than any shmx region", path);
    }
    if (w->file_backed) {
        w->section = CreateFileMappingW(w->file, NULL, writable ? PAGE_READWRITE : PAGE_READONLY, 0, 0, NULL);
        if (!w->section) {
            DWORD e = GetLastError();
            region_free(w);
            FAIL_WIN(e, "cannot map '%s'", path);
        }
    }
    return finish_map(w, path, path, size, writable, out);
}

void shmx_plat_unmap(shmx_map *m)
{
    if (m->base) {
        win_region *w = table_get(m->fd);
        if (w && w->base == m->base) {
            AcquireSRWLockExclusive(&table_lock);
            w->base = NULL;
            ReleaseSRWLockExclusive(&table_lock);
        }
        UnmapViewOfFile(m->base);
    }
    m->base = NULL;
}

void shmx_plat_close(shmx_map *m)
{
    shmx_plat_unmap(m);
    if (m->fd >= 0 && m->fd < TABLE_MAX) {
        AcquireSRWLockExclusive(&table_lock);
        win_region *w = table[m->fd];
        table[m->fd] = NULL;
        ReleaseSRWLockExclusive(&table_lock);
        if (w) region_free(w); /* closes the locks: peers' probes now see them gone */
    }
    m->fd = -1;
}

shmx_status shmx_plat_rename(const char *from, const char *to, int replace)
{
    if (!is_file_path(from)) {
        /* shmx_plat_create already gave the mapping its final name. */
        char final[SHMX_PATH_MAX];
        final_name(from, final, sizeof final);
        if (strcmp(final, to) == 0) return SHMX_OK;
        return shmx_fail(SHMX_EINVAL, "a named mapping cannot be renamed ('%s' to '%s')", from, to);
    }
    wchar_t wf[SHMX_PATH_MAX], wt[SHMX_PATH_MAX];
    if (to_wide(from, wf, SHMX_PATH_MAX) != 0 || to_wide(to, wt, SHMX_PATH_MAX) != 0)
        return shmx_fail(SHMX_ENAME, "path '%s' is not valid UTF-8", to);
    /* Without MOVEFILE_REPLACE_EXISTING the move fails if `to` exists:
     * the exclusive publish. */
    if (MoveFileExW(wf, wt, replace ? MOVEFILE_REPLACE_EXISTING : 0)) return SHMX_OK;
    DWORD e = GetLastError();
    /* Windows says ERROR_ALREADY_EXISTS; wine may say access denied or
     * nothing at all: look. */
    if (!replace && GetFileAttributesW(wt) != INVALID_FILE_ATTRIBUTES)
        return shmx_fail(SHMX_EEXIST, "cannot name region '%s': it exists", to);
    FAIL_WIN(e, "cannot name region '%s'", to);
}

/* Remove a file's name now.  Windows keeps a deleted file's name until its
 * last handle is closed (and a new file of that name cannot be created
 * meanwhile), so the file is first renamed out of the way, then deleted. */
static int delete_now(const wchar_t *wpath)
{
    wchar_t aside[SHMX_PATH_MAX + 64];
    _snwprintf(aside, sizeof aside / sizeof aside[0], L"%ls~shmx-gone-%lu-%08x", wpath,
               (unsigned long)GetCurrentProcessId(), (unsigned)shmx_plat_random64());
    aside[sizeof aside / sizeof aside[0] - 1] = 0;
    if (MoveFileExW(wpath, aside, 0)) return DeleteFileW(aside) ? 0 : -1;
    return DeleteFileW(wpath) ? 0 : -1;
}

int shmx_plat_unlink(const char *path)
{
    wchar_t wpath[SHMX_PATH_MAX];
    if (to_wide(path, wpath, SHMX_PATH_MAX) != 0) return -1;
    if (!is_file_path(path)) {
        /* Nothing to remove: the name goes with its last handle.  Report
         * whether it is gone. */
        HANDLE h = OpenFileMappingW(FILE_MAP_READ, FALSE, wpath);
        if (!h) return GetLastError() == ERROR_FILE_NOT_FOUND ? 0 : -1;
        CloseHandle(h);
        return -1;
    }
    return delete_now(wpath);
}

int shmx_plat_same_file(const char *path, const shmx_map *m)
{
    /* A named mapping's name cannot be taken over while we hold it. */
    if (!is_file_path(path)) return 1;
    win_region *w = table_get(m->fd);
    if (!w || !w->file) return 0;
    wchar_t wpath[SHMX_PATH_MAX];
    if (to_wide(path, wpath, SHMX_PATH_MAX) != 0) return 0;
    HANDLE h = CreateFileW(wpath, FILE_READ_ATTRIBUTES, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL,
                           OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, NULL);
    if (h == INVALID_HANDLE_VALUE) return 0;
    BY_HANDLE_FILE_INFORMATION a, b;
    /* Same directory entry's volume: the file index alone tells (see set_key). */
    int same = GetFileInformationByHandle(h, &a) && GetFileInformationByHandle(w->file, &b) &&
               a.nFileIndexHigh == b.nFileIndexHigh && a.nFileIndexLow == b.nFileIndexLow;
    CloseHandle(h);
    return same;
}

int shmx_plat_unlink_if_same(const char *path, const shmx_map *m)
{
    if (!is_file_path(path)) return 0; /* a named mapping vanishes by itself */
    if (!shmx_plat_same_file(path, m)) return -1;
    wchar_t wpath[SHMX_PATH_MAX];
    if (to_wide(path, wpath, SHMX_PATH_MAX) != 0) return -1;
    return delete_now(wpath);
}

/* ------------------------------------------------- what Windows does not need
 *
 * A mapped file cannot be shrunk on Windows (SetEndOfFile fails while a
 * view exists), so no mapping is ever lost and there is no fault handler;
 * and there is no fork(), so no handle is ever inherited half-alive. */
uint32_t shmx_plat_lost_any;
uint32_t shmx_plat_fork_gen;
uint32_t shmx_plat_map_lost_slow(const shmx_map *m) { (void)m; return 0; }
int shmx_plat_map_shrunk(const shmx_map *m) { (void)m; return 0; }
void shmx_plat_fork_closes(int fd, int on) { (void)fd; (void)on; }
int shmx_set_fault_handler(int enable) { (void)enable; return 0; }

void shmx_plat_close_fd(shmx_map *m)
{
    /* The handles are the region's (its locks among them): they go with
     * the mapping, at shmx_plat_close. */
    (void)m;
}

void shmx_plat_die(void) { TerminateProcess(GetCurrentProcess(), 137); }

unsigned shmx_plat_remove_stale_temps(const char *region_path)
{
    if (!is_file_path(region_path)) return 0; /* temporaries are never named */
    char pattern[SHMX_PATH_MAX + 16], dir[SHMX_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", region_path);
    char *slash = strrchr(dir, '\\');
    char *fslash = strrchr(dir, '/');
    if (!slash || (fslash && fslash > slash)) slash = fslash;
    if (!slash) return 0;
    const char *base = region_path + (slash - dir) + 1;
    *slash = 0;
    int pn = snprintf(pattern, sizeof pattern, "%s" TEMP_MARK, base);
    if (pn < 0 || (size_t)pn >= sizeof pattern) return 0;
    char glob[SHMX_PATH_MAX + 32];
    snprintf(glob, sizeof glob, "%s\\%s*", dir, pattern);
    wchar_t wglob[SHMX_PATH_MAX + 32];
    if (to_wide(glob, wglob, SHMX_PATH_MAX + 32) != 0) return 0;
    WIN32_FIND_DATAW fd;
    HANDLE f = FindFirstFileW(wglob, &fd);
    if (f == INVALID_HANDLE_VALUE) return 0;
    unsigned removed = 0;
    do {
        char entry[SHMX_PATH_MAX];
        if (WideCharToMultiByte(CP_UTF8, 0, fd.cFileName, -1, entry, (int)sizeof entry, NULL, NULL) <= 0)
            continue;
        char *end = NULL;
        unsigned long long pid = strtoull(entry + pn, &end, 10);
        if (!end || *end != '-' || pid == 0 || pid > 0xFFFFFFFFull) continue;
        if (shmx_plat_pid_alive(pid, 0) != SHMX_DEAD) continue;
        char full[SHMX_PATH_MAX * 2];
        snprintf(full, sizeof full, "%s\\%s", dir, entry);
        wchar_t wfull[SHMX_PATH_MAX * 2];
        if (to_wide(full, wfull, SHMX_PATH_MAX * 2) == 0 && DeleteFileW(wfull)) removed++;
    } while (FindNextFileW(f, &fd));
    FindClose(f);
    return removed;
}

/* --------------------------------------------------------------- liveness */

int shmx_plat_lock(int fd, uint32_t index)
{
    win_region *w = table_get(fd);
    if (!w || index >= LOCKS) return -1;
    if (w->locks[index]) return 0; /* ours already, as an OFD lock would be */
    wchar_t name[KEY_MAX + 32];
    object_name(w, L"live", index, name, sizeof name / sizeof name[0]);
    SECURITY_ATTRIBUTES sa;
    if (make_security(0666, 1, &sa) != 0) return -1;
    HANDLE h = CreateEventW(&sa, TRUE, FALSE, name);
    DWORD e = GetLastError();
    free_security(&sa);
    if (!h) return e == ERROR_ACCESS_DENIED ? 1 : -1; /* exists, someone else's */
    if (e == ERROR_ALREADY_EXISTS) {
        CloseHandle(h);
        return 1;
    }
    w->locks[index] = h;
    return 0;
}

void shmx_plat_unlock(int fd, uint32_t index)
{
    win_region *w = table_get(fd);
    if (!w || index >= LOCKS || !w->locks[index]) return;
    CloseHandle(w->locks[index]);
    w->locks[index] = NULL;
}

uint32_t shmx_plat_lock_probe(int fd, uint32_t index)
{
    win_region *w = table_get(fd);
    if (!w || index >= LOCKS) return SHMX_UNKNOWN;
    if (w->locks[index]) return SHMX_ALIVE;
    wchar_t name[KEY_MAX + 32];
    object_name(w, L"live", index, name, sizeof name / sizeof name[0]);
    HANDLE h = OpenEventW(SYNCHRONIZE, FALSE, name);
    if (h) {
        CloseHandle(h);
        return SHMX_ALIVE;
    }
    DWORD e = GetLastError();
    if (e == ERROR_FILE_NOT_FOUND) return SHMX_DEAD;
    if (e == ERROR_ACCESS_DENIED) return SHMX_ALIVE; /* it exists */
    return SHMX_UNKNOWN;
}

/* ---------------------------------------------------------- pid and clock */

uint64_t shmx_plat_pid(void) { return (uint64_t)GetCurrentProcessId(); }

uint64_t shmx_plat_pid_start(uint64_t pid)
{
    if (pid == 0 || pid > 0xFFFFFFFFull) return 0;
    HANDLE h = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, (DWORD)pid);
    if (!h) return 0;
    FILETIME created, exited, kernel, user;
    uint64_t start = 0;
    if (GetProcessTimes(h, &created, &exited, &kernel, &user))
        start = ((uint64_t)created.dwHighDateTime << 32) | created.dwLowDateTime;
    CloseHandle(h);
    return start;
}

uint32_t shmx_plat_pid_alive(uint64_t pid, uint64_t start)
{
    if (pid == 0 || pid > 0xFFFFFFFFull) return SHMX_UNKNOWN;
    HANDLE h = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, (DWORD)pid);
    if (!h) return GetLastError() == ERROR_INVALID_PARAMETER ? SHMX_DEAD : SHMX_ALIVE;
    DWORD code = 0;
    uint32_t alive = SHMX_ALIVE;
    /* A process object outlives its process while someone holds a handle. */
    if (GetExitCodeProcess(h, &code) && code != STILL_ACTIVE) alive = SHMX_DEAD;
    CloseHandle(h);
    if (alive == SHMX_ALIVE && start) {
        uint64_t now = shmx_plat_pid_start(pid);
        if (now && now != start) alive = SHMX_DEAD; /* pid was reused */
    }
    return alive;
}

uint64_t shmx_plat_random64(void)
{
    uint64_t v = 0;
    if (BCryptGenRandom(NULL, (PUCHAR)&v, (ULONG)sizeof v, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0) v = 0;
    if (v == 0) v = shmx_plat_now_ns() ^ ((uint64_t)GetCurrentProcessId() << 32) ^ 0x9E3779B97F4A7C15ull;
    return v;
}

uint64_t shmx_plat_now_ns(void)
{
    static LARGE_INTEGER freq; /* constant after boot; a racing first call writes the same value */
    if (freq.QuadPart == 0) QueryPerformanceFrequency(&freq);
    LARGE_INTEGER c;
    QueryPerformanceCounter(&c);
    uint64_t f = (uint64_t)freq.QuadPart, t = (uint64_t)c.QuadPart;
    return (t / f) * 1000000000ull + (t % f) * 1000000000ull / f;
}

void shmx_plat_sleep_ns(uint64_t ns)
{
    /* Sleep() counts milliseconds: round up so a nap never returns early. */
    uint64_t ms = (ns + 999999u) / 1000000u;
    Sleep(ms > 0x7FFFFFFFu ? 0x7FFFFFFFu : (DWORD)ms);
}

/* ---------------------------------------------------------------- wake-ups */

int shmx_plat_has_futex(void) { return 1; }

/* The wake object of the shared word at `addr`, created on first use;
 * NULL when addr lies in no region we mapped. */
static wake_obj *wake_for(uint32_t *addr)
{
    win_region *found = NULL;
    uint32_t off = 0;
    AcquireSRWLockShared(&table_lock);
    for (int i = 0; i < table_hi && !found; i++) {
        win_region *w = table[i];
        if (w && w->base && (uint8_t *)addr >= w->base && (uint8_t *)addr < w->base + w->size) {
            found = w;
            off = (uint32_t)((uint8_t *)addr - w->base);
            for (uint32_t k = 0; k < w->nwake; k++)
                if (w->wake[k].off == off) {
                    wake_obj *o = &w->wake[k];
                    ReleaseSRWLockShared(&table_lock);
                    return o;
                }
        }
    }
    ReleaseSRWLockShared(&table_lock);
    if (!found || found->nwake >= WAKES) return NULL;
    wchar_t sname[KEY_MAX + 32], cname[KEY_MAX + 32];
    object_name(found, L"wake", off, sname, sizeof sname / sizeof sname[0]);
    object_name(found, L"waiters", off, cname, sizeof cname / sizeof cname[0]);
    SECURITY_ATTRIBUTES sa;
    if (make_security(0666, 1, &sa) != 0) return NULL;
    wake_obj o;
    memset(&o, 0, sizeof o);
    o.off = off;
    o.sem = CreateSemaphoreW(&sa, 0, 0x7FFFFFFF, sname);
    o.count_map = CreateFileMappingW(INVALID_HANDLE_VALUE, &sa, PAGE_READWRITE, 0, 4096, cname);
    free_security(&sa);
    if (o.count_map) o.waiters = (volatile LONG *)MapViewOfFile(o.count_map, FILE_MAP_ALL_ACCESS, 0, 0, 4096);
    if (!o.sem || !o.waiters) {
        if (o.waiters) UnmapViewOfFile((void *)o.waiters);
        if (o.count_map) CloseHandle(o.count_map);
        if (o.sem) CloseHandle(o.sem);
        return NULL;
    }
    wake_obj *res = NULL;
    AcquireSRWLockExclusive(&table_lock);
    for (uint32_t k = 0; k < found->nwake; k++)
        if (found->wake[k].off == off) res = &found->wake[k]; /* another thread was first */
    if (!res && found->nwake < WAKES) {
        found->wake[found->nwake] = o;
        res = &found->wake[found->nwake++];
        o.sem = NULL;
    }
    ReleaseSRWLockExclusive(&table_lock);
    if (o.sem) {
        UnmapViewOfFile((void *)o.waiters);
        CloseHandle(o.count_map);
        CloseHandle(o.sem);
    }
    return res;
}

/* Take back one registration unless a waker already turned it into a
 * semaphore count (then that count stays: one harmless early wake later). */
static void unregister(volatile LONG *waiters)
{
    LONG v = *waiters;
    while (v > 0) {
        LONG seen = InterlockedCompareExchange(waiters, v - 1, v);
        if (seen == v) return;
        v = seen;
    }
}

int shmx_plat_wait(uint32_t *addr, uint32_t expect, int64_t timeout_ns)
{
    wake_obj *o = wake_for(addr);
    if (!o) {
        shmx_plat_sleep_ns(timeout_ns < 0 || timeout_ns > 1000000 ? 1000000u : (uint64_t)timeout_ns);
        return 0;
    }
    /* Register, then look: InterlockedIncrement is a full barrier, pairing
     * with the waker's store of the word followed by its full-barrier
     * exchange of the count, so either it sees us or we see its value. */
    InterlockedIncrement(o->waiters);
    if (__atomic_load_n(addr, __ATOMIC_SEQ_CST) != expect) {
        unregister(o->waiters);
        return 0;
    }
    DWORD ms = INFINITE;
    if (timeout_ns >= 0) {
        uint64_t m = ((uint64_t)timeout_ns + 999999u) / 1000000u;
        ms = m >= INFINITE ? INFINITE - 1 : (DWORD)m;
    }
    DWORD r = WaitForSingleObject(o->sem, ms);
    if (r == WAIT_OBJECT_0) return 0;
    unregister(o->waiters);
    return r == WAIT_TIMEOUT ? 1 : -1;
}

void shmx_plat_wake_all(uint32_t *addr)
{
    wake_obj *o = wake_for(addr);
    if (!o) return;
    /* Full barrier after the caller's store of the word (see wait). */
    LONG n = InterlockedExchange(o->waiters, 0);
    if (n > 0) ReleaseSemaphore(o->sem, n, NULL);
}
