"""What a run prints and writes: the text table (figures by section, the
floors, the targets with their verdicts, the load before each scenario),
the peers and their modes, and the JSON document (``--out``).  The JSON
keeps every raw figure, so ``--rerender`` can redraw all of it later."""
from __future__ import annotations

from typing import Any, Dict, List

from . import FRAME_1080P, SMALL_BYTES
from .peers import Peer
from .stats import FIGURES, Results, fmt
from .targets import LOAD_LIMIT

SECTION_TARGETS = f"(7) targets: ratios to floors and peers of this run (not judged above load {LOAD_LIMIT})"


def fd_ratio_text(res: Results) -> str:
    """The event-loop fd wake-up against the futex wait_frame, same run."""
    parts = []
    for p in ("p50", "p99"):
        fd, fu = res.summary(f"latency.fd.{p}_us", "shmx"), res.summary(f"latency.block.{p}_us", "shmx")
        if fd is None or fu is None or not fu["median"]:
            return ""
        parts.append(f"{p} {fmt(fd['median'], 'us')} / {fmt(fu['median'], 'us')} us = {fd['median'] / fu['median']:.2f}x")
    return "  event-loop fd vs futex wait_frame (shmx): " + ", ".join(parts)


def render_figures(res: Results, peers: List[Peer]) -> str:
    """Sections (1)-(6): every figure, each peer's median, range and ratio to shmx."""
    lines: List[str] = []
    order = [p.name for p in peers] + ["machine"]
    tw = max(len(f"{t} ({u})") for _s, t, u, _b, _t in FIGURES.values()) + 1
    head = f"  {'figure':<{tw}} {'peer':<11} {'median':>8} {'[min - max]':>19}  {'x shmx':>17}"
    # Sections in the order first defined: the scaling figures registered at
    # run time would otherwise make a second "(4)" after "(6)".
    sections: List[str] = []
    for sec, *_rest in FIGURES.values():
        if sec not in sections:
            sections.append(sec)
    section = None
    for key, (sec, title, unit, _better, _target) in sorted(FIGURES.items(), key=lambda kv: sections.index(kv[1][0])):
        rows, nas = res.values.get(key, {}), res.na.get(key, {})
        if not rows and not nas:
            continue
        if sec != section:
            section = sec
            lines += ["", sec, head]
        label = f"{title} ({unit})"
        for name in order:
            s = res.summary(key, name) if name in rows else None
            if s is not None:
                span = f"[{fmt(s['min'], unit)} - {fmt(s['max'], unit)}]"
                ratio = ""
                if "ratio" in s and name != "shmx":
                    r = s["ratio"]
                    ratio = f"{r['median']:.2f} [{r['min']:.2f}-{r['max']:.2f}]"
                elif name == "shmx":
                    ratio = "1.00"
                lines.append(f"  {label:<{tw}} {name:<11} {fmt(s['median'], unit):>8} {span:>19}  {ratio:>17}")
            elif name in nas:
                lines.append(f"  {label:<{tw}} {name:<11} {'n/a':>8} {'':>19}  {'':>17}  {nas[name][:70]}")
        if key == "latency.fd.p999_us":
            extra = fd_ratio_text(res)
            if extra:
                lines.append(extra)
    return "\n".join(lines)


def target_cells(t: Dict[str, Any]) -> List[str]:
    """One target as (what, measured, verdict)."""
    m = t.get("measured")
    if t["kind"] == "ratio":
        got = "-" if m is None else f"{m:.2f}x"
        if m is not None and t.get("value") is not None:
            got += f" ({fmt(t['value'])} / {fmt(t['reference'])})"
    elif t["kind"] == "rank":
        got = (f"{fmt(m, t['unit'])} {t['unit']}; next {t['best_other']} {fmt(t['best_value'], t['unit'])}, "
               f"x{t['best_ratio']:.2f}")
    else:
        got = "-" if m is None else f"{fmt(m, t['unit'])} {t['unit']}"
    return [t["title"], got, t["verdict"].upper() if t["verdict"] == "missed" else t["verdict"]]


def render_targets(targets: List[Dict[str, Any]]) -> str:
    """Section (7): every target and its verdict."""
    if not targets:
        return ""
    rows = [target_cells(t) for t in targets]
    w0, w1 = (max(len(r[i]) for r in rows) for i in (0, 1))
    return "\n".join(["", "", SECTION_TARGETS] + [f"  {a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows])


def render_load(res: Results) -> str:
    """The load average before each scenario."""
    if not res.load:
        return ""
    parts = [f"{s} {'?' if v.get('load1') is None else format(v['load1'], '.2f')}" +
             (f" (waited {v['waited_s']:.0f} s)" if v.get("waited_s", 0) >= 1 else "")
             for s, v in res.load.items()]
    return "load average (1 min) before each scenario: " + ", ".join(parts)


def render_table(res: Results, peers: List[Peer], targets: List[Dict[str, Any]]) -> str:
    """The whole table: figures, then targets (none in a smoke run)."""
    out = render_figures(res, peers) + render_targets(targets)
    if res.bridge:
        from .bridge import bridge_table
        out += "\n\n(8) bridge: region -> Zenoh -> region, beside raw Zenoh and pyzmq (tcp loopback)\n" + \
            bridge_table(res.bridge)
    load = render_load(res)
    return out + ("\n\n" + load if load else "")


def render_peers(peers: List[Peer]) -> str:
    """Each peer, its version and the modes it ran in (or why it was skipped)."""
    out = ["Peers and their modes:"]
    for p in peers:
        if p.status != "ran":
            out.append(f"  {p.name:<11} SKIPPED: {p.reason}")
            continue
        out.append(f"  {p.name:<11} {p.title}, version {p.version}")
        for k, v in sorted(p.modes.items()):
            out.append(f"  {'':<11}   {k}: {v}")
    return "\n".join(out)


def json_doc(args, res: Results, peers: List[Peer], machine: Dict[str, Any], targets: List[Dict[str, Any]],
             command: str, started: str, elapsed: float, interrupted: bool) -> Dict[str, Any]:
    """The JSON document of a run (schema 2: schema 1 plus load, verdicts,
    floors and bridge; every schema-1 key is still there)."""
    return {
        "schema": 2,
        "tool": "tools/bench",
        "command": command,
        "started": started,
        "elapsed_s": round(elapsed, 1),
        "quick": args.quick,
        "rounds": args.rounds,
        "interrupted": interrupted,
        "params": {"latency_count": args.count, "latency_parts": args.latency_parts, "latency_hz": 1000,
                   "duration_s": args.duration, "consumers": args.consumers, "frame_bytes": FRAME_1080P,
                   "small_bytes": SMALL_BYTES, "scenarios": sorted(args.scenarios), "settle_s": args.settle,
                   "load_limit": LOAD_LIMIT},
        "machine": machine,
        "scenario_load": res.load,
        "peers": {p.name: {"status": p.status, "reason": p.reason, "title": p.title, "version": p.version,
                           "python": str(p.python) if p.python else None, "modes": p.modes} for p in peers},
        "figures": {k: {"section": FIGURES[k][0], "title": FIGURES[k][1], "unit": FIGURES[k][2],
                        "better": FIGURES[k][3], "target": FIGURES[k][4], "values": v,
                        "summary": {peer: res.summary(k, peer) for peer in v},
                        "not_available": res.na.get(k, {})}
                    for k, v in res.values.items() if k in FIGURES},
        "not_available": res.na,
        "targets": targets,
        "bridge": res.bridge,
        "runs": res.runs,
        "charts": [],
    }
