/*
 * test_api.c - the libshmx C API exercised directly, one behaviour per
 * function: statuses and messages, versions, names, config validation and
 * struct_size, the full publish/read cycle (latest, next, wait, loan), every
 * refusal a caller can meet, control messages, readers, the inspector, the
 * lifetime of regions (destroy, stale reclaim, reconnect, unlink) and
 * corrupt or legacy regions.
 */
#include "shmx_test.h"

#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>
#ifdef _WIN32
/* Windows (tests/test_windows.py runs this under wine with SHMX_DIR set, so
 * regions are files as here): no fork() and no POSIX file modes; the
 * process tests for Windows are in tests/c/test_win32.c. */
#define T_POSIX 0
#define T_MKDIR(dir) mkdir(dir)
#else
#include <poll.h>
#include <sys/wait.h>
#define T_POSIX 1
#define T_MKDIR(dir) mkdir(dir, 0700)
#endif

enum { ID_PIXELS = 1, ID_POS = 2, ID_COUNT = 7 };
#define TLV_BYTES(n) ((24u + (n) + 15u) & ~15u)

static const shmx_stream_spec k_streams[] = {
    {ID_PIXELS, SHMX_DT_U8, 1, SHMX_LAYOUT_SOA_SCALAR, 1, "pixels", NULL, 0},
    {ID_POS, SHMX_DT_F32, 3, SHMX_LAYOUT_AOS_VECTOR, 12, "positions", "unit=m", 6},
    {ID_COUNT, SHMX_DT_U64, 1, SHMX_LAYOUT_SOA_SCALAR, 8, "counter", NULL, 0},
};

static void base_config(shmx_server_config *cfg)
{
    shmx_server_config_init(cfg);
    cfg->streams = k_streams;
    cfg->stream_count = 3;
    cfg->frame_bytes_cap = 4096;
    cfg->slots = 3;
    cfg->reader_slots = 4;
    cfg->control_per_reader = 256;
}

static int file_exists(const char *name)
{
    char path[1024];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", t_shm_dir(), name);
    return stat(path, &st) == 0;
}

/* Publish one frame: `n` pixels of value (seed + i), a position, a counter. */
static void publish_one(shmx_server *s, uint32_t n, uint8_t seed, uint64_t counter, double t)
{
    uint8_t px[4096];
    for (uint32_t i = 0; i < n; i++) px[i] = (uint8_t)(seed + i);
    float pos[3] = {1.0f, 2.0f, (float)counter};
    uint64_t frame;
    CHECK_OK(shmx_server_begin_frame(s, &frame));
    CHECK_OK(shmx_server_append(s, frame, ID_PIXELS, px, n, n));
    CHECK_OK(shmx_server_append(s, frame, ID_POS, pos, sizeof pos, 1));
    CHECK_OK(shmx_server_append(s, frame, ID_COUNT, &counter, 8, 1));
    CHECK_OK(shmx_server_publish(s, frame, t));
}

/* The current frame of `c` is the one publish_one(n, seed, counter) wrote. */
static void check_frame(shmx_client *c, uint32_t n, uint8_t seed, uint64_t counter)
{
    shmx_stream_view v;
    memset(&v, 0, sizeof v);
    v.struct_size = sizeof v;
    CHECK_OK(shmx_client_frame_stream(c, 0, &v));
    CHECK(v.stream_id == ID_PIXELS && v.elem_count == n && v.bytes == n);
    const uint8_t *p = (const uint8_t *)v.data;
    int bad = 0;
    for (uint32_t i = 0; i < n; i++) bad |= p[i] != (uint8_t)(seed + i);
    CHECK(!bad);
    CHECK((const uint8_t *)shmx_client_base(c) + v.offset == p);
    CHECK_OK(shmx_client_frame_stream(c, 1, &v));
    CHECK(v.stream_id == ID_POS && v.elem_count == 1 && v.bytes == 12);
    float pos[3];
    memcpy(pos, v.data, sizeof pos);
    CHECK(pos[0] == 1.0f && pos[1] == 2.0f && pos[2] == (float)counter);
    CHECK_OK(shmx_client_frame_stream(c, 2, &v));
    uint64_t got;
    memcpy(&got, v.data, 8);
    CHECK(v.stream_id == ID_COUNT && got == counter);
    CHECK_ST(shmx_client_frame_stream(c, 3, &v), SHMX_EINVAL);
}

/* ------------------------------------------------------------ statuses */

