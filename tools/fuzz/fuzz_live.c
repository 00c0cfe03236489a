/*
 * fuzz_live.c - libFuzzer target: a live producer and consumer while a
 * hostile peer rewrites any byte of their region.
 *
 * Each input is a script run against a fresh server and client of one
 * region: steps that overwrite bytes anywhere in the mapping (header,
 * extension block, static directory, reader slots, control rings, slot
 * headers, TLVs) interleaved with every server call (publish_stream,
 * begin/append/loan/publish, write_static, poll_control, reap, readers,
 * header_info) and client call (latest, next, wait, send_control,
 * refresh_static, header_info).  Whatever the bytes, no call may crash,
 * hang, or touch memory outside the mapping and the library's own
 * allocations (ASan + UBSan), and every view a read returns must lie inside
 * the mapping.
 *
 * Script: a sequence of steps, each one op byte and its arguments.
 */
#define _GNU_SOURCE 1
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
    fuzz_dir_init("live");
    return 0;
}

typedef struct cursor {
    const uint8_t *p;
    size_t left;
} cursor;

static uint32_t take(cursor *c, unsigned bytes)
{
    uint32_t v = 0;
    for (unsigned i = 0; i < bytes; i++) {
        v = (v << 8) | (c->left ? *c->p : 0u);
        if (c->left) {
            c->p++;
            c->left--;
        }
    }
    return v;
}

static const shmx_stream_spec k_streams[] = {
    {1, SHMX_DT_U8, 1, SHMX_LAYOUT_SOA_SCALAR, 1, "pixels", NULL, 0},
    {2, SHMX_DT_F32, 3, SHMX_LAYOUT_AOS_VECTOR, 12, "pos", "m", 1},
    {3, SHMX_DT_U64, 1, SHMX_LAYOUT_SOA_SCALAR, 8, "count", NULL, 0},
};

