/*
 * consumer.c - read frames with libshmx from plain C, zero copy.
 *
 *   consumer [--name NAME] [--frames N] [--timeout-ms T] [--send-control M]
 *            [--latest] [--quiet]
 *
 * Attaches to the region (waiting up to T ms for it to appear), sends M
 * control messages "ping 0" .. "ping M-1" to the producer, then reads
 * frames in publication order with shmx_client_next(), sleeping in
 * shmx_client_wait() between them.  Every frame is checked against the demo
 * schema (see producer.c): the pixels of frame k are (k + i) % 251.  Stops
 * after frame number N (the "seq" stream), when the producer is gone, or
 * after T ms without a new frame.  Exit status 0 only if every byte of every
 * frame was right and at least one frame was read.
 *
 * --latest reads with shmx_client_latest() instead (skips to the newest).
 *
 * Build: cc -std=c99 consumer.c $(pkg-config --cflags --libs shmx)
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <shmx.h>

enum { STREAM_SEQ = 1, STREAM_PIXELS = 2, STREAM_STAMP = 3 };

static void sleep_ms(unsigned ms)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(ms / 1000u);
    ts.tv_nsec = (long)(ms % 1000u) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: consumer [--name NAME] [--frames N] [--timeout-ms T] [--send-control M]\n"
                    "                [--latest] [--quiet]\n");
}

/* Check the frame the client returned last.  Returns its "seq" value, or 0
 * when something is wrong (and says what). */