static void test_statuses(void)
{
    int count = 0, expect_value = 0;
#define X_(name, value, msg)                                                       \
    CHECK((value) == expect_value);                                                \
    expect_value--;                                                                \
    count++;                                                                       \
    CHECK(strcmp(shmx_strerror(value), msg) == 0);                                 \
    CHECK(strcmp(shmx_status_name(value), "SHMX_" #name) == 0);                    \
    CHECK(SHMX_##name == (value));
    SHMX_STATUS_LIST(X_)
#undef X_
    CHECK(count == 25);
    CHECK(SHMX_STATUS_MIN_ == expect_value + 1);
    CHECK(strcmp(shmx_strerror(1), "unknown status") == 0);
    CHECK(strcmp(shmx_strerror(-999), "unknown status") == 0);
    CHECK(strcmp(shmx_status_name(SHMX_STATUS_MIN_ - 1), "SHMX_UNKNOWN_STATUS") == 0);
    CHECK(strcmp(shmx_status_name(42), "SHMX_UNKNOWN_STATUS") == 0);
}

static void test_version_and_helpers(void)
{
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", SHMX_VERSION_MAJOR, SHMX_VERSION_MINOR, SHMX_VERSION_PATCH);
    CHECK(strcmp(shmx_version(), want) == 0);
    CHECK(shmx_version_number() == SHMX_VERSION_NUMBER);
    CHECK(shmx_version_number() / 10000 == SHMX_VERSION_MAJOR);

    static const struct { uint32_t code, size; const char *name; } dts[] = {
        {SHMX_DT_BOOL, 1, "bool"},     {SHMX_DT_I8, 1, "int8"},       {SHMX_DT_U8, 1, "uint8"},
        {SHMX_DT_I16, 2, "int16"},     {SHMX_DT_U16, 2, "uint16"},    {SHMX_DT_I32, 4, "int32"},
        {SHMX_DT_U32, 4, "uint32"},    {SHMX_DT_I64, 8, "int64"},     {SHMX_DT_U64, 8, "uint64"},
        {SHMX_DT_F16, 2, "float16"},   {SHMX_DT_BF16, 2, "bfloat16"}, {SHMX_DT_F32, 4, "float32"},
        {SHMX_DT_F64, 8, "float64"},
    };
    for (size_t i = 0; i < sizeof dts / sizeof dts[0]; i++) {
        CHECK(shmx_dtype_size(dts[i].code) == dts[i].size);
        CHECK(strcmp(shmx_dtype_name(dts[i].code), dts[i].name) == 0);
    }
    CHECK(shmx_dtype_size(0) == 0 && shmx_dtype_size(14) == 0 && shmx_dtype_size(0xFFFFFFFFu) == 0);
    CHECK(strcmp(shmx_dtype_name(99), "unknown") == 0);
    CHECK(strcmp(shmx_layout_name(SHMX_LAYOUT_SOA_SCALAR), "scalar") == 0);
    CHECK(strcmp(shmx_layout_name(SHMX_LAYOUT_AOS_VECTOR), "vector") == 0);
    CHECK(strcmp(shmx_layout_name(2), "unknown") == 0);
    /* hi32 ^ lo32 of shmx 1.0.1's FNV-1a 64, whose offset basis is
     * 1469598103934665603 (not the published 14695981039346656037): values
     * computed independently with that basis, so legacy peers agree. */
    CHECK(shmx_checksum32("", 0) == 0x67f80c33u);
    CHECK(shmx_checksum32("a", 1) == 0x377013d2u);
    CHECK(shmx_checksum32("shmx", 4) == 0xb999f009u);
    uint64_t t1 = shmx_now_ns();
    t_sleep_us(2000);
    uint64_t t2 = shmx_now_ns();
    CHECK(t2 - t1 >= 1000000u && t2 - t1 < 5000000000ull);
}

/* ---------------------------------------------------------------- names */

static void test_names(void)
{
    char buf[300];
    CHECK_OK(shmx_check_name("cam0"));
    CHECK_OK(shmx_check_name("A.b_c-9"));
    CHECK_OK(shmx_check_name("/legacy-style"));
    memset(buf, 'x', 200);
    buf[200] = 0;
    CHECK_OK(shmx_check_name(buf));
    buf[200] = 'x';
    buf[201] = 0;
    CHECK_ST(shmx_check_name(buf), SHMX_ENAME);
    CHECK_ERR_HAS("201");
    static const char *bad[] = {"", "/", ".", "..", "a/b", "a b", "caf\xc3\xa9", "x\ty", "semi;colon"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) CHECK_ST(shmx_check_name(bad[i]), SHMX_ENAME);
    CHECK_ST(shmx_check_name(NULL), SHMX_ENAME);
    CHECK_ST(shmx_check_name("a/b"), SHMX_ENAME);
    CHECK_ERR_HAS("0x2f");

    shmx_server *s = (shmx_server *)&buf; /* must be overwritten with NULL */
    CHECK_ST(shmx_server_create("../etc/passwd", NULL, &s), SHMX_ENAME);
    CHECK(s == NULL);
    shmx_client *c = (shmx_client *)&buf;
    CHECK_ST(shmx_client_open("no such/name", NULL, &c), SHMX_ENAME);
    CHECK(c == NULL);
    shmx_inspector *in = NULL;
    CHECK_ST(shmx_inspector_open("", NULL, &in), SHMX_ENAME);
    CHECK_ST(shmx_unlink("bad name", NULL, 0), SHMX_ENAME);
    CHECK_ST(shmx_server_create(NULL, NULL, &s), SHMX_ENAME);
    CHECK_ST(shmx_server_create("ok-name", NULL, NULL), SHMX_EINVAL);
    CHECK_ST(shmx_client_open("ok-name", NULL, NULL), SHMX_EINVAL);
    CHECK_ST(shmx_inspector_open("ok-name", NULL, NULL), SHMX_EINVAL);

    /* A missing region. */
    char name[128];
    t_name(name, sizeof name, "missing");
    CHECK_ST(shmx_client_open(name, NULL, &c), SHMX_ENOENT);
    CHECK_ERR_HAS(name);
    CHECK_ST(shmx_inspector_open(name, NULL, &in), SHMX_ENOENT);
    CHECK_ST(shmx_unlink(name, NULL, 0), SHMX_ENOENT);
}

/* ------------------------------------------------------- configuration */

static shmx_status create_with(const shmx_server_config *cfg, const char *tag)
{
    char name[128];
    shmx_server *s = NULL;
    shmx_status st = shmx_server_create(t_name(name, sizeof name, tag), cfg, &s);
    if (st == SHMX_OK) {
        shmx_server_destroy(s);
    } else {
        CHECK(s == NULL);
        CHECK(!file_exists(name));
    }
    return st;
}

static void test_config(void)
{
    shmx_server_config cfg;
    shmx_server_config_init(&cfg);
    CHECK(cfg.struct_size == sizeof cfg);
    CHECK(cfg.slots == 3 && cfg.reader_slots == 16 && cfg.static_bytes_cap == 4096);
    CHECK(cfg.frame_bytes_cap == 65536 && cfg.control_per_reader == 4096 && cfg.mode == 0600);
    CHECK(cfg.checksum == SHMX_CHECKSUM_AUTO && cfg.streams == NULL && cfg.stream_count == 0);
    CHECK(cfg.dir == NULL);
    shmx_server_config_init(NULL); /* harmless */
    shmx_open_options opt;
    shmx_open_options_init(&opt);
    CHECK(opt.struct_size == sizeof opt && opt.dir == NULL);
    shmx_open_options_init(NULL);

    /* NULL config: all defaults. */
    char name[128];
    shmx_server *s = NULL;
    REQUIRE_OK(shmx_server_create(t_name(name, sizeof name, "defaults"), NULL, &s));
    shmx_header_info h;
    memset(&h, 0, sizeof h);
    h.struct_size = sizeof h;
    CHECK_OK(shmx_server_header_info(s, &h));
    CHECK(h.slots == 3 && h.reader_slots == 16 && h.frame_bytes_cap == 65536);
    CHECK(h.control_per_reader == 4096 && h.static_bytes_cap == 4096);
    CHECK(h.extended == 1 && h.version_major == 2 && h.version_minor == 0);
    CHECK(h.checksum_policy == SHMX_CHECKSUM_AUTO && h.owner_pid == (uint64_t)getpid());
    CHECK(h.owner_alive == SHMX_ALIVE && h.closed == 0 && h.frame_seq == 0 && h.write_index == 0);
    CHECK(h.total_bytes == shmx_server_size(s) && h.total_bytes > 3u * 65536u);
    CHECK(shmx_server_stream_count(s) == 0);
    struct stat st;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", t_shm_dir(), name);
    CHECK(stat(path, &st) == 0 && (!T_POSIX || (st.st_mode & 0777) == 0600));
    shmx_server_destroy(s);
    CHECK(!file_exists(name));

    /* struct_size: 0 and larger than the library knows are refused; a
     * smaller (older) struct is honoured and the rest takes defaults. */
    base_config(&cfg);
    cfg.struct_size = 0;
    CHECK_ST(create_with(&cfg, "size0"), SHMX_EINVAL);
    CHECK_ERR_HAS("struct_size");
    cfg.struct_size = sizeof cfg + 8;
    CHECK_ST(create_with(&cfg, "sizebig"), SHMX_EINVAL);
    base_config(&cfg);
    cfg.struct_size = offsetof(shmx_server_config, streams);
    cfg.slots = 5;
    cfg.streams = (const shmx_stream_spec *)(uintptr_t)0x10; /* beyond struct_size: unread */
    cfg.stream_count = 99;
    cfg.dir = "/nonexistent-dir";
    REQUIRE_OK(shmx_server_create(t_name(name, sizeof name, "oldstruct"), &cfg, &s));
    CHECK_OK(shmx_server_header_info(s, &h));
    CHECK(h.slots == 5 && h.reader_slots == 4 && h.frame_bytes_cap == 4096);
    CHECK(shmx_server_stream_count(s) == 0);
    shmx_server_destroy(s);
    /* mode 0 means the default 0600; another mode is applied exactly. */
    base_config(&cfg);
    cfg.mode = 0640;
    REQUIRE_OK(shmx_server_create(t_name(name, sizeof name, "mode"), &cfg, &s));
    snprintf(path, sizeof path, "%s/%s", t_shm_dir(), name);
    CHECK(stat(path, &st) == 0 && (!T_POSIX || (st.st_mode & 0777) == 0640));
    shmx_server_destroy(s);

    /* Every invalid field, one at a time. */
    struct { const char *what; int field; uint32_t value; shmx_status want; } cases[] = {
        {"slots 0", 0, 0, SHMX_EINVAL},
        {"slots 65537", 0, 65537, SHMX_EINVAL},
        {"reader_slots 0", 1, 0, SHMX_EINVAL},
        {"reader_slots 65", 1, 65, SHMX_EINVAL},
        {"frame_bytes_cap 0", 2, 0, SHMX_EINVAL},
        {"control 10", 3, 10, SHMX_EINVAL},
        {"control 63", 3, 63, SHMX_EINVAL},
        {"mode 01000", 4, 01000, SHMX_EINVAL},
        {"checksum 3", 5, 3, SHMX_EINVAL},
        {"static cap too small", 6, 32, SHMX_ETOOBIG},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        base_config(&cfg);
        switch (cases[i].field) {
        case 0: cfg.slots = cases[i].value; break;
        case 1: cfg.reader_slots = cases[i].value; break;
        case 2: cfg.frame_bytes_cap = cases[i].value; break;
        case 3: cfg.control_per_reader = cases[i].value; break;
        case 4: cfg.mode = cases[i].value; break;
        case 5: cfg.checksum = cases[i].value; break;
        case 6: cfg.static_bytes_cap = cases[i].value; break;
        }
        shmx_status got = create_with(&cfg, "badcfg");
        if (got != cases[i].want)
            T_FAIL("config '%s': %s, expected %s", cases[i].what, shmx_status_name(got),
                   shmx_status_name(cases[i].want));
        CHECK(shmx_last_error()[0] != 0);
    }
    /* The region would not fit 32-bit offsets. */
    shmx_server_config_init(&cfg);
    cfg.slots = 65536;
    cfg.frame_bytes_cap = 1u << 20;
    CHECK_ST(create_with(&cfg, "huge"), SHMX_ETOOBIG);
    CHECK_ERR_HAS("4 GiB");
    /* Extreme values that overflow 32-bit arithmetic must still be refused. */
    shmx_server_config_init(&cfg);
    cfg.frame_bytes_cap = 0xFFFFFFFFu;
    CHECK_ST(create_with(&cfg, "capmax"), SHMX_ETOOBIG);
    shmx_server_config_init(&cfg);
    cfg.control_per_reader = 0xFFFFFFF0u;
    CHECK_ST(create_with(&cfg, "ctlmax"), SHMX_ETOOBIG);
    shmx_server_config_init(&cfg);
    cfg.static_bytes_cap = 0xFFFFFFF0u;
    CHECK_ST(create_with(&cfg, "staticmax"), SHMX_ETOOBIG);

    /* Stream specs. */
    shmx_stream_spec sp[2];
    const shmx_stream_spec good = {1, SHMX_DT_F32, 1, SHMX_LAYOUT_SOA_SCALAR, 4, "a", NULL, 0};
    char longname[300];
    memset(longname, 'n', 256);
    longname[256] = 0;
    struct { const char *what; int field; shmx_status want; } sc[] = {
        {"dtype 0", 0, SHMX_EINVAL},       {"dtype 14", 1, SHMX_EINVAL},
        {"components 0", 2, SHMX_EINVAL},  {"bytes_per_elem 0", 3, SHMX_EINVAL},
        {"layout 2", 4, SHMX_EINVAL},      {"extra_len, no extra", 5, SHMX_EINVAL},
        {"name NULL", 6, SHMX_ENAME},      {"name empty", 7, SHMX_ENAME},
        {"name 256", 8, SHMX_ENAME},       {"duplicate id", 9, SHMX_EDUP},
        {"duplicate name", 10, SHMX_EDUP}, {"extra > 1 MiB", 11, SHMX_ETOOBIG},
    };
    static char big_extra[(1u << 20) + 1];
    for (size_t i = 0; i < sizeof sc / sizeof sc[0]; i++) {
        sp[0] = good;
        sp[1] = good;
        sp[1].stream_id = 2;
        sp[1].name = "b";
        switch (sc[i].field) {
        case 0: sp[1].dtype = 0; break;
        case 1: sp[1].dtype = 14; break;
        case 2: sp[1].components = 0; break;
        case 3: sp[1].bytes_per_elem = 0; break;
        case 4: sp[1].layout = 2; break;
        case 5: sp[1].extra_len = 4; break;
        case 6: sp[1].name = NULL; break;
        case 7: sp[1].name = ""; break;
        case 8: sp[1].name = longname; break;
        case 9: sp[1].stream_id = 1; break;
        case 10: sp[1].name = "a"; break;
        case 11: sp[1].extra = big_extra; sp[1].extra_len = sizeof big_extra; break;
        }
        base_config(&cfg);
        cfg.streams = sp;
        cfg.stream_count = 2;
        shmx_status got = create_with(&cfg, "badspec");
        if (got != sc[i].want)
            T_FAIL("spec '%s': %s, expected %s", sc[i].what, shmx_status_name(got),
                   shmx_status_name(sc[i].want));
    }
    base_config(&cfg);
    cfg.streams = NULL;
    cfg.stream_count = 1;
    CHECK_ST(create_with(&cfg, "nostreams"), SHMX_EINVAL);
    /* The longest legal stream name is accepted. */
    longname[255] = 0;
    sp[0] = good;
    sp[0].name = longname;
    base_config(&cfg);
    cfg.streams = sp;
    cfg.stream_count = 1;
    CHECK_ST(create_with(&cfg, "longname"), SHMX_OK);
}

/* ------------------------------------------------- publish and read */

static void test_publish_read(void)
{
    char name[128];
    shmx_server_config cfg;
    base_config(&cfg);
    shmx_server *s = NULL;
    REQUIRE_OK(shmx_server_create(t_name(name, sizeof name, "pubread"), &cfg, &s));
    REQUIRE(shmx_server_base(s) != NULL && shmx_server_size(s) > 0);

    /* Schema as the server, a client and an inspector see it. */
    shmx_client *c = NULL;
    REQUIRE_OK(shmx_client_open(name, NULL, &c));
    shmx_inspector *in = NULL;
    REQUIRE_OK(shmx_inspector_open(name, NULL, &in));
    CHECK(shmx_server_stream_count(s) == 3 && shmx_client_stream_count(c) == 3 &&
          shmx_inspector_stream_count(in) == 3);
    for (uint32_t i = 0; i < 3; i++) {
        shmx_stream_info a, b, d;
        a.struct_size = b.struct_size = d.struct_size = sizeof a;
        CHECK_OK(shmx_server_stream_info(s, i, &a));
        CHECK_OK(shmx_client_stream_info(c, i, &b));
        CHECK_OK(shmx_inspector_stream_info(in, i, &d));
        const shmx_stream_spec *k = &k_streams[i];
        const shmx_stream_info *all[3] = {&a, &b, &d};
        for (int j = 0; j < 3; j++) {
            const shmx_stream_info *x = all[j];
            CHECK(x->stream_id == k->stream_id && x->dtype == k->dtype);
            CHECK(x->components == k->components && x->layout == k->layout);
            CHECK(x->bytes_per_elem == k->bytes_per_elem && x->extra_len == k->extra_len);
            CHECK(x->name_len == strlen(k->name) && strcmp(x->name, k->name) == 0);
            CHECK(k->extra_len == 0 || memcmp(x->extra, k->extra, k->extra_len) == 0);
        }
    }
    shmx_stream_info si;
    si.struct_size = sizeof si;
    CHECK_ST(shmx_client_stream_info(c, 3, &si), SHMX_EINVAL);
    CHECK_ST(shmx_server_stream_info(s, 0, NULL), SHMX_EINVAL);

    /* Nothing published yet. */
    shmx_frame_info fi;
    memset(&fi, 0, sizeof fi);
    fi.struct_size = sizeof fi;
    CHECK_ST(shmx_client_latest(c, &fi), SHMX_EAGAIN);
    CHECK_ST(shmx_client_next(c, &fi), SHMX_EAGAIN);
    shmx_stream_view v;
    v.struct_size = sizeof v;
    CHECK_ST(shmx_client_frame_stream(c, 0, &v), SHMX_EAGAIN);
    CHECK_ST(shmx_client_wait(c, 1000000), SHMX_ETIMEDOUT);
    uint8_t copy[8192];
    CHECK_ST(shmx_inspector_copy_latest(in, &fi, copy, sizeof copy), SHMX_EAGAIN);

    /* One frame. */
    publish_one(s, 100, 7, 1, 0.5);
    CHECK_OK(shmx_client_wait(c, 0));
    CHECK_OK(shmx_client_latest(c, &fi));
    CHECK(fi.struct_size == sizeof fi && fi.frame_id == 1 && fi.sim_time == 0.5);
    CHECK(fi.stream_count == 3 && fi.tlv_count == 3 && fi.dropped == 0 && fi.layout_id != 0);
    /* 3 TLVs: 8 + 16 header bytes plus the data, each padded to 16. */
    CHECK(fi.payload_bytes == TLV_BYTES(100) + TLV_BYTES(12) + TLV_BYTES(8));
    check_frame(c, 100, 7, 1);
    uint64_t layout1 = fi.layout_id;
    /* Asking again returns the same frame, still pinned. */
    CHECK_OK(shmx_client_latest(c, &fi));
    CHECK(fi.frame_id == 1 && fi.layout_id == layout1);
    CHECK_ST(shmx_client_wait(c, 1000000), SHMX_ETIMEDOUT);
    CHECK_ST(shmx_client_next(c, &fi), SHMX_EAGAIN);

    /* In-order reads. */
    for (uint64_t k = 2; k <= 3; k++) publish_one(s, 100, (uint8_t)k, k, (double)k);
    CHECK_OK(shmx_client_next(c, &fi));
    CHECK(fi.frame_id == 2 && fi.dropped == 0);
    check_frame(c, 100, 2, 2);
    CHECK_OK(shmx_client_next(c, &fi));
    CHECK(fi.frame_id == 3 && fi.dropped == 0 && fi.sim_time == 3.0);
    check_frame(c, 100, 3, 3);
    CHECK_ST(shmx_client_next(c, &fi), SHMX_EAGAIN);

    /* Overrun: 5 more frames through 3 slots while we hold frame 3 pinned.
     * The pinned slot is skipped, so frames 4..8 use the 2 other slots. */
    for (uint64_t k = 4; k <= 8; k++) publish_one(s, 50, (uint8_t)k, k, (double)k);
    check_frame(c, 100, 3, 3); /* still intact under the pin */
    CHECK_OK(shmx_client_next(c, &fi));
    CHECK(fi.frame_id == 7 && fi.dropped == 3);
    check_frame(c, 50, 7, 7);
    CHECK(fi.layout_id != layout1);
    CHECK_OK(shmx_client_next(c, &fi));
    CHECK(fi.frame_id == 8 && fi.dropped == 0);
    /* latest never goes backwards. */
    CHECK_OK(shmx_client_latest(c, &fi));
    CHECK(fi.frame_id == 8);

    /* Zero-copy loan. */
    uint64_t frame;
    void *dst = NULL;
    CHECK_OK(shmx_server_begin_frame(s, &frame));
    CHECK_OK(shmx_server_loan(s, frame, ID_PIXELS, 64, &dst));
    REQUIRE(dst != NULL);
    CHECK((uint8_t *)dst > (uint8_t *)shmx_server_base(s) &&
          (uint8_t *)dst < (uint8_t *)shmx_server_base(s) + shmx_server_size(s));
    for (int i = 0; i < 64; i++) ((uint8_t *)dst)[i] = (uint8_t)(200 + i);
    float pos[3] = {1.0f, 2.0f, 9.0f};
    uint64_t counter = 9;
    void *pdst = NULL;
    CHECK_OK(shmx_server_loan(s, frame, ID_POS, 1, &pdst));
    memcpy(pdst, pos, sizeof pos);
    CHECK_OK(shmx_server_append(s, frame, ID_COUNT, &counter, 8, 1));
    CHECK_OK(shmx_server_publish(s, frame, 9.0));
    CHECK_OK(shmx_client_latest(c, &fi));
    CHECK(fi.frame_id == 9);
    check_frame(c, 64, 200, 9);

    /* A frame with a subset of streams, and an empty frame. */
    CHECK_OK(shmx_server_begin_frame(s, &frame));
    CHECK_OK(shmx_server_append(s, frame, ID_COUNT, &counter, 8, 1));
    CHECK_OK(shmx_server_publish(s, frame, 10.0));
    CHECK_OK(shmx_client_next(c, &fi));
    CHECK(fi.frame_id == 10 && fi.stream_count == 1);
    CHECK_OK(shmx_client_frame_stream(c, 0, &v));
    CHECK(v.stream_id == ID_COUNT && v.bytes == 8);
    CHECK_OK(shmx_server_begin_frame(s, &frame));
    CHECK_OK(shmx_server_publish(s, frame, 11.0));
    CHECK_OK(shmx_client_next(c, &fi));
    CHECK(fi.frame_id == 11 && fi.stream_count == 0 && fi.payload_bytes == 0);

    /* A zero-element stream is legal. */
    CHECK_OK(shmx_server_begin_frame(s, &frame));
    CHECK_OK(shmx_server_append(s, frame, ID_PIXELS, NULL, 0, 0));
    CHECK_OK(shmx_server_publish(s, frame, 12.0));
    CHECK_OK(shmx_client_next(c, &fi));
    CHECK(fi.stream_count == 1);
    CHECK_OK(shmx_client_frame_stream(c, 0, &v));
    CHECK(v.elem_count == 0 && v.bytes == 0);

    /* The inspector copies the latest frame; it never attaches a reader. */
    publish_one(s, 33, 1, 13, 13.0);
    shmx_frame_info ifi;
    memset(&ifi, 0, sizeof ifi);
    ifi.struct_size = sizeof ifi;
    CHECK_OK(shmx_inspector_copy_latest(in, &ifi, copy, sizeof copy));
    CHECK(ifi.frame_id == 13 && ifi.sim_time == 13.0 && ifi.tlv_count == 3);
    {
        /* Walk the TLVs: {type, length}, then {id, elem_count, bytes, reserved}. */
        uint32_t off = 0, seen = 0;
        while (off + 24 <= ifi.payload_bytes) {
            uint32_t head[6];
            memcpy(head, copy + off, sizeof head);
            CHECK(head[0] == SHMX_TLV_FRAME_STREAM);
            if (head[2] == ID_PIXELS) {
                CHECK(head[3] == 33 && head[4] == 33);
                int bad = 0;
                for (uint32_t i = 0; i < 33; i++) bad |= copy[off + 24 + i] != (uint8_t)(1 + i);
                CHECK(!bad);
            }
            seen++;
            off += (8 + head[1] + 15) & ~15u;
        }
        CHECK(seen == 3);
    }
    CHECK_ST(shmx_inspector_copy_latest(in, &ifi, copy, 16), SHMX_ETOOBIG);
    CHECK(ifi.payload_bytes > 16);
    CHECK_ST(shmx_inspector_copy_latest(NULL, &ifi, copy, 16), SHMX_EINVAL);

    /* Header as each handle sees it. */
    shmx_header_info h1, h2, h3;
    h1.struct_size = h2.struct_size = h3.struct_size = sizeof h1;
    CHECK_OK(shmx_server_header_info(s, &h1));
    CHECK_OK(shmx_client_header_info(c, &h2));
    CHECK_OK(shmx_inspector_header_info(in, &h3));
    CHECK(h1.frame_seq == 13 && h2.frame_seq == 13 && h3.frame_seq == 13);
    CHECK(h1.session_id == h2.session_id && h2.session_id == h3.session_id);
    CHECK(h1.readers_connected == 1 && h3.readers_connected == 1);
    CHECK(h2.owner_alive == SHMX_ALIVE && h3.owner_alive == SHMX_ALIVE);
    CHECK(h3.owner_pid == (uint64_t)getpid() && h3.static_bytes_used > 0);
    CHECK(h1.write_index != 0 && (h1.write_index - 1) % 3 < 3);
    CHECK(shmx_client_server_alive(c) == SHMX_ALIVE);

    shmx_inspector_close(in);
    shmx_client_close(c);
    shmx_server_destroy(s);
    CHECK(!file_exists(name));
}

/* ------------------------------------------------------------ refusals */

static void test_refusals(void)
{
    char name[128], name2[128];
    shmx_server_config cfg;
    base_config(&cfg);
    cfg.frame_bytes_cap = 256;
    shmx_server *s = NULL, *s2 = NULL;
    REQUIRE_OK(shmx_server_create(t_name(name, sizeof name, "refuse"), &cfg, &s));
    REQUIRE_OK(shmx_server_create(t_name(name2, sizeof name2, "other"), &cfg, &s2));
    uint8_t data[512] = {0};
    uint64_t f, f2, old;
    void *dst;

    CHECK_OK(shmx_server_begin_frame(s, &f));
    CHECK_ST(shmx_server_append(s, f, 99, data, 4, 4), SHMX_ESTREAM);
    CHECK_ERR_HAS("99");
    CHECK_ST(shmx_server_loan(s, f, 98, 1, &dst), SHMX_ESTREAM);
    CHECK(dst == NULL);
    CHECK_ST(shmx_server_append(s, f, ID_POS, data, 11, 1), SHMX_ESIZE);
    CHECK_ERR_HAS("positions");
    CHECK_ST(shmx_server_append(s, f, ID_POS, data, 12, 2), SHMX_ESIZE);
    CHECK_ST(shmx_server_append(s, f, ID_PIXELS, data, 257, 257), SHMX_ETOOBIG);
    CHECK_ERR_HAS("frame_bytes_cap");
    CHECK_ST(shmx_server_loan(s, f, ID_PIXELS, 300, &dst), SHMX_ETOOBIG);
    CHECK_OK(shmx_server_append(s, f, ID_PIXELS, data, 200, 200));
    CHECK_ST(shmx_server_append(s, f, ID_PIXELS, data, 4, 4), SHMX_EDUP);
    CHECK_ST(shmx_server_loan(s, f, ID_PIXELS, 1, &dst), SHMX_EDUP);
    /* One stream is limited by frame_bytes_cap, the frame by its slot: the
     * cap plus 40 bytes of framing per schema stream (256 + 3*40 -> 384).
     * Pixels took 224; 16 positions would need 24 + 192 -> 224 more. */
    CHECK_ST(shmx_server_append(s, f, ID_POS, data, 192, 16), SHMX_ETOOBIG);
    CHECK_ERR_HAS("framing");
    CHECK_OK(shmx_server_append(s, f, ID_POS, data, 48, 4));
    CHECK_OK(shmx_server_append(s, f, ID_COUNT, data, 8, 1));
    /* A handle of another server. */
    CHECK_OK(shmx_server_begin_frame(s2, &f2));
    CHECK_ST(shmx_server_append(s, f2, ID_COUNT, data, 8, 1), SHMX_EHANDLE);
    CHECK_ERR_HAS("another server");
    CHECK_ST(shmx_server_publish(s, f2, 0), SHMX_EHANDLE);
    CHECK_ST(shmx_server_publish(s2, f, 0), SHMX_EHANDLE);
    CHECK_ST(shmx_server_publish(s, 0, 0), SHMX_EHANDLE);
    CHECK_ST(shmx_server_publish(s, ~0ull, 0), SHMX_EHANDLE);
    CHECK_OK(shmx_server_publish(s, f, 1.0));
    /* Published handles are finished. */
    CHECK_ST(shmx_server_publish(s, f, 0), SHMX_EHANDLE);
    CHECK_ERR_HAS("finished");
    CHECK_ST(shmx_server_append(s, f, ID_COUNT, data, 8, 1), SHMX_EHANDLE);
    CHECK_ST(shmx_server_loan(s, f, ID_COUNT, 1, &dst), SHMX_EHANDLE);
    /* A newer begin_frame abandons the open frame and its handle. */
    CHECK_OK(shmx_server_begin_frame(s, &old));
    CHECK_OK(shmx_server_append(s, old, ID_COUNT, data, 8, 1));
    CHECK_OK(shmx_server_begin_frame(s, &f));
    CHECK(f != old);
    CHECK_ST(shmx_server_append(s, old, ID_PIXELS, data, 1, 1), SHMX_EHANDLE);
    CHECK_ST(shmx_server_publish(s, old, 0), SHMX_EHANDLE);
    /* ...and the new frame starts empty: the counter may be appended again. */
    CHECK_OK(shmx_server_append(s, f, ID_COUNT, data, 8, 1));
    CHECK_OK(shmx_server_publish(s, f, 2.0));
    /* Argument errors. */
    CHECK_ST(shmx_server_begin_frame(s, NULL), SHMX_EINVAL);
    CHECK_ST(shmx_server_begin_frame(NULL, &f), SHMX_EINVAL);
    CHECK_OK(shmx_server_begin_frame(s, &f));
    CHECK_ST(shmx_server_append(s, f, ID_PIXELS, NULL, 4, 4), SHMX_EINVAL);
    CHECK_ST(shmx_server_loan(s, f, ID_PIXELS, 4, NULL), SHMX_EINVAL);
    CHECK_ST(shmx_server_append(NULL, f, ID_PIXELS, data, 4, 4), SHMX_EINVAL);
    CHECK_ST(shmx_server_publish(NULL, f, 0), SHMX_EINVAL);
    CHECK_ST(shmx_server_header_info(s, NULL), SHMX_EINVAL);
    CHECK_ST(shmx_server_write_static(s, NULL, 4), SHMX_EINVAL);
    CHECK_ST(shmx_server_readers(s, NULL, 0, NULL), SHMX_EINVAL);
    CHECK(shmx_server_stream_count(NULL) == 0 && shmx_server_base(NULL) == NULL &&
          shmx_server_size(NULL) == 0);
    /* Frames the client reads are whole: the abandoned frames never show. */
    shmx_client *c = NULL;
    REQUIRE_OK(shmx_client_open(name, NULL, &c));
    shmx_frame_info fi;
    fi.struct_size = sizeof fi;
    CHECK_OK(shmx_client_latest(c, &fi));
    CHECK(fi.frame_id == 2 && fi.stream_count == 1);
    CHECK_ST(shmx_client_latest(NULL, &fi), SHMX_EINVAL);
    CHECK_ST(shmx_client_frame_stream(c, 0, NULL), SHMX_EINVAL);
    CHECK(shmx_client_stream_count(NULL) == 0 && shmx_client_base(NULL) == NULL &&
          shmx_client_reader_id(NULL) == 0 && shmx_client_server_alive(NULL) == SHMX_UNKNOWN);
    shmx_client_close(c);

    /* Destroyed handles refuse (after close, before free). */
    shmx_server_close(s2);
    CHECK_ST(shmx_server_begin_frame(s2, &f2), SHMX_ECLOSED);
    CHECK_ST(shmx_server_publish(s2, f2, 0), SHMX_ECLOSED);
    CHECK(shmx_server_base(s2) != NULL); /* mapping kept until free */
    shmx_server_free(s2);
    shmx_server_destroy(s);
    shmx_server_destroy(NULL);
    shmx_server_free(NULL);
    shmx_server_close(NULL);
    shmx_client_close(NULL);
    shmx_client_free(NULL);
    shmx_client_detach(NULL);
    shmx_client_release(NULL);
    shmx_inspector_close(NULL);
}

/* One call for a one-stream frame; its refusals come before a slot is
 * claimed, so with one slot the published frame survives them. */
static void test_publish_stream(void)
{
    char name[128];
    shmx_server_config cfg;
    base_config(&cfg);
    cfg.frame_bytes_cap = 256;
    cfg.slots = 1;
    shmx_server *s = NULL;
    shmx_client *c = NULL;
    REQUIRE_OK(shmx_server_create(t_name(name, sizeof name, "pubstream"), &cfg, &s));
    REQUIRE_OK(shmx_client_open(name, NULL, &c));
    float pos[6] = {1, 2, 3, 4, 5, 6};
    uint8_t big[300] = {0};
    CHECK_OK(shmx_server_publish_stream(s, ID_POS, pos, sizeof pos, 3.5));
    shmx_frame_info fi;
    fi.struct_size = sizeof fi;
    CHECK_OK(shmx_client_latest(c, &fi));
    CHECK(fi.frame_id == 1 && fi.stream_count == 1 && fi.sim_time == 3.5);
    shmx_stream_view v;
    v.struct_size = sizeof v;
    CHECK_OK(shmx_client_frame_stream(c, 0, &v));
    CHECK(v.stream_id == ID_POS && v.elem_count == 2 && v.bytes == sizeof pos);
    CHECK(memcmp((const uint8_t *)shmx_client_base(c) + v.offset, pos, sizeof pos) == 0);
    shmx_client_release(c);
    CHECK_ST(shmx_server_publish_stream(s, 99, pos, 12, 0), SHMX_ESTREAM);
    CHECK_ERR_HAS("99");
    CHECK_ST(shmx_server_publish_stream(s, ID_POS, pos, 13, 0), SHMX_ESIZE);
    CHECK_ERR_HAS("12-byte");
    CHECK_ST(shmx_server_publish_stream(s, ID_PIXELS, big, sizeof big, 0), SHMX_ETOOBIG);
    CHECK_ERR_HAS("frame_bytes_cap");
    CHECK_ST(shmx_server_publish_stream(s, ID_PIXELS, NULL, 4, 0), SHMX_EINVAL);
    CHECK_ST(shmx_server_publish_stream(NULL, ID_PIXELS, big, 4, 0), SHMX_EINVAL);
    CHECK_OK(shmx_client_latest(c, &fi));
    CHECK(fi.frame_id == 1);
    shmx_client_release(c);
    /* An open frame is abandoned, as by begin_frame. */
    uint64_t f;
    CHECK_OK(shmx_server_begin_frame(s, &f));
    CHECK_OK(shmx_server_publish_stream(s, ID_PIXELS, big, 0, 0));
    CHECK_ST(shmx_server_publish(s, f, 0), SHMX_EHANDLE);
    CHECK_OK(shmx_client_latest(c, &fi));
    CHECK(fi.frame_id == 2 && fi.stream_count == 1);
    shmx_client_close(c);
    shmx_server_close(s);
    CHECK_ST(shmx_server_publish_stream(s, ID_POS, pos, 12, 0), SHMX_ECLOSED);
    shmx_server_free(s);
}

/* The slot a publish went to (write_index w names slot (w-1) % slots). */
static uint32_t last_slot_of(shmx_server *s, uint32_t slots)
{
    shmx_header_info h;
    h.struct_size = sizeof h;
    CHECK_OK(shmx_server_header_info(s, &h));
    return (h.write_index - 1u) % slots;
}

/* Large frames go to the most recently written slot no reader needs any
 * more (still in the caches), but never to one holding a frame an attached
 * reader has not read yet: in-order readers lose nothing to it. */
static void test_warm_slots(void)
{
    char name[128];
    shmx_server_config cfg;
    base_config(&cfg);
    cfg.frame_bytes_cap = 1u << 20;
    cfg.slots = 4;
    shmx_server *s = NULL;
    shmx_client *c = NULL;
    REQUIRE_OK(shmx_server_create(t_name(name, sizeof name, "warm"), &cfg, &s));
    REQUIRE_OK(shmx_client_open(name, NULL, &c));
    shmx_frame_info fi;
    fi.struct_size = sizeof fi;
    uint64_t v;
    /* A reader that keeps up: publishes alternate between two slots. */
    uint32_t used[4] = {0, 0, 0, 0};
    for (v = 1; v <= 12; v++) {
        CHECK_OK(shmx_server_publish_stream(s, ID_COUNT, &v, 8, 0));
        used[last_slot_of(s, 4)]++;
        CHECK_OK(shmx_client_latest(c, &fi));
        CHECK(fi.frame_id == v);
    }
    uint32_t busy = 0;
    for (int k = 0; k < 4; k++) busy += used[k] > 1;
    CHECK(busy == 2);
    /* An in-order reader that falls behind by 3 frames gets every one. */
    uint64_t behind = fi.frame_id;
    for (v = 13; v <= 15; v++) CHECK_OK(shmx_server_publish_stream(s, ID_COUNT, &v, 8, 0));
    for (uint64_t want = behind + 1; want <= 15; want++) {
        CHECK_OK(shmx_client_next(c, &fi));
        CHECK(fi.frame_id == want && fi.dropped == 0);
        shmx_stream_view sv;
        sv.struct_size = sizeof sv;
        CHECK_OK(shmx_client_frame_stream(c, 0, &sv));
        uint64_t got;
        memcpy(&got, sv.data, 8);
        CHECK(got == want);
    }
    /* Without readers every slot but the latest is free to reuse. */
    shmx_client_close(c);
    uint32_t a = last_slot_of(s, 4);
    v = 16;
    CHECK_OK(shmx_server_publish_stream(s, ID_COUNT, &v, 8, 0));
    uint32_t b = last_slot_of(s, 4);
    v = 17;
    CHECK_OK(shmx_server_publish_stream(s, ID_COUNT, &v, 8, 0));
    CHECK(b != a && last_slot_of(s, 4) == a);
    shmx_server_destroy(s);
}

/* ----------------------------------------------- EEXIST, stale, unlink */

static void test_exists_and_stale(void)
{
    char name[128], want[64];
    shmx_server_config cfg;
    base_config(&cfg);
    shmx_server *s = NULL, *s2 = NULL;
    REQUIRE_OK(shmx_server_create(t_name(name, sizeof name, "exists"), &cfg, &s));
    /* A live owner: refused, and the message names its pid.  Our own
     * process counts as live (the lock is per open file description). */
    CHECK_ST(shmx_server_create(name, &cfg, &s2), SHMX_EEXIST);
    CHECK(s2 == NULL);
    snprintf(want, sizeof want, "pid %ld", (long)getpid());
    CHECK_ERR_HAS(want);
    CHECK_ERR_HAS(name);
    CHECK_ST(shmx_unlink(name, NULL, 0), SHMX_EEXIST);
    CHECK_ERR_HAS(want);
    CHECK(file_exists(name));
    shmx_server_destroy(s);
    CHECK(!file_exists(name));
    /* A name that is taken by a non-shmx file is not clobbered. */
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", t_shm_dir(), name);
    int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0600);
    REQUIRE(fd >= 0);
    char junk[4096];
    memset(junk, 'j', sizeof junk);
    CHECK(write(fd, junk, sizeof junk) == (ssize_t)sizeof junk);
    close(fd);
    CHECK_ST(shmx_server_create(name, &cfg, &s2), SHMX_EEXIST);
    CHECK_ERR_HAS("not a shmx region");
    shmx_client *c = NULL;
    CHECK_ST(shmx_client_open(name, NULL, &c), SHMX_ECORRUPT);
    CHECK_ST(shmx_unlink(name, NULL, 0), SHMX_ECORRUPT);
    CHECK_OK(shmx_unlink(name, NULL, 1));
    CHECK(!file_exists(name));

#if T_POSIX
    /* A region whose owner died without destroy() is reclaimed. */
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        shmx_server *cs = NULL;
        if (shmx_server_create(name, &cfg, &cs) != SHMX_OK) _exit(3);
        uint64_t fr;
        if (shmx_server_begin_frame(cs, &fr) != SHMX_OK) _exit(4);
        if (shmx_server_publish(cs, fr, 1.0) != SHMX_OK) _exit(5);
        _exit(0); /* no destroy: the OS drops the liveness lock */
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(file_exists(name));
    shmx_inspector *in = NULL;
    REQUIRE_OK(shmx_inspector_open(name, NULL, &in));
    shmx_header_info h;
    h.struct_size = sizeof h;
    CHECK_OK(shmx_inspector_header_info(in, &h));
    CHECK(h.owner_alive == SHMX_DEAD && h.owner_pid == (uint64_t)pid && h.frame_seq == 1);
    uint64_t old_session = h.session_id;
    shmx_inspector_close(in);
    REQUIRE_OK(shmx_server_create(name, &cfg, &s));
    CHECK_OK(shmx_server_header_info(s, &h));
    CHECK(h.session_id != old_session && h.frame_seq == 0 && h.owner_pid == (uint64_t)getpid());
    shmx_server_destroy(s);
    CHECK(!file_exists(name));

    /* The same for shmx_unlink: a dead owner's region may be removed. */
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        shmx_server *cs = NULL;
        _exit(shmx_server_create(name, &cfg, &cs) == SHMX_OK ? 0 : 3);
    }
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_OK(shmx_unlink(name, NULL, 0));
    CHECK(!file_exists(name));
#endif

    /* force removes even a live server's name; that server's destroy then
     * leaves a new region of the same name alone. */
    REQUIRE_OK(shmx_server_create(name, &cfg, &s));
    CHECK_OK(shmx_unlink(name, NULL, 1));
    CHECK(!file_exists(name));
    REQUIRE_OK(shmx_server_create(name, &cfg, &s2));
    shmx_server_destroy(s);
    CHECK(file_exists(name));
    shmx_server_destroy(s2);
    CHECK(!file_exists(name));
}

/* -------------------------------------------------- destroy, reconnect */

struct waiter_arg {
    shmx_client *c;
    int64_t timeout_ns;
    shmx_status result;
};

static void *waiter(void *p)
{
    struct waiter_arg *a = (struct waiter_arg *)p;
    a->result = shmx_client_wait(a->c, a->timeout_ns);
    return NULL;
}

static void test_wait_destroy_reconnect(void)
{
    char name[128];
    shmx_server_config cfg;
    base_config(&cfg);
    shmx_server *s = NULL;
    REQUIRE_OK(shmx_server_create(t_name(name, sizeof name, "life"), &cfg, &s));
    shmx_client *c = NULL;
    REQUIRE_OK(shmx_client_open(name, NULL, &c));

    /* A waiter in another thread is woken by a publish. */
    struct waiter_arg wa = {c, 5000000000LL, SHMX_EINVAL};
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, waiter, &wa) == 0);
    t_sleep_us(30000);
    uint64_t t0 = t_now_ns();
    publish_one(s, 10, 0, 1, 1.0);
    pthread_join(th, NULL);
    CHECK_ST(wa.result, SHMX_OK);
    CHECK(t_now_ns() - t0 < 4000000000ull);
    shmx_frame_info fi;
    fi.struct_size = sizeof fi;
    CHECK_OK(shmx_client_latest(c, &fi));
    CHECK(fi.frame_id == 1);

    uint64_t session = 0;
    {
        shmx_header_info h;
        h.struct_size = sizeof h;
        CHECK_OK(shmx_client_header_info(c, &h));
        session = h.session_id;
    }
    /* Destroy while a waiter sleeps: it learns the server is gone. */
    wa.result = SHMX_EINVAL;
    REQUIRE(pthread_create(&th, NULL, waiter, &wa) == 0);
    t_sleep_us(30000);
    shmx_server_destroy(s);
    pthread_join(th, NULL);
    CHECK_ST(wa.result, SHMX_ECLOSED);
    CHECK(!file_exists(name));
    /* The mapping stays valid: the pinned frame is still readable. */
    check_frame(c, 10, 0, 1);
    CHECK(shmx_client_server_alive(c) == SHMX_DEAD);
    shmx_header_info h;
    h.struct_size = sizeof h;
    CHECK_OK(shmx_client_header_info(c, &h));
    CHECK(h.closed == 1 && h.owner_alive == SHMX_DEAD);
    CHECK_ST(shmx_client_wait(c, 1000000), SHMX_ECLOSED);
    CHECK_ST(shmx_client_reconnect(c), SHMX_ENOENT);
    /* A new server under the same name: reconnect picks it up. */
    REQUIRE_OK(shmx_server_create(name, &cfg, &s));
    CHECK_OK(shmx_client_reconnect(c));
    CHECK_OK(shmx_client_header_info(c, &h));
    CHECK(h.session_id != session && h.closed == 0 && h.readers_connected == 1);
    CHECK(shmx_client_server_alive(c) == SHMX_ALIVE);
    CHECK_ST(shmx_client_latest(c, &fi), SHMX_EAGAIN);
    publish_one(s, 20, 5, 1, 2.0);
    CHECK_OK(shmx_client_wait(c, 1000000000));
    CHECK_OK(shmx_client_latest(c, &fi));
    check_frame(c, 20, 5, 1);

    /* Detach leaves the slot but keeps the mapping until free. */
    shmx_client_detach(c);
    CHECK_ST(shmx_client_latest(c, &fi), SHMX_ECLOSED);
    CHECK_ST(shmx_client_send_control(c, SHMX_TLV_CONTROL_USER, "x", 1), SHMX_ECLOSED);
    CHECK(shmx_client_base(c) != NULL);
    CHECK_OK(shmx_server_header_info(s, &h));
    CHECK(h.readers_connected == 0);
    shmx_client_free(c);
    shmx_server_destroy(s);
}

