"""Figures of the report (matplotlib, Agg backend; imported only when a report is generated).

Each function takes plain data and writes one PNG, returning its path, or None when the data
does not make a picture (fewer than two points, say). Labels never overlap: points are told
apart by color and a legend beside the axes (not by text next to each point), long tick labels
are wrapped or rotated, log axes carry a few plain-number ticks (1, 2, 5, 10, ...), and every
figure is laid out with ``bbox_inches="tight"`` so nothing is clipped.
"""
from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

#: colors of claim outcomes, the same as the page's badges (reports/templates/style.css)
OUTCOME_COLORS = {"holds": "#2e8b47", "does not hold": "#c8473b", "inconclusive": "#c98f00"}
_DPI = 110


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path) -> Path:
    fig.savefig(path, bbox_inches="tight", pad_inches=0.12, dpi=_DPI)
    _plt().close(fig)
    return path


def _plain_log_axis(axis, lo: float, hi: float) -> None:
    """A log axis over [lo, hi] with a few ticks written as plain numbers (0.5, 2, 50, not 5x10^-1):
    at 1, 2, 5 x 10^k over up to three decades, at powers of ten (every one, or every other) beyond."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter
    lo, hi = max(min(lo, hi), 1e-300), max(lo, hi)
    decades = math.log10(hi) - math.log10(lo)
    k0, k1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    if decades <= 1.2:
        subs = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)
    elif decades <= 3.2:
        subs = (1.0, 2.0, 5.0)
    else:
        subs = (1.0,)
    ticks = [m * 10.0 ** k for k in range(k0, k1 + 1) for m in subs if lo <= m * 10.0 ** k <= hi]
    step = max(1, math.ceil(len(ticks) / 8))
    axis.set_major_locator(FixedLocator(ticks[::step]))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _wrap(label: str, width: int = 28) -> str:
    return "\n".join(textwrap.wrap(str(label), width)) or str(label)


def map_vs_time(points: list[dict], title: str, path: Path) -> Path | None:
    """Scatter of mAP against query time; points: {"label", "map", "time"} (time in seconds).

    One color and marker per label (method), named once in a legend outside the axes: a method
    with many configurations (diffusion with several k) does not write its name a dozen times.
    """
    pts = [p for p in points if p.get("map") is not None and p.get("time") and p["time"] > 0]
    if len(pts) < 2:
        return None
    plt = _plt()
    groups: dict[str, list] = {}
    for p in pts:
        groups.setdefault(str(p["label"]), []).append(p)
    fig, ax = plt.subplots(figsize=(7.6, 4.4))
    markers = "osD^vPXh<>p8"
    cmap = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20")
    for i, (label, ps) in enumerate(sorted(groups.items())):
        ax.scatter([p["time"] * 1e3 for p in ps], [p["map"] for p in ps], s=34, marker=markers[i % len(markers)],
                   color=cmap(i % cmap.N), edgecolor="white", linewidth=0.5, alpha=0.85, zorder=3,
                   label=f"{label} ({len(ps)})" if len(ps) > 1 else label)
    ax.set_xscale("log")
    _plain_log_axis(ax.xaxis, *ax.get_xlim())
    ax.set_xlabel("online time per query (ms, log scale)")
    ax.set_ylabel("mAP")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="major")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
              title="method (configurations)", title_fontsize=8)
    return _save(fig, path)


def bars(values: dict[str, float], ylabel: str, title: str, path: Path) -> Path | None:
    """Bar chart of {label: value} (e.g. CG vs RWR mAP or time), each bar with its value on top."""
    if len(values) < 2:
        return None
    plt = _plt()
    labels = list(values)
    fig, ax = plt.subplots(figsize=(max(4.6, 0.9 * len(labels) + 2.0), 3.4))
    rects = ax.bar(range(len(labels)), [values[k] for k in labels], color="#5b84c4", width=0.6)
    ax.bar_label(rects, labels=[f"{values[k]:.3g}" for k in labels], fontsize=8, padding=2)
    long = max(len(k) for k in labels) > 12
    ax.set_xticks(range(len(labels)), [_wrap(k, 14) for k in labels], fontsize=9,
                  rotation=30 if long and len(labels) > 4 else 0, ha="right" if long and len(labels) > 4 else "center")
    ax.set_ylabel(_wrap(ylabel, 34))
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.margins(y=0.12)
    return _save(fig, path)


def recall_curves(curves: dict[str, dict[int, float]], title: str, path: Path) -> Path | None:
    """R@k against k for each {label: {k: recall}} (legend outside the axes, k as plain integers)."""
    curves = {k: v for k, v in curves.items() if len(v) >= 2}
    if not curves:
        return None
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.2, 3.9))
    ks_all = sorted({k for pts in curves.values() for k in pts})
    for label, pts in sorted(curves.items()):
        ks = sorted(pts)
        ax.plot(ks, [pts[k] for k in ks], marker="o", markersize=4, label=_wrap(label, 32))
    ax.set_xscale("log", base=2)
    step = max(1, math.ceil(len(ks_all) / 8))
    ax.xaxis.set_major_locator(FixedLocator(ks_all[::step]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("k")
    ax.set_ylabel("Recall@k")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(alpha=0.3)
    return _save(fig, path)


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


def speed_history(history: dict[str, list], path: Path, limit: int = 16) -> Path | None:
    """Time of each asv ``time_*`` benchmark across commits (one line per benchmark).

    With a single asv result there is no history to draw: the figure is then a horizontal bar
    chart of the benchmarks' times (log scale), which reads better than a column of dots.
    """
    # times only: peakmem_* (bytes) and track_* (any unit) are not on a time axis
    history = {k: v for k, v in history.items() if k.rsplit(".", 1)[-1].startswith("time_")
               and v and all(t > 0 for _, _, t in v)}
    if not history:
        return None
    plt = _plt()
    names = sorted(history)[:limit]
    short = {n: n.split(".", 1)[-1] for n in names}
    n_results = max(len(history[n]) for n in names)
    if n_results == 1:
        names.sort(key=lambda n: history[n][-1][2])
        fig, ax = plt.subplots(figsize=(7.6, 0.32 * len(names) + 1.2))
        vals = [history[n][-1][2] * 1e3 for n in names]
        ax.barh(range(len(names)), vals, color="#5b84c4", height=0.6)
        ax.set_yticks(range(len(names)), [short[n] for n in names], fontsize=8)
        ax.set_xscale("log")
        ax.set_xlim(min(vals) / 2, max(vals) * 1.5)
        _plain_log_axis(ax.xaxis, *ax.get_xlim())
        ax.set_xlabel("time (ms, log scale)")
        commit = history[names[0]][-1][1]
        ax.set_title(f"asv benchmarks at {str(commit)[:10]} (a single result: no history yet)", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        return _save(fig, path)
    from matplotlib.ticker import MaxNLocator
    fig, ax = plt.subplots(figsize=(8.4, 4.4))
    cmap = plt.get_cmap("tab20")
    for i, name in enumerate(names):
        pts = history[name]
        ax.plot(range(len(pts)), [v * 1e3 for _, _, v in pts], marker="o", markersize=3.5, color=cmap(i % cmap.N),
                linestyle="-" if i < 10 else "--", label=short[name])
    ax.set_yscale("log")
    _plain_log_axis(ax.yaxis, *ax.get_ylim())
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))
    ax.set_xlabel("asv result (oldest to newest)")
    ax.set_ylabel("time (ms, log scale)")
    ax.set_title("speed history (asv)", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def forest(rows: list[dict], title: str, path: Path) -> Path | None:
    """A small forest plot of the checks of a table's claims; None when no check has an interval.

    rows: {"label", "diff", "lo", "hi", "outcome", "group", "refs": [x, ...], "band": (lo, hi) | None}.
    Each row is a point (the mean paired difference, or the mean of a one-run check) with its 95%
    interval as a bar, colored by outcome. Rows of one ``group`` (the same kind of quantity: a
    paired difference of one metric, or the mean of one metric against one threshold) share an
    x axis, with vertical lines at ``refs`` (0 for a comparison, the value of an at_least
    check) and a shaded ``band`` (the tolerance of a within/close check); groups on different
    scales get their own axes, stacked.
    """
    rows = [r for r in rows if r.get("lo") is not None and r.get("hi") is not None and r.get("diff") is not None
            and all(math.isfinite(r[k]) for k in ("diff", "lo", "hi"))]
    if not rows:
        return None
    plt = _plt()
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator
    groups: dict[str, list] = {}
    for r in rows:
        groups.setdefault(str(r.get("group", "")), []).append(r)
    heights = [len(g) + 0.9 for g in groups.values()]
    fig, axes = plt.subplots(len(groups), 1, figsize=(7.8, 0.36 * sum(heights) + 0.9),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (gname, grs) in zip(axes[:, 0], groups.items()):
        ys = list(range(len(grs)))[::-1]
        xs = [v for r in grs for v in (r["lo"], r["hi"], *r.get("refs", ()), *(r.get("band") or ()))]
        for y, r in zip(ys, grs):
            color = OUTCOME_COLORS.get(r.get("outcome", ""), "#6b7280")
            ax.plot([r["lo"], r["hi"]], [y, y], color=color, linewidth=2.2, solid_capstyle="butt", zorder=3)
            ax.plot([r["lo"]] * 2, [y - 0.18, y + 0.18], color=color, linewidth=1.2, zorder=3)
            ax.plot([r["hi"]] * 2, [y - 0.18, y + 0.18], color=color, linewidth=1.2, zorder=3)
            ax.plot([r["diff"]], [y], marker="o", color=color, markersize=6, zorder=4)
        for ref in sorted({x for r in grs for x in r.get("refs", ())}):
            ax.axvline(ref, color="#333333", linewidth=0.9, linestyle="--", zorder=2)
        for band in {tuple(r["band"]) for r in grs if r.get("band")}:
            ax.axvspan(band[0], band[1], color="#9fb8e0", alpha=0.25, zorder=1, linewidth=0)
        lo, hi = min(xs), max(xs)
        pad = (hi - lo) * 0.08 or abs(hi) * 0.05 or 0.01
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(-0.7, len(grs) - 0.3)
        ax.set_yticks(ys, [_wrap(r["label"], 60) for r in grs], fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
        ax.tick_params(axis="x", labelsize=8)
        ax.set_xlabel(gname, fontsize=8.5)
        ax.grid(axis="x", alpha=0.3)
    axes[0, 0].set_title(title, fontsize=10)
    seen = [o for o in OUTCOME_COLORS if any(r.get("outcome") == o for r in rows)]
    handles = [Line2D([0], [0], color=OUTCOME_COLORS[o], marker="o", linewidth=2.2, label=o) for o in seen]
    handles.append(Line2D([0], [0], color="#333333", linestyle="--", linewidth=0.9, label="reference"))
    if any(r.get("band") for r in rows):
        from matplotlib.patches import Patch
        handles.append(Patch(color="#9fb8e0", alpha=0.25, label="tolerance"))
    axes[0, 0].legend(handles=handles, fontsize=7.5, loc="lower left", bbox_to_anchor=(1.01, 0.0), frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def robustness_curves(panels: dict[str, dict[str, tuple]], title: str, path: Path) -> Path | None:
    """Success rate against L2 distortion budget, one panel per model, one line per attack.

    panels: {model: {attack: (eps (m,), fraction (m,))}}, the fraction of attacked images whose
    adversarial example has L2 <= eps (:func:`visrep.protocols.adversarial.robustness_curve`);
    the same colour names the same attack in every panel, one legend beside the last panel.
    """
    panels = {m: {a: c for a, c in curves.items() if len(c[0]) >= 2} for m, curves in panels.items()}
    panels = {m: c for m, c in panels.items() if c}
    if not panels:
        return None
    plt = _plt()
    attacks = sorted({a for c in panels.values() for a in c})
    cmap = plt.get_cmap("tab10" if len(attacks) <= 10 else "tab20")
    colors = {a: cmap(i % cmap.N) for i, a in enumerate(attacks)}
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(3.3 * n + 1.6, 3.4), sharey=True, squeeze=False)
    for ax, (model, curves) in zip(axes[0], sorted(panels.items())):
        for a in attacks:
            if a in curves:
                eps, frac = curves[a]
                ax.step(eps, frac, where="post", color=colors[a], linewidth=1.4, label=a)
        ax.set_title(_wrap(model, 34), fontsize=9)
        ax.set_xlabel("L2 budget ε (pixels in [0, 1])", fontsize=8.5)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("success rate (L2 ≤ ε)")
    handles = [plt.Line2D([], [], color=colors[a], linewidth=1.6) for a in attacks]
    axes[0, -1].legend(handles, [_wrap(a, 26) for a in attacks], fontsize=7.5, loc="upper left",
                       bbox_to_anchor=(1.02, 1.0), frameon=False, title="attack", title_fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def perturbation_panels(clean, perturbations: dict, title: str, path: Path, gain: float | None = None) -> Path | None:
    """The clean image and each named perturbation, amplified, side by side.

    clean (H, W, 3) or (H, W) in [0, 1]; perturbations {label: r (same shape) = x_adv - x}. Each r is shown
    as 0.5 + gain * r clipped to [0, 1], the same gain for all (default 0.5 / max |r| over all of them),
    written in each panel's title, so that the panels compare by eye.
    """
    import numpy as np
    if not perturbations:
        return None
    plt = _plt()
    rs = {k: np.asarray(v, np.float64) for k, v in perturbations.items()}
    top = max(float(np.abs(r).max()) for r in rs.values())
    gain = gain or (0.5 / top if top > 0 else 1.0)
    n = 1 + len(rs)
    fig, axes = plt.subplots(1, n, figsize=(2.7 * n, 3.0), squeeze=False)
    cmap = "gray" if np.asarray(clean).ndim == 2 else None
    axes[0, 0].imshow(np.clip(clean, 0, 1), cmap=cmap, vmin=0, vmax=1)
    axes[0, 0].set_title("clean", fontsize=9)
    for ax, (label, r) in zip(axes[0, 1:], rs.items()):
        ax.imshow(np.clip(0.5 + gain * r, 0, 1), cmap=cmap, vmin=0, vmax=1)
        ax.set_title(_wrap(f"{label} (L2 {np.sqrt((r * r).sum()):.2f}, x{gain:.0f})", 30), fontsize=8.5)
    for ax in axes[0]:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
