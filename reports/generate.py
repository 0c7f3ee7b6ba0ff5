"""Generate the visrep report: a static, offline HTML site and a Markdown twin.

``generate(out_dir, results_dir)`` evaluates every table of ``reports/tables`` against the
result store (see :mod:`visrep.reports.evaluate`) and writes::

    <out>/index.html       one page: a legend of every status, an overview (per table: counts of cell statuses
                           and of claim outcomes), one section per table (paper | reproduced | delta | status),
                           its claims with their evidence and a forest plot of their intervals,
                           leaderboards per dataset/protocol, plots
    <out>/report.md        the same content in Markdown
    <out>/records/...      copies of the records the page links to (the site is self-contained)
    <out>/plots/*.png      matplotlib figures

No CDN, no web fonts: CSS and the small sorting script are inlined from ``reports/templates``.
Text from the table files may use a little inline HTML (<sub>, <sup>, <i>, <b>, <em>): it is kept
as markup on the page, turned into plain Markdown (QE₁, *x*) in report.md, and anything else is escaped.
"""
from __future__ import annotations

import datetime as _dt
import html
import json
import re
import shutil
import sys
from pathlib import Path
from string import Template

from .evaluate import (CONFIG_ERROR, DATA_MISSING, DIFFERS, DOES_NOT_HOLD, HAS_VALUE, HOLDS, INCONCLUSIVE,
                       METHOD_MISSING, METRIC_MISSING, NOT_RUN, PROXY, REPRODUCED, RUN_FAILED, SHOWN, Resolver,
                       evaluate_table, metric_value)
from .tables import load_tables

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATUS_ORDER = [REPRODUCED, DIFFERS, PROXY, SHOWN, NOT_RUN, METRIC_MISSING, CONFIG_ERROR, RUN_FAILED,
                DATA_MISSING, METHOD_MISSING]
FIGURE = "figure"
CLAIM_ORDER = [HOLDS, DOES_NOT_HOLD, INCONCLUSIVE, NOT_RUN, METRIC_MISSING, CONFIG_ERROR, RUN_FAILED, DATA_MISSING,
               METHOD_MISSING]
#: every status the page can show (cells, tables, claims), in the legend's order, with what it means
STATUS_HELP = {
    REPRODUCED: "the number is within the table's tolerance of the talk's",
    DIFFERS: "the number is outside the tolerance",
    PROXY: "a proxy-scale configuration (smaller data): shown, not judged against the talk",
    SHOWN: "a timing or a number the talk does not print: shown, not judged",
    NOT_RUN: "method and data are here; `visrep report --run-missing` runs it",
    METRIC_MISSING: "a record exists but lacks the metric",
    CONFIG_ERROR: "the configuration does not validate",
    RUN_FAILED: "the run raised an error",
    DATA_MISSING: "the data set (or its features) is not available here",
    METHOD_MISSING: "no visrep method for it (or a cited comparison only)",
    FIGURE: "a figure of the talk: no numbers to compare, its claims decide it",
    HOLDS: "claim: every check holds (a 95% paired bootstrap interval over queries / episodes / images, and "
           "training seeds where a claim has several, clears "
           "the reference, or the two numbers compare as stated where no per-item values exist)",
    DOES_NOT_HOLD: "claim: a check does not hold (the interval lies on the wrong side)",
    INCONCLUSIVE: "claim: the interval straddles the reference; more items are needed to decide",
}
_CHECK_MARK = {HOLDS: "✓", DOES_NOT_HOLD: "✗", INCONCLUSIVE: "?", "missing": "–"}
_CLAIM_PLURAL = {HOLDS: "hold", DOES_NOT_HOLD: "do not hold"}
_PRIMARY_METRICS = ("map", "medium.map", "hard.map", "easy.map", "recall@1", "accuracy", "error", "nmi",
                    "success_rate", "l2_mean")


def _e(s) -> str:
    return html.escape("" if s is None else str(s), quote=True)


