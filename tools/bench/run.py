"""The plan of a run and what each step records.

Scenarios run one after the other, each for all its rounds (``SCENARIOS``
order): the load average is read before each scenario, after waiting up to
``--settle`` seconds for the previous one's load to decay, so the load a
target is judged by is the load its rounds met.  Within a scenario each
round starts with another peer, and a round's latency messages come in
parts with the peers taking turns (the load of a shared machine moves from
minute to minute).  ``execute`` runs one step and puts its figures into
``Results``; a failing or unsupported step marks its figures n/a."""
from __future__ import annotations

import statistics
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

from . import FRAME_1080P, RING_SOURCES
from .floors import c_latest, cacheline_limits, copy_handoff, handoff_limits, load1, memcpy_limits
from .peers import Peer
from .stats import FIGURES, MACHINE_KEYS, MICRO_KEYS, Results, latency_stats, scale_figures
from .workers import RunFailed, Unsupported, run_pair, run_single

SCENARIOS = ("machine", "micro", "latency", "rate", "big", "scale", "bridge")
DEFAULT_SCENARIOS = "latency,rate,big,scale,machine,micro"
SETTLE_BELOW = 1.0   # wait (up to --settle s) for the 1-minute load to fall under this
Step = Tuple[str, Optional[Peer], Dict[str, Any]]


