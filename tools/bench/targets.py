"""The targets, judged as ratios to floors and peers measured in the same run.

A target compares one of shmx's figures with a reference of the same run: a
floor of the machine (C futex hand-off, hot memcpy, C copy hand-off), another peer (the
stdlib seqlock ring, shmx 1.0.1), or a sum of call costs.  The ratio is taken
round by round (round r of the figure over round r of the reference) and
its median is held against the limit; where no round has both, the ratio of
the medians.  ``judge`` gives the verdict and refuses one when the load
average before any scenario the target draws on was above ``LOAD_LIMIT``:
the figures are still printed, the verdict says "not judged: load X".
Rank targets (best of all peers) and the few absolute targets left in
``stats.FIGURES`` go through the same ``judge``."""
from __future__ import annotations

import statistics
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .stats import FIGURES, RANKED, Results, fmt, rank_check

LOAD_LIMIT = 1.5

# A term: (figure key, peer).  A reference may be a sum of terms.
Term = Tuple[str, str]

# (id, title, numerator, denominator terms, op, limit, what the ratio means)
RATIO_TARGETS: List[Tuple[str, str, Term, Sequence[Term], str, float]] = [
    # Unpinned, as every peer runs: the same scheduler placement as the
    # Python readers get.  The pinned hand-off (reader asleep on the other
    # core) is printed beside it; it is slower than Python readers that run
    # unpinned, so it is no floor for them.
    ("block_vs_futex", "blocking p50 <= 1.3x C futex hand-off p50 (unpinned, as the peers run)",
     ("latency.block.p50_us", "shmx"), [("machine.futex_any_p50_us", "machine")], "<=", 1.3),
    # The cheapest Python blocking read: the stdlib ring's FUTEX_WAIT
    # through ctypes, woken after every frame (tools/bench_peers/stdlib_worker.py).
    ("block_vs_ring", "blocking p50 <= 1.3x stdlib ring's futex wait p50 (the cheapest Python blocking read)",
     ("latency.block.p50_us", "shmx"), [("latency.block.p50_us", "stdlib-shm")], "<=", 1.3),
    ("poll_p50_vs_ring", "busy-poll p50 <= 1.3x stdlib ring's p50",
     ("latency.poll.p50_us", "shmx"), [("latency.poll.p50_us", "stdlib-shm")], "<=", 1.3),
    ("poll_p99_vs_ring", "busy-poll p99 <= stdlib ring's p99",
     ("latency.poll.p99_us", "shmx"), [("latency.poll.p99_us", "stdlib-shm")], "<=", 1.0),
    ("touch_vs_memcpy", "1080p touch GB/s >= 0.9x hot memcpy",
     ("big.touch.gbps", "shmx"), [("machine.memcpy_hot_gbps", "machine")], ">=", 0.9),
    # The same copy into a ring and touch in place done in C by two
    # processes, in the same scenario (floors.copy_handoff).  Hot memcpy runs
    # from the cache where the L3 holds a pair of frames but not the ring.
    ("touch_vs_c_copy", "1080p touch GB/s >= 0.9x the C copy hand-off (same ring, touch reader)",
     ("big.touch.gbps", "shmx"), [("big.c_copy.gbps", "machine")], ">=", 0.9),
    ("publish3_vs_101", "3-stream publish (begin + 3 append + publish) <= 0.5x shmx 1.0.1's",
     ("micro.publish3_ns", "shmx"), [("micro.publish3_ns", "shmx-1.0.1")], "<=", 0.5),
    ("publish_dict_vs_calls", "publish({...}) of 3 streams <= append_stream + bare cffi call + C 3-stream publish",
     ("micro.publish_dict_ns", "shmx"),
     [("micro.append_stream_ns", "shmx"), ("micro.cffi_call_ns", "shmx"), ("micro.c_publish3_ns", "shmx")],
     "<=", 1.0),
    ("latest_vs_101", "get_latest_frame >= 5x faster than shmx 1.0.1 (1.0.1's time / ours)",
     ("micro.get_latest_frame_ns", "shmx-1.0.1"), [("micro.get_latest_frame_ns", "shmx")], ">=", 5.0),
    ("read_next_vs_ring", "read_next busy-poll received rate >= 1.2x stdlib ring's",
     ("rate.delivered_hz", "shmx"), [("rate.delivered_hz", "stdlib-shm")], ">=", 1.2),
]


def scenario_of(key: str) -> str:
    """The scenario (as in ``--scenarios``) that measures figure ``key``."""
    head = key.split(".", 1)[0]
    return {"loan": "big"}.get(head, head)


