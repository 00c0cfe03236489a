/*
 * slots.pml - the frame-slot protocol of libshmx (csrc/server.c claim_slot,
 * publish; csrc/client.c pin_slot, shmx_client_latest/next, unpin) as a
 * Promela model: one writer, NREADERS readers, NSLOTS slots.
 *
 * What is checked (see README.md):
 *   safety   (pan, default)   a reader never accepts a slot the writer is
 *                             writing, and the writer never starts writing a
 *                             slot a reader holds;  the writer's slot search
 *                             takes at most NSLOTS steps and reports "busy"
 *                             only when it found every slot pinned;
 *                             no deadlock (invalid end state).
 *   progress (pan -l -f)      no cycle in which the writer makes no
 *                             progress (a publish or a "busy"), under weak
 *                             fairness: the writer never waits for a reader.
 *   -DNOFENCE                 lets each side's load pass its store (what
 *                             plain stores and loads allow on x86/TSO): spin
 *                             then finds the torn read, which shows the
 *                             seq_cst ordering is needed and that the model
 *                             can see the bug.
 *
 * Memory model: Promela interleaves statements (sequential consistency).
 * The real code reaches SC where it matters with a seq_cst RMW followed by
 * a seq_cst load on both sides of the pin/seq handshake; the data itself
 * is published by release/acquire on seq and write_index.
 */

#ifndef NSLOTS
#define NSLOTS 3
#endif
#ifndef NREADERS
#define NREADERS 2
#endif
#define NONE 255

byte seq[NSLOTS];        /* slot seqlock, odd while the writer owns the slot (mod 4 is enough:
                            readers only test the parity, the writer restores the exact value) */
byte pins[NSLOTS];       /* bit r: reader r pins the slot */
byte write_index;        /* 0: no frame yet, else slot + 1 (the latest published slot) */
bool writing[NSLOTS];    /* ghost: the writer is between claim and publish on this slot */
byte holding[NREADERS] = NONE;  /* ghost: slot a reader has accepted and is reading, or NONE */

#define ODD(v) (((v) & 1) == 1)

active proctype writer()
{
    byte last = NSLOTS - 1;  /* slot of the last published frame */
    byte k, cand, old, p, r, skipped;
    bool claimed, warm;
    do
    :: /* ---- begin_frame: claim_slot() ---- */
        k = 1; claimed = false; skipped = 0;
        /* warm_slot(): in a region of large frames, one slot other than the
         * latest may be tried first (which one depends on what the readers
         * have read: any of them), then the ring order */
        if
        :: warm = false
        :: warm = true
        fi;
        do
        :: k > NSLOTS -> break
        :: k <= NSLOTS ->
            if
            :: warm -> select (cand : 0 .. NSLOTS - 1);
                if
                :: cand == last -> cand = (last + k) % NSLOTS; warm = false   /* no warm slot */
                :: else -> k--   /* the warm try does not count as a ring step */
                fi
            :: else -> cand = (last + k) % NSLOTS
            fi;
            if
            :: pins[cand] != 0 -> skipped++
            :: else ->
                old = seq[cand];
                if
                :: ODD(old) -> old = (old + 1) % 4   /* left odd by an abandoned frame */
                :: else -> skip
                fi;
#ifdef NOFENCE
                if
                :: seq[cand] = (old + 1) % 4; p = pins[cand]
                :: p = pins[cand]; seq[cand] = (old + 1) % 4   /* the load passed the store */
                fi;
#else
                seq[cand] = (old + 1) % 4;   /* seq odd (seq_cst exchange), then seq_cst load */
                p = pins[cand];
#endif
                if
                :: p != 0 -> seq[cand] = old; skipped++   /* restore: nothing was written */
                :: else -> claimed = true
                fi
            fi;
            if
            :: claimed -> break
            :: else -> k++; warm = false
            fi
        od;
        assert(k <= NSLOTS || !claimed);   /* bounded search: at most NSLOTS candidates */
        if
        :: claimed ->
            atomic {
                writing[cand] = true;
                r = 0;
                do
                :: r < NREADERS -> assert(holding[r] != cand); r++
                :: r >= NREADERS -> break
                od
            };
            /* ---- append / loan: the payload is written in several steps ---- */
            skip; skip;
            /* ---- publish: seq even (release), then write_index (release) ---- */
            atomic { writing[cand] = false; seq[cand] = (old + 2) % 4 };
            write_index = cand + 1;
            last = cand;
progress_publish:
            skip
        :: else ->
            assert(skipped >= NSLOTS);  /* "busy" only when every slot was seen pinned */
progress_busy:
            skip
        fi;
        /* forget the temporaries, so equal states compare equal */
        d_step { k = 0; cand = 0; old = 0; p = 0; r = 0; skipped = 0; claimed = false; warm = false }
    od
}

active [NREADERS] proctype reader()
{
    byte me = _pid - 1;      /* the writer is pid 0 */
    byte mask = 1 << me;
    byte s, v;
    do
    :: /* latest: the slot write_index names; read_next: any slot */
        if
        :: write_index != 0 -> s = write_index - 1
        :: s = 0
        :: s = NSLOTS - 1
        fi;
        /* ---- pin_slot() ---- */
#ifdef NOFENCE
        if
        :: atomic { pins[s] = pins[s] | mask }; v = seq[s]
        :: v = seq[s]; atomic { pins[s] = pins[s] | mask }   /* the load passed the store */
        fi;
#else
        atomic { pins[s] = pins[s] | mask };   /* fetch_or (seq_cst), then seq_cst load */
        v = seq[s];
#endif
        if
        :: ODD(v) -> atomic { pins[s] = pins[s] & ~mask }   /* being written: unpin, look again */
        :: else ->
            holding[me] = s;
            /* ---- the caller reads the views, as long as it likes ---- */
            assert(!writing[s]);
            skip;
            assert(!writing[s]);
            /* ---- next read or release(): unpin ---- */
            atomic { holding[me] = NONE; pins[s] = pins[s] & ~mask }
        fi;
        d_step { s = 0; v = 0 }
    od
}
