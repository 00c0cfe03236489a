"""The PNG charts of a run (matplotlib, optional: without it, no charts):
latency distributions per peer (busy-poll and blocking), 1080p bandwidth
per peer and consumer mode, and producer/consumer rates against the number
of consumers.  Drawn from the raw figures, so ``--rerender`` redraws them."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

from .peers import Peer
from .stats import Results

def make_charts(res: Results, peers: List[Peer], outdir: Path, stem: str) -> List[str]:
    """Draw the charts into ``outdir`` as ``<stem>_*.png``; their paths."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made: List[str] = []
    names = [p.name for p in peers if p.ok]
    colors = {n: plt.get_cmap("tab10")(i) for i, n in enumerate(names)}

    # Latency distributions: merged histograms of every round.
    hists: Dict[Tuple[str, str], List[int]] = {}
    lo = per = None
    for run in res.runs:
        if run.get("scenario") != "latency":
            continue
        lat = run.get("consumers", {}).get("consumer0", {}).get("latency", {})
        h = lat.get("hist")
        if not h:
            continue
        lo, per = h["lo_ns"], h["per_decade"]
        acc = hists.setdefault((run["mode"], run["peer"]), [0] * len(h["counts"]))
        for i, v in enumerate(h["counts"]):
            acc[i] += v
    if hists:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
        used = [i for counts in hists.values() for i, c in enumerate(counts) if c]
        x_lo = lo * 10 ** ((min(used) - 1) / per) / 1000.0 / 1.5
        x_hi = lo * 10 ** (max(used) / per) / 1000.0 * 1.5
        for ax, mode, title in ((axes[0], "poll", "busy-polling consumer"), (axes[1], "block", "blocking consumer")):
            for name in names:
                counts = hists.get((mode, name))
                if not counts or not sum(counts):
                    continue
                total = float(sum(counts))
                xs, ys = [], []
                cum = 0
                for i, cnt in enumerate(counts):
                    cum += cnt
                    xs.append(lo * 10 ** (i / per) / 1000.0)
                    ys.append(1.0 - cum / total)
                ax.step(xs, [max(y, 1e-6) for y in ys], where="post", label=name, color=colors[name])
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(x_lo, x_hi)
            ax.set_ylim(1e-5, 1.2)
            ax.set_xlabel("one-way latency (us)")
            ax.set_title(title)
            ax.grid(True, which="both", alpha=0.3)
        axes[0].set_ylabel("fraction of frames slower than x")
        axes[0].legend(fontsize=8)
        axes[1].legend(fontsize=8)
        fig.suptitle("40-byte frames at 1 kHz: latency distribution (all rounds)")
        fig.tight_layout()
        path = outdir / f"{stem}_latency.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(str(path))

    # GB/s per peer.
    big_modes = ("touch", "copy", "touch_loan")
    bars = [(n, [res.summary(f"big.{m}.gbps", n) for m in big_modes]) for n in names]
    bars = [(n, s) for n, s in bars if any(s)]
    if bars:
        fig, ax = plt.subplots(figsize=(10, 4.5))
        width = 0.27
        labels = {"touch": "consumer touches each page", "copy": "consumer copies the frame",
                  "touch_loan": "zero-copy loan producer, consumer touches each page"}
        for j, m in enumerate(big_modes):
            xs, ys, err_lo, err_hi = [], [], [], []
            for i, (n, s) in enumerate(bars):
                if s[j] is None:
                    continue
                xs.append(i + (j - 1) * width)
                ys.append(s[j]["median"])
                err_lo.append(s[j]["median"] - s[j]["min"])
                err_hi.append(s[j]["max"] - s[j]["median"])
            if xs:
                ax.bar(xs, ys, width, yerr=[err_lo, err_hi], capsize=3, label=labels[m])
        ax.set_xticks(range(len(bars)))
        ax.set_xticklabels([n for n, _ in bars])
        ax.set_yscale("log")
        ax.set_ylabel("GB/s received (median, min-max)")
        ax.set_title("1920x1080x3 frames: bandwidth delivered to one consumer")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = outdir / f"{stem}_gbps.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(str(path))

    # Scaling.
    ns = sorted({int(k.split(".")[1]) for k in res.values if k.startswith("scale.") and k.split(".")[1].isdigit()})
    if ns:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        for name in names:
            prod = [res.summary(f"scale.{n}.producer_hz", name) for n in ns]
            cons = [res.summary(f"scale.{n}.consumer_min_hz", name) for n in ns]
            pts = [(n, s["median"]) for n, s in zip(ns, prod) if s]
            if pts:
                axes[0].plot(*zip(*pts), marker="o", label=name, color=colors[name])
            pts = [(n, s["median"]) for n, s in zip(ns, cons) if s]
            if pts:
                axes[1].plot(*zip(*pts), marker="o", label=name, color=colors[name])
        for ax, title in ((axes[0], "producer publish rate"), (axes[1], "slowest consumer's received rate")):
            ax.set_xscale("log", base=2)
            ax.set_xticks(ns)
            ax.set_xticklabels([str(n) for n in ns])
            ax.set_yscale("log")
            ax.set_xlabel("consumer processes")
            ax.set_ylabel("messages/s")
            ax.set_title(title)
            ax.grid(True, which="both", alpha=0.3)
        axes[1].legend(fontsize=8)
        fig.suptitle("One producer, N blocking consumers, 40-byte frames at full speed")
        fig.tight_layout()
        path = outdir / f"{stem}_scaling.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(str(path))
    return made