/* ------------------------------------------------------------- control */

static void test_control(void)
{
    char name[128];
    shmx_server_config cfg;
    base_config(&cfg);
    cfg.control_per_reader = 256; /* 240 usable bytes */
    shmx_server *s = NULL;
    REQUIRE_OK(shmx_server_create(t_name(name, sizeof name, "ctl"), &cfg, &s));
    shmx_client *a = NULL, *b = NULL;
    REQUIRE_OK(shmx_client_open(name, NULL, &a));
    REQUIRE_OK(shmx_client_open(name, NULL, &b));
    CHECK(shmx_client_reader_id(a) != 0 && shmx_client_reader_id(a) != shmx_client_reader_id(b));

    shmx_control_msg m;
    uint8_t buf[512];
    memset(&m, 0, sizeof m);
    m.struct_size = sizeof m;
    CHECK_ST(shmx_server_next_control(s, &m, buf, sizeof buf), SHMX_EAGAIN);
    CHECK_ST(shmx_server_wait_control(s, 1000000), SHMX_ETIMEDOUT);
    CHECK_ST(shmx_server_next_control(s, NULL, buf, sizeof buf), SHMX_EINVAL);

    CHECK_OK(shmx_client_send_control(a, SHMX_TLV_CONTROL_USER, "hello", 5));
    CHECK_OK(shmx_client_send_control(b, 0x3001, "from b", 6));
    CHECK_OK(shmx_client_send_control(a, 0x3002, NULL, 0));
    CHECK_OK(shmx_server_wait_control(s, 0));
    /* Too small a buffer: ETOOBIG with the length, the message is kept. */
    memset(&m, 0, sizeof m);
    m.struct_size = sizeof m;
    CHECK_ST(shmx_server_next_control(s, &m, buf, 2), SHMX_ETOOBIG);
    CHECK(m.length == 5);
    CHECK_ST(shmx_server_next_control(s, &m, NULL, 0), SHMX_ETOOBIG);
    int got_a = 0, got_b = 0;
    for (int i = 0; i < 3; i++) {
        memset(&m, 0, sizeof m);
        m.struct_size = sizeof m;
        CHECK_OK(shmx_server_next_control(s, &m, buf, sizeof buf));
        if (m.reader_id == shmx_client_reader_id(a)) {
            /* Per client, messages arrive in the order sent. */
            if (got_a == 0) CHECK(m.type == SHMX_TLV_CONTROL_USER && m.length == 5 && memcmp(buf, "hello", 5) == 0);
            else CHECK(m.type == 0x3002 && m.length == 0);
            got_a++;
        } else {
            CHECK(m.reader_id == shmx_client_reader_id(b));
            CHECK(m.type == 0x3001 && m.length == 6 && memcmp(buf, "from b", 6) == 0);
            got_b++;
        }
        CHECK(m.reader_index < 4);
    }
    CHECK(got_a == 2 && got_b == 1);
    CHECK_ST(shmx_server_next_control(s, &m, buf, sizeof buf), SHMX_EAGAIN);

    /* Refusals on the client side. */
    CHECK_ST(shmx_client_send_control(a, 0, "x", 1), SHMX_EINVAL);
    CHECK_ST(shmx_client_send_control(a, 5, NULL, 3), SHMX_EINVAL);
    CHECK_ST(shmx_client_send_control(a, 5, buf, 240), SHMX_ETOOBIG);
    CHECK_ST(shmx_client_send_control(NULL, 5, buf, 1), SHMX_EINVAL);
    /* The largest message: 8-byte header + 232 bytes = the whole 240-byte
     * ring.  The write position is mid-ring (earlier messages), so the first
     * try pads to the end and is refused; once the server has drained the
     * padding, the message goes through (it never stays refused forever). */
    uint8_t big[232], rx[512];
    memset(big, 0xAB, sizeof big);
    CHECK_ST(shmx_client_send_control(a, 5, big, 232), SHMX_EFULL);
    CHECK_ERR_HAS("full");
    CHECK_ST(shmx_server_next_control(s, &m, rx, sizeof rx), SHMX_EAGAIN);
    CHECK_OK(shmx_client_send_control(a, 5, big, 232));
    CHECK_ST(shmx_client_send_control(a, 5, big, 1), SHMX_EFULL);
    memset(rx, 0, sizeof rx);
    CHECK_OK(shmx_server_next_control(s, &m, rx, sizeof rx));
    CHECK(m.length == 232 && rx[0] == 0xAB && rx[231] == 0xAB);
    /* From an empty ring at any position, a full-ring message needs at most
     * one refusal (the padding) before it is accepted. */
    for (int i = 0; i < 15; i++) {
        CHECK_OK(shmx_client_send_control(a, 6, big, 8)); /* moves the position by 16 */
        CHECK_OK(shmx_server_next_control(s, &m, rx, sizeof rx));
        shmx_status st = shmx_client_send_control(a, 5, big, 232);
        if (st == SHMX_EFULL) {
            CHECK_ST(shmx_server_next_control(s, &m, rx, sizeof rx), SHMX_EAGAIN);
            st = shmx_client_send_control(a, 5, big, 232);
        }
        CHECK_OK(st);
        CHECK_OK(shmx_server_next_control(s, &m, rx, sizeof rx));
        CHECK(m.type == 5 && m.length == 232);
    }
    /* Fill to EFULL with 24-byte messages (32 bytes each in the ring), drain,
     * several times so the ring wraps at every offset. */
    uint32_t seq_sent = 0, seq_got = 0;
    for (int round = 0; round < 20; round++) {
        int sent = 0;
        for (;;) {
            uint8_t msg[24];
            memset(msg, (int)(seq_sent & 0xFF), sizeof msg);
            memcpy(msg, &seq_sent, 4);
            uint32_t len = 4u + (seq_sent * 7u) % 21u;
            shmx_status st = shmx_client_send_control(b, 9, msg, len);
            if (st == SHMX_EFULL) break;
            CHECK_OK(st);
            seq_sent++;
            sent++;
            if (sent > 100) break;
        }
        CHECK(sent >= 7 && sent <= 15);
        for (;;) {
            shmx_status st = shmx_server_next_control(s, &m, buf, sizeof buf);
            if (st == SHMX_EAGAIN) break;
            CHECK_OK(st);
            uint32_t q;
            memcpy(&q, buf, 4);
            CHECK(q == seq_got && m.length == 4u + (q * 7u) % 21u && m.type == 9);
            CHECK(m.length <= 4 || buf[m.length - 1] == (uint8_t)(q & 0xFF));
            seq_got++;
        }
        CHECK(seq_got == seq_sent);
    }

    /* Partial msg struct: only the fields that fit are written. */
    CHECK_OK(shmx_client_send_control(a, 77, "z", 1));
    unsigned char raw[sizeof(shmx_control_msg)];
    memset(raw, 0xEE, sizeof raw);
    shmx_control_msg *pm = (shmx_control_msg *)raw;
    pm->struct_size = (uint32_t)offsetof(shmx_control_msg, length);
    CHECK_OK(shmx_server_next_control(s, pm, buf, sizeof buf));
    CHECK(pm->struct_size == offsetof(shmx_control_msg, length) && pm->type == 77);
    CHECK(raw[offsetof(shmx_control_msg, length)] == 0xEE && raw[sizeof raw - 1] == 0xEE);
    /* ...also when refusing with SHMX_ETOOBIG, which reports the length
     * only to callers whose struct has that field. */
    CHECK_OK(shmx_client_send_control(a, 78, "0123456789", 10));
    memset(raw, 0xEE, sizeof raw);
    pm->struct_size = (uint32_t)offsetof(shmx_control_msg, length);
    CHECK_ST(shmx_server_next_control(s, pm, buf, 4), SHMX_ETOOBIG);
    CHECK(raw[offsetof(shmx_control_msg, length)] == 0xEE);
    memset(&m, 0, sizeof m);
    m.struct_size = sizeof m;
    CHECK_ST(shmx_server_next_control(s, &m, buf, 4), SHMX_ETOOBIG);
    CHECK(m.length == 10);
    CHECK_OK(shmx_server_next_control(s, &m, buf, sizeof buf));
    CHECK(m.type == 78 && m.length == 10 && memcmp(buf, "0123456789", 10) == 0);

    shmx_client_close(b);
    shmx_client_close(a);
    shmx_server_destroy(s);

    /* No control rings at all. */
    cfg.control_per_reader = 0;
    REQUIRE_OK(shmx_server_create(t_name(name, sizeof name, "noctl"), &cfg, &s));
    REQUIRE_OK(shmx_client_open(name, NULL, &a));
    CHECK_ST(shmx_client_send_control(a, 5, "x", 1), SHMX_EINVAL);
    CHECK_ST(shmx_server_next_control(s, &m, buf, sizeof buf), SHMX_EAGAIN);
    CHECK_ST(shmx_server_wait_control(s, 1000), SHMX_EINVAL);
    shmx_client_close(a);
    shmx_server_destroy(s);
}

