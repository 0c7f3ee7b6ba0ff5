"""Figures of the report (matplotlib, Agg backend; imported only when a report is generated).

Each function takes plain data and writes one PNG, returning its path, or None when the data
does not make a picture (fewer than two points, say).
"""
from __future__ import annotations

import json
from pathlib import Path


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def map_vs_time(points: list[dict], title: str, path: Path) -> Path | None:
    """Scatter of mAP against query time; points: {"label", "map", "time"} (time in seconds)."""
    pts = [p for p in points if p.get("map") is not None and p.get("time") and p["time"] > 0]
    if len(pts) < 2:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for p in pts:
        ax.scatter(p["time"] * 1e3, p["map"], s=28)
        ax.annotate(p["label"], (p["time"] * 1e3, p["map"]), fontsize=7, xytext=(4, 2), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("online time per query (ms, log scale)")
    ax.set_ylabel("mAP")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def bars(values: dict[str, float], ylabel: str, title: str, path: Path) -> Path | None:
    """Bar chart of {label: value} (e.g. CG vs RWR mAP or time)."""
    if len(values) < 2:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.0, 3.4), dpi=100)
    labels = list(values)
    ax.bar(range(len(labels)), [values[k] for k in labels], color="#5b84c4")
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def recall_curves(curves: dict[str, dict[int, float]], title: str, path: Path) -> Path | None:
    """R@k against k for each {label: {k: recall}}."""
    curves = {k: v for k, v in curves.items() if len(v) >= 2}
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 3.8), dpi=100)
    for label, pts in curves.items():
        ks = sorted(pts)
        ax.plot(ks, [pts[k] for k in ks], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k")
    ax.set_ylabel("Recall@k")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def read_asv_history(results_dir: Path) -> dict[str, list[tuple[int, str, float]]]:
    """{benchmark: [(commit date ms, commit hash, seconds)]} from asv result files (asv 0.6 layout)."""
    history: dict[str, list] = {}
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        return history
    for f in sorted(results_dir.glob("*/*.json")):
        if f.name == "machine.json":
            continue
        try:
            doc = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        commit, date = doc.get("commit_hash", "?"), doc.get("date") or 0
        columns = doc.get("result_columns") or []
        for name, entry in (doc.get("results") or {}).items():
            value = entry[columns.index("result")] if isinstance(entry, list) and "result" in columns else entry
            if isinstance(value, list):   # parameterized benchmarks: take the first finite value
                value = next((v for v in value if isinstance(v, (int, float))), None)
            if isinstance(value, (int, float)):
                history.setdefault(name, []).append((int(date), commit, float(value)))
    for name in history:
        history[name].sort()
    return history


def speed_history(history: dict[str, list], path: Path, limit: int = 12) -> Path | None:
    """Time of each asv benchmark across commits (one line per benchmark)."""
    if not history:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.2, 4.2), dpi=100)
    for name in sorted(history)[:limit]:
        pts = history[name]
        ax.plot(range(len(pts)), [v * 1e3 for _, _, v in pts], marker="o", label=name.split(".", 1)[-1])
    ax.set_yscale("log")
    ax.set_xlabel("asv result (oldest to newest)")
    ax.set_ylabel("time (ms, log scale)")
    ax.set_title("speed history (asv)", fontsize=10)
    ax.legend(fontsize=6, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
