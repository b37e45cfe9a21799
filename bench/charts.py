"""Charts for the side-by-side page: ``python -m bench.charts bench/results/peers.json docs/img``.

Needs matplotlib, which is not a project dependency: ``python -m bench.peers`` runs this
with .venv-peers's interpreter. Prints the path of each PNG it writes.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

WORKHORSE = "#d62728"
PEER = "#7f7f7f"


def _pyplot() -> Any:
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        raise SystemExit(
            "bench.charts needs matplotlib: run it with .venv-peers/bin/python "
            "(python -m bench.peers does), or pip install matplotlib"
        ) from None
    matplotlib.use("Agg")  # files only, no display
    return importlib.import_module("matplotlib.pyplot")


def _bars(
    plt: Any,
    summary: dict[str, Any],
    metric: str,
    title: str,
    xlabel: str,
    path: Path,
    lower_is_better: bool = False,
) -> str | None:
    """One horizontal bar per library and backend, best at the top, workhorse in red."""
    rows = [
        (entry.replace("/", " / "), s["figures"].get(metric))
        for entry, s in summary.items()
        if isinstance(s["figures"].get(metric), int | float)
    ]
    if not rows:
        return None
    rows.sort(key=lambda r: r[1], reverse=lower_is_better)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.4), dpi=110)
    names = [r[0] for r in rows]
    values = [r[1] for r in rows]
    colors = [WORKHORSE if n.startswith("workhorse") else PEER for n in names]
    bars = ax.barh(names, values, color=colors)
    ax.set_xscale("log")
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel + " (log scale)")
    top = max(values)
    ax.set_xlim(min(values) / 2, top * 4)
    for bar, value in zip(bars, values, strict=True):
        text = f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
        ax.text(value * 1.08, bar.get_y() + bar.get_height() / 2, text, va="center", fontsize=9)
    ax.grid(axis="x", which="major", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path)


def _scaleout(plt: Any, scale: dict[str, Any], path: Path) -> str | None:
    if not scale:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=110)
    for kind, per in scale.items():
        points = sorted((int(c), v["rate"]) for c, v in per.items() if v.get("rate"))
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", label=kind)
        for x, y in points:
            ax.annotate(
                f"{y:,.0f}",
                (x, y),
                textcoords="offset points",
                xytext=(0, 7),
                ha="center",
                fontsize=9,
            )
    ax.set_xticks([1, 2, 4])
    ax.set_xlabel("worker processes (concurrency 10 each; the machine has 2 cores)")
    ax.set_ylabel("no-op jobs/s")
    ax.set_ylim(bottom=0, top=ax.get_ylim()[1] * 1.12)
    ax.set_title("workhorse scale-out, no-op jobs", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path)


def draw(raw: dict[str, Any], img: Path) -> list[str]:
    plt = _pyplot()
    img.mkdir(parents=True, exist_ok=True)
    summary = raw["summary"]
    made = [
        _bars(
            plt,
            summary,
            "noop.rate",
            "No-op jobs/s, one worker process, concurrency 10",
            "jobs/s",
            img / "peers-noop.png",
        ),
        _bars(
            plt,
            summary,
            "sleep.rate",
            "10 ms jobs/s, one worker process, concurrency 100 (ideal 10,000)",
            "jobs/s",
            img / "peers-sleep.png",
        ),
        _bars(
            plt,
            summary,
            "roundtrip.p50_ms",
            "Run-and-await round trip, p50 (lower is better)",
            "ms",
            img / "peers-roundtrip.png",
            lower_is_better=True,
        ),
        _bars(
            plt,
            summary,
            "enqueue_one.rate",
            "Enqueue one by one, jobs/s",
            "jobs/s",
            img / "peers-enqueue.png",
        ),
        _scaleout(plt, raw.get("scaleout") or {}, img / "scaleout.png"),
    ]
    return [m for m in made if m]


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        raise SystemExit("usage: python -m bench.charts <peers.json> <image directory>")
    raw = json.loads(Path(args[0]).read_text())
    for path in draw(raw, Path(args[1])):
        print(path)


if __name__ == "__main__":
    main()
