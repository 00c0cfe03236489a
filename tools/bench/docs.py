"""docs/benchmarks.md, its pictures in docs/img/, and the README's
performance table (between the ``README_BEGIN``/``README_END`` markers):
written by ``--docs`` from a full run or from ``--rerender``."""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional

from . import FRAME_1080P, ROOT
from .floors import machine_text
from .stats import FIGURES, Results, fmt
from .targets import LOAD_LIMIT

README_BEGIN = "<!-- bench:performance-table begin (written by python tools/bench --docs) -->"
README_END = "<!-- bench:performance-table end -->"

# The README's table: (title, [(figure key, unit)], unit shown)
README_ROWS = [
    ("blocking wake p50 / p99, 40 B at 1 kHz (µs)", ["latency.block.p50_us", "latency.block.p99_us"]),
    ("busy-poll latency p50 / p99 (µs)", ["latency.poll.p50_us", "latency.poll.p99_us"]),
    ("small-frame publish rate from Python (msg/s)", ["rate.publish_hz"]),
    ("in-order busy-poll receive rate (msg/s)", ["rate.delivered_hz"]),
    ("1080p frames received, consumer touches / copies each frame (GB/s)", ["big.touch.gbps", "big.copy.gbps"]),
    ("producer rate with 16 consumers / with 1", ["scale.16_vs_1"]),
    ("publish cost, 6 MB frame: copy / zero-copy `loan` (µs)",
     [f"loan.{FRAME_1080P}.append_us", f"loan.{FRAME_1080P}.loan_us"]),
    ("Python `get_latest_frame()` of an unchanged frame, 3 streams (µs)", ["micro.get_latest_frame_ns"]),
    ("Python 3-stream publish, `begin_frame` + 3 `append_stream` + `publish_frame` (µs)", ["micro.publish3_ns"]),
    ("Python `publish({...})`, 3 streams (µs)", ["micro.publish_dict_ns"]),
]
README_PEERS = [("shmx", "shmx"), ("shmx-1.0.1", "shmx 1.0.1"), ("iceoryx2", "iceoryx2"), ("ecal", "eCAL"),
                ("zmq", "pyzmq ipc"), ("stdlib-shm", "stdlib shm ring"), ("mp-pipe", "mp.Pipe")]


def _best(res: Results, key: str, peers: List[str]) -> Optional[str]:
    """The peer with the best median of ``key`` (None: fewer than two have it)."""
    have = [(v, p) for p in peers for v in [res.median(key, p)] if v is not None]
    if len(have) < 2 or key not in FIGURES:
        return None
    return (min(have) if FIGURES[key][3] == "lower" else max(have))[1]


def _cell(res: Results, keys: List[str], peer: str, best: Dict[str, Optional[str]]) -> str:
    parts = []
    for key in keys:
        v = res.median(key, peer)
        if v is None:
            parts.append(None)
            continue
        unit = FIGURES[key][2] if key in FIGURES else ""
        text = fmt(v / 1000.0 if key.startswith("micro.") else v, unit)  # ns -> µs; rates in k/M
        parts.append(f"**{text}**" if best.get(key) == peer else text)
    if all(p is None for p in parts):
        return ""
    return " / ".join("n/a" if p is None else p for p in parts)


def readme_table(res: Results, targets: List[Dict[str, Any]], started: str) -> str:
    """The README's table of medians, the floors and the verdicts."""
    peers = [(p, t) for p, t in README_PEERS if any(p in res.values.get(k, {}) for _ti, ks in README_ROWS for k in ks)]
    lines = [f"| figure | {' | '.join(t for _p, t in peers)} |", "|---" * (len(peers) + 1) + "|"]
    names = [p for p, _t in peers]
    for title, keys in README_ROWS:
        best = {k: _best(res, k, names) for k in keys}
        cells = [_cell(res, keys, p, best) for p in names]
        if any(cells):
            lines.append(f"| {title} | {' | '.join(cells)} |")
    floors = []
    for key, label, unit in (("machine.futex_any_p50_us", "C futex hand-off one-way p50 (unpinned)", "µs"),
                             ("machine.futex_p50_us", "reader on the other core", "µs"),
                             ("machine.spin_p50_us", "C cross-core busy-poll one-way p50", "µs"),
                             ("machine.memcpy_cold_gbps", "6 MB memcpy cold", "GB/s"),
                             ("machine.memcpy_hot_gbps", "hot", "GB/s"),
                             ("big.c_copy.gbps", "C copy hand-off of 1080p frames (touch reader)", "GB/s"),
                             ("machine.cacheline_rtt_ns", "cache-line round trip", "ns")):
        v = res.median(key, "machine")
        if v is not None:
            floors.append(f"{label} {fmt(v)} {unit}")
    cffi = res.median("micro.cffi_call_ns", "shmx")
    if cffi is not None:
        floors.append(f"a bare cffi call {fmt(cffi)} ns")
    text = "\n".join(lines)
    if floors:
        text += f"\n\nThe machine's floors in the same run: {', '.join(floors)}."
    ratio = [t for t in targets if t["kind"] == "ratio"]
    if ratio:
        text += "\n\n| target (ratio in the same run) | measured | |\n|---|---|---|\n" + "\n".join(
            f"| {t['title']} | {'n/a' if t['measured'] is None else format(t['measured'], '.2f') + 'x'} | "
            f"{t['verdict']} |" for t in ratio)
    return f"{README_BEGIN}\n{text}\n\n(Measured {started}.)\n{README_END}"