_INLINE = ("sub", "sup", "i", "b", "em")
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)\s*>")
_SUP = str.maketrans("0123456789+-=()in", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁱⁿ")
_SUB = str.maketrans("0123456789+-=()aeoxhklmnpst", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎ₐₑₒₓₕₖₗₘₙₚₛₜ")


def _inline_parts(s) -> list:
    """Split text into str pieces and (closing, tag) pairs of the allowed inline tags, balanced:
    an unmatched closing tag is dropped and a tag left open is closed at the end."""
    s = "" if s is None else str(s)
    parts: list = []
    stack: list[str] = []
    pos = 0
    for m in _TAG.finditer(s):
        closing, tag = m.group(1) == "/", m.group(2).lower()
        if tag not in _INLINE:
            continue
        parts.append(s[pos:m.start()])
        pos = m.end()
        if not closing:
            stack.append(tag)
            parts.append((False, tag))
        elif tag in stack:
            while stack:
                t = stack.pop()
                parts.append((True, t))
                if t == tag:
                    break
    parts.append(s[pos:])
    parts += [(True, t) for t in reversed(stack)]
    return parts


def _rich(s) -> str:
    """HTML of a table's text: <sub>, <sup>, <i>, <b>, <em> (without attributes) kept as markup,
    everything else escaped (a <script> in a label is shown as text)."""
    return "".join(html.escape(p, quote=True) if isinstance(p, str) else f"<{'/' if p[0] else ''}{p[1]}>"
                   for p in _inline_parts(s))


def _plain(s) -> str:
    """The text of a table's string without its inline tags (for title attributes, alt text, plots)."""
    return "".join(p for p in _inline_parts(s) if isinstance(p, str))


def _md_text(s) -> str:
    """Markdown of a table's text: sub/superscripts as Unicode where they exist (QE<sub>1</sub> -> QE₁,
    else _{x} / ^{x}), <i>/<em> as *x*, <b> as **x**; any other '<' is escaped."""
    out: list[str] = []
    stack: list[tuple[str, int]] = []
    for p in _inline_parts(s):
        if isinstance(p, str):
            out.append(p.replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|"))
        elif not p[0]:
            stack.append((p[1], len(out)))
        else:
            tag, start = stack.pop()
            inner = "".join(out[start:])
            del out[start:]
            if tag in ("sub", "sup"):
                table = _SUB if tag == "sub" else _SUP
                mapped = inner.translate(table)
                ok = all(ch != orig or ch.isspace() for ch, orig in zip(mapped, inner)) and inner
                out.append(mapped if ok else ("_" if tag == "sub" else "^") + "{" + inner + "}")
            else:
                mark = "**" if tag == "b" else "*"
                out.append(f"{mark}{inner}{mark}" if inner.strip() else inner)
    return "".join(out)


def _code(text) -> str:
    """Escaped text with `backquoted` spans as <code> (reasons name commands this way)."""
    return re.sub(r"`([^`<>]+)`", r"<code>\1</code>", _e(text))


def _cls(status: str) -> str:
    return "s-" + status.replace(" ", "-")


def _fmt(v, digits: int = 4) -> str:
    if v is None:
        return ""
    if abs(v) >= 100:
        return f"{v:.1f}"
    return f"{v:.{digits}g}" if abs(v) < 1 else f"{v:.2f}"


def _fmt_pub(v: float, table) -> str:
    """A published number with the decimals the talk printed (0.471, 20.30, 76.4, 49.08)."""
    if table.scale == 1:
        return f"{v:.3f}" if abs(v) < 1 else f"{v:.2f}"
    return f"{v:.1f}" if round(v, 1) == v else f"{v:.2f}"


class _Links:
    """Copies linked records into the site and hands back relative links."""

    def __init__(self, out: Path, results_dir: Path):
        self.out, self.results = out, results_dir.resolve()
        self.copied: dict[str, str] = {}

    def __call__(self, path: str | None) -> str | None:
        if not path:
            return None
        if path not in self.copied:
            src = Path(path).resolve()
            try:
                rel = src.relative_to(self.results)
            except ValueError:
                rel = Path(src.name)
            dst = self.out / "records" / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                shutil.copyfile(src, dst)
            except OSError:
                return None
            self.copied[path] = (Path("records") / rel).as_posix()
        return self.copied[path]


def _prov(commit, dirty) -> str:
    if not commit:
        return "commit unknown"
    return f"{commit[:10]}{' (dirty)' if dirty else ''}"


# ------------------------------------------------------------------------------ HTML pieces
def _html_table(tr, link) -> str:
    t = tr.table
    attrs = list(t.attr_labels)
    groups = [c.group for c in t.columns]
    head = []
    if any(groups):
        cells = ['<th rowspan="2">Method</th>'] + [f'<th rowspan="2">{_rich(t.attr_labels[a])}</th>' for a in attrs]
        i = 0
        while i < len(t.columns):
            g, n = groups[i], 1
            while i + n < len(t.columns) and groups[i + n] == g:
                n += 1
            cells.append(f'<th colspan="{n}">{_rich(g)}</th>')
            i += n
        head.append("<tr>" + "".join(cells) + "</tr>")
        head.append("<tr>" + "".join(f"<th>{_rich(c.label)}</th>" for c in t.columns) + "</tr>")
    else:
        head.append("<tr><th>Method</th>" + "".join(f"<th>{_rich(t.attr_labels[a])}</th>" for a in attrs)
                    + "".join(f"<th>{_rich(c.label)}</th>" for c in t.columns) + "</tr>")
    body = []
    for row in t.rows:
        tds = [f'<td class="label" title="{_e(_plain(row.note or row.method or "published comparison"))}">{_rich(row.label)}'
               f'{" <span class=proxy-tag>PROXY</span>" if row.scale == "proxy" else ""}</td>']
        tds += [f"<td>{_rich(row.attrs.get(a, ''))}</td>" for a in attrs]
        for col in t.columns:
            cell = tr.cells.get((row.id, col.id))
            if cell is None:
                tds.append('<td class="num">–</td>')
                continue
            pub = "" if cell.published is None else _fmt_pub(cell.published, t)
            ci = f'<span class="ci">±{cell.ci:g}</span>' if cell.ci is not None else ""
            repro = ""
            if cell.reproduced is not None:
                href = link(cell.record_path)
                val = _fmt(cell.reproduced)
                val = f'<a href="{_e(href)}">{val}</a>' if href else val
                delta = f" (Δ {cell.delta:+.3g})" if cell.delta is not None else ""
                repro = (f'<span class="repro" title="commit {_e(_prov(cell.commit, cell.dirty))}">'
                         f"visrep {val}{_e(delta)}</span>")
            tds.append(f'<td class="num cell {_cls(cell.status)}" data-status="{_e(cell.status)}" '
                       f'title="{_e(cell.reason)}"><span class="paper">{pub}</span>{ci}{repro}'
                       f'<span class="st">{_e(cell.status)}</span></td>')
        body.append("<tr>" + "".join(tds) + "</tr>")
    return (f'<table class="paper-table" data-table="{_e(t.id)}"><thead>{"".join(head)}</thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _html_cell_list(tr, link) -> str:
    """The cells that have a record or an actionable status, long form."""
    t = tr.table
    rows = []
    for (rid, cid), c in tr.cells.items():
        if c.status in (DATA_MISSING, METHOD_MISSING):
            continue
        row = next(r for r in t.rows if r.id == rid)
        col = t.column(cid)
        href = link(c.record_path)
        rec = f'<a href="{_e(href)}">record</a> · {_e(_prov(c.commit, c.dirty))}' if href else ""
        rows.append(f"<tr><td>{_rich(row.label)}</td><td>{_rich((col.group + ' ') if col.group else '')}{_rich(col.label)}</td>"
                    f'<td class="num">{"" if c.published is None else _e(_fmt_pub(c.published, t))}</td>'
                    f'<td class="num">{_e(_fmt(c.reproduced))}</td>'
                    f'<td class="num">{"" if c.delta is None else f"{c.delta:+.3g}"}</td>'
                    f'<td><span class="badge {_cls(c.status)}">{_e(c.status)}</span> {_code(c.reason)}</td><td>{rec}</td></tr>')
    if not rows:
        return ""
    return ('<table class="cells sortable"><thead><tr><th>Row</th><th>Column</th><th>Paper</th><th>Reproduced</th>'
            '<th>Delta</th><th>Status</th><th>Record</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>")


def _html_claims(tr, link) -> str:
    t = tr.table
    items = []
    for cr in tr.claims:
        claim = next(c for c in t.claims if c.id == cr.claim)
        tag = '<span class="proxy-tag">PROXY</span>' if claim.scale == "proxy" else '<span class="full-tag">FULL</span>'
        quote = f'<div class="quote">talk: “{_rich(claim.quote)}”</div>' if claim.quote else ""
        checks = "".join(f'<li class="o-{_e(ch.outcome.replace(" ", "-"))}" title="{_e(ch.outcome)}: {_e(ch.how)}">'
                         f"{_CHECK_MARK.get(ch.outcome, '·')} {_e(ch.text)}</li>" for ch in cr.checks)
        runs = []
        for name, r in cr.runs.items():
            href = link(r["record_path"])
            where = (f'<a href="{_e(href)}">record</a> · {_e(_prov(r["commit"], r["dirty"]))}' if href
                     else f'{_e(r["status"])}: {_code(r["reason"])}')
            runs.append(f"<li><b>{_e(name)}</b> = {_e(r['label'])} — {where}{_e(_seeds_text(r))}</li>")
        known = (f'<div class="meta">known not to hold here: {_rich(claim.xfail)}</div>' if claim.xfail else "")
        note = f'<div class="meta">{_rich(claim.note)}</div>' if claim.note else ""
        status_cls = cr.status.replace(" ", "-")
        items.append(f'<li class="claim c-{status_cls}" data-status="{_e(cr.status)}">{tag}'
                     f'<span class="badge {_cls(cr.status)}">{_e(cr.status)}</span> {_rich(claim.text)}{quote}'
                     f'<ul class="checks">{checks}</ul><ul class="runs">{"".join(runs)}</ul>{known}{note}</li>')
    return '<ul class="claims">' + "".join(items) + "</ul>" if items else ""


def _leaderboards(records: list[tuple[str, dict]], link) -> tuple[str, str, list]:
    """(html, markdown, groups) of one sortable table per (dataset, protocol) over every record."""
    groups: dict[tuple, list] = {}
    for path, rec in records:
        groups.setdefault((rec.get("dataset", "?"), rec.get("protocol", "?")), []).append((path, rec))
    parts, md = [], []
    for (ds, proto), recs in sorted(groups.items()):
        metric_keys = sorted({k for _, r in recs for k, v in (r.get("metrics") or {}).items()
                              if isinstance(v, (int, float)) and not isinstance(v, bool) and "n_queries" not in k})
        shown = [k for k in _PRIMARY_METRICS if k in metric_keys] or metric_keys[:6]
        shown += [k for k in metric_keys if k not in shown][: max(0, 6 - len(shown))]
        first = shown[0] if shown else None
        recs.sort(key=lambda pr: -((pr[1].get("metrics") or {}).get(first) or 0) if first else 0)
        head = ("<tr><th>Method</th><th>Parameters</th>" + "".join(f"<th>{_e(k)}</th>" for k in shown)
                + "<th>query (ms)</th><th>commit</th><th>record</th></tr>")
        rows, mrows = [], []
        for path, rec in recs:
            m, tm = rec.get("metrics") or {}, rec.get("timings") or {}
            params = " ".join(f"{k}={v}" for k, v in sorted((rec.get("params") or {}).items()) if v is not None)
            q = tm.get("query")
            href = link(path)
            prov = rec.get("provenance") or {}
            rows.append(f"<tr><td>{_e(rec.get('method'))}</td><td><code>{_e(params)}</code></td>"
                        + "".join(f'<td class="num" data-sort="{_e(m.get(k, ""))}">{_e(_fmt(m.get(k)))}</td>' for k in shown)
                        + f'<td class="num" data-sort="{"" if q is None else q * 1e3}">{"" if q is None else f"{q * 1e3:.3g}"}</td>'
                        + f"<td>{_e(_prov(prov.get('commit'), prov.get('dirty')))}</td>"
                        + (f'<td><a href="{_e(href)}">json</a></td>' if href else "<td></td>") + "</tr>")
            mrows.append(f"| {rec.get('method')} | `{params}` | " + " | ".join(_fmt(m.get(k)) for k in shown)
                         + f" | {'' if q is None else f'{q * 1e3:.3g}'} | {_prov(prov.get('commit'), prov.get('dirty'))} | "
                         + (f"[json]({href})" if href else "") + " |")
        parts.append(f'<h3 id="lb-{_e(ds)}-{_e(proto)}">{_e(ds)} · {_e(proto)} ({len(recs)} records)</h3>'
                     f'<table class="leaderboard sortable" data-leaderboard="{_e(ds)}/{_e(proto)}"><thead>{head}</thead>'
                     f'<tbody>{"".join(rows)}</tbody></table>')
        md += [f"### {ds} · {proto} ({len(recs)} records)", "",
               "| method | parameters | " + " | ".join(shown) + " | query (ms) | commit | record |",
               "|---|---|" + "---|" * len(shown) + "---|---|---|", *mrows, ""]
    if not parts:
        parts = ["<p>No records in the result store yet: run <code>visrep run default</code> or "
                 "<code>visrep report --run-missing</code>.</p>"]
        md = ["No records in the result store yet.", ""]
    return "".join(parts), "\n".join(md), list(groups)


def _plots(out: Path, records, results, asv_dir: Path | None) -> list[tuple[str, str]]:
    from . import plots
    made: list[tuple[str, str]] = []
    pdir = out / "plots"
    pdir.mkdir(parents=True, exist_ok=True)
    by_ds: dict[tuple, list] = {}
    for _, rec in records:
        m, t = rec.get("metrics") or {}, rec.get("timings") or {}
        if isinstance(m.get("map"), (int, float)) and isinstance(t.get("query"), (int, float)):
            by_ds.setdefault((rec["dataset"], rec["protocol"]), []).append(
                {"label": rec["method"], "map": m["map"], "time": t["query"]})
    for (ds, proto), pts in sorted(by_ds.items()):
        p = plots.map_vs_time(pts, f"mAP vs query time: {ds} ({proto})", pdir / f"map_vs_time_{ds}_{proto}.png")
        if p:
            made.append((f"mAP against online time per query on {ds} ({proto})", f"plots/{p.name}"))
    for tr in results:
        if tr.table.id == "cg_vs_rwr":
            recs = {}
            for cr in tr.claims:
                for name, r in cr.runs.items():
                    if r["record_path"] and name not in recs:
                        recs[name] = json.loads(Path(r["record_path"]).read_text())
            for metric, scale, ylabel, fname in (("timings.query", 1e3, "online time per query (ms)", "cg_vs_rwr_time.png"),
                                                 ("stats.mean_iterations", 1, "iterations (mean over queries)",
                                                  "cg_vs_rwr_iterations.png")):
                vals = {n.upper(): metric_value(rec, metric) * scale for n, rec in recs.items()
                        if metric_value(rec, metric) is not None}
                p = plots.bars(vals, ylabel, "CG vs RWR on the same graph (Oxford5k proxy)", pdir / fname)
                if p:
                    made.append((f"CG against RWR: {ylabel}", f"plots/{p.name}"))
    curves: dict[str, dict[int, float]] = {}
    for _, rec in records:
        pts = {}
        for k, v in (rec.get("metrics") or {}).items():
            if k.startswith("recall@") and isinstance(v, (int, float)):
                try:
                    pts[int(k.split("@", 1)[1])] = float(v)
                except ValueError:
                    pass
        if len(pts) >= 2:
            curves[f"{rec['method']} · {rec['dataset']}"] = pts
    p = plots.recall_curves(curves, "Recall@k", pdir / "recall_at_k.png")
    if p:
        made.append(("Recall@k curves", f"plots/{p.name}"))
    if asv_dir is not None:
        p = plots.speed_history(plots.read_asv_history(asv_dir), pdir / "speed_history.png")
        if p:
            made.append(("Speed history of the asv benchmarks", f"plots/{p.name}"))
    return made


def _robustness(out: Path, records) -> tuple[str, list[str]]:
    """(html, markdown) of the "Adversarial robustness" section: success vs L2 budget curves of every
    attack on each MNIST model (records of the adversarial protocol on mnist-adversarial with per-image
    values; the newest record per method x model x parameters), and the perturbation pictures of
    :func:`_perturbation_figure`; ("", []) when there is no such record."""
    from visrep.protocols.adversarial import robustness_curve

    from . import plots
    pdir = out / "plots"
    pdir.mkdir(parents=True, exist_ok=True)
    newest: dict[tuple, dict] = {}
    for _, rec in records:
        pi = rec.get("per_item") or {}
        if rec.get("protocol") != "adversarial" or rec.get("dataset") != "mnist-adversarial" \
                or "l2_mean" not in pi or "success_rate" not in pi:
            continue
        params = dict(rec.get("params") or {})
        model = params.pop("model", "walking")
        key = (model, rec["method"], json.dumps(params, sort_keys=True, default=str))
        if key not in newest or str(rec.get("created", "")) > str(newest[key].get("created", "")):
            newest[key] = rec
    from visrep.registry import methods
    panels: dict[str, dict] = {}
    names = {"clean": "1. clean LeNet", "adv": "2. adversarially trained LeNet", "walking": "3. BP paper's CNN (walking)"}
    attacked: dict[str, set] = {}
    for (model, method, params), rec in sorted(newest.items()):
        try:
            defaults = {q.name: q.default for q in methods.get(method).params}
        except Exception:  # noqa: BLE001 -- a record of a method no longer registered: show all its parameters
            defaults = {}
        p = json.loads(params)
        extra = ", ".join(f"{k}={v}" for k, v in sorted(p.items()) if k not in ("n_images", "batch_size", "weights")
                          and k in defaults and v != defaults[k])
        label = f"{method} ({extra})" if extra else method
        panel = names.get(model, model)
        panels.setdefault(panel, {})[label] = robustness_curve(rec["per_item"])
        attacked.setdefault(panel, set()).add(sum(v is not None for v in rec["per_item"]["success_rate"]))
    panels = {f"{m} ({'/'.join(str(n) for n in sorted(attacked[m]))} attacked)": c for m, c in panels.items()}
    html, md = [], []
    if panels:
        p = plots.robustness_curves(panels, "Success rate against L2 distortion budget (MNIST)",
                                    pdir / "robustness_curves.png")
        if p:
            cap = ("For each model and attack, the fraction of the attacked MNIST test images whose adversarial example "
                   "has L2 <= eps (pixels in [0, 1]), against eps; a failure never counts, so each curve ends at the "
                   "attack's success rate. From the records' per-image values of the adversarial protocol.")
            html.append(f'<figure><a href="plots/{p.name}"><img src="plots/{p.name}" alt="{_e(cap)}"></a>'
                        f'<figcaption class="meta">{_e(cap)}</figcaption></figure>')
            md += [f"![Success rate against L2 distortion budget](plots/{p.name})", "", cap, ""]
    pic = _perturbation_figure(pdir, records)
    if pic:
        src, cap = pic
        html.append(f'<figure><a href="{src}"><img src="{src}" alt="{_e(cap)}"></a>'
                    f'<figcaption class="meta">{_e(cap)}</figcaption></figure>')
        md += [f"![Perturbations of one photograph]({src})", "", cap, ""]
    if not html:
        return "", []
    return ('<section id="adversarial-robustness" class="plots"><h2>Adversarial robustness</h2>' + "".join(html) + "</section>",
            ["## Adversarial robustness", "", *md])


def _perturbation_figure(pdir: Path, records) -> tuple[str, str] | None:
    """(src, caption) of the picture of one photograph's C&W and smooth perturbations, or None.

    Records hold no arrays, so the picture re-runs, for the first photograph of the newest
    smooth-adv records on photos-adversarial (one with alpha = 0: C&W, one with alpha > 0: sC&W),
    the same attack with the record's parameters on that photograph alone. C&W and sC&W have no
    random step, so this is the record's own adversarial example up to floating-point differences
    of batch size; the caption gives the record's L2 of that image beside the re-run's.
    """
    chosen: dict[str, dict] = {}
    for _, rec in records:
        params = rec.get("params") or {}
        if rec.get("method") != "smooth-adv" or rec.get("dataset") != "photos-adversarial":
            continue
        kind = "C&W" if not params.get("alpha") else "sC&W (smooth)"
        if kind not in chosen or str(rec.get("created", "")) > str(chosen[kind].get("created", "")):
            chosen[kind] = rec
    if len(chosen) < 2:
        return None
    try:
        import numpy as np

        from visrep.context import RunContext
        from visrep.registry import datasets, methods

        from . import plots
        rec0 = chosen["C&W"]
        data = datasets.create("photos-adversarial", **(rec0.get("dataset_params") or {})).load(RunContext())
        data = data.subset(np.arange(1))
        rs, caps = {}, []
        for kind in ("C&W", "sC&W (smooth)"):
            rec = chosen[kind]
            params = {**rec["params"], "n_images": 1}
            outputs = methods.create("smooth-adv", **params).run(data, RunContext(seed=rec.get("seed", 0)))
            r = outputs["adversarial"][0] - outputs["clean"][0]
            rs[kind] = r
            l2_rec = (rec.get("per_item") or {}).get("l2_mean", [None])[0]
            caps.append(f"{kind}: L2 {np.sqrt((r * r).sum()):.3f} here, {l2_rec if l2_rec is None else round(l2_rec, 3)} "
                        f"in its record, top-1 {int(outputs['clean_top1'][0])} -> {int(outputs['adv_top1'][0])}")
        p = plots.perturbation_panels(outputs["clean"][0], rs, "Perturbations of one photograph (EfficientNet-Lite0)",
                                      pdir / "perturbations_photo.png")
    except Exception as e:  # noqa: BLE001 -- a picture must not stop the report; say why it is missing
        print(f"report: perturbation picture skipped: {type(e).__name__}: {e}", file=sys.stderr)
        return None
    if p is None:
        return None
    cap = (f"The clean photograph {Path(data.paths[0]).name} (224 x 224) and the C&W and smooth (sC&W) perturbations "
           f"x_adv - x of EfficientNet-Lite0 attacked on its own top-1 class, amplified with one common gain around grey. "
           f"Re-run here on this photograph alone with the records' parameters (deterministic attacks): "
           + "; ".join(caps) + ".")
    return f"plots/{p.name}", cap


# ------------------------------------------------------------------------------ markdown
def _md_table(tr, link) -> list[str]:
    t = tr.table
    lines = ["| Row | Column | Paper | Reproduced | Delta | Status | Record |", "|---|---|---|---|---|---|---|"]
    for row in t.rows:
        for col in t.columns:
            c = tr.cells.get((row.id, col.id))
            if c is None:
                continue
            pub = "" if c.published is None else _fmt_pub(c.published, t) + (f" ±{c.ci:g}" if c.ci is not None else "")
            href = link(c.record_path)
            rec = f"[record]({href}) {_prov(c.commit, c.dirty)}" if href else ""
            colname = _md_text(f"{col.group} {col.label}".strip())
            reason = c.reason.replace("|", "\\|").replace("\n", " ")
            attrs = ", ".join(f"{_md_text(t.attr_labels[a])} {_md_text(row.attrs[a])}" for a in t.attr_labels
                              if row.attrs.get(a) not in (None, ""))
            label = f"{_md_text(row.label)} ({attrs})" if attrs else _md_text(row.label)
            lines.append(f"| {label} | {colname} | {pub} | {_fmt(c.reproduced)} | "
                         f"{'' if c.delta is None else f'{c.delta:+.3g}'} | {c.status}: {reason} | {rec} |")
    return lines


def _seeds_text(run: dict) -> str:
    """' · seeds 0 (record), 1 (pending), ...' for a run of a claim with seeds ('pending': not run yet,
    ``visrep report --run-missing`` runs it); '' otherwise."""
    seeds = run.get("seeds")
    if not seeds:
        return ""
    shown = {"record": "record", NOT_RUN: "pending"}
    return " · seeds " + ", ".join(f"{s} ({shown.get(st, st)})" for s, st in seeds.items())


def _md_claims(tr, link) -> list[str]:
    lines = []
    for cr in tr.claims:
        claim = next(c for c in tr.table.claims if c.id == cr.claim)
        lines.append(f"- **[{claim.scale.upper()}] {cr.status}** — {_md_text(claim.text)}"
                     + (f" (talk: “{_md_text(claim.quote)}”)" if claim.quote else ""))
        for ch in cr.checks:
            lines.append(f"    - {_CHECK_MARK.get(ch.outcome, '·')} `{ch.text}`")
        for name, r in cr.runs.items():
            href = link(r["record_path"])
            where = f"[record]({href}) {_prov(r['commit'], r['dirty'])}" if href else f"{r['status']}: {r['reason']}"
            lines.append(f"    - run `{name}` = {_md_text(r['label'])} — {where}{_seeds_text(r)}")
        if claim.xfail:
            lines.append(f"    - known not to hold here: {_md_text(claim.xfail)}")
        if claim.note:
            lines.append(f"    - {_md_text(claim.note)}")
    return lines


def _forest_rows(tr) -> list[dict]:
    """One row per check of the table's claims that has an interval (see :func:`plots.forest`)."""
    rows = []
    for cr in tr.claims:
        claim = next(c for c in tr.table.claims if c.id == cr.claim)
        for c, ch in zip(claim.checks, cr.checks):
            if ch.lo is None or ch.hi is None or ch.diff is None:
                continue
            metric = c.metric[len("metrics."):] if c.metric.startswith("metrics.") else c.metric
            row = {"diff": ch.diff, "lo": ch.lo, "hi": ch.hi, "outcome": ch.outcome, "band": None}
            if c.b and c.relation == "ratio_at_least":
                row["label"] = f"{claim.id}: {c.a} / {c.b} ({metric}, n={ch.n})"
                row["group"] = f"ratio of mean {metric} a / b over timed items, 95% interval"
                row["refs"] = [float(c.value)]
            elif c.b:
                row["label"] = f"{claim.id}: {c.a} vs {c.b} ({metric}, n={ch.n})"
                row["group"] = f"mean paired difference a − b of {metric} over items, 95% interval"
                row["refs"] = [0.0]
                if c.relation == "within" and c.tol is not None:
                    row["band"] = (-c.tol, c.tol)
            else:
                row["label"] = f"{claim.id}: {c.a} ({metric}, n={ch.n})"
                row["group"] = f"mean of {metric} over items (one run), 95% interval"
                row["refs"] = [] if c.value is None else [float(c.value)]
                if c.relation == "close" and c.value is not None and c.tol is not None:
                    row["band"] = (c.value - c.tol, c.value + c.tol)
            rows.append(row)
    return rows


def _forest(tr, pdir: Path) -> str | None:
    """plots/forest_<table>.png of the table's claims, or None when no check has an interval."""
    from . import plots
    p = plots.forest(_forest_rows(tr), f"Claims of {_plain(tr.table.id)}: each check's interval",
                     pdir / f"forest_{tr.table.id}.png")
    return f"plots/{p.name}" if p else None


def _count_phrase(n: int, status: str) -> str:
    if status in _CLAIM_PLURAL:
        return f"{n} {status if n == 1 else _CLAIM_PLURAL[status]}"
    return f"{n} {status}"


def _badges(parts) -> str:
    """(status, text) pairs as badges joined by ' · '."""
    return " · ".join(f'<span class="badge {_cls(s)}">{_e(txt)}</span>' for s, txt in parts)


def _legend_html() -> str:
    items = "".join(f'<li><span class="badge {_cls(s)}">{_e(s)}</span><span>{_code(why)}</span></li>'
                    for s, why in STATUS_HELP.items())
    marks = " · ".join(f"{m} {_e(o)}" for o, m in _CHECK_MARK.items())
    return (f'<div class="legend" id="legend"><h3>Legend</h3><ul class="legend-list">{items}</ul>'
            f'<p class="meta">Checks of a claim: {marks}. The forest plot under a table\'s claims shows each '
            "check's 95% interval (bar) around its point estimate (dot), colored by outcome, against the reference "
            "line (0 for a comparison of two runs, the threshold for a check of one run; the shaded band is a "
            "tolerance). Claims tagged PROXY are evaluated at the scale of the data available here, not the "
            "talk's; FULL at the talk's.</p></div>")


def _legend_md() -> list[str]:
    return (["**Legend**", ""] + [f"- **{s}**: {why}" for s, why in STATUS_HELP.items()]
            + ["", "Checks of a claim: " + " · ".join(f"{m} {o}" for o, m in _CHECK_MARK.items())
               + ". The forest plot under a table's claims shows each check's 95% interval around its point "
                 "estimate, colored by outcome, against the reference (0, or the check's threshold; a shaded band "
                 "is a tolerance). PROXY claims are evaluated at the scale of the data available here.", ""])


# ------------------------------------------------------------------------------ main entry
_READINESS_COLS = ("cell", "method", "dataset", "setting", "status", "wall s", "peak MB", "full-scale time",
                   "full-scale MB")


def _hours(s) -> str:
    if not isinstance(s, (int, float)):
        return "—"
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.0f} min" if s >= 60 else f"{s:.0f} s"


def _readiness(path: Path) -> tuple[str, list[str]]:
    """HTML and Markdown of the rehearsal (`visrep rehearse`): every full-scale cell run on miniature copies of
    the real layouts, with time, memory and the linear full-scale estimate. A file that is not a rehearsal is
    a UserError naming it."""
    import json

    from visrep.errors import UserError
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        cells = doc["cells"]
        counts = doc.get("counts", {})
        assert isinstance(cells, list) and all(isinstance(c, dict) for c in cells)
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as e:
        raise UserError(f"{path}: not a rehearsal file of `visrep rehearse` ({type(e).__name__}: {e})") from None
    rows = []
    for c in cells:
        cell = "/".join(str(c.get(k, "")) for k in ("table", "row", "column") if c.get(k))
        num = lambda k, f: f.format(c[k]) if isinstance(c.get(k), (int, float)) else "—"  # noqa: E731
        status = str(c.get("status", "")) + (f": {c['reason']}" if c.get("reason") else "")
        rows.append((cell, str(c.get("method", "")), str(c.get("dataset", "")), str(c.get("setting", "")), status,
                     num("wall_s", "{:.2f}"), num("peak_mb", "{:.0f}"), _hours(c.get("est_full_s")),
                     num("est_full_peak_mb", "{:.0f}")))
    intro = (f"Every full-scale cell run end to end on miniature copies of the real on-disk layouts "
             f"(`visrep rehearse`; {', '.join(f'{v} {k}' for k, v in counts.items())}). Only sizes are scaled "
             f"down; the full-scale estimates are linear in the number of images, a lower bound where cost grows "
             f"faster (kNN graphs, vocabularies, diffusion).")
    head = "".join(f"<th>{_e(h)}</th>" for h in _READINESS_COLS)
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in r) + "</tr>" for r in rows)
    html = (f'<section id="readiness"><h2>Readiness for full scale</h2><p class="meta">{_e(intro)}</p>'
            f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></section>')
    md = ["## Readiness for full scale", "", intro, "", "| " + " | ".join(_READINESS_COLS) + " |",
          "|" + "---|" * len(_READINESS_COLS)]
    md += ["| " + " | ".join(_md_text(v) for v in r) + " |" for r in rows] + [""]
    return html, md


def generate(out_dir: str | Path = "report", results_dir: str | Path | None = None, data_root=None,
             run_missing: bool = False, asv_results: str | Path | None = None, quiet: bool = True,
             tables_dir=None, rehearsal: str | Path | None = None) -> dict:
    """Write the report; return a summary {"index", "markdown", "tables": {id: summary}, "claims": {...}}."""
    from visrep import __version__
    from visrep.provenance import git_state
    from visrep.results import default_results_dir

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results_dir = Path(results_dir) if results_dir is not None else default_results_dir()
    resolver = Resolver(results_dir, data_root=data_root)
    tables = load_tables(tables_dir)
    results = []
    for t in tables:
        if not quiet:
            print(f"report: {t.id}", file=sys.stderr, flush=True)
        results.append(evaluate_table(t, resolver, run_missing=run_missing))
    if (out / "records").exists():
        shutil.rmtree(out / "records")
    link = _Links(out, results_dir)
    if asv_results is None:
        guess = Path(__file__).resolve().parent.parent / ".asv" / "results"
        asv_results = guess if guess.is_dir() else None
    plot_list = _plots(out, resolver.index.records, results, Path(asv_results) if asv_results else None)

    state = git_state()
    generated = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    pdir = out / "plots"
    pdir.mkdir(parents=True, exist_ok=True)
    for stale in pdir.glob("forest_*.png"):
        stale.unlink()
    nav, body, md = [], [], []
    md += ["# visrep report: the talk's tables, reproduced", "",
           f"Avrithis, *Exploring and Learning from Visual Data* (HDR, Inria 2020). Generated {generated} by visrep "
           f"{__version__} at commit {_prov(state.get('commit'), state.get('dirty'))} from `{results_dir}` "
           f"({len(resolver.index.records)} records).", "", *_legend_md(), "## Overview", "",
           "| Table | Slide | Cells | Claims |", "|---|---|---|---|"]
    overview = []
    summary = {"tables": {}, "claims": {}}
    for tr in results:
        t = tr.table
        counts = tr.status_counts()
        ccounts: dict[str, int] = {}
        for c in tr.claims:
            ccounts[c.status] = ccounts.get(c.status, 0) + 1
        cell_order = STATUS_ORDER + sorted(s for s in counts if s not in STATUS_ORDER)
        claim_order = CLAIM_ORDER + sorted(s for s in ccounts if s not in CLAIM_ORDER)
        cell_parts = [(s, f"{counts[s]} {s}") for s in cell_order if counts.get(s)]
        if not cell_parts and t.kind == FIGURE:
            cell_parts = [(FIGURE, FIGURE)]
        claim_parts = [(s, _count_phrase(ccounts[s], s)) for s in claim_order if ccounts.get(s)]
        summary["tables"][t.id] = {"status": tr.summary(), "cells": counts,
                                   "claims": {c.claim: c.status for c in tr.claims}}
        for c in tr.claims:
            summary["claims"][f"{t.id}/{c.claim}"] = c.status
        slide = str(t.slide) if t.source == "talk" else "—"
        with_value = sum(counts.get(s, 0) for s in HAS_VALUE)
        claim_title = "; ".join(f"{c.claim}: {c.status}" for c in tr.claims)
        overview.append(f'<tr><td><a href="#table-{_e(t.id)}">{_rich(t.title)}</a></td><td>{slide}</td>'
                        f'<td class="counts" data-sort="{with_value}">{_badges(cell_parts) or "—"}</td>'
                        f'<td class="counts" data-sort="{ccounts.get(HOLDS, 0)}" title="{_e(claim_title)}">'
                        f'{_badges(claim_parts) or "—"}</td></tr>')
        md.append(f"| [{_md_text(t.title)}](#table-{t.id}) | {slide} | {' · '.join(x for _, x in cell_parts) or '—'} | "
                  f"{' · '.join(x for _, x in claim_parts) or '—'} |")
        nav.append(f'<a href="#table-{_e(t.id)}">{_e(t.id)}</a>')
    body.append('<section id="overview"><h2>Overview</h2>' + _legend_html()
                + '<p class="meta">Per table: how many of its published cells reached each status, and how many of '
                "its claims hold. Click a header to sort (Cells by the number of cells with a number, Claims by the "
                "number that hold).</p>"
                '<table class="overview sortable"><thead><tr><th>Table</th><th>Slide</th><th>Cells</th>'
                f'<th>Claims</th></tr></thead><tbody>{"".join(overview)}</tbody></table></section>')
    md.append("")
    for tr in results:
        t = tr.table
        src = f"slide {t.slide} of the talk" if t.source == "talk" else f"source: {t.source} (not the talk)"
        notes = "".join(f"<li>{_rich(n)}</li>" for n in t.notes)
        kind = f' <span class="badge {_cls(FIGURE)}">{FIGURE}</span>' if t.kind == FIGURE else ""
        parts = [f'<section id="table-{_e(t.id)}" class="table-section" data-kind="{_e(t.kind)}">',
                 f"<h2>{_rich(t.title)}{kind}</h2>",
                 f'<p class="meta">{_e(src)} · {_rich(t.citation)}</p>',
                 f'<p class="caption">{_rich(t.caption)}</p>' if t.caption else ""]
        md += [f'<a id="table-{t.id}"></a>', f"## {_md_text(t.title)}", "", f"*{src}* · {_md_text(t.citation)}", ""]
        if t.caption:
            md += [f"_{_md_text(t.caption)}_", ""]
        if t.rows:
            parts.append(f'<p class="meta">{_rich(t.metric_label)}; tolerance {t.tolerance:g} '
                         f"(published units); hover a cell for its reason.</p>")
            parts.append(_html_table(tr, link))
            parts.append(_html_cell_list(tr, link))
            md += [f"{_md_text(t.metric_label)}; tolerance {t.tolerance:g} (published units).", "",
                   *_md_table(tr, link), ""]
        if tr.claims:
            parts.append("<h3>Claims</h3>" + _html_claims(tr, link))
            md += ["**Claims**", "", *_md_claims(tr, link), ""]
            forest = _forest(tr, pdir)
            if forest:
                cap = f"Checks of the claims of {_plain(t.title)}: point estimate and 95% bootstrap interval"
                parts.append(f'<figure class="forest"><a href="{_e(forest)}"><img src="{_e(forest)}" alt="{_e(cap)}">'
                             '</a><figcaption class="meta">Each check with an interval: the point estimate (dot) and '
                             "its 95% bootstrap interval (bar), colored by outcome; dashed line: the reference (0, or "
                             "the check's threshold); shaded: a tolerance.</figcaption></figure>")
                md += [f"![{cap}]({forest})", ""]
                summary.setdefault("forest", {})[t.id] = forest
        if notes:
            parts.append(f'<ul class="notes">{notes}</ul>')
            md += [f"- {_md_text(n)}" for n in t.notes] + [""]
        parts.append("</section>")
        body.append("".join(parts))
    lb_html, lb_md, _ = _leaderboards(resolver.index.records, link)
    body.append(f'<section id="leaderboards"><h2>Leaderboards</h2><p class="meta">Every record in '
                f"<code>{_e(results_dir)}</code>, one sortable table per dataset and protocol "
                f"(click a header to sort).</p>{lb_html}</section>")
    md += ["## Leaderboards", "", lb_md, ""]
    nav.append('<a href="#leaderboards">leaderboards</a>')
    if plot_list:
        imgs = "".join(f'<figure><img src="{_e(src)}" alt="{_e(cap)}"><figcaption class="meta">{_e(cap)}'
                       f"</figcaption></figure>" for cap, src in plot_list)
        body.append(f'<section id="plots" class="plots"><h2>Plots</h2>{imgs}</section>')
        md += ["## Plots", ""] + [f"![{cap}]({src})" for cap, src in plot_list] + [""]
        nav.append('<a href="#plots">plots</a>')
    rob_html, rob_md = _robustness(out, resolver.index.records)
    if rob_html:
        body.append(rob_html)
        md += rob_md
        nav.append('<a href="#adversarial-robustness">adversarial robustness</a>')
    if rehearsal is not None:
        r_html, r_md = _readiness(Path(rehearsal))
        body.append(r_html)
        md += r_md
        nav.append('<a href="#readiness">readiness</a>')
    if resolver.index.errors:
        body.append('<section id="unreadable"><h2>Unreadable records</h2><ul>'
                    + "".join(f"<li>{_e(e)}</li>" for e in resolver.index.errors) + "</ul></section>")
    page = Template((TEMPLATES / "page.html").read_text(encoding="utf-8")).safe_substitute(
        title="visrep: the talk's tables, reproduced",
        subtitle=_e(f"Avrithis, Exploring and Learning from Visual Data (HDR, Inria 2020) — {len(tables)} tables, "
                    f"{len(resolver.index.records)} records from {results_dir}"),
        style=(TEMPLATES / "style.css").read_text(encoding="utf-8"),
        script=(TEMPLATES / "sortable.js").read_text(encoding="utf-8"),
        nav="\n".join(nav), body="\n".join(body),
        footer=_e(f"Generated {generated} by visrep {__version__} at commit "
                  f"{_prov(state.get('commit'), state.get('dirty'))}."))
    (out / "index.html").write_text(page, encoding="utf-8")
    (out / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    summary.update({"index": str(out / "index.html"), "markdown": str(out / "report.md"),
                    "records": len(resolver.index.records), "plots": [s for _, s in plot_list]})
    return summary
