"""Stress: a producer process publishing at full speed frames whose every
byte follows from the frame number, and reader processes checking every
byte of every frame they get.  A torn frame, a frame rewritten while a
reader holds it, a frame id going backwards, or (for ordered reads) a frame
neither read nor reported dropped fails the test."""
from __future__ import annotations

import time

import pytest

from _helpers import (PROC_TIMEOUT, Workers, stress_latest_reader, stress_next_reader,
                      stress_producer, wait_until)

pytest.importorskip("numpy")

RUN_SECONDS = 3.0  # at least; longer only where a crowded machine is too slow
WANT = 50  # frames each reader must get through, at least


@pytest.mark.parametrize("spare", [1, 2], ids=["slots=readers+1", "slots=readers+2"])
def test_latest_readers_never_see_a_torn_frame(name, spare):
    """With one slot more than readers, their pins usually leave the
    producer a single free slot, which it rewrites back to back: readers
    then mostly move between frames other readers hold, and race the
    producer for that slot, the hardest case for the pin handshake.  With
    two spare slots the producer alternates between free slots, so the
    latest frame stays intact while the next one is written."""
    max_bytes = 1 << 20
    readers = 3
    with Workers() as w:
        go, stop, release = w.event(), w.event(), w.event()
        w.start(stress_producer, "producer", name, go, stop, release, max_bytes, readers + spare)
        w.collect("ready", 1)
        for who, mode in enumerate(["wait", "latest", "stream"]):
            w.start(stress_latest_reader, who, name, go, RUN_SECONDS, WANT, max_bytes, mode)
        w.collect("ready", readers)
        go.set()
        results = w.collect("result", readers, timeout=RUN_SECONDS + PROC_TIMEOUT)
        stop.set()
        (produced,) = w.collect("produced", 1)
        release.set()
        assert w.join() == [0] * (readers + 1)
    assert produced["published"] == produced["frame_seq"]
    assert produced["published"] >= 100, produced
    for r in results:
        assert r["nerrors"] == 0, r["errors"]
        assert r["backwards"] == 0, r
        # They really read: many distinct frames, each checked in full (a
        # held frame that comes back again is re-checked now and then).
        assert r["distinct"] >= WANT, (results, produced)
        assert r["checks"] >= r["distinct"]


def test_ordered_readers_account_for_every_frame(name):
    max_bytes = 256 * 1024
    with Workers() as w:
        go, stop, release, done = w.event(), w.event(), w.event(), w.event()
        # Two slots more than readers: while each reader pins a frame, the
        # producer still alternates between two free slots, so every frame
        # it publishes stays readable for a frame period.
        w.start(stress_producer, "producer", name, go, stop, release, max_bytes, 5)
        w.collect("ready", 1)
        readers = 3
        progress = w.counters(readers)
        for who in range(readers):
            w.start(stress_next_reader, who, name, go, done, progress, max_bytes)
        w.collect("ready", readers)
        go.set()
        time.sleep(RUN_SECONDS)  # how long the producer runs, not a check
        wait_until(lambda: min(progress[:]) >= WANT, PROC_TIMEOUT, interval=0.05)
        stop.set()
        (produced,) = w.collect("produced", 1)
        done.set()  # the last frame is out: readers drain up to it
        results = w.collect("result", readers)
        release.set()
        assert w.join() == [0] * (readers + 1)
    total = produced["published"]
    assert total == produced["frame_seq"] and total >= 100, produced
    for r in results:
        assert r["nerrors"] == 0, r["errors"]
        assert r["last"] == total, r
        # Every frame id from the first one read to the last published was
        # either returned or counted as dropped, none twice.
        assert r["frames"] + r["dropped"] == r["last"] - r["first"] + 1, r
        assert r["frames"] >= WANT, (results, produced)
        assert r["counters"] == (r["frames"], r["dropped"]), r
