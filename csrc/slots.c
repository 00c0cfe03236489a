/* slots.c - the frame slot seqlock and the pin handshake, both sides in
 * one place: the one subtle race of the protocol.
 *
 * A slot's seq (FrameHeader.reserved[0]) is odd while the producer owns it
 * and even when it holds a complete frame; its pins word (reserved[1]) has
 * bit r set while reader slot r holds the frame.  The producer claims a
 * slot by making seq odd and then looking at pins; a reader pins by setting
 * its bit and then looking at seq.  Each side does a seq_cst RMW and then a
 * seq_cst load of the other word, so in the single total order of seq_cst
 * operations at least one of them sees the other: a pinned slot is never
 * written, and a reader never keeps a pin on a slot being written.
 * (tools/model/slots.pml checks this.)
 *
 * The producer's seq values come from its private copy (server.c keeps
 * one per slot), never from the region, where anyone may write.
 * Touches: the seq and pins words of frame slots.
 */
#include "internal.h"

int shmx_slot_claim(const shmx_region *r, uint32_t slot, uint64_t even_seq)
{
    shmx_frame_header *fh = shmx_slot_header(r, slot);
    if (shmx_load_relaxed64(&fh->pins) != 0) return 0;
    /* seq_cst RMW, then seq_cst load of pins: pairs with shmx_slot_pin's
     * seq_cst fetch_or of pins, then seq_cst load of seq.  Being an acquire
     * too, the RMW keeps the payload writes that follow after it. */
    shmx_exchange64(&fh->seq, even_seq + 1);
    if (shmx_load_seqcst64(&fh->pins) != 0) {
        /* Nothing was written: give the slot back unchanged.  Release pairs
         * with readers' acquire of seq. */
        shmx_store_release64(&fh->seq, even_seq);
        return 0;
    }
    return 1;
}

void shmx_slot_complete(const shmx_region *r, uint32_t slot, uint64_t even_seq)
{
    /* Seq even again: payload and header become visible to a reader whose
     * acquire load of seq sees this value. */
    shmx_store_release64(&shmx_slot_header(r, slot)->seq, even_seq);
}

int shmx_slot_pin(const shmx_region *r, uint32_t slot, uint64_t bit)
{
    shmx_frame_header *fh = shmx_slot_header(r, slot);
    shmx_fetch_or64(&fh->pins, bit);
    /* seq_cst, so also an acquire: pairs with the producer's store-release
     * of the even seq in shmx_slot_complete (header and payload visible),
     * and with its claim (see above). */
    uint64_t seq = shmx_load_seqcst64(&fh->seq);
    if (SHMX_SEQ_WRITING(seq)) {
        shmx_fetch_and64(&fh->pins, ~bit);
        return 0;
    }
    return 1;
}

void shmx_slot_unpin(const shmx_region *r, uint32_t slot, uint64_t bit)
{
    /* seq_cst RMW (release): our reads of the slot happen before the
     * producer, which reads pins after its seq_cst claim, may reuse it. */
    shmx_fetch_and64(&shmx_slot_header(r, slot)->pins, ~bit);
}

void shmx_slot_unpin_all(const shmx_region *r, uint64_t bit)
{
    for (uint32_t s = 0; s < r->slots; s++) shmx_slot_unpin(r, s, bit);
}
