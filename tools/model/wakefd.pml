/*
 * wakefd.pml - the event-loop wake fd protocol of libshmx (csrc/wakefd.c;
 * csrc/client.c shmx_client_arm_fd; the publish hook in csrc/server.c) as
 * a Promela model: one producer publishing NFRAMES frames, NREADERS
 * readers that each sleep on their own fd until they have seen every frame.
 *
 * The protocol.  A reader drains its fd, loads the futex word, and if no
 * newer frame is there sets its bit in wake_armed (fetch_or), then loads
 * the word again: changed means "read now", unchanged means "sleep until
 * the fd is readable".  The producer replaces the futex word (exchange),
 * then loads wake_armed; when it is non-zero it exchanges it with 0 and
 * sends one record to each reader whose bit was set.  All four are
 * seq_cst operations, which Promela's interleaving models.
 *
 * What is checked: no lost wake-up (a reader blocked on its fd when the
 * producer has stopped and it has not seen the last frame is an invalid
 * end state), and never more sends to a reader than times it armed (a
 * bit left set by an arm whose re-check said "read now" is sent at the next
 * publish, so two records can wait in the fd: one spurious wake-up, which
 * the one-recv drain of the real code accepts; spin shows that case).
 *   -DNORECHECK  the reader skips the load after arming; spin must find
 *                the lost wake-up (the frame published between its first
 *                look and its arming).
 */

#ifndef NREADERS
#define NREADERS 2
#endif
#ifndef NFRAMES
#define NFRAMES 3
#endif

byte word;                  /* ext->frame_futex counter part (frames published) */
byte armed;                 /* ext->wake_armed, bit r = reader r */
byte queued[NREADERS];      /* records waiting in reader r's socket */
byte arms[NREADERS];        /* times reader r armed */
byte sends[NREADERS];       /* records the producer sent to reader r */

active proctype producer()
{
    byte bits, i;
    do
    :: word < NFRAMES ->
        word++;                                      /* exchange of frame_futex */
        if
        :: armed != 0 ->                             /* seq_cst load */
            atomic { bits = armed; armed = 0 };      /* exchange */
            i = 0;
            do
            :: i < NREADERS ->
                if
                :: bits & (1 << i) ->
                    queued[i]++;                     /* send(): the fd is readable */
                    sends[i]++;
                    assert(sends[i] <= arms[i])      /* never more than one per arm */
                :: else -> skip
                fi;
                i++
            :: else -> break
            od;
            bits = 0; i = 0
        :: else -> skip
        fi
    :: else -> break
    od
}

active [NREADERS] proctype reader()
{
    byte me = _pid - 1;      /* the producer is pid 0 */
    byte seen = 0;
    byte w;
    do
    :: seen == NFRAMES -> break
    :: else ->
        atomic { if :: queued[me] > 0 -> queued[me]-- :: else -> skip fi };   /* drain: one recv */
        w = word;                                    /* seq_cst load */
        if
        :: w > seen -> seen = w                      /* arm says "read now" */
        :: else ->
            atomic { armed = armed | (1 << me); arms[me]++ };   /* fetch_or */
#ifdef NORECHECK
            queued[me] > 0                           /* wait for the fd */
#else
            if
            :: word != w -> skip                     /* changed: read now */
            :: else -> queued[me] > 0                /* poll(): blocks until readable */
            fi
#endif
        fi;
        w = 0
    od
}