class Progress:
    """A progress bar on stderr (one line per step when not a terminal)."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.t0 = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.enabled = enabled
        self.width = 0

    def step(self, label: str) -> None:
        if not self.enabled:
            return
        frac = self.done / self.total
        el = time.monotonic() - self.t0
        eta = f" eta {el / frac * (1 - frac):4.0f}s" if self.done else ""
        text = f"[{'#' * int(frac * 30):<30}] {self.done:>3}/{self.total} {el:5.0f}s{eta}  {label}"
        if self.tty:
            sys.stderr.write("\r" + text + " " * max(self.width - len(text), 0))
            self.width = len(text)
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def advance(self) -> None:
        self.done += 1

    def note(self, text: str) -> None:
        if not self.enabled:
            return
        if self.tty:
            sys.stderr.write("\r" + " " * self.width + "\r")
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()


def build_plan(peers: List[Peer], args, rnd: int, scenario: str) -> List[Step]:
    """The steps of ``scenario`` in round ``rnd``."""
    ok = [p for p in peers if p.ok]
    # Each round starts with another peer: whoever runs first meets a machine
    # that is still settling (caches, CPU clocks, the scenario before).
    k = rnd % len(ok) if ok else 0
    ok = ok[k:] + ok[:k]
    shmx_workers = [p for p in ok if p.worker.name == "shmx_worker.py"]
    plan: List[Step] = []
    if scenario == "latency":
        # The parts of a round are pooled (stats.latency_stats over all).
        for part in range(args.latency_parts if ok else 0):
            turn = ok[part % len(ok):] + ok[:part % len(ok)]
            for mode in ("poll", "block", "fd"):
                for p in turn:
                    if mode == "fd" and p.name != "shmx":
                        continue  # the others' event-loop waits are their "block" modes
                    plan.append(("latency", p, {"mode": mode, "part": part}))
    elif scenario == "rate":
        plan += [("rate", p, {"mode": "poll"}) for p in ok]
    elif scenario == "big":
        plan.append(("c_copy", None, {}))  # the touch row's floor, beside the peers
        for mode in ("touch", "copy"):
            plan += [("big", p, {"mode": mode}) for p in ok]
        plan += [("big", p, {"mode": "touch", "loan": True}) for p in ok if p.name == "shmx"]
        plan += [("loan", p, {}) for p in shmx_workers]
    elif scenario == "scale":
        for n in args.consumers:
            plan += [("scale", p, {"n": n}) for p in ok]
    elif scenario == "machine":
        plan.append(("machine", None, {}))
    elif scenario == "micro":
        plan += [("micro", p, {}) for p in shmx_workers]
        plan.append(("c_micro", None, {}))
    elif scenario == "bridge" and rnd == 0:
        plan.append(("bridge", None, {}))  # once per run: it has its own peers and repeats
    return plan


def settle(max_wait: float, note) -> Tuple[Optional[float], float]:
    """Wait up to ``max_wait`` s for the 1-minute load to fall under
    ``SETTLE_BELOW`` (the scenario before leaves its own load behind);
    returns (the load then, seconds waited)."""
    t0 = time.monotonic()
    load = load1()
    announced = False
    while load is not None and load > SETTLE_BELOW and time.monotonic() - t0 < max_wait:
        if not announced:
            note(f"  load {load:.2f}: waiting up to {max_wait:.0f} s for it to settle under {SETTLE_BELOW}")
            announced = True
        time.sleep(min(2.0, max(0.1, max_wait - (time.monotonic() - t0))))
        load = load1()
    return load, round(time.monotonic() - t0, 1)


def execute(step: Step, rnd: int, args, res: Results, tmp: str, build: str) -> None:
    """Run one step and record its figures (raises Unsupported/RunFailed)."""
    kind, peer, opts = step
    q = args.quick
    if kind == "latency":
        assert peer is not None
        _latency(peer, opts, rnd, args, res, tmp)
    elif kind == "rate":
        assert peer is not None
        r = run_pair(peer, "rate", "poll", 1, {"duration": args.duration}, tmp)
        res.runs.append(dict(r, round=rnd))
        pr, c = r["producer"], r["consumers"]["consumer0"]
        peer.modes["rate"] = r.get("info", {}).get("consumer", {}).get("mode", "")
        res.put("rate.publish_hz", peer.name, rnd, pr["rate_hz"])
        res.put("rate.delivered_hz", peer.name, rnd, c["rate_hz"])
        res.put("rate.delivered_pct", peer.name, rnd, 100.0 * c["received"] / max(pr["sent"], 1))
    elif kind == "big":
        assert peer is not None
        mode = opts["mode"]
        params: Dict[str, Any] = {"duration": args.duration, "frame_bytes": FRAME_1080P, "sources": RING_SOURCES}
        if opts.get("loan"):
            params["loan"] = True
        r = run_pair(peer, "big", mode, 1, params, tmp)
        res.runs.append(dict(r, round=rnd))
        pr, c = r["producer"], r["consumers"]["consumer0"]
        key = f"{mode}_loan" if opts.get("loan") else mode
        peer.modes["big_loan" if opts.get("loan") else "big"] = r.get("info", {}).get("producer", {}).get("mode", "")
        res.put(f"big.{key}.gbps", peer.name, rnd, c["gbps"])
        res.put(f"big.{key}.fps", peer.name, rnd, c["fps"])
        res.put(f"big.{key}.publish_us", peer.name, rnd, pr["publish_us"])
    elif kind == "c_copy":
        r = copy_handoff(build, 0.5 if q else args.duration)
        res.runs.append({"peer": "machine", "scenario": "big", "round": rnd, "result": r})
        res.put("big.c_copy.gbps", "machine", rnd, r["gbps"])
    elif kind == "loan":
        assert peer is not None
        r = run_single(peer, "loan", {"sizes": [65536, FRAME_1080P], "min_s": 0.05 if q else 0.3,
                                      "batch": 10 if q else 100}, tmp)
        res.runs.append({"peer": peer.name, "scenario": "loan", "round": rnd, "result": r})
        for size, row in r["sizes"].items():
            res.put(f"loan.{size}.append_us", peer.name, rnd, row.get("append_us"))
            if "loan_us" in row:
                res.put(f"loan.{size}.loan_us", peer.name, rnd, row["loan_us"])
            else:
                res.not_available(f"loan.{size}.loan_us", peer.name, "no loan() in this version")
    elif kind == "scale":
        assert peer is not None
        _scale(peer, opts["n"], rnd, args, res, tmp)
    elif kind == "machine":
        _machine(rnd, q, res, build)
    elif kind == "micro":
        assert peer is not None
        r = run_single(peer, "micro", {"min_s": 0.05 if q else 0.3}, tmp)
        res.runs.append({"peer": peer.name, "scenario": "micro", "round": rnd, "result": r})
        for key in MICRO_KEYS:
            if key in r:
                res.put(f"micro.{key}", peer.name, rnd, r[key])
    elif kind == "c_micro":
        r = c_latest(build, q)
        res.runs.append({"peer": "shmx", "scenario": "c_micro", "round": rnd, "result": r})
        res.put("micro.c_latest_ns", "shmx", rnd, r["c_latest_ns"])
        res.put("micro.c_publish3_ns", "shmx", rnd, r["c_publish3_ns"])
    elif kind == "bridge":
        from .bridge import run_bridge
        res.bridge = run_bridge(args, res.load.get("bridge", {}).get("load1"))


def _latency(peer: Peer, opts: Dict[str, Any], rnd: int, args, res: Results, tmp: str) -> None:
    mode, part, parts = opts["mode"], opts["part"], args.latency_parts
    key = (peer.name, mode, rnd)
    if part == 0:
        res.pooled[key] = []
    pooled = res.pooled.get(key)
    if isinstance(pooled, str):
        raise Unsupported(pooled)  # why part 0 (or an earlier one) gave nothing
    assert pooled is not None
    count = args.count // parts + (1 if part < args.count % parts else 0)
    try:
        r = run_pair(peer, "latency", mode, 1, {"count": max(count, 1), "hz": 1000, "raw_samples": True}, tmp)
    except (Unsupported, RunFailed) as exc:
        res.pooled[key] = str(exc)
        raise
    c = r["consumers"]["consumer0"]
    samples = c.pop("samples", [])
    res.runs.append(dict(r, round=rnd, part=part))
    if not samples:
        res.pooled[key] = f"part {part + 1} of round {rnd + 1} received nothing"
        raise RunFailed(res.pooled[key])
    pooled.extend(samples)
    peer.modes[f"latency.{mode}"] = (r.get("info", {}).get("consumer", {}).get("mode", "") +
                                     f" [{c.get('recv')}]")
    if part == parts - 1:
        lat = latency_stats(pooled)
        for p in ("p50", "p99", "p999"):
            res.put(f"latency.{mode}.{p}_us", peer.name, rnd, lat.get(f"{p}_us"))


def _scale(peer: Peer, n: int, rnd: int, args, res: Results, tmp: str) -> None:
    r = run_pair(peer, "scale", "block", n, {"duration": args.duration}, tmp)
    res.runs.append(dict(r, round=rnd))
    rates = [c["rate_hz"] for c in r["consumers"].values()]
    peer.modes["scale"] = (r.get("info", {}).get("consumer", {}).get("mode", "") +
                           f" [{next(iter(r['consumers'].values())).get('recv')}]")
    if f"scale.{n}.producer_hz" not in FIGURES:
        scale_figures(n)
    res.put(f"scale.{n}.producer_hz", peer.name, rnd, r["producer"]["rate_hz"])
    res.put(f"scale.{n}.consumer_min_hz", peer.name, rnd, min(rates))
    res.put(f"scale.{n}.consumer_median_hz", peer.name, rnd, statistics.median(rates))
    one = res.values.get("scale.1.producer_hz", {}).get(peer.name, [None] * res.rounds)[rnd]
    if n == 16 and one:
        res.put("scale.16_vs_1", peer.name, rnd, r["producer"]["rate_hz"] / one)


def _machine(rnd: int, quick: bool, res: Results, build: str) -> None:
    out: Dict[str, Any] = memcpy_limits(quick)
    for name, fn in (("cacheline", cacheline_limits), ("handoff", handoff_limits)):
        try:
            out.update(fn(build, quick))
        except (Unsupported, RunFailed) as exc:
            out[f"{name}_error"] = str(exc)
            keys = ["cacheline_rtt_ns"] if name == "cacheline" else \
                [f"{m}_{p}_us" for m in ("futex", "futex_any", "spin") for p in ("p50", "p99")]
            for k in keys:
                res.not_available(f"machine.{k}", "machine", str(exc)[:120])
    res.runs.append({"peer": "machine", "scenario": "machine", "round": rnd, "result": out})
    for key in MACHINE_KEYS:
        if key in out:
            res.put(f"machine.{key}", "machine", rnd, out[key])


def keys_for(kind: str, opts: Dict[str, Any]) -> List[str]:
    """The figures a step would have given (marked n/a when it fails)."""
    if kind == "latency":
        return [f"latency.{opts['mode']}.{p}_us" for p in ("p50", "p99", "p999")]
    if kind == "rate":
        return ["rate.publish_hz", "rate.delivered_hz", "rate.delivered_pct"]
    if kind == "big":
        m = f"{opts['mode']}_loan" if opts.get("loan") else opts["mode"]
        return [f"big.{m}.{k}" for k in ("gbps", "fps", "publish_us")]
    if kind == "scale":
        return [f"scale.{opts['n']}.{k}" for k in ("producer_hz", "consumer_min_hz", "consumer_median_hz")]
    if kind == "loan":
        return [f"loan.{s}.{k}" for s in (65536, FRAME_1080P) for k in ("append_us", "loan_us")]
    if kind == "micro":
        return [f"micro.{k}" for k in MICRO_KEYS]
    if kind == "c_micro":
        return ["micro.c_latest_ns", "micro.c_publish3_ns"]
    if kind == "machine":
        return [f"machine.{k}" for k in MACHINE_KEYS]
    if kind == "c_copy":
        return ["big.c_copy.gbps"]
    return []


def _who(peer: Optional[Peer], kind: str) -> str:
    """Whose figures a step gives: its peer's, or the machine's floors."""
    if peer is not None:
        return peer.name
    return "machine" if kind in ("machine", "c_copy") else "shmx"


def run_all(peers: List[Peer], args, res: Results, tmp: str, build: str, progress: Progress,
            say) -> None:
    """Every scenario asked for, in ``SCENARIOS`` order, all rounds each."""
    for scenario in SCENARIOS:
        if scenario not in args.scenarios:
            continue
        load, waited = settle(args.settle, progress.note)
        res.load[scenario] = {"load1": load, "waited_s": waited}
        say(f"load average (1 min) before {scenario}: "
            f"{'unknown' if load is None else f'{load:.2f}'}" + (f" (after waiting {waited:.0f} s)" if waited >= 1 else ""))
        for rnd in range(args.rounds):
            for step in build_plan(peers, args, rnd, scenario):
                kind, peer, opts = step
                progress.step(f"round {rnd + 1}/{args.rounds} {kind} {' '.join(f'{v}' for v in opts.values())} "
                              f"{peer.name if peer else ''}")
                if peer is not None and not peer.ok:
                    progress.advance()
                    continue
                try:
                    execute(step, rnd, args, res, tmp, build)
                except Unsupported as exc:
                    for key in keys_for(kind, opts):
                        res.not_available(key, _who(peer, kind), str(exc))
                except RunFailed as exc:
                    who = peer.name if peer else kind
                    res.runs.append({"peer": who, "scenario": kind, "round": rnd, "opts": opts, "failed": str(exc)})
                    progress.note(f"  {who} {kind} {opts}: failed: {exc}")
                    for key in keys_for(kind, opts):
                        res.not_available(key, _who(peer, kind), f"failed: {str(exc)[:120]}")
                progress.advance()


def total_steps(peers: List[Peer], args) -> int:
    """How many steps the whole run has (for the progress bar)."""
    return sum(len(build_plan(peers, args, rnd, s)) for s in SCENARIOS if s in args.scenarios
               for rnd in range(args.rounds))