struct sender_arg {
    shmx_client *c;
    int sent;
};

static void *late_sender(void *p)
{
    struct sender_arg *a = (struct sender_arg *)p;
    t_sleep_us(30000);
    a->sent = shmx_client_send_control(a->c, 0x3333, "wake", 4) == SHMX_OK;
    return NULL;
}

static void test_control_wake(void)
{
    char name[128];
    shmx_server_config cfg;
    base_config(&cfg);
    shmx_server *s = NULL;
    REQUIRE_OK(shmx_server_create(t_name(name, sizeof name, "ctlwake"), &cfg, &s));
    shmx_client *c = NULL;
    REQUIRE_OK(shmx_client_open(name, NULL, &c));
    struct sender_arg sa = {c, 0};
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, late_sender, &sa) == 0);
    uint64_t t0 = t_now_ns();
    CHECK_OK(shmx_server_wait_control(s, 5000000000LL));
    CHECK(t_now_ns() - t0 < 4000000000ull);
    pthread_join(th, NULL);
    CHECK(sa.sent);
    shmx_control_msg m;
    m.struct_size = sizeof m;
    char buf[16];
    CHECK_OK(shmx_server_next_control(s, &m, buf, sizeof buf));
    CHECK(m.type == 0x3333 && m.length == 4 && memcmp(buf, "wake", 4) == 0);
    shmx_client_close(c);
    shmx_server_destroy(s);
}

