"""Fill the talk's tables from the result store: one status per cell and per claim.

A cell (row x column of a table) or a claim's run is a :class:`visrep.spec.Experiment`, the same
type ``visrep run`` reads from spec files; it becomes a :class:`visrep.spec.Job` (parameters
validated and defaults filled exactly as ``visrep run`` does), then is looked up in the result store by its job id (the identity ``visrep run`` writes: file
parameters by content, so the path by which a file is reached does not matter).

Statuses, from best to worst: ``reproduced`` (within tolerance), ``differs``, ``proxy scale``
(a proxy-scale configuration: shown, not judged against the paper), ``shown`` (a timing:
hardware-dependent, never judged), ``not run`` (method and data are here: ``visrep report
--run-missing`` runs it), ``metric missing``, ``config error``, ``run failed``, ``data missing``,
``method missing``. Nothing here raises on a missing plugin or file: the report shows why.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from visrep.errors import MissingDataError, UserError

from visrep.spec import Experiment

from .tables import Claim, Column, Row, Table

REPRODUCED, DIFFERS, PROXY, SHOWN = "reproduced", "differs", "proxy scale", "shown"
NOT_RUN, METRIC_MISSING, CONFIG_ERROR, RUN_FAILED = "not run", "metric missing", "config error", "run failed"
DATA_MISSING, METHOD_MISSING = "data missing", "method missing"
HOLDS, DOES_NOT_HOLD, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
#: statuses that mean "a record exists and gave a number"
HAS_VALUE = (REPRODUCED, DIFFERS, PROXY, SHOWN)


@dataclass
class Resolved:
    """Where an Experiment stands: status, a reason, the job (if valid) and its record (if any)."""

    status: str
    reason: str = ""
    job: object = None
    record: dict | None = None
    record_path: str | None = None


def cell_spec(row: Row, col: Column) -> Experiment:
    """What to run for one cell: the row's method and parameters on the column's dataset/protocol (method
    parameters: the column's, then the column's for this method, then the row's, each overriding the last)."""
    params = {**col.params, **col.method_params.get(row.method, {}), **row.params}
    return Experiment(method=row.method, dataset=col.dataset, protocol=col.protocol, params=params,
                      dataset_params={**col.dataset_params, **row.dataset_params},
                      protocol_params={**col.protocol_params, **row.protocol_params},
                      requires=list(row.requires), seed=row.seed, data_root=row.data_root, label=row.label,
                      scale=row.scale)


class _NoShared(Exception):
    pass


def substitute(value, shared: Path | None):
    """Replace ``${shared}`` in every string of `value` by the real-data folder (raise if absent);
    the one implementation is :func:`visrep.spec.substitute_shared`."""
    from visrep.spec import substitute_shared
    try:
        return substitute_shared(value, shared, where="report table")
    except MissingDataError as e:
        raise _NoShared(str(e)) from None


def metric_value(record: dict, metric: str):
    """``metrics.map`` / ``timings.query`` / ``stats.graph_mb`` / bare ``map`` (= metrics.map) from a record, or None."""
    group, key = ("metrics", metric)
    for g in ("metrics", "timings", "stats"):
        if metric.startswith(g + "."):
            group, key = g, metric[len(g) + 1:]
    value = (record.get(group) or {}).get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


class ResultIndex:
    """Every record under a results directory, indexed by job identity (``record["job"]``).

    A cell finds its record by the job id of its configuration (:meth:`visrep.spec.Job.identity`:
    file parameters by content), so a record made with ``../shared/data/...`` is found from an
    absolute path to the same file, and a record of a file that has changed since is not.
    """

    def __init__(self, results_dir: str | Path):
        self.root = Path(results_dir)
        self.records: list[tuple[str, dict]] = []
        self.by_job: dict[str, tuple[str, dict]] = {}
        self.errors: list[str] = []
        if self.root.exists():
            from visrep.results import iter_records
            damaged: list = []
            for path, rec in iter_records(self.root, damaged=damaged):
                if "method" in rec:
                    self.add(str(path), rec)
            self.errors += [f"{path}: {why}" for path, why in damaged]

    def add(self, path: str, rec: dict) -> None:
        self.records.append((path, rec))
        job = rec.get("job")
        old = self.by_job.get(job) if job else None
        if job and (old is None or str(rec.get("created", "")) >= str(old[1].get("created", ""))):
            self.by_job[job] = (path, rec)

    def find(self, job) -> tuple[str, dict] | None:
        return self.by_job.get(job.job_id)


#: (dataset, params, root) -> why it does not load (None: it loads); shared by resolvers of this process
_DATA_CACHE: dict[str, str | None] = {}


class Resolver:
    """Turns Experiments (cells, claim runs) into statuses against the registries, the data on disk and the result store."""

    def __init__(self, results_dir: str | Path, data_root: str | Path | None = None,
                 shared: Path | None | str = "auto", check_data: bool = True):
        from visrep.context import default_data_root, shared_data_dir
        self.index = ResultIndex(results_dir)
        self.results_dir = str(results_dir)
        self.data_root = str(data_root) if data_root else str(default_data_root())
        self.shared = shared_data_dir() if shared == "auto" else (Path(shared) if shared else None)
        self.check_data = check_data
        self._data_cache = _DATA_CACHE
        self._resolved: dict[str, Resolved] = {}

    # ---------------------------------------------------------------- registry and data
    @staticmethod
    def _registered(kind: str, name: str) -> bool:
        from visrep.registry import REGISTRIES
        try:
            return bool(name) and name in REGISTRIES[kind]
        except Exception:  # a plugin module that fails to import must not take the report down
            return False

    def _data_problem(self, job) -> str | None:
        """None when the dataset loads under the job's data root, else why not (cached)."""
        if not self.check_data:
            return None
        for k, v in job.params.items():   # a method's input files (trained weights, training descriptors)
            if isinstance(v, str) and "/" in v and Path(v).suffix and not Path(v).exists():
                return f"{job.method}: {k} = {v} not found"
        key = json.dumps([job.dataset, job.dataset_params, job.data_root], sort_keys=True, default=str)
        if key not in self._data_cache:
            self._data_cache[key] = self._load_problem(job)
        return self._data_cache[key]

    @staticmethod
    def _load_problem(job) -> str | None:
        from visrep.context import RunContext
        from visrep.registry import datasets
        cls = datasets.get(job.dataset)
        root = Path(job.data_root) if job.data_root else None
        missing = [f.path for f in getattr(cls, "files", ()) if f.required and root is not None
                   and not (root / f.path).exists()]
        if missing:
            return f"{job.dataset}: {missing[0]} not found under {root}"
        for v in job.dataset_params.values():
            if isinstance(v, str) and "/" in v and Path(v).suffix and not Path(v).exists():
                return f"{job.dataset}: {v} not found"
        try:
            cls(**job.dataset_params).load(RunContext(data_root=root, quiet=True))
        except MissingDataError as e:
            return str(e)
        except UserError as e:
            return f"{job.dataset}: {e}"
        return None

    # ---------------------------------------------------------------- resolve
    def resolve(self, spec: Experiment) -> Resolved:
        key = json.dumps(spec.__dict__, sort_keys=True, default=str)
        if key not in self._resolved:
            self._resolved[key] = self._resolve(spec)
        return self._resolved[key]

    def _resolve(self, spec: Experiment) -> Resolved:
        if not spec.method:
            return Resolved(METHOD_MISSING, "cited comparison: no visrep configuration")
        for name in [spec.method, *spec.requires]:
            if not self._registered("method", name):
                return Resolved(METHOD_MISSING, f"method '{name}' is not registered")
        if not self._registered("dataset", spec.dataset):
            return Resolved(DATA_MISSING, f"dataset '{spec.dataset}' has no loader")
        if spec.protocol and not self._registered("protocol", spec.protocol):
            return Resolved(METHOD_MISSING, f"protocol '{spec.protocol}' is not registered")
        try:
            params = substitute(spec.params, self.shared)
            dparams = substitute(spec.dataset_params, self.shared)
            pparams = substitute(spec.protocol_params, self.shared)
            root = substitute(spec.data_root, self.shared) if spec.data_root else self.data_root
        except _NoShared as e:
            return Resolved(DATA_MISSING, f"needs the workplace data folder ../shared/data ({e})")
        except UserError as e:
            return Resolved(CONFIG_ERROR, str(e))
        exp = replace(spec, params=params, dataset_params=dparams, protocol_params=pparams, data_root=None)
        try:
            jobs = exp.jobs(data_root=root, where=f"{spec.method} on {spec.dataset}")
        except UserError as e:
            return Resolved(CONFIG_ERROR, str(e))
        if len(jobs) != 1:
            return Resolved(CONFIG_ERROR, f"configuration expands to {len(jobs)} jobs (lists make grids)")
        job = jobs[0]
        found = self.index.find(job)
        if found is not None:
            return Resolved("record", "", job, found[1], found[0])
        problem = self._data_problem(job)
        if problem:
            return Resolved(DATA_MISSING, problem, job)
        return Resolved(NOT_RUN, "method and data are here: `visrep report --run-missing` runs it", job)

    def run(self, spec: Experiment, settings=None) -> Resolved:
        """Run a spec whose status is 'not run'; record the outcome (never raises for user/data errors)."""
        from visrep.runner import RunSettings, run_job
        res = self.resolve(spec)
        if res.status != NOT_RUN:
            return res
        settings = settings or RunSettings(results_dir=self.results_dir, quiet=True)
        key = json.dumps(spec.__dict__, sort_keys=True, default=str)
        try:
            rec = run_job(res.job, settings)
        except MissingDataError as e:
            out = Resolved(DATA_MISSING, str(e), res.job)
        except UserError as e:
            out = Resolved(CONFIG_ERROR, str(e), res.job)
        except Exception as e:  # a crashing plugin is reported, not propagated
            out = Resolved(RUN_FAILED, f"{type(e).__name__}: {e}", res.job)
        else:
            path = rec.pop("_path")
            rec.pop("_skipped", None)
            self.index.add(path, rec)
            out = Resolved("record", "", res.job, rec, path)
        self._resolved[key] = out
        return out


# -------------------------------------------------------------------- cells and claims
@dataclass
class CellResult:
    table: str
    row: str
    column: str
    status: str
    published: float | None = None
    ci: float | None = None
    reproduced: float | None = None
    delta: float | None = None
    tolerance: float | None = None
    reason: str = ""
    record_path: str | None = None
    commit: str | None = None
    dirty: bool | None = None
    created: str | None = None


def provenance_of(record: dict | None) -> tuple:
    prov = (record or {}).get("provenance") or {}
    return prov.get("commit"), prov.get("dirty"), (record or {}).get("created")


def evaluate_cell(table: Table, row: Row, col: Column, resolver: Resolver, run_missing: bool = False) -> CellResult:
    spec = cell_spec(row, col)
    res = resolver.run(spec) if run_missing else resolver.resolve(spec)
    out = CellResult(table.id, row.id, col.id, res.status, published=row.published.get(col.id),
                     ci=row.published_ci.get(col.id), tolerance=table.cell_tolerance(col), reason=res.reason)
    if res.status != "record":
        return out
    out.record_path = res.record_path
    out.commit, out.dirty, out.created = provenance_of(res.record)
    raw = metric_value(res.record, col.metric)
    if raw is None:
        have = ", ".join(sorted((res.record.get("metrics") or {}))) or "none"
        out.status, out.reason = METRIC_MISSING, f"record has no '{col.metric}' (metrics: {have})"
        return out
    out.reproduced = raw * col.scale
    if out.published is not None:
        out.delta = out.reproduced - out.published
    if not col.compare:
        out.status, out.reason = SHOWN, "hardware-dependent: shown, not judged"
    elif row.scale == "proxy":
        out.status, out.reason = PROXY, "proxy-scale configuration: shown, not judged against the paper"
    elif out.published is None:
        out.status, out.reason = SHOWN, "no published number"
    else:
        tol = out.tolerance or 0.0
        out.status = REPRODUCED if abs(out.delta) <= tol + 1e-9 else DIFFERS
        out.reason = f"|delta| {abs(out.delta):.4g} {'<=' if out.status == REPRODUCED else '>'} tolerance {tol:g}"
    return out


@dataclass
class CheckResult:
    """One check of a claim: its text with the numbers, and its outcome.

    ``holds`` is True / False / None (inconclusive or numbers missing: see ``outcome``). With
    per-item values in both records (per-query AP, per-episode accuracy, ...), ``diff`` is the
    mean paired difference a - b (or the mean of a) and [``lo``, ``hi``] its 95% bootstrap
    interval over ``n`` items (:mod:`visrep.protocols.statistics`); without them (timings) the
    check compares the two numbers and ``how`` says so.
    """

    text: str
    holds: bool | None
    a: float | None = None
    b: float | None = None
    outcome: str = ""
    diff: float | None = None
    lo: float | None = None
    hi: float | None = None
    n: int = 0
    how: str = ""


@dataclass
class ClaimResult:
    table: str
    claim: str
    status: str
    reason: str = ""
    checks: list = field(default_factory=list)
    runs: dict = field(default_factory=dict)   # run name -> {status, reason, label, record_path, commit, dirty, values}
    seeds_used: list = field(default_factory=list)      # a claim with seeds: those it was decided on
    seeds_missing: list = field(default_factory=list)   # and those without records yet


def describe_check(c, a: float | None, b: float | None) -> tuple[str, bool | None]:
    """Text of a check with its two numbers and whether the numbers satisfy it (None when missing).

    This is the comparison of means; :func:`decide_check` uses it only where no per-item values
    exist (timings, statistics of a run), and otherwise decides with a paired interval.
    """
    fa = "?" if a is None else f"{a:.4g}"
    fb = "?" if b is None else f"{b:.4g}"
    m = c.metric
    if c.relation in ("greater", "less", "at_least_as"):
        op = {"greater": ">", "less": "<", "at_least_as": ">="}[c.relation]
        text = f"{m}: {c.a} {fa} {op} {c.b} {fb}"
        ok = None if a is None or b is None else (a > b if c.relation == "greater" else a < b if c.relation == "less"
                                                  else a >= b)
    elif c.relation == "within":
        text = f"{m}: |{c.a} {fa} - {c.b} {fb}| <= {c.tol:g}"
        ok = None if a is None or b is None else abs(a - b) <= c.tol + 1e-12
    elif c.relation == "ratio_at_least":
        ratio = "?" if a is None or b is None or b == 0 else f"{a / b:.3g}"
        text = f"{m}: {c.a} {fa} / {c.b} {fb} = {ratio} >= {c.value:g}"
        ok = None if a is None or b is None or b <= 0 else a / b >= c.value
    elif c.relation == "close":
        text = f"{m}: |{c.a} {fa} - {c.value:g}| <= {c.tol:g}"
        ok = None if a is None else abs(a - c.value) <= c.tol + 1e-12
    elif c.relation == "at_least":
        text = f"{m}: {c.a} {fa} >= {c.value:g}"
        ok = None if a is None else a >= c.value
    else:  # at_most
        text = f"{m}: {c.a} {fa} <= {c.value:g}"
        ok = None if a is None else a <= c.value
    return text, ok


def per_item_values(record: dict | None, metric: str):
    """The per-item values (n,) float64 (NaN = not counted) behind `metric` in a record, or None."""
    if not record:
        return None
    key = metric[len("metrics."):] if metric.startswith("metrics.") else metric
    if metric.startswith("stats."):
        return None
    values = (record.get("per_item") or {}).get(key)
    if not values:
        return None
    import numpy as np
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _seed_values(recs: list, metric: str):
    """(S, n) per-item values of the same run under S seeds, or None when a record lacks them."""
    vals = [per_item_values(r, metric) for r in recs]
    if any(v is None for v in vals) or len({v.shape for v in vals}) != 1:
        return None
    import numpy as np
    return np.stack(vals)


def decide_check(c, rec_a, rec_b) -> CheckResult:
    """Decide one check of a claim: a paired bootstrap over items where both records have them.

    ``rec_a`` / ``rec_b``: a record, or a list of the run's records under S training seeds (the
    claim's ``seeds``, in the same order for both runs): the numbers shown are means over seeds and
    the interval is the two-way bootstrap over seeds x items (:func:`statistics.paired_bootstrap_seeds`).
    """
    from visrep.protocols import statistics as st
    recs_a = rec_a if isinstance(rec_a, list) else [rec_a]
    recs_b = rec_b if isinstance(rec_b, list) else [rec_b]
    n_seeds = len(recs_a)

    def mean_metric(recs):
        vals = [metric_value(r, c.metric) if r else None for r in recs]
        return None if not vals or any(v is None for v in vals) else sum(vals) / len(vals)

    a = mean_metric(recs_a)
    b = mean_metric(recs_b) if c.b else None
    text, point = describe_check(c, a, b)
    if n_seeds > 1:
        text += f" (means over {n_seeds} seeds)"
    if a is None or (c.b and b is None):
        return CheckResult(text, None, a, b, outcome="missing", how="numbers missing")
    va = _seed_values(recs_a, c.metric)
    vb = _seed_values(recs_b, c.metric) if c.b else None
    two = c.relation in ("greater", "less", "at_least_as", "within")
    one = c.relation in ("close", "at_least", "at_most")
    over = f"{n_seeds} seeds x " if n_seeds > 1 else ""
    iv = None
    if two and va is not None and vb is not None and va.shape == vb.shape:
        iv = st.paired_bootstrap_seeds(va, vb)
        if c.relation == "greater":
            holds = st.decide_greater(iv)
        elif c.relation == "less":
            holds = st.decide_greater(st.Interval(-iv.mean, -iv.hi, -iv.lo, iv.n))
        elif c.relation == "at_least_as":
            holds = st.decide_at_least(iv)
        else:
            holds = st.decide_within(iv, c.tol)
        how = f"{'two-way' if n_seeds > 1 else 'paired'} bootstrap over {over}{iv.n} items"
        shown = f"; {c.a} - {c.b} = {iv.mean:+.4g} [{iv.lo:+.4g}, {iv.hi:+.4g}] (95%, {how})"
    elif one and va is not None:
        iv = st.bootstrap_mean_seeds(va)
        if c.relation == "at_least":
            holds = st.decide_at_least(iv, c.value)
        elif c.relation == "at_most":
            holds = st.decide_at_least(st.Interval(-iv.mean, -iv.hi, -iv.lo, iv.n), -c.value)
        else:
            holds = st.decide_within(st.Interval(iv.mean - c.value, iv.lo - c.value, iv.hi - c.value, iv.n), c.tol)
        how = f"{'two-way ' if n_seeds > 1 else ''}bootstrap over {over}{iv.n} items"
        shown = f"; mean {iv.mean:.4g} [{iv.lo:.4g}, {iv.hi:.4g}] (95%, {how})"
    elif c.relation == "ratio_at_least" and va is not None and vb is not None:
        fa, fb = va[0], vb[0]                       # timings: the first seed's
        paired = fa.shape == fb.shape
        iv = st.bootstrap_ratio(fa, fb, paired=paired)
        holds = st.decide_at_least(iv, c.value)
        how = f"{'paired ' if paired else ''}bootstrap over {iv.n} timed {'items' if paired else 'repeats'}"
        shown = f"; {c.a} / {c.b} = {iv.mean:.3g} [{iv.lo:.3g}, {iv.hi:.3g}] (95%, {how})"
    else:
        holds = point
        how = "comparison of the two numbers (no per-item values: a timing or a statistic of the run)"
        shown = ""
    outcome = HOLDS if holds else DOES_NOT_HOLD if holds is False else INCONCLUSIVE
    out = CheckResult(text + shown, holds, a, b, outcome=outcome, how=how)
    if iv is not None:
        out.diff, out.lo, out.hi, out.n = iv.mean, iv.lo, iv.hi, iv.n
    return out


_WORST = [METHOD_MISSING, DATA_MISSING, RUN_FAILED, CONFIG_ERROR, METRIC_MISSING, NOT_RUN]


def claim_run_seeds(claim: Claim, run: Experiment) -> list[tuple[int, Experiment]]:
    """(seed, experiment) of a claim's run under each of the claim's seeds (its own seed if none).

    The claim's ``seed_dataset_params`` (e.g. ``label_split``) take the seed's value too, so each
    seed also draws its own labelled subset, as the SSL papers' runs do; the test items stay the
    same, so runs still pair within a seed."""
    if not claim.seeds:
        return [(run.seed, run)]
    return [(s, replace(run, seed=s, dataset_params={**run.dataset_params,
                                                    **{p: s for p in claim.seed_dataset_params}}))
            for s in claim.seeds]


def claim_jobs(results_dir: str | Path, data_root: str | Path | None = None,
               tables: list[Table] | None = None, all_seeds: bool = False) -> tuple[list, list[str]]:
    """Every job that a claim of the tables needs and that can run here (run or not yet run), once;
    and for the others why not ("table/claim/run: method missing: ..."). ``visrep run default`` adds
    these to its own experiments, so that the report decides every claim after the main job.
    A claim with several ``seeds`` contributes its first seed's jobs only unless ``all_seeds``
    (the main job's budget; ``visrep report --run-missing`` runs the others)."""
    from .tables import load_tables
    resolver = Resolver(results_dir, data_root)
    jobs, seen, skipped = [], set(), []
    for table in tables if tables is not None else load_tables():
        for claim in table.claims:
            for name in claim.runs:
                variants = claim_run_seeds(claim, table.runs[name])
                for seed, run in variants if all_seeds else variants[:1]:
                    res = resolver.resolve(run)
                    if res.status in (NOT_RUN, "record") and res.job is not None:
                        if res.job.job_id not in seen:
                            seen.add(res.job.job_id)
                            jobs.append(res.job)
                    else:
                        skipped.append(f"{table.id}/{claim.id}/{name}: {res.status}: {res.reason}")
    return jobs, sorted(set(skipped))


def evaluate_claim(table: Table, claim: Claim, resolver: Resolver, run_missing: bool = False) -> ClaimResult:
    """A claim holds when every check holds, does not hold when one does not, else is inconclusive.

    With ``claim.seeds`` every run is looked up (or run) under each seed; the first seed's records
    must exist, and the claim is decided on the seeds for which every run has a record (the reason
    names any seed left out)."""
    out = ClaimResult(table.id, claim.id, NOT_RUN)
    by_seed: dict[str, list] = {}           # run name -> its Resolved under each seed, in the claim's order
    for name in claim.runs:
        variants = claim_run_seeds(claim, table.runs[name])
        by_seed[name] = [resolver.run(run) if run_missing else resolver.resolve(run) for _, run in variants]
        first = by_seed[name][0]
        commit, dirty, created = provenance_of(first.record)
        out.runs[name] = {"status": first.status, "reason": first.reason, "label": table.runs[name].label or name,
                          "method": table.runs[name].method, "dataset": table.runs[name].dataset,
                          "record_path": first.record_path, "commit": commit, "dirty": dirty, "created": created}
        if claim.seeds:
            out.runs[name]["seeds"] = {s: r.status for (s, _), r in zip(variants, by_seed[name])}
    blocking = [(n, r) for n, r in out.runs.items() if r["status"] != "record"]
    if blocking:
        rank = {s: i for i, s in enumerate(_WORST)}
        name, worst = min(blocking, key=lambda nr: rank.get(nr[1]["status"], len(_WORST)))
        out.status, out.reason = worst["status"], f"{name}: {worst['reason']}"
    # the seed positions at which every run has a record (the first is required above)
    used = [k for k in range(len(claim.seeds) or 1) if all(r[k].status == "record" for r in by_seed.values())]
    seeds = [claim.seeds[k] for k in used] if claim.seeds else []
    if claim.seeds and not blocking:
        out.seeds_used = seeds
        out.seeds_missing = [s for s in claim.seeds if s not in seeds]

    def recs(name):
        if not claim.seeds:
            return by_seed[name][0].record
        return [by_seed[name][k].record for k in used] or [by_seed[name][0].record]

    for c in claim.checks:
        out.checks.append(decide_check(c, recs(c.a), recs(c.b) if c.b else None))
    if not blocking:
        outcomes = [ch.outcome for ch in out.checks]
        if "missing" in outcomes:
            out.status = METRIC_MISSING
            out.reason = "; ".join(ch.text for ch in out.checks if ch.outcome == "missing")
        else:
            out.status = (DOES_NOT_HOLD if DOES_NOT_HOLD in outcomes else INCONCLUSIVE if INCONCLUSIVE in outcomes
                          else HOLDS)
            out.reason = "; ".join(ch.text for ch in out.checks)
        if out.seeds_missing:
            out.reason += (f"; decided on seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))} of "
                           f"{', '.join(map(str, claim.seeds))} (pending: "
                           f"{', '.join(map(str, out.seeds_missing))}; `visrep report --run-missing` runs them)")
    return out


@dataclass
class TableResult:
    table: Table
    cells: dict = field(default_factory=dict)     # (row id, column id) -> CellResult
    claims: list = field(default_factory=list)

    def status_counts(self) -> dict:
        counts: dict[str, int] = {}
        for c in self.cells.values():
            if c.published is not None or c.reproduced is not None:
                counts[c.status] = counts.get(c.status, 0) + 1
        return counts

    def summary(self) -> str:
        """One status for the whole table: the best state any of its published cells reached."""
        counts = self.status_counts()
        for s in (REPRODUCED, DIFFERS, PROXY, SHOWN, NOT_RUN, METRIC_MISSING, CONFIG_ERROR, RUN_FAILED,
                  DATA_MISSING, METHOD_MISSING):
            if counts.get(s):
                return s
        return "figure" if self.table.kind == "figure" else "empty"


def evaluate_table(table: Table, resolver: Resolver, run_missing: bool = False) -> TableResult:
    out = TableResult(table)
    for row in table.rows:
        for col in table.columns:
            if col.id in row.published:
                out.cells[(row.id, col.id)] = evaluate_cell(table, row, col, resolver, run_missing)
    out.claims = [evaluate_claim(table, c, resolver, run_missing) for c in table.claims]
    return out
