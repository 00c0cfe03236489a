"""Figures and their statistics.

``FIGURES`` registers every figure the bench reports (section, title, unit,
which way is better, an absolute target where one remains); ``Results``
holds each figure's value per peer and round and summarises it: median over
the rounds, min-max, and the ratio to shmx's figure of the same round.
``rank_check`` says whether shmx is the best of all peers by those ratios.
The percentiles are the workers' own (``tools/bench_peers/common.py``), so
pooled parts and C floors are computed exactly as the peers' runs are."""
from __future__ import annotations

import importlib.util
import statistics
from typing import Any, Dict, List, Optional, Tuple

from . import FRAME_1080P, WORKERS


def _workers_common() -> Any:
    """tools/bench_peers/common.py, loaded by path (its name is generic)."""
    spec = importlib.util.spec_from_file_location("shmx_bench_common", WORKERS / "common.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


latency_stats = _workers_common().latency_stats

# key: (section, title, unit, better, absolute target for shmx as (op, value) or None)
FIGURES: Dict[str, Tuple[str, str, str, str, Optional[Tuple[str, float]]]] = {}


def fig(key: str, section: str, title: str, unit: str, better: str,
        target: Optional[Tuple[str, float]] = None) -> None:
    """Register a figure (its row in the table, its entry in the JSON)."""
    FIGURES[key] = (section, title, unit, better, target)


S1, S2, S3, S3L, S4, S5, S6 = ("(1) 40-byte frames at 1 kHz: one-way latency",
                               "(2) maximum rate, small frames",
                               "(3) 1920x1080x3 frames (6.2 MB), sources larger than the caches",
                               "(3b) publish cost per frame without a reader",
                               "(4) scaling: consumers on one producer (blocking consumers)",
                               "(5) this machine's limits (floors, same run)",
                               "(6) call costs")
for _m, _t in (("poll", "busy-poll"), ("block", "blocking"), ("fd", "event-loop fd")):
    for _p, _pt in (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")):
        fig(f"latency.{_m}.{_p}_us", S1, f"{_t} {_pt}", "us", "lower")
fig("rate.publish_hz", S2, "publish rate", "msg/s", "higher", (">=", 1e6))
fig("rate.delivered_hz", S2, "received rate", "msg/s", "higher")
fig("rate.delivered_pct", S2, "delivered / sent", "%", "higher")
for _m, _label in (("touch", "touch"), ("copy", "copy"), ("touch_loan", "loan producer, touch")):
    fig(f"big.{_m}.gbps", S3, f"{_label} consumer GB/s", "GB/s", "higher")
    fig(f"big.{_m}.fps", S3, f"{_label} consumer frames/s", "fps", "higher")
    fig(f"big.{_m}.publish_us", S3, f"publish cost ({_label} run)", "us", "lower")
for _size, _label in ((65536, "64 KiB"), (FRAME_1080P, "6 MB")):
    fig(f"loan.{_size}.append_us", S3L, f"{_label} append_stream", "us", "lower")
    fig(f"loan.{_size}.loan_us", S3L, f"{_label} zero-copy loan", "us", "lower")


def scale_figures(n: int) -> None:
    """Register the figures of a run with ``n`` consumers."""
    fig(f"scale.{n}.producer_hz", S4, f"{n:>2} consumers: producer", "msg/s", "higher")
    fig(f"scale.{n}.consumer_min_hz", S4, f"{n:>2} consumers: slowest consumer", "msg/s", "higher")
    fig(f"scale.{n}.consumer_median_hz", S4, f"{n:>2} consumers: median consumer", "msg/s", "higher")


for _n in (1, 4, 16):
    scale_figures(_n)
fig("scale.16_vs_1", S4, "producer rate 16 vs 1 consumer", "x", "higher", (">=", 0.9))
fig("machine.memcpy_cold_gbps", S5, "memcpy 6 MB cold", "GB/s", "higher")
fig("machine.memcpy_hot_gbps", S5, "memcpy 6 MB hot", "GB/s", "higher")
fig("big.c_copy.gbps", S5, "C copy hand-off of 1080p frames, touch reader", "GB/s", "higher")
fig("machine.cacheline_rtt_ns", S5, "cache-line round trip core 0<->1", "ns", "lower")
fig("machine.futex_p50_us", S5, "C futex hand-off one-way p50, other core", "us", "lower")
fig("machine.futex_p99_us", S5, "C futex hand-off one-way p99, other core", "us", "lower")
fig("machine.futex_any_p50_us", S5, "C futex hand-off one-way p50, unpinned", "us", "lower")
fig("machine.futex_any_p99_us", S5, "C futex hand-off one-way p99, unpinned", "us", "lower")
fig("machine.spin_p50_us", S5, "C cross-core busy-poll one-way p50", "us", "lower")
fig("machine.spin_p99_us", S5, "C cross-core busy-poll one-way p99", "us", "lower")
fig("micro.cffi_call_ns", S5, "bare cffi call (no arguments)", "ns", "lower")
fig("micro.get_latest_frame_ns", S6, "Python get_latest_frame (3 streams)", "ns", "lower")
fig("micro.publish3_ns", S6, "Python 3-stream publish", "ns", "lower")
fig("micro.publish_dict_ns", S6, "Python publish(dict), 3 streams", "ns", "lower")
fig("micro.begin_frame_ns", S6, "Python begin_frame", "ns", "lower")
fig("micro.append_stream_ns", S6, "Python append_stream (one stream)", "ns", "lower")
fig("micro.cffi_latest_ns", S6, "shmx_client_latest via cffi", "ns", "lower")
fig("micro.c_latest_ns", S6, "C latest() of an unchanged frame", "ns", "lower", ("<", 100))
fig("micro.c_publish3_ns", S6, "C 3-stream publish", "ns", "lower")

MACHINE_KEYS = ("memcpy_cold_gbps", "memcpy_hot_gbps", "cacheline_rtt_ns", "futex_p50_us", "futex_p99_us",
                "futex_any_p50_us", "futex_any_p99_us", "spin_p50_us", "spin_p99_us")
MICRO_KEYS = ("get_latest_frame_ns", "publish3_ns", "publish_dict_ns", "cffi_latest_ns", "cffi_call_ns",
              "begin_frame_ns", "append_stream_ns")


class Results:
    """Every figure's value per peer and round, and why some are missing."""

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self.values: Dict[str, Dict[str, List[Optional[float]]]] = {}
        self.na: Dict[str, Dict[str, str]] = {}
        self.runs: List[Dict[str, Any]] = []
        # Latency samples of the parts of a round so far: (peer, mode, round) -> ns.
        # A str instead: why that round has no figure.
        self.pooled: Dict[Tuple[str, str, int], Any] = {}
        # Load average (1 min) before each scenario, and the seconds waited for it.
        self.load: Dict[str, Dict[str, Any]] = {}
        self.bridge: Optional[Dict[str, Any]] = None  # the bridge scenario's own document

    def put(self, key: str, peer: str, rnd: int, value: Optional[float]) -> None:
        """Record ``peer``'s figure ``key`` of round ``rnd``."""
        row = self.values.setdefault(key, {}).setdefault(peer, [None] * self.rounds)
        row[rnd] = None if value is None else float(value)

    def not_available(self, key: str, peer: str, reason: str) -> None:
        """Record why ``peer`` has no figure ``key``."""
        self.na.setdefault(key, {})[peer] = reason

    def summary(self, key: str, peer: str) -> Optional[Dict[str, Any]]:
        """Median, min, max over the rounds, and the same-round ratios to shmx."""
        vals = [v for v in self.values.get(key, {}).get(peer, []) if v is not None]
        if not vals:
            return None
        out: Dict[str, Any] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}
        base = self.values.get(key, {}).get("shmx", [])
        ratios = [v / b for v, b in zip(self.values[key][peer], base) if v is not None and b]
        if ratios:
            out["ratio"] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
        return out

    def median(self, key: str, peer: str) -> Optional[float]:
        """The median over the rounds, or None."""
        s = self.summary(key, peer)
        return None if s is None else s["median"]


def fmt(v: Optional[float], unit: str = "") -> str:
    """A figure with as many digits as it deserves (k/M for rates)."""
    if v is None:
        return "-"
    a = abs(v)
    if unit in ("msg/s", "fps") or a >= 1e5:
        if a >= 1e6:
            return f"{v / 1e6:.2f}M"
        if a >= 1e3:
            return f"{v / 1e3:.1f}k"
        return f"{v:.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


# Targets against the peers: shmx's figure must be the best of all peers'.
RANKED = {"latency.poll.p50_us": "lowest", "latency.poll.p99_us": "lowest", "latency.block.p50_us": "lowest",
          "big.touch.gbps": "highest", "big.copy.gbps": "highest"}


def rank_check(res: Results, key: str) -> Optional[Dict[str, Any]]:
    """Is shmx the best of all peers for ``key``?  Judged by each peer's
    figure divided by shmx's of the same round (median over the rounds):
    on a shared machine the load moves between rounds, so a peer's median
    over rounds says as much about when it ran as about the peer.  None
    when shmx or every other peer lacks the figure."""
    want = RANKED.get(key)
    ours = res.summary(key, "shmx")
    if want is None or ours is None:
        return None
    others = [(s["ratio"]["median"], name, s["median"]) for name in res.values.get(key, {}) if name != "shmx"
              for s in [res.summary(key, name)] if s is not None and "ratio" in s]
    if not others:
        return None
    # The closest competitor: the smallest ratio when lower is better.
    ratio, name, value = min(others) if want == "lowest" else max(others)
    met = ratio > 1.0 if want == "lowest" else ratio < 1.0
    return {"want": want, "met": met, "shmx": ours["median"], "best_other": name, "best_value": value,
            "best_ratio": ratio}