/* ------------------------------------------------------------- readers */

static void test_readers(void)
{
    char name[128];
    shmx_server_config cfg;
    base_config(&cfg);
    cfg.reader_slots = 2;
    shmx_server *s = NULL;
    REQUIRE_OK(shmx_server_create(t_name(name, sizeof name, "readers"), &cfg, &s));
    shmx_client *a = NULL, *b = NULL, *x = NULL;
    REQUIRE_OK(shmx_client_open(name, NULL, &a));
    REQUIRE_OK(shmx_client_open(name, NULL, &b));
    CHECK_ST(shmx_client_open(name, NULL, &x), SHMX_ENOREADER);
    CHECK(x == NULL);
    CHECK_ERR_HAS("reader slots");

    publish_one(s, 8, 0, 1, 1.0);
    publish_one(s, 8, 0, 2, 2.0);
    shmx_frame_info fi;
    fi.struct_size = sizeof fi;
    CHECK_OK(shmx_client_latest(a, &fi));
    publish_one(s, 8, 0, 3, 3.0);
    CHECK_OK(shmx_client_next(a, &fi));

    shmx_reader_info r[4];
    uint32_t count = 0;
    memset(r, 0, sizeof r);
    for (int i = 0; i < 4; i++) r[i].struct_size = sizeof r[i];
    CHECK_OK(shmx_server_readers(s, r, 4, &count));
    CHECK(count == 2);
    for (uint32_t i = 0; i < 2; i++) {
        CHECK(r[i].index == i && r[i].in_use == 1 && r[i].legacy == 0);
        CHECK(r[i].alive == SHMX_ALIVE && r[i].pid == (uint64_t)getpid());
        CHECK(r[i].heartbeat != 0);
    }
    shmx_reader_info *ra = r[0].reader_id == shmx_client_reader_id(a) ? &r[0] : &r[1];
    CHECK(ra->reader_id == shmx_client_reader_id(a));
    CHECK(ra->frames_read == 2 && ra->last_frame_seen == 3);
    /* cap smaller than the slots: count still says how many there are. */
    CHECK_OK(shmx_server_readers(s, r, 1, &count));
    CHECK(count == 2);
    CHECK_OK(shmx_server_readers(s, NULL, 0, &count));
    CHECK(count == 2);
    /* A partial reader_info struct. */
    unsigned char raw[sizeof(shmx_reader_info)];
    memset(raw, 0xEE, sizeof raw);
    ((shmx_reader_info *)raw)->struct_size = (uint32_t)offsetof(shmx_reader_info, reader_id);
    CHECK_OK(shmx_server_readers(s, (shmx_reader_info *)raw, 1, &count));
    CHECK(raw[offsetof(shmx_reader_info, reader_id)] == 0xEE);

    /* The inspector sees the same readers, and attaches none itself. */
    shmx_inspector *in = NULL;
    REQUIRE_OK(shmx_inspector_open(name, NULL, &in));
    shmx_reader_info ir[2];
    ir[0].struct_size = ir[1].struct_size = sizeof ir[0];
    CHECK_OK(shmx_inspector_readers(in, ir, 2, &count));
    CHECK(count == 2 && ir[0].in_use && ir[1].in_use && ir[0].alive == SHMX_ALIVE);
    shmx_header_info h;
    h.struct_size = sizeof h;
    CHECK_OK(shmx_inspector_header_info(in, &h));
    CHECK(h.readers_connected == 2);

    /* Nothing to reap while both live. */
    uint32_t reaped = 99;
    CHECK_OK(shmx_server_reap_dead_readers(s, &reaped));
    CHECK(reaped == 0);
    CHECK_OK(shmx_server_reap_stale_readers(s, shmx_now_ns(), 3600000000000ull, &reaped));
    CHECK(reaped == 0); /* fresh heartbeats (a silent reader is evicted: test_evict) */

    /* Closing frees the slot for another reader. */
    shmx_client_close(b);
    CHECK_OK(shmx_inspector_readers(in, ir, 2, &count));
    CHECK(ir[0].in_use + ir[1].in_use == 1);
    REQUIRE_OK(shmx_client_open(name, NULL, &x));
    shmx_client_close(x);

#if T_POSIX
    /* A reader process that dies without closing: its slot and its pin are
     * released by reaping (its lock went with it). */
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        shmx_client *cc = NULL;
        shmx_frame_info cfi;
        cfi.struct_size = sizeof cfi;
        if (shmx_client_open(name, NULL, &cc) != SHMX_OK) _exit(3);
        if (shmx_client_latest(cc, &cfi) != SHMX_OK) _exit(4);
        _exit(0);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_OK(shmx_inspector_readers(in, ir, 2, &count));
    int dead = 0;
    for (int i = 0; i < 2; i++)
        if (ir[i].in_use && ir[i].pid == (uint64_t)pid) {
            dead++;
            CHECK(ir[i].alive == SHMX_DEAD);
        }
    CHECK(dead == 1);
    CHECK_OK(shmx_server_reap_dead_readers(s, &reaped));
    CHECK(reaped == 1);
    CHECK_OK(shmx_server_header_info(s, &h));
    CHECK(h.readers_connected == 1);
    /* The dead reader's pin is gone: all 3 slots are writable again. */
    for (uint64_t k = 4; k < 10; k++) publish_one(s, 8, 0, k, 0);
    /* Opening a new client also reaps dead slots by itself. */
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        shmx_client *cc = NULL;
        _exit(shmx_client_open(name, NULL, &cc) == SHMX_OK ? 0 : 3);
    }
    REQUIRE(waitpid(pid, &status, 0) == pid);
    REQUIRE_OK(shmx_client_open(name, NULL, &x));
    shmx_client_close(x);
