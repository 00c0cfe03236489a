/*
 * fuzz_region.c - libFuzzer target: the input is a whole region file.
 *
 * Each input is written to <tmpdir>/region and then opened the way a
 * consumer or a tool would: shmx_inspector_open + every query, and
 * shmx_client_open + latest/next/streams/wait/send_control.  A hostile or
 * corrupt region must make these calls fail cleanly: no crash, no hang, no
 * read outside the mapping (ASan/UBSan catch what a plain build would not,
 * and every stream view returned is checked against the mapped size here).
 *
 * Build: see Makefile next to this file (clang -fsanitize=fuzzer,...).
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmx.h"
#include "fuzz_dir.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_dir_init("region");
    return 0;
}

static void write_region(const uint8_t *data, size_t size)
{
    int fd = open(g_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) abort();
    size_t done = 0;
    while (done < size) {
        ssize_t n = write(fd, data + done, size - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) abort();
        done += (size_t)n;
    }
    close(fd);
}

/* Read every byte of [p, p+n) so a bad pointer faults here, inside the
 * harness, where the fuzzer reports it. */
static uint32_t touch(const void *p, uint64_t n)
{
    const volatile uint8_t *b = (const volatile uint8_t *)p;
    uint32_t sum = 0;
    for (uint64_t i = 0; i < n; i++) sum += b[i];
    return sum;
}

static void check_view(const shmx_stream_view *v, uint64_t region_size, const void *base)
{
    if (v->offset > region_size || v->bytes > region_size - v->offset) {
        fprintf(stderr, "stream view [%llu, +%u) is outside the %llu-byte region\n",
                (unsigned long long)v->offset, v->bytes, (unsigned long long)region_size);
        abort();
    }
    if ((const uint8_t *)v->data != (const uint8_t *)base + v->offset) {
        fprintf(stderr, "stream view data pointer does not match its offset\n");
        abort();
    }
    (void)touch(v->data, v->bytes);
}

static void touch_streams_info(uint32_t count, shmx_status (*info)(void *, uint32_t, shmx_stream_info *),
                               void *h)
{
    for (uint32_t i = 0; i < count && i < 4096; i++) {
        shmx_stream_info si;
        memset(&si, 0, sizeof si);
        si.struct_size = (uint32_t)sizeof si;
        if (info(h, i, &si) != SHMX_OK) continue;
        (void)touch(si.name, (uint64_t)si.name_len + 1); /* NUL-terminated */
        (void)touch(si.extra, si.extra_len);
    }
}

static shmx_status insp_info(void *h, uint32_t i, shmx_stream_info *o)
{
    return shmx_inspector_stream_info((shmx_inspector *)h, i, o);
}
static shmx_status client_info(void *h, uint32_t i, shmx_stream_info *o)
{
    return shmx_client_stream_info((shmx_client *)h, i, o);
}

static void run_inspector(const shmx_open_options *opt)
{
    shmx_inspector *in = NULL;
    if (shmx_inspector_open("region", opt, &in) != SHMX_OK) return;
    shmx_header_info h;
    memset(&h, 0, sizeof h);
    h.struct_size = (uint32_t)sizeof h;
    shmx_inspector_header_info(in, &h);
    touch_streams_info(shmx_inspector_stream_count(in), insp_info, in);
    shmx_reader_info readers[SHMX_MAX_READER_SLOTS];
    for (uint32_t i = 0; i < SHMX_MAX_READER_SLOTS; i++) readers[i].struct_size = (uint32_t)sizeof readers[i];
    uint32_t n = 0;
    shmx_inspector_readers(in, readers, SHMX_MAX_READER_SLOTS, &n);
    /* The payload can be no larger than the region. */
    uint32_t cap = h.slot_payload_cap;
    if ((uint64_t)cap > h.total_bytes) cap = (uint32_t)h.total_bytes;
    void *buf = malloc(cap ? cap : 1);
    if (buf) {
        shmx_frame_info fi;
        memset(&fi, 0, sizeof fi);
        fi.struct_size = (uint32_t)sizeof fi;
        if (shmx_inspector_copy_latest(in, &fi, buf, cap) == SHMX_OK && fi.payload_bytes > cap) abort();
        free(buf);
    }
    shmx_inspector_refresh_static(in);
    shmx_inspector_close(in);
}

static void read_frame_views(shmx_client *c, const shmx_frame_info *fi)
{
    uint64_t size = shmx_client_size(c);
    const void *base = shmx_client_base(c);
    for (uint32_t i = 0; i < fi->stream_count; i++) {
        shmx_stream_view v;
        memset(&v, 0, sizeof v);
        v.struct_size = (uint32_t)sizeof v;
        if (shmx_client_frame_stream(c, i, &v) != SHMX_OK) abort(); /* count said it is there */
        check_view(&v, size, base);
    }
}

static void run_client(const shmx_open_options *opt)
{
    shmx_client *c = NULL;
    if (shmx_client_open("region", opt, &c) != SHMX_OK) return;
    shmx_header_info h;
    memset(&h, 0, sizeof h);
    h.struct_size = (uint32_t)sizeof h;
    shmx_client_header_info(c, &h);
    touch_streams_info(shmx_client_stream_count(c), client_info, c);
    (void)shmx_client_server_alive(c);
    for (int round = 0; round < 3; round++) {
        shmx_frame_info fi;
        memset(&fi, 0, sizeof fi);
        fi.struct_size = (uint32_t)sizeof fi;
        if (shmx_client_latest(c, &fi) == SHMX_OK) read_frame_views(c, &fi);
        memset(&fi, 0, sizeof fi);
        fi.struct_size = (uint32_t)sizeof fi;
        if (shmx_client_next(c, &fi) == SHMX_OK) read_frame_views(c, &fi);
    }
    (void)shmx_client_wait(c, 0);
    static const char msg[40] = "fuzz control message";
    for (uint32_t len = 0; len < 40; len += 13) (void)shmx_client_send_control(c, 0x3000, msg, len);
    shmx_client_refresh_static(c);
    touch_streams_info(shmx_client_stream_count(c), client_info, c);
    shmx_client_release(c);
    shmx_client_close(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20)) return 0; /* regions in the corpus are a few KB */
    write_region(data, size);
    shmx_open_options opt;
    shmx_open_options_init(&opt);
    opt.dir = g_dir;
    run_inspector(&opt);
    run_client(&opt);
    run_inspector(&opt); /* after the client wrote its reader slot */
    unlink(g_path);
    return 0;
}
