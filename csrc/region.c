/* region.c - a region as a mapping: open, validate the header once (the
 * geometry every later bound check uses), close; the header and liveness
 * reports.  Used by the server, the client and the inspector.  Touches: the
 * mapping (platform.h) and the header, read-only. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>

#define MAX_READER_SLOTS_ANY 4096u /* legacy regions; ours are <= 64 */
#define MAX_SLOTS_ANY 65536u       /* what shmx_server_create accepts */

shmx_status shmx_region_open(shmx_region *r, const char *name, const shmx_open_options *opt,
                             int writable)
{
    memset(r, 0, sizeof *r);
    r->map.fd = -1;
    shmx_status st = shmx_check_name(name);
    if (st != SHMX_OK) return st;
    if (name[0] == '/') name++;
    const char *dir = NULL;
    if (opt && opt->struct_size >= offsetof(shmx_open_options, dir) + sizeof(opt->dir)) dir = opt->dir;
    snprintf(r->name, sizeof r->name, "%s", name);
    if (dir) snprintf(r->dir, sizeof r->dir, "%s", dir);
    st = shmx_plat_path(dir, name, r->path, sizeof r->path);
    if (st != SHMX_OK) return st;
    st = shmx_plat_open(r->path, writable, &r->map);
    if (st != SHMX_OK) return st;
    st = shmx_region_validate(r);
    if (st != SHMX_OK) shmx_region_close(r);
    return st;
}

void shmx_region_close(shmx_region *r)
{
    shmx_plat_close(&r->map);
    r->gh = NULL;
    r->ext = NULL;
}

#define BAD(...) shmx_fail(SHMX_ECORRUPT, __VA_ARGS__)

static int area_fits(uint64_t off, uint64_t count, uint64_t stride, uint64_t size)
{
    return off <= size && count * stride <= size - off;
}

shmx_status shmx_region_validate(shmx_region *r)
{
    const uint64_t size = r->map.size;
    shmx_global_header *gh = (shmx_global_header *)r->map.base;
    /* magic is stored last by a creating server (release); pairs with this
     * acquire so a fully initialised header is seen. */
    uint64_t magic = shmx_load_acquire64(&gh->magic);
    if (magic != SHMX_MAGIC)
        return BAD("'%s' is not a shmx region (magic 0x%016llx)", r->path,
                   (unsigned long long)magic);
    if (gh->endianness != SHMX_ENDIAN_TAG)
        return BAD("'%s' has endianness tag 0x%08x", r->path, gh->endianness);
    if (gh->ver_major != SHMX_LAYOUT_MAJOR)
        return shmx_fail(SHMX_EVERSION, "'%s' has layout v%u.%u, this library reads v2.x", r->path,
                         gh->ver_major, gh->ver_minor);
    shmx_region g = *r;
    g.session_id = gh->session_id;
    g.static_offset = gh->static_offset;
    g.static_cap = gh->static_bytes_cap;
    g.slots = gh->slots;
    g.slot_stride = gh->slot_stride;
    g.slots_offset = gh->slots_offset;
    g.slot_payload_cap = gh->frame_bytes_cap;
    g.reader_slots = gh->reader_slots;
    g.reader_stride = gh->reader_slot_stride;
    g.readers_offset = gh->readers_offset;
    g.control_offset = gh->control_offset;
    g.control_per_reader = gh->control_per_reader;
    g.control_stride = gh->control_stride;

    if (g.slots == 0) return BAD("'%s' has 0 frame slots", r->path);
    /* Readers scan every slot on each read: a huge count would only be
     * a way to make them spin. */
    if (g.slots > MAX_SLOTS_ANY) return BAD("'%s' has %u frame slots", r->path, g.slots);
    if (g.slot_payload_cap == 0) return BAD("'%s' has frame_bytes_cap 0", r->path);
    if ((uint64_t)g.slot_stride < SHMX_FRAME_HEADER_BYTES + (uint64_t)g.slot_payload_cap)
        return BAD("'%s': slot_stride %u cannot hold frame_bytes_cap %u", r->path, g.slot_stride,
                   g.slot_payload_cap);
    if ((g.slot_stride | g.slots_offset | g.readers_offset | g.reader_stride | g.static_offset |
         g.control_offset | g.control_stride) & 7u)
        return BAD("'%s': an area offset or stride is not 8-byte aligned", r->path);
    /* Readers write their slot, clients their ring, the producer its
     * frames: none of them may land on the header everyone reads. */
    if (g.slots_offset < sizeof(shmx_global_header) ||
        (g.reader_slots && g.readers_offset < sizeof(shmx_global_header)) ||
        (g.control_per_reader && g.reader_slots && g.control_offset < sizeof(shmx_global_header)))
        return BAD("'%s': an area overlaps the header", r->path);
    if (!area_fits(g.slots_offset, g.slots, g.slot_stride, size))
        return BAD("'%s': %u slots of %u bytes at %u exceed the %llu-byte region", r->path,
                   g.slots, g.slot_stride, g.slots_offset, (unsigned long long)size);
    if (g.static_offset < sizeof(shmx_global_header) ||
        !area_fits(g.static_offset, 1, g.static_cap, size))
        return BAD("'%s': static directory at %u (%u bytes) is outside the region", r->path,
                   g.static_offset, g.static_cap);
    if (g.reader_slots > MAX_READER_SLOTS_ANY)
        return BAD("'%s': %u reader slots", r->path, g.reader_slots);
    if (g.reader_slots && (g.reader_stride < sizeof(shmx_reader_slot) ||
                           !area_fits(g.readers_offset, g.reader_slots, g.reader_stride, size)))
        return BAD("'%s': reader slots are outside the region", r->path);
    if (g.control_per_reader) {
        if (g.control_per_reader < 32 || g.control_stride < g.control_per_reader ||
            !area_fits(g.control_offset, g.reader_slots, g.control_stride, size))
            return BAD("'%s': control rings are outside the region", r->path);
    }
    g.gh = gh;
    g.ext = NULL;
    g.user_frame_cap = g.slot_payload_cap;
    if (g.static_offset >= SHMX_MIN_STATIC_OFFSET) {
        shmx_ext_header *ext = (shmx_ext_header *)(r->map.base + SHMX_EXT_OFFSET);
        if (ext->magic == SHMX_EXT_MAGIC && ext->version == SHMX_EXT_VERSION) {
            if (g.reader_slots > SHMX_MAX_READER_SLOTS)
                return BAD("'%s': %u reader slots, a shmx region has at most %d", r->path,
                           g.reader_slots, SHMX_MAX_READER_SLOTS);
            /* Nothing may overlap the extension block we are about to use. */
            if (g.slots_offset < SHMX_MIN_STATIC_OFFSET ||
                (g.reader_slots && g.readers_offset < SHMX_MIN_STATIC_OFFSET) ||
                (g.control_per_reader && g.reader_slots && g.control_offset < SHMX_MIN_STATIC_OFFSET))
                return BAD("'%s': an area overlaps the header", r->path);
            g.ext = ext;
            uint32_t ucap = ext->user_frame_cap;
            if (ucap && ucap <= g.slot_payload_cap) g.user_frame_cap = ucap;
        }
    }
    *r = g;
    return SHMX_OK;
}