#endif

    shmx_inspector_close(in);
    shmx_client_close(a);
    shmx_server_destroy(s);
}

/* --------------------------------------------------- EBUSY, struct_size */

static void test_busy_and_struct_size(void)
{
    char name[128];
    shmx_server_config cfg;
    base_config(&cfg);
    cfg.slots = 1;
    shmx_server *s = NULL;
    REQUIRE_OK(shmx_server_create(t_name(name, sizeof name, "busy"), &cfg, &s));
    shmx_client *c = NULL;
    REQUIRE_OK(shmx_client_open(name, NULL, &c));
    publish_one(s, 16, 3, 1, 1.0);

    /* An old caller's shmx_frame_info: only the fields it knows are set. */
    unsigned char raw[sizeof(shmx_frame_info) + 8];
    memset(raw, 0xEE, sizeof raw);
    shmx_frame_info *fi = (shmx_frame_info *)raw;
    fi->struct_size = (uint32_t)offsetof(shmx_frame_info, frame_id);
    CHECK_OK(shmx_client_latest(c, fi));
    CHECK(fi->struct_size == offsetof(shmx_frame_info, frame_id));
    CHECK(fi->stream_count == 3 && fi->tlv_count == 3);
    CHECK(raw[offsetof(shmx_frame_info, frame_id)] == 0xEE);
    CHECK(raw[sizeof(shmx_frame_info)] == 0xEE);
    /* struct_size 0 means "the whole struct this header declares". */
    shmx_frame_info full;
    memset(&full, 0, sizeof full);
    CHECK_OK(shmx_client_latest(c, &full));
    CHECK(full.struct_size == sizeof full && full.frame_id == 1);
    /* A newer caller's larger struct: the library writes only its part. */
    memset(raw, 0xEE, sizeof raw);
    fi->struct_size = (uint32_t)sizeof raw;
    CHECK_OK(shmx_client_latest(c, fi));
    CHECK(fi->struct_size == sizeof(shmx_frame_info) && fi->frame_id == 1);
    CHECK(raw[sizeof(shmx_frame_info)] == 0xEE);
    shmx_stream_view v;
    memset(&v, 0xEE, sizeof v);
    v.struct_size = (uint32_t)offsetof(shmx_stream_view, offset);
    CHECK_OK(shmx_client_frame_stream(c, 0, &v));
    CHECK(v.bytes == 16 && ((unsigned char *)&v)[offsetof(shmx_stream_view, offset)] == 0xEE);
    shmx_header_info h;
    memset(&h, 0xEE, sizeof h);
    h.struct_size = (uint32_t)offsetof(shmx_header_info, magic);
    CHECK_ST(shmx_inspector_header_info(NULL, &h), SHMX_EINVAL);
    CHECK_OK(shmx_client_header_info(c, &h));
    CHECK(h.version_major == 2 && h.extended == 1 && h.magic == 0xEEEEEEEEEEEEEEEEull);

    /* The only slot is pinned by the client: the producer must not touch it. */
    uint64_t f;
    CHECK_ST(shmx_server_begin_frame(s, &f), SHMX_EBUSY);
    CHECK_ERR_HAS("pinned");
    h.struct_size = sizeof h;
    CHECK_OK(shmx_server_header_info(s, &h));
    CHECK(h.overruns == 1);
    shmx_stream_view pv;
    pv.struct_size = sizeof pv;
    CHECK_OK(shmx_client_frame_stream(c, 0, &pv));
    CHECK(((const uint8_t *)pv.data)[0] == 3 && ((const uint8_t *)pv.data)[15] == 18);
    /* Released: the producer may write again. */
    shmx_client_release(c);
    publish_one(s, 16, 9, 2, 2.0);
    CHECK_OK(shmx_client_next(c, &full));
    CHECK(full.frame_id == 2 && full.dropped == 0);
    check_frame(c, 16, 9, 2);
    shmx_client_close(c);
    shmx_server_destroy(s);
}