static uint64_t check_frame(shmx_client *c, const shmx_frame_info *fi, unsigned long *bad_bytes)
{
    const void *seq = NULL, *stamp = NULL;
    const uint8_t *pixels = NULL;
    uint32_t npixels = 0;
    for (uint32_t i = 0; i < fi->stream_count; i++) {
        shmx_stream_view v;
        memset(&v, 0, sizeof v);
        v.struct_size = sizeof v;
        if (shmx_client_frame_stream(c, i, &v) != SHMX_OK) return 0;
        /* v.data points into shared memory: valid until the next read. */
        if (v.stream_id == STREAM_SEQ && v.bytes == 8) seq = v.data;
        if (v.stream_id == STREAM_STAMP && v.bytes == 8) stamp = v.data;
        if (v.stream_id == STREAM_PIXELS) {
            pixels = (const uint8_t *)v.data;
            npixels = v.bytes;
        }
    }
    if (!seq || !stamp || !pixels) {
        fprintf(stderr, "consumer: frame %" PRIu64 " lacks a stream of the demo schema\n", fi->frame_id);
        return 0;
    }
    uint64_t k;
    double t;
    memcpy(&k, seq, 8);
    memcpy(&t, stamp, 8);
    unsigned long bad = 0;
    for (uint32_t i = 0; i < npixels; i++)
        if (pixels[i] != (uint8_t)((k + i) % 251u)) bad++;
    if (t != (double)k / 1000.0 || fi->sim_time != t) bad++;
    if (bad) {
        fprintf(stderr, "consumer: frame %" PRIu64 " (seq %" PRIu64 "): %lu wrong values\n", fi->frame_id, k,
                bad);
        *bad_bytes += bad;
        return 0;
    }
    return k;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* line by line, also into a pipe */
    const char *name = "shmx-c-demo";
    unsigned long frames = 0, timeout_ms = 5000, send_control = 0;
    int latest = 0, quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--latest")) { latest = 1; continue; }
        if (!strcmp(a, "--quiet")) { quiet = 1; continue; }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(); return 0; }
        const char *v = i + 1 < argc ? argv[++i] : NULL;
        if (!v) { usage(); return 2; }
        if (!strcmp(a, "--name")) name = v;
        else if (!strcmp(a, "--frames")) frames = strtoul(v, NULL, 10);
        else if (!strcmp(a, "--timeout-ms")) timeout_ms = strtoul(v, NULL, 10);
        else if (!strcmp(a, "--send-control")) send_control = strtoul(v, NULL, 10);
        else { usage(); return 2; }
    }
    const uint64_t timeout_ns = (uint64_t)timeout_ms * 1000000ull;

    /* The producer may not have created the region yet. */
    shmx_client *c = NULL;
    shmx_status st;
    uint64_t give_up = shmx_now_ns() + timeout_ns;
    while ((st = shmx_client_open(name, NULL, &c)) == SHMX_ENOENT && shmx_now_ns() < give_up) sleep_ms(10);
    if (st != SHMX_OK) {
        fprintf(stderr, "consumer: open '%s': %s (%s)\n", name, shmx_strerror(st), shmx_last_error());
        return 1;
    }
    if (!quiet) {
        printf("consumer: attached to '%s' as reader %016" PRIx64 "; schema:\n", name, shmx_client_reader_id(c));
        for (uint32_t i = 0; i < shmx_client_stream_count(c); i++) {
            shmx_stream_info si;
            memset(&si, 0, sizeof si);
            si.struct_size = sizeof si;
            if (shmx_client_stream_info(c, i, &si) == SHMX_OK)
                printf("  id %u %-8s %s x %u (%u bytes per element)\n", si.stream_id, si.name,
                       shmx_dtype_name(si.dtype), si.components, si.bytes_per_elem);
        }
    }

    /* Control messages to the producer; a full ring means "try again". */
    for (unsigned long i = 0; i < send_control; i++) {
        char msg[32];
        int n = snprintf(msg, sizeof msg, "ping %lu", i);
        uint64_t until = shmx_now_ns() + timeout_ns;
        while ((st = shmx_client_send_control(c, SHMX_TLV_CONTROL_USER, msg, (uint32_t)n)) == SHMX_EFULL &&
               shmx_now_ns() < until)
            sleep_ms(1);
        if (st != SHMX_OK) {
            fprintf(stderr, "consumer: send_control: %s (%s)\n", shmx_strerror(st), shmx_last_error());
            shmx_client_close(c);
            return 1;
        }
    }

    unsigned long count = 0, bad_bytes = 0, bad_frames = 0;
    uint64_t dropped = 0, first = 0, last = 0, last_new = shmx_now_ns();
    int server_gone = 0;
    for (;;) {
        shmx_frame_info fi;
        memset(&fi, 0, sizeof fi);
        fi.struct_size = sizeof fi;
        st = latest ? shmx_client_latest(c, &fi) : shmx_client_next(c, &fi);
        if (st == SHMX_OK && (!latest || fi.frame_id != last)) {
            uint64_t k = check_frame(c, &fi, &bad_bytes);
            if (!k) bad_frames++;
            else {
                if (!first) first = k;
                last = k;
                count++;
                dropped += fi.dropped;
                last_new = shmx_now_ns();
                if (!quiet && (count <= 3 || count % 100 == 0))
                    printf("consumer: frame %" PRIu64 " seq %" PRIu64 ", %u bytes, dropped %" PRIu64 "\n",
                           fi.frame_id, k, fi.payload_bytes, fi.dropped);
            }
            if (frames && last >= frames) break;
            continue;
        }
        if (st != SHMX_OK && st != SHMX_EAGAIN) {
            fprintf(stderr, "consumer: read: %s (%s)\n", shmx_strerror(st), shmx_last_error());
            bad_frames++;
            break;
        }
        if (server_gone) break; /* drained what the producer left */
        if (shmx_now_ns() - last_new > timeout_ns) {
            fprintf(stderr, "consumer: no new frame for %lu ms\n", timeout_ms);
            break;
        }
        /* Sleep in the kernel until the producer publishes (futex). */
        st = shmx_client_wait(c, 100000000);
        if (st == SHMX_ECLOSED) server_gone = 1; /* read what is left, then stop */
    }
    shmx_client_close(c);
    printf("consumer: %lu frames verified (seq %" PRIu64 "..%" PRIu64 "), %" PRIu64
           " dropped, %lu bad frames, %lu bad values%s\n",
           count, first, last, dropped, bad_frames, bad_bytes, server_gone ? ", producer gone" : "");
    if (frames && last < frames) fprintf(stderr, "consumer: stopped before frame %lu\n", frames);
    return (count > 0 && bad_frames == 0 && (!frames || last >= frames)) ? 0 : 1;
}