static void check_views(shmx_client *c, const uint8_t *base, uint64_t size, const shmx_frame_info *fi)
{
    for (uint32_t i = 0; i < fi->stream_count; i++) {
        shmx_stream_view v;
        memset(&v, 0, sizeof v);
        v.struct_size = sizeof v;
        if (shmx_client_frame_stream(c, i, &v) != SHMX_OK) continue;
        const uint8_t *d = (const uint8_t *)v.data;
        if (d < base || v.bytes > size || (uint64_t)(d - base) > size - v.bytes) abort();
        volatile uint8_t sink = 0;
        for (uint32_t k = 0; k < v.bytes; k += 61) sink ^= d[k]; /* touch it */
        (void)sink;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    shmx_server_config cfg;
    shmx_server_config_init(&cfg);
    cfg.dir = g_dir;
    cfg.streams = k_streams;
    cfg.stream_count = 3;
    cfg.slots = 3;
    cfg.reader_slots = 2;
    cfg.static_bytes_cap = 512;
    cfg.frame_bytes_cap = 512;
    cfg.control_per_reader = 128;
    shmx_server *s = NULL;
    if (shmx_server_create("live", &cfg, &s) != SHMX_OK) abort();
    shmx_open_options opt;
    shmx_open_options_init(&opt);
    opt.dir = g_dir;
    shmx_client *c = NULL;
    if (shmx_client_open("live", &opt, &c) != SHMX_OK) abort();
    uint8_t *base = (uint8_t *)shmx_server_base(s);
    const uint64_t rsize = shmx_server_size(s);
    const uint8_t *cbase = (const uint8_t *)shmx_client_base(c);
    const uint64_t csize = shmx_client_size(c);

    cursor cur = {data, size};
    uint8_t buf[600];
    uint64_t frame = 0;
    for (int step = 0; step < 256 && cur.left; step++) {
        uint32_t op = take(&cur, 1) % 18;
        switch (op) {
        case 0:
        case 1: { /* the hostile peer: overwrite 1..16 bytes anywhere */
            uint32_t off = take(&cur, 3) % (uint32_t)rsize;
            uint32_t n = 1 + take(&cur, 1) % 16;
            for (uint32_t k = 0; k < n && off + k < rsize; k++) base[off + k] = (uint8_t)take(&cur, 1);
            break;
        }
        case 2: { /* ... aimed at the header, where the geometry lives */
            uint32_t off = take(&cur, 1) % 256;
            uint32_t v = take(&cur, 4);
            memcpy(base + (off & ~3u), &v, 4);
            break;
        }
        case 3: {
            uint32_t id = 1 + take(&cur, 1) % 4, n = take(&cur, 2) % 600;
            memset(buf, (int)step, n);
            (void)shmx_server_publish_stream(s, id, buf, n, (double)step);
            break;
        }
        case 4: {
            if (shmx_server_begin_frame(s, &frame) != SHMX_OK) break;
            uint32_t n = take(&cur, 1);
            memset(buf, 7, n);
            (void)shmx_server_append(s, frame, 1, buf, n, n);
            float pos[6] = {1, 2, 3, 4, 5, 6};
            (void)shmx_server_append(s, frame, 2, pos, sizeof pos, 2);
            void *loan = NULL;
            if (shmx_server_loan(s, frame, 3, 1, &loan) == SHMX_OK) memset(loan, 3, 8);
            (void)shmx_server_publish(s, frame, 1.0);
            break;
        }
        case 5: {
            uint32_t n = take(&cur, 1) % 96;
            for (uint32_t k = 0; k < n; k++) buf[k] = (uint8_t)take(&cur, 1);
            (void)shmx_server_write_static(s, buf, n);
            break;
        }
        case 6: {
            shmx_control_msg m;
            m.struct_size = sizeof m;
            for (int k = 0; k < 4; k++)
                if (shmx_server_next_control(s, &m, buf, sizeof buf) != SHMX_OK) break;
            break;
        }
        case 7: {
            uint32_t reaped = 0;
            (void)shmx_server_reap_stale_readers(s, shmx_now_ns() + (uint64_t)take(&cur, 2) * 1000000ull,
                                                 (uint64_t)take(&cur, 2) * 1000000ull, &reaped);
            (void)shmx_server_reap_dead_readers(s, &reaped);
            break;
        }
        case 8: {
            shmx_reader_info ri[4];
            for (int k = 0; k < 4; k++) ri[k].struct_size = sizeof ri[k];
            uint32_t count = 0;
            (void)shmx_server_readers(s, ri, 4, &count);
            shmx_header_info h;
            h.struct_size = sizeof h;
            (void)shmx_server_header_info(s, &h);
            uint32_t ns = shmx_server_stream_count(s);
            for (uint32_t k = 0; k < ns; k++) {
                shmx_stream_info si;
                si.struct_size = sizeof si;
                (void)shmx_server_stream_info(s, k, &si);
            }
            break;
        }
        case 9:
        case 10: {
            shmx_frame_info fi;
            fi.struct_size = sizeof fi;
            shmx_status st = op == 9 ? shmx_client_latest(c, &fi) : shmx_client_next(c, &fi);
            if (st == SHMX_OK) check_views(c, cbase, csize, &fi);
            break;
        }
        case 11:
            (void)shmx_client_wait(c, 0);
            break;
        case 12: {
            uint32_t n = take(&cur, 1) % 120;
            memset(buf, 5, n);
            (void)shmx_client_send_control(c, 0x3000 + take(&cur, 1), buf, n);
            break;
        }
        case 13: {
            (void)shmx_client_refresh_static(c);
            uint32_t ns = shmx_client_stream_count(c);
            for (uint32_t k = 0; k < ns; k++) {
                shmx_stream_info si;
                si.struct_size = sizeof si;
                /* The name is terminated where name_len says (it may hold
                 * NULs of its own: a hostile directory's bytes). */
                if (shmx_client_stream_info(c, k, &si) == SHMX_OK && si.name && si.name[si.name_len] != 0)
                    abort();
            }
            break;
        }
        case 14: {
            shmx_header_info h;
            h.struct_size = sizeof h;
            (void)shmx_client_header_info(c, &h);
            (void)shmx_client_server_alive(c);
            break;
        }
        case 15:
            shmx_client_release(c);
            break;
        case 16: { /* a second client attaches and leaves */
            shmx_client *c2 = NULL;
            if (shmx_client_open("live", &opt, &c2) == SHMX_OK) {
                shmx_frame_info fi;
                fi.struct_size = sizeof fi;
                if (shmx_client_latest(c2, &fi) == SHMX_OK) check_views(c2, shmx_client_base(c2), shmx_client_size(c2), &fi);
                shmx_client_close(c2);
            }
            break;
        }
        default: { /* an inspector's view of it */
            shmx_inspector *in = NULL;
            if (shmx_inspector_open("live", &opt, &in) == SHMX_OK) {
                shmx_frame_info fi;
                fi.struct_size = sizeof fi;
                (void)shmx_inspector_copy_latest(in, &fi, buf, sizeof buf);
                shmx_inspector_close(in);
            }
            break;
        }
        }
    }
    shmx_client_close(c);
    shmx_server_destroy(s);
    return 0;
}