def judge(value: Optional[float], op: str, limit: Optional[float], load: Optional[float],
          load_limit: float = LOAD_LIMIT) -> Dict[str, Any]:
    """The verdict on ``value op limit`` given the load before the run.

    Pure.  ``met`` is True/False for a judged target and None otherwise;
    ``verdict`` is "met", "missed", "n/a" (nothing to judge) or
    "not judged: load X" (above ``load_limit``; ``would_meet`` then says
    how it came out).  An unknown load (None) does not stop a verdict."""
    if value is None or limit is None:
        return {"verdict": "n/a", "met": None, "judged": False, "load": load}
    met = {"<": value < limit, "<=": value <= limit, ">": value > limit, ">=": value >= limit}[op]
    if load is not None and load > load_limit:
        return {"verdict": f"not judged: load {load:.2f}", "met": None, "judged": False, "load": load,
                "would_meet": met}
    return {"verdict": "met" if met else "missed", "met": met, "judged": True, "load": load}


def load_before(res: Results, scenarios: Sequence[str]) -> Optional[float]:
    """The highest load measured before any of ``scenarios`` (None: unknown)."""
    loads = [res.load[s]["load1"] for s in scenarios if s in res.load and res.load[s].get("load1") is not None]
    return max(loads) if loads else None


def _values(res: Results, term: Term) -> List[Optional[float]]:
    return res.values.get(term[0], {}).get(term[1], [])


def same_round_ratio(res: Results, num: Term, den: Sequence[Term]) -> Optional[Dict[str, Any]]:
    """Median over rounds of num_r / sum(den_r); ratio of medians as a fallback."""
    nv = _values(res, num)
    dvs = [_values(res, t) for t in den]
    ratios = []
    for r in range(len(nv)):
        parts = [d[r] if r < len(d) else None for d in dvs]
        if nv[r] is not None and all(p is not None for p in parts) and sum(parts):  # type: ignore[arg-type]
            ratios.append(nv[r] / sum(parts))  # type: ignore[arg-type,operator]
    n_med = res.median(*num)
    d_meds = [res.median(*t) for t in den]
    if n_med is None or any(d is None for d in d_meds):
        return None
    d_sum = sum(d_meds)  # type: ignore[arg-type]
    if ratios:
        return {"ratio": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "rounds": len(ratios),
                "value": n_med, "reference": d_sum}
    if not d_sum:
        return None
    return {"ratio": n_med / d_sum, "rounds": 0, "value": n_med, "reference": d_sum}


def targets_report(res: Results, load_limit: float = LOAD_LIMIT) -> List[Dict[str, Any]]:
    """Every target with its measured ratio (or value) and its verdict."""
    out: List[Dict[str, Any]] = []
    for tid, title, num, den, op, limit in RATIO_TARGETS:
        r = same_round_ratio(res, num, den)
        scen = sorted({scenario_of(k) for k, _p in [num, *den]})
        load = load_before(res, scen)
        entry: Dict[str, Any] = {"id": tid, "kind": "ratio", "figure": num[0], "peer": num[1], "title": title,
                                 "unit": "x", "op": op, "target": limit, "scenarios": scen,
                                 "against": [f"{k} ({p})" for k, p in den],
                                 "measured": None if r is None else r["ratio"]}
        if r is not None:
            entry.update(value=r["value"], reference=r["reference"], rounds=r["rounds"],
                         ratio_range=[r.get("min", r["ratio"]), r.get("max", r["ratio"])])
        entry.update(judge(entry["measured"], op, limit, load, load_limit))
        out.append(entry)
    for key, (_sec, title, unit, _b, target) in FIGURES.items():
        if target is None:
            continue
        op, want = target
        scen = [scenario_of(key)]
        entry = {"id": key, "kind": "absolute", "figure": key, "peer": "shmx",
                 "title": f"{title} {op} {fmt(want, unit)} {unit}",
                 "unit": unit, "op": op, "target": want, "scenarios": scen, "measured": res.median(key, "shmx")}
        entry.update(judge(entry["measured"], op, want, load_before(res, scen), load_limit))
        out.append(entry)
    for key, want in RANKED.items():
        r = rank_check(res, key)
        if r is None or key not in FIGURES:
            continue
        _sec, title, unit, _b, _t = FIGURES[key]
        scen = [scenario_of(key)]
        entry = {"id": f"rank:{key}", "kind": "rank", "figure": key, "peer": "shmx",
                 "title": f"{title}: {want} of all peers", "unit": unit, "op": f"{want} of all peers",
                 "target": None, "scenarios": scen, "measured": r["shmx"], "best_other": r["best_other"],
                 "best_value": r["best_value"], "best_ratio": r["best_ratio"]}
        # The closest peer's same-round ratio to shmx: above 1 when lower is better.
        entry.update(judge(r["best_ratio"], ">" if want == "lowest" else "<", 1.0,
                           load_before(res, scen), load_limit))
        out.append(entry)
    return out