/* ------------------------------------------------------------ info, readers */

uint32_t shmx_server_liveness(const shmx_region *r)
{
    if (!r->ext) return SHMX_UNKNOWN;
    if (shmx_load_acquire32(&r->ext->closed)) return SHMX_DEAD;
    return shmx_plat_lock_probe(r->map.fd, SHMX_LOCK_SERVER);
}

void shmx_header_fill(const shmx_region *r, shmx_header_info *info)
{
    const shmx_global_header *gh = r->gh;
    memset(info, 0, sizeof *info);
    info->struct_size = (uint32_t)sizeof *info;
    info->version_major = gh->ver_major;
    info->version_minor = gh->ver_minor;
    info->extended = r->ext != NULL;
    info->magic = gh->magic;
    info->session_id = r->session_id;
    info->frame_seq = shmx_load_acquire64((uint64_t *)&gh->frame_seq);
    info->total_bytes = r->map.size;
    info->static_hash = gh->static_hash;
    info->static_gen = shmx_load_acquire32((uint32_t *)&gh->static_gen);
    info->static_bytes_used = shmx_load_acquire32((uint32_t *)&gh->static_bytes_used);
    info->static_bytes_cap = r->static_cap;
    info->slots = r->slots;
    info->slot_stride = r->slot_stride;
    info->frame_bytes_cap = r->user_frame_cap;
    info->slot_payload_cap = r->slot_payload_cap;
    info->reader_slots = r->reader_slots;
    info->control_per_reader = r->control_per_reader;
    info->readers_connected = shmx_load_acquire32((uint32_t *)&gh->readers_connected);
    info->write_index = shmx_load_acquire32((uint32_t *)&gh->write_index);
    info->owner_alive = shmx_server_liveness(r);
    if (r->ext) {
        info->closed = shmx_load_acquire32(&r->ext->closed);
        info->checksum_policy = r->ext->checksum_policy;
        info->owner_pid = r->ext->owner_pid;
        info->owner_heartbeat = shmx_load_relaxed64(&r->ext->owner_heartbeat);
        info->overruns = shmx_load_relaxed64(&r->ext->overruns);
    } else {
        info->checksum_policy = SHMX_CHECKSUM_ALWAYS;
    }
}