def write_readme(table: str, path: Optional[Path] = None) -> Optional[Path]:
    """Replace the README's marked table; None when the markers are missing."""
    path = path or ROOT / "README.md"
    text = path.read_text()
    pat = re.compile(re.escape(README_BEGIN) + ".*?" + re.escape(README_END), re.S)
    if not pat.search(text):
        return None
    path.write_text(pat.sub(lambda _m: table, text, count=1))
    return path


def write_docs(text_table: str, peers_text: str, machine: Dict[str, Any], charts: List[str],
               command: str, started: str, targets: List[Dict[str, Any]], parts: int,
               load_line: str = "") -> Path:
    """docs/benchmarks.md and the charts copied to docs/img/."""
    img = ROOT / "docs" / "img"
    img.mkdir(parents=True, exist_ok=True)
    rel = []
    for c in charts:
        dest = img / ("bench_" + Path(c).name.split("_", 1)[-1])
        shutil.copy(c, dest)
        rel.append(f"img/{dest.name}")
    tgt = ["| target | measured | verdict |", "| --- | --- | --- |"]
    for t in targets:
        m = t["measured"]
        if t["kind"] == "ratio":
            got = "n/a" if m is None else f"{m:.2f}x"
        elif t["kind"] == "rank":
            got = (f"{fmt(m, t['unit'])} {t['unit']} (next: {t['best_other']} {fmt(t['best_value'], t['unit'])}, "
                   f"x{t['best_ratio']:.2f} shmx)")
        else:
            got = "n/a" if m is None else f"{fmt(m, t['unit'])} {t['unit']}"
        tgt.append(f"| {t['title']} | {got} | {t['verdict']} |")
    turns = ("" if parts < 2 else
             f"\nEach peer's latency messages come in {parts} parts per round, the peers\n"
             f"taking turns, and a round's percentiles are over its pooled parts.")
    doc = f"""# Benchmarks

Measured by `python tools/bench` on {started}. Every figure is the median
over the rounds, with the smallest and largest round in brackets; "x shmx"
is the figure divided by shmx's figure of the same round (median and range
of those ratios), so 0.5 means half of shmx's value: better for rates,
worse for times, and the other way round.{turns}

The targets are ratios to what this machine itself can do, measured in the
same run: a C futex hand-off between two processes, a C busy-poll across
two cores, hot and cold memcpy, 1080p frames copied into a ring and
touched in place by two C processes (the touch row's floor, run in the
big scenario beside the peers), a bare cffi call, and the other peers.  A
ratio is taken round by round (the figure over its reference of the same
round) and its median is held against the limit.  The 1-minute load
average is read before each scenario (after up to `--settle` seconds for
the previous scenario's own load to decay); a target that draws on a
scenario whose load was above {LOAD_LIMIT} is not judged, and says so.

## Reproduce

```
{command}
```

`--setup-peers` creates one virtual environment per peer under `.peers/`
(from PyPI; shmx 1.0.1 is built from its sdist by `tools/legacy_env.py`).
`--quick` is the seconds-long smoke run CI uses (shmx only, small counts,
no verdicts). `--rerender JSON --docs` redraws this page from a saved run.

## Machine

{machine_text(machine)}.

{load_line}

## Results

```
{peers_text}
{text_table}
```

### Targets (shmx)

{chr(10).join(tgt)}

## Charts

""" + "\n\n".join(f"![{Path(r).stem}]({r})" for r in rel) + """

## Reading the peers' figures

* **shmx** is used in its fastest documented modes: `publish_stream()`
  (a one-stream frame in one C call) for the small and large frames,
  `get_latest_stream(new_only=True)` (the stream's view of a newer frame, no
  dicts) for busy polling, `read_next_stream()` (the same in order, with
  `dropped` counts) for the rate scenario, `wait_frame()` for blocking.  The 3-stream figures in (6) use the
  documented `begin_frame`/`append_stream`/`publish_frame`, `publish({...})`
  and `get_latest_frame()`.
* **shmx 1.0.1** is a pybind11 module: it has no blocking read, no in-order
  read and no loan, its `append_stream` takes `bytes` only (a 6 MB numpy
  frame is turned into bytes first, as its own documented example does), and
  its readers verify a checksum over the whole payload.
* **stdlib-shm** is the strongest pure-Python ring we could write: the
  reader takes the newest (or next) frame in place between two loads of the
  slot's sequence word (a seqlock), through memoryviews made once, with no
  allocation per frame of its own; the writer copies into a preallocated
  slot view.  Its blocking read (the latency scenario only) sleeps in
  FUTEX_WAIT on the frame-number word through ctypes, and its writer then
  calls FUTEX_WAKE after every frame (pure Python has no atomic
  read-modify-write for a sleeper flag): the cheapest Python blocking read
  we could write, the reference of the blocking target beside the C
  hand-off.  No reader tracking, x86-only memory ordering.
* **zmq**'s publish cost for large frames is only the hand-over to its I/O
  thread (`copy=False`); the copy through the socket happens there, so look
  at the frames the consumer received.
* **eCAL** hands messages to a callback on its own thread, as `bytes`; it
  has no busy-poll mode, and `send` takes `bytes` only.
* **mp-pipe / mp-queue** never drop: the producer is held back to the
  consumer's pace (or the slowest one's), so "delivered" is 100 % and the
  publish rate is what the consumers can take.
* One-way latency is stamped before the whole publish call, so it includes
  the publish (for shmx, `publish_stream`).

## How it measures

* Producer and consumers are separate processes, started by the driver;
  each peer runs under its own interpreter and virtual environment and
  speaks JSON lines to the driver (`tools/bench_peers/`).  Until every
  consumer has received a warm-up message nothing is measured.
* Every message carries its id and the producer's `time.perf_counter_ns()`
  (CLOCK_MONOTONIC, comparable across processes) taken just before the
  publish call; the consumer takes its own stamp as soon as the message is
  in hand (eCAL: first thing in its receive callback).  The garbage
  collector is off during the measured loops, for every peer alike.
* Scenarios run one after the other, each for all its rounds; within a
  scenario each round starts with another peer.
* (1) 40-byte messages paced at 1 kHz by a sleep-then-spin producer.
  Busy-poll: the consumer calls the peer's non-blocking receive in a loop;
  blocking: the peer's own wait (shmx `wait_frame`, a futex).
* (2) the producer publishes as fast as it can for a few seconds; "received
  rate" is what one busy-polling consumer got per second, "delivered / sent"
  the share of messages it saw.  For shmx the consumer reads in order with
  `read_next_stream()`, and the client's `dropped_total` over the run (the
  ring keeps the same running total) is checked against the gaps in the
  ids it saw (the raw JSON has both).
* (3) 1920x1080x3 uint8 frames, the producer cycling through 8 distinct
  source arrays (50 MB, more than the caches).  "touch" reads one byte of
  every 4 KiB page of each frame in place; "copy" ends with a private copy
  of each frame (for pipes and queues, the receive already is that copy).
  GB/s = frames received x 6,220,800 bytes / s.  (3b) times
  `begin_frame` + `append_stream` (a copy) against `begin_frame` + `loan` +
  `publish_frame` (the producer writes the frame in place) with no reader.
* (4) one producer at full speed, 1, 4 and 16 consumer processes using the
  peer's blocking receive (where a peer has none, polling with a yield).
  The producer runs alone on CPU 0 and the consumers share the other CPUs.
* (5) the floors: `numpy.copyto` of 6 MB, cold (16 pairs in turn) and hot
  (one pair again); two threads pinned to cores 0 and 1 bouncing one cache
  line (`tools/bench_c/pingpong.c`); two processes handing a stamp over at
  1 kHz through shared memory (`tools/bench_c/handoff.c`), the reader
  asleep in `FUTEX_WAIT` on the other core (the floor the blocking target
  is judged against), the same unpinned (the scheduler may then wake the
  reader on the writer's core: a few µs, which it does for this tight C
  pair and not for the Python readers), or spinning on the other core; a
  cffi call of a C function with no arguments.
* (6) call costs in one process: `get_latest_frame()` of an unchanged frame
  with 3 small streams, a whole 3-stream publish, `publish({...})`, one
  `append_stream`, and the same in C (`tools/bench_c/latest_micro.c`,
  compiled against `csrc/`).  The `publish({...})` target's reference is one
  `append_stream` + one bare cffi call + the C 3-stream publish
  (`c_publish3_ns`: begin, 3 appends, publish, all in C).
"""
    path = ROOT / "docs" / "benchmarks.md"
    path.write_text(doc)
    return path
