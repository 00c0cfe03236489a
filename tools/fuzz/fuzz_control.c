/*
 * fuzz_control.c - libFuzzer target: hostile clients against a live server.
 *
 * A client maps its region read-write, so it can write anything into the
 * areas readers own: the reader slots, the control rings and the pin/seq
 * words of the frame headers.  Each input creates a fresh server (the
 * geometry below, the same as tools/fuzz/make_seeds.py uses), copies the
 * input over those areas, and then drives the server: poll_control,
 * wait_control, the reader snapshot, both reapers, a new client attaching,
 * and a few publishes.  The server must neither crash, hang, nor read or
 * write outside its region.
 *
 * Input layout: [reader slots + control rings] [seq,pins of slot 0] [seq,pins of slot 1]
 */
#define _GNU_SOURCE 1
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmx.h"
#include "fuzz_dir.h"
#include "layout.h"

/* Keep in step with tools/fuzz/make_seeds.py (CONTROL_CONFIG). */
#define F_SLOTS 2u
#define F_READER_SLOTS 2u
#define F_STATIC_CAP 256u
#define F_FRAME_CAP 64u
#define F_CONTROL 128u

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_dir_init("ctl");
    return 0;
}

static void poll_all(shmx_server *s, uint32_t buf_cap)
{
    uint8_t buf[F_CONTROL];
    for (int k = 0; k < 64; k++) {
        shmx_control_msg m;
        memset(&m, 0, sizeof m);
        m.struct_size = (uint32_t)sizeof m;
        shmx_status st = shmx_server_next_control(s, &m, buf, buf_cap);
        if (st == SHMX_OK && m.length > buf_cap) {
            fprintf(stderr, "poll_control returned %u bytes into a %u-byte buffer\n", m.length, buf_cap);
            abort();
        }
        if (st == SHMX_EAGAIN) break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    shmx_stream_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.stream_id = 1;
    spec.dtype = SHMX_DT_U8;
    spec.components = 1;
    spec.layout = SHMX_LAYOUT_SOA_SCALAR;
    spec.bytes_per_elem = 1;
    spec.name = "bytes";
    shmx_server_config cfg;
    shmx_server_config_init(&cfg);
    cfg.slots = F_SLOTS;
    cfg.reader_slots = F_READER_SLOTS;
    cfg.static_bytes_cap = F_STATIC_CAP;
    cfg.frame_bytes_cap = F_FRAME_CAP;
    cfg.control_per_reader = F_CONTROL;
    cfg.streams = &spec;
    cfg.stream_count = 1;
    cfg.dir = g_dir;
    shmx_server *s = NULL;
    if (shmx_server_create("ctl", &cfg, &s) != SHMX_OK) {
        fprintf(stderr, "server create failed: %s\n", shmx_last_error());
        abort();
    }
    uint8_t *base = (uint8_t *)shmx_server_base(s);
    const shmx_global_header *gh = (const shmx_global_header *)base;
    size_t area = gh->slots_offset - gh->readers_offset;
    size_t n = size < area ? size : area;
    memcpy(base + gh->readers_offset, data, n);
    data += n;
    size -= n;
    for (uint32_t i = 0; i < F_SLOTS && size > 0; i++) {
        shmx_frame_header *fh = (shmx_frame_header *)(base + gh->slots_offset + (size_t)i * gh->slot_stride);
        size_t k = size < 16 ? size : 16;
        memcpy((uint8_t *)fh + offsetof(shmx_frame_header, seq), data, k);
        data += k;
        size -= k;
    }

    poll_all(s, F_CONTROL);
    poll_all(s, 8); /* too small for most messages: ETOOBIG, message kept */
    (void)shmx_server_wait_control(s, 0);
    shmx_reader_info ri[F_READER_SLOTS];
    for (uint32_t i = 0; i < F_READER_SLOTS; i++) ri[i].struct_size = (uint32_t)sizeof ri[i];
    uint32_t count = 0;
    shmx_server_readers(s, ri, F_READER_SLOTS, &count);
    uint32_t reaped = 0;
    shmx_server_reap_dead_readers(s, &reaped);
    shmx_server_reap_stale_readers(s, shmx_now_ns(), 0, &reaped);

    shmx_open_options opt;
    shmx_open_options_init(&opt);
    opt.dir = g_dir;
    shmx_client *c = NULL;
    if (shmx_client_open("ctl", &opt, &c) == SHMX_OK) {
        (void)shmx_client_send_control(c, 0x3000, "hello", 5);
        poll_all(s, F_CONTROL);
    }
    static const uint8_t payload[F_FRAME_CAP] = {1, 2, 3};
    for (int k = 0; k < 3; k++) {
        uint64_t fr;
        if (shmx_server_begin_frame(s, &fr) != SHMX_OK) continue;
        if (shmx_server_append(s, fr, 1, payload, sizeof payload, sizeof payload) != SHMX_OK) abort();
        if (shmx_server_publish(s, fr, (double)k) != SHMX_OK) abort();
        if (c) {
            shmx_frame_info fi;
            memset(&fi, 0, sizeof fi);
            fi.struct_size = (uint32_t)sizeof fi;
            (void)shmx_client_latest(c, &fi);
        }
    }
    shmx_header_info h;
    memset(&h, 0, sizeof h);
    h.struct_size = (uint32_t)sizeof h;
    shmx_server_header_info(s, &h);
    shmx_client_close(c);
    shmx_server_destroy(s);
    return 0;
}