/* -------------------------------------------------- static directory */

static void test_write_static(void)
{
    char name[128];
    shmx_server_config cfg;
    base_config(&cfg);
    cfg.stream_count = 1;
    cfg.static_bytes_cap = 256;
    shmx_server *s = NULL;
    REQUIRE_OK(shmx_server_create(t_name(name, sizeof name, "static"), &cfg, &s));
    shmx_client *c = NULL;
    REQUIRE_OK(shmx_client_open(name, NULL, &c));
    CHECK(shmx_client_stream_count(c) == 1);
    shmx_header_info h0, h1;
    h0.struct_size = h1.struct_size = sizeof h0;
    CHECK_OK(shmx_server_header_info(s, &h0));
    /* Append a stream descriptor TLV the 1.0.1 way: it extends the schema. */
    static unsigned char tlv[512];
    uint32_t head[2] = {SHMX_TLV_STATIC_DIR, 32 + 5};
    uint32_t desc[8] = {42, SHMX_DT_I16, 1, 0, 2, 0, 5, 0};
    memcpy(tlv, head, 8);
    memcpy(tlv + 8, desc, 32);
    memcpy(tlv + 40, "extra", 5);
    CHECK_OK(shmx_server_write_static(s, tlv, 48));
    CHECK(shmx_server_stream_count(s) == 2);
    CHECK_OK(shmx_server_header_info(s, &h1));
    CHECK(h1.static_gen == h0.static_gen + 1 && h1.static_bytes_used == h0.static_bytes_used + 48);
    CHECK(h1.static_hash != h0.static_hash);
    CHECK_OK(shmx_client_refresh_static(c));
    CHECK(shmx_client_stream_count(c) == 2);
    shmx_stream_info si;
    si.struct_size = sizeof si;
    CHECK_OK(shmx_client_stream_info(c, 1, &si));
    CHECK(si.stream_id == 42 && si.dtype == SHMX_DT_I16 && strcmp(si.name, "extra") == 0);
    /* The new stream can be published. */
    uint64_t f;
    int16_t vals[3] = {1, -2, 3};
    CHECK_OK(shmx_server_begin_frame(s, &f));
    CHECK_OK(shmx_server_append(s, f, 42, vals, sizeof vals, 3));
    CHECK_OK(shmx_server_publish(s, f, 0));
    CHECK_ST(shmx_server_write_static(s, tlv, 250), SHMX_ETOOBIG);
    CHECK_OK(shmx_server_write_static(s, tlv, 0));
    shmx_client_close(c);
    shmx_server_destroy(s);

    /* A region created without streams has no framing room: a stream
     * added later cannot fill frame_bytes_cap, and publish_stream says so
     * before it claims the only slot (its frame stays readable). */
    cfg.stream_count = 0;
    cfg.slots = 1;
    cfg.frame_bytes_cap = 64;
    REQUIRE_OK(shmx_server_create(t_name(name, sizeof name, "static0"), &cfg, &s));
    CHECK_OK(shmx_server_begin_frame(s, &f));
    CHECK_OK(shmx_server_publish(s, f, 1.0));
    CHECK_OK(shmx_server_write_static(s, tlv, 48));
    REQUIRE_OK(shmx_client_open(name, NULL, &c));
    static int16_t wide[32];
    CHECK_ST(shmx_server_publish_stream(s, 42, wide, sizeof wide, 2.0), SHMX_ETOOBIG);
    shmx_frame_info fi;
    fi.struct_size = sizeof fi;
    CHECK_OK(shmx_client_latest(c, &fi));
    CHECK(fi.frame_id == 1 && fi.sim_time == 1.0);
    shmx_client_release(c);
    CHECK_OK(shmx_server_publish_stream(s, 42, wide, sizeof wide - 32, 3.0));
    CHECK_OK(shmx_client_latest(c, &fi));
    CHECK(fi.frame_id == 2 && fi.stream_count == 1);
    shmx_client_close(c);
    shmx_server_destroy(s);
}

/* ------------------------------------------- corrupt and legacy regions */

static void write_file(const char *name, const void *data, size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", t_shm_dir(), name);
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, data, n) == (ssize_t)n);
    close(fd);
}

static void test_corrupt_and_legacy(void)
{
    char name[128];
    unsigned char img[4096];
    shmx_client *c = NULL;
    shmx_inspector *in = NULL;
    t_name(name, sizeof name, "corrupt");

    memset(img, 0, sizeof img);
    write_file(name, img, 64); /* smaller than a header */
    CHECK_ST(shmx_client_open(name, NULL, &c), SHMX_ECORRUPT);
    write_file(name, img, sizeof img); /* no magic */
    CHECK_ST(shmx_client_open(name, NULL, &c), SHMX_ECORRUPT);
    CHECK_ERR_HAS("magic");
    CHECK_ST(shmx_inspector_open(name, NULL, &in), SHMX_ECORRUPT);

    /* A well-formed header of a later layout major. */
    char real[128];
    shmx_server_config cfg;
    base_config(&cfg);
    shmx_server *s = NULL;
    REQUIRE_OK(shmx_server_create(t_name(real, sizeof real, "template"), &cfg, &s));
    memcpy(img, shmx_server_base(s), sizeof img);
    uint32_t three = 3;
    memcpy(img + 8, &three, 4);
    write_file(name, img, sizeof img);
    CHECK_ST(shmx_client_open(name, NULL, &c), SHMX_EVERSION);
    /* Geometry that points outside the file. */
    memcpy(img, shmx_server_base(s), sizeof img);
    write_file(name, img, sizeof img);
    CHECK_ST(shmx_client_open(name, NULL, &c), SHMX_ECORRUPT);
    CHECK_OK(shmx_unlink(name, NULL, 1));

    /* A region without our extension block is a legacy (shmx 1.0.1) one:
     * clear the extension magic of a live region to get one. */
    REQUIRE_OK(shmx_client_open(real, NULL, &c));
    shmx_client_close(c);
    uint64_t zero = 0;
    memcpy((uint8_t *)shmx_server_base(s) + 128, &zero, 8);
    REQUIRE_OK(shmx_client_open(real, NULL, &c));
    shmx_header_info h;
    h.struct_size = sizeof h;
    CHECK_OK(shmx_client_header_info(c, &h));
    CHECK(h.extended == 0 && h.owner_alive == SHMX_UNKNOWN);
    CHECK(shmx_client_server_alive(c) == SHMX_UNKNOWN);
    shmx_frame_info fi;
    fi.struct_size = sizeof fi;
    CHECK_ST(shmx_client_next(c, &fi), SHMX_ELEGACY);
    CHECK_ST(shmx_client_latest(c, &fi), SHMX_EAGAIN);
    /* The server sees a reader without our mark: with the AUTO policy it
     * now writes the legacy checksum, which the legacy read path checks. */
    publish_one(s, 40, 11, 1, 1.0);
    CHECK_OK(shmx_client_wait(c, 1000000000));
    CHECK_OK(shmx_client_latest(c, &fi));
    CHECK(fi.frame_id == 1);
    check_frame(c, 40, 11, 1);
    shmx_reader_info r[4];
    uint32_t count = 0;
    for (int i = 0; i < 4; i++) r[i].struct_size = sizeof r[i];
    CHECK_OK(shmx_server_readers(s, r, 4, &count));
    CHECK(r[0].in_use && r[0].legacy == 1 && r[0].alive == SHMX_UNKNOWN);
    /* Legacy readers are reaped by heartbeat age only. */
    uint32_t reaped = 0;
    CHECK_OK(shmx_server_reap_stale_readers(s, shmx_now_ns(), 3600000000000ull, &reaped));
    CHECK(reaped == 0);
    CHECK_OK(shmx_server_reap_stale_readers(s, shmx_now_ns() + 7200000000000ull, 1000, &reaped));
    CHECK(reaped == 1);
    shmx_header_info sh;
    sh.struct_size = sizeof sh;
    CHECK_OK(shmx_server_header_info(s, &sh));
    CHECK(sh.readers_connected == 0);
    /* The reaped client closing later must not free the slot a second time. */
    shmx_client_close(c);
    CHECK_OK(shmx_server_header_info(s, &sh));
    CHECK(sh.readers_connected == 0);
    /* unlink refuses a region whose owner cannot be checked, unless forced. */
    CHECK_ST(shmx_unlink(real, NULL, 0), SHMX_EEXIST);
    shmx_server_destroy(s);
}

