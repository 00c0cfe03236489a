/*
 * wake.pml - the frame wake-up protocol of libshmx (csrc/server.c publish,
 * next_futex_word; csrc/client.c shmx_client_wait) as a Promela model: one
 * producer that publishes NFRAMES frames and stops, NWAITERS readers that
 * each wait for every new frame.
 *
 * The protocol.  The futex word counts publishes in steps of 2; bit 0 says
 * a reader sleeps.  A waiter reads the word, sets bit 0 (fetch_or) and, if
 * the counter part did not move meanwhile, sleeps in futex_wait, which
 * blocks only while the word still equals the value with the bit.  The
 * producer replaces the word by the next even value (exchange) and makes
 * the wake system call only when the old value had bit 0: one call per
 * sleep, not one per frame.
 *
 * What is checked: no lost wake-up.  When the producer has stopped, a
 * waiter that has not seen the last frame must not be asleep: spin reports
 * such a state as an invalid end state (a waiter blocked for ever; the real
 * code would only notice at its next 100 ms time slice).
 *   -DFLAG   the protocol as first written: the sleeper flag a separate
 *            word that the producer clears when it wakes.  A flag set for
 *            the next frame can be consumed by the wake of the current
 *            one; spin must find that lost wake-up.
 */

#ifndef NWAITERS
#define NWAITERS 2
#endif
#ifndef NFRAMES
#define NFRAMES 3
#endif

byte word;               /* ext->frame_futex: 2 * frames published | sleeper bit */
bool flag;               /* -DFLAG only: the separate sleeper flag */
bool asleep[NWAITERS];   /* in the kernel's futex queue */

#ifdef FLAG
#define SLEEP_ON(w) (w)          /* the word has no sleeper bit */
#else
#define SLEEP_ON(w) ((w) | 1)
#endif
#define WAKE_ALL d_step { i = 0; do :: i < NWAITERS -> asleep[i] = false; i++ :: else -> break od; i = 0 }

active proctype producer()
{
    byte old, i;
    do
    :: (word >> 1) < NFRAMES ->
#ifdef FLAG
        word = word + 2;                          /* fetch_add */
        if
        :: flag -> atomic { old = flag; flag = false };   /* exchange */
            if
            :: old -> WAKE_ALL
            :: else -> skip
            fi
        :: else -> skip
        fi;
#else
        atomic { old = word; word = ((word >> 1) + 1) << 1 };   /* exchange */
        if
        :: old & 1 -> WAKE_ALL
        :: else -> skip
        fi;
#endif
        old = 0
    :: else -> break
    od
}

active [NWAITERS] proctype waiter()
{
    byte me = _pid - 1;      /* the producer is pid 0 */
    byte seen = 0;           /* the newest frame this waiter has read */
    byte w, o;
    do
    :: seen == NFRAMES -> break
    :: else ->
        w = word;                                 /* acquire load */
        if
        :: (w >> 1) > seen -> seen = w >> 1       /* newer frame: read it */
        :: else ->
#ifdef FLAG
            flag = true;                          /* exchange */
            o = word;                             /* recheck */
#else
            atomic { o = word; word = word | 1 }; /* fetch_or */
#endif
            if
            :: (o | 1) == (w | 1) ->
                atomic {                          /* futex_wait: the kernel compares */
                    if
                    :: word == SLEEP_ON(w) -> asleep[me] = true
                    :: else -> skip
                    fi
                };
                !asleep[me]                       /* blocks until woken */
            :: else -> skip
            fi
        fi;
        o = 0
    od
}