/* ----------------------------------------------------- last error, dir */

static void *other_thread_error(void *p)
{
    (void)p;
    shmx_check_name("a b");
    return NULL;
}

static void test_thread_local_error_and_dir(void)
{
    CHECK_ST(shmx_check_name("x/y"), SHMX_ENAME);
    char before[512];
    snprintf(before, sizeof before, "%s", shmx_last_error());
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, other_thread_error, NULL) == 0);
    pthread_join(th, NULL);
    CHECK(strcmp(before, shmx_last_error()) == 0); /* the other thread's error is its own */
    /* A successful create clears the message. */
    char name[128];
    shmx_server *s = NULL;
    REQUIRE_OK(shmx_server_create(t_name(name, sizeof name, "clear"), NULL, &s));
    CHECK(shmx_last_error()[0] == 0);
    shmx_server_destroy(s);

    /* An explicit directory (not the default): config dir and open dir. */
    char dir[256];
    snprintf(dir, sizeof dir, "/tmp/shmxtest-c-dir-%ld", (long)getpid());
    REQUIRE(T_MKDIR(dir) == 0);
    shmx_server_config cfg;
    base_config(&cfg);
    cfg.dir = dir;
    REQUIRE_OK(shmx_server_create("in-dir", &cfg, &s));
    CHECK(!file_exists("in-dir"));
    shmx_client *c = NULL;
    CHECK_ST(shmx_client_open("in-dir", NULL, &c), SHMX_ENOENT);
    shmx_open_options opt;
    shmx_open_options_init(&opt);
    opt.dir = dir;
    REQUIRE_OK(shmx_client_open("in-dir", &opt, &c));
    publish_one(s, 5, 1, 1, 1.0);
    shmx_frame_info fi;
    fi.struct_size = sizeof fi;
    CHECK_OK(shmx_client_latest(c, &fi));
    /* An options struct too small to hold `dir` ignores it. */
    shmx_inspector *in = NULL;
    opt.struct_size = sizeof(uint32_t);
    CHECK_ST(shmx_inspector_open("in-dir", &opt, &in), SHMX_ENOENT);
    opt.struct_size = sizeof opt;
    REQUIRE_OK(shmx_inspector_open("in-dir", &opt, &in));
    shmx_inspector_close(in);
    shmx_client_close(c);
    shmx_server_destroy(s);
    CHECK(rmdir(dir) == 0); /* fails if the region was left behind */
}

#if T_POSIX /* fork(), poll() and the wake fds: POSIX (the wake fds: Linux) */
/* ----------------------------------------------------------------- fork */

/* What fork() does (shmx.h): every handle made before it is dead in the
 * child; it touches nothing of the parent's, and the child does not keep
 * the parent's liveness locks. */
static void test_fork(void)
{
    char name[128];
    t_name(name, sizeof name, "fork");
    shmx_server_config cfg;
    base_config(&cfg);
    cfg.slots = 2;
    shmx_server *s = NULL;
    shmx_client *a = NULL;
    REQUIRE_OK(shmx_server_create(name, &cfg, &s));
    REQUIRE_OK(shmx_client_open(name, NULL, &a));
    publish_one(s, 64, 7, 1, 0.0);
    shmx_frame_info fi;
    fi.struct_size = sizeof fi;
    CHECK_OK(shmx_client_latest(a, &fi));
    shmx_stream_view v;
    v.struct_size = sizeof v;
    CHECK_OK(shmx_client_frame_stream(a, 0, &v));
    uint8_t before[64];
    memcpy(before, v.data, sizeof before);

    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        int bad = 0;
        shmx_frame_info cfi;
        cfi.struct_size = sizeof cfi;
        bad |= shmx_client_latest(a, &cfi) != SHMX_EFORK;
        bad |= strstr(shmx_last_error(), "fork()") == NULL;
        uint8_t px = 1;
        bad |= shmx_server_publish_stream(s, ID_PIXELS, &px, 1, 0.0) != SHMX_EFORK;
        shmx_client_close(a);    /* frees our copy, leaves the parent's pin and slot */
        shmx_server_destroy(s);  /* neither unlinks nor marks the parent's region closed */
        _exit(bad ? 1 : 0);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(file_exists(name));
    /* Our pin survived the child: the producer writes around it. */
    for (uint64_t k = 2; k < 12; k++) publish_one(s, 64, 9, k, 0.0);
    CHECK(memcmp(v.data, before, sizeof before) == 0);
    CHECK(shmx_client_server_alive(a) == SHMX_ALIVE);
    CHECK_OK(shmx_client_latest(a, &fi));
    CHECK(fi.frame_id == 11);
    shmx_client_close(a);
    shmx_server_destroy(s);
    CHECK(!file_exists(name));

    /* A producer whose child lives on after the producer died: the child
     * must not keep the region's liveness lock. */
    int hold[2];
    REQUIRE(pipe(hold) == 0);
    pid_t producer = fork();
    REQUIRE(producer >= 0);
    if (producer == 0) {
        shmx_server *ps = NULL;
        if (shmx_server_create(name, &cfg, &ps) != SHMX_OK) _exit(3);
        int ready[2];
        if (pipe(ready) != 0) _exit(5);
        pid_t child = fork();
        if (child == 0) {
            char c = 'r';
            close(hold[1]);
            /* Past fork(), its handlers have run: say so, then live on
             * until the test closes the pipe. */
            (void)!write(ready[1], &c, 1);
            (void)!read(hold[0], &c, 1);
            _exit(0);
        }
        char c;
        (void)!read(ready[0], &c, 1);
        _exit(child > 0 ? 0 : 4); /* dies without destroy */
    }
    close(hold[0]);
    REQUIRE(waitpid(producer, &status, 0) == producer);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    shmx_client *c = NULL;
    REQUIRE_OK(shmx_client_open(name, NULL, &c));
    CHECK(shmx_client_server_alive(c) == SHMX_DEAD);
    shmx_client_close(c);
    shmx_server *again = NULL;
    CHECK_OK(shmx_server_create(name, &cfg, &again)); /* the stale region is reclaimed */
    shmx_server_destroy(again);
    close(hold[1]);
    while (wait(NULL) > 0) {
    }
}

static int readable(int fd, int ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, ms) == 1;
}

/* The event-loop fds (wakefd.c) and history (late joiners). */
static void test_wait_fd_and_history(void)
{
    char name[128];
    shmx_server_config cfg;
    base_config(&cfg);
    cfg.slots = 3;
    shmx_server *s = NULL;
    REQUIRE_OK(shmx_server_create(t_name(name, sizeof name, "wakefd"), &cfg, &s));
    shmx_client *c = NULL;
    REQUIRE_OK(shmx_client_open(name, NULL, &c));
    int fd = -1, fd2 = -1;
    CHECK_ST(shmx_client_wait_fd(c, NULL), SHMX_EINVAL);
    CHECK_OK(shmx_client_wait_fd(c, &fd));
    CHECK(fd >= 0);
    CHECK_OK(shmx_client_wait_fd(c, &fd2));
    CHECK(fd2 == fd); /* one fd per client */
    CHECK_ST(shmx_client_arm_fd(c), SHMX_EAGAIN);
    CHECK(!readable(fd, 0));
    shmx_frame_info fi;
    fi.struct_size = sizeof fi;
    for (uint64_t k = 1; k <= 3; k++) {
        publish_one(s, 8, (uint8_t)k, k, (double)k);
        CHECK(readable(fd, 5000));
        CHECK_OK(shmx_client_arm_fd(c)); /* a frame is there: read now */
        CHECK_OK(shmx_client_latest(c, &fi));
        CHECK(fi.frame_id == k);
        CHECK_ST(shmx_client_arm_fd(c), SHMX_EAGAIN);
        CHECK(!readable(fd, 0)); /* drained */
    }
    /* Armed once, two publishes: one record (coalesced), which arm drains. */
    publish_one(s, 8, 4, 4, 4.0);
    publish_one(s, 8, 5, 5, 5.0);
    CHECK(readable(fd, 5000));
    CHECK_OK(shmx_client_arm_fd(c)); /* frames newer than the last read: not re-armed */
    CHECK(!readable(fd, 0));         /* no second record */

    /* Control: the server's fd turns readable when a client sends. */
    int cfd = -1;
    CHECK_OK(shmx_server_control_fd(s, &cfd));
    CHECK_ST(shmx_server_arm_control_fd(s), SHMX_EAGAIN);
    CHECK_OK(shmx_client_send_control(c, 7, "ping", 4));
    CHECK(readable(cfd, 5000));
    CHECK_OK(shmx_server_arm_control_fd(s));
    shmx_control_msg msg;
    msg.struct_size = sizeof msg;
    char buf[16];
    CHECK_OK(shmx_server_next_control(s, &msg, buf, sizeof buf));
    CHECK(msg.type == 7 && msg.length == 4 && memcmp(buf, "ping", 4) == 0);
    CHECK_ST(shmx_server_arm_control_fd(s), SHMX_EAGAIN);

    /* History: frames 3..5 are in the 3 slots; a late joiner reads them all. */
    shmx_open_options opt;
    shmx_open_options_init(&opt);
    opt.history = 1;
    shmx_client *late = NULL;
    REQUIRE_OK(shmx_client_open(name, &opt, &late));
    for (uint64_t k = 3; k <= 5; k++) {
        CHECK_OK(shmx_client_next(late, &fi));
        CHECK(fi.frame_id == k && fi.dropped == 0);
    }
    CHECK_ST(shmx_client_next(late, &fi), SHMX_EAGAIN);
    shmx_client_close(late);
    /* An options struct from before `history` (struct_size too small) ignores it. */
    opt.struct_size = (uint32_t)offsetof(shmx_open_options, history);
    REQUIRE_OK(shmx_client_open(name, &opt, &late));
    CHECK_OK(shmx_client_next(late, &fi));
    CHECK(fi.frame_id == 5);
    shmx_client_close(late);

    /* Destroy: the client's fd turns readable and arm says the server is gone. */
    CHECK_OK(shmx_client_latest(c, &fi));
    CHECK_ST(shmx_client_arm_fd(c), SHMX_EAGAIN);
    shmx_server_destroy(s);
    CHECK(readable(fd, 5000));
    CHECK_ST(shmx_client_arm_fd(c), SHMX_ECLOSED);
    shmx_client_close(c);
    CHECK_ST(shmx_server_control_fd(NULL, &cfd), SHMX_EINVAL);
    CHECK_ST(shmx_client_arm_fd(NULL), SHMX_EINVAL);
}

#endif

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    test_statuses();
    test_version_and_helpers();
    test_names();
    test_config();
    test_publish_read();
    test_refusals();
    test_publish_stream();
    test_warm_slots();
    test_exists_and_stale();
    test_wait_destroy_reconnect();
    test_control();
    test_control_wake();
    test_readers();
    test_busy_and_struct_size();
    test_write_static();
    test_corrupt_and_legacy();
    test_thread_local_error_and_dir();
#if T_POSIX
    test_fork();
    test_wait_fd_and_history();
#endif
    return t_finish("test_api");
}
