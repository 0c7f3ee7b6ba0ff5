"""The talk's tables as data: one TOML file per table under ``reports/tables/``.

A table file holds what the talk published and how visrep reproduces it::

    id = "asmk"                       # = the file name
    title = "..."
    slide = 30                        # slide number in the talk (out of 104)
    citation = "Tolias, Avrithis and Jégou. ICCV 2013. ..."
    source = "talk"                   # or a file (e.g. the data README) for reference tables
    kind = "table"                    # "table" (numbers), "figure" (claims only), "reference"
    scale = 100                       # published = metric x scale (100 for percentages)
    tolerance = 1.0                   # |published - reproduced| allowed, in published units
    metric = "map"                    # default metric key of the columns

    [[column]]                        # a dataset/protocol cell of the table
    id = "oxf5k"; label = "Oxf5k"; dataset = "oxford5k"; protocol = "oxford"   # metric, scale, tolerance, group
    params = {arch = "cnn13"}         # optional: method parameters of every row in this column (the network of
    method_params = {dlp = {labelled_per_batch = 31}}   # a dataset), and of the rows of one method; a row's own win

    [[row]]                           # a method configuration
    id = "asmk-ma"; label = "ASMK"; method = "asmk"; scale = "full"        # or "proxy"
    params = {multiple_assignment = true}   # + dataset_params, protocol_params, requires, seed, data_root
    published = {oxf5k = 81.7, par6k = 78.2}   # "-" cells are simply absent
    published_ci = {...}              # optional +- of the published number

    [runs.knn]                        # named runs that claims compare (proxy scale unless scale = "full")
    method = "knn"; dataset = "oxford5k"; data_root = "${shared}/retrieval"
    dataset_params = {features = "${shared}/retrieval/oxford5k/oxford_features_caffenet_pca128.fvecs"}

    [[claim]]                         # a claim of the talk, evaluated from records
    id = "..."; text = "..."; quote = "exact words of the talk"; scale = "proxy"
    checks = [{relation = "greater", a = "diffusion", b = "knn", metric = "metrics.map"}]
    seeds = [0, 1, 2]                 # optional: every run repeated with these training seeds
    seed_dataset_params = ["label_split"]   # optional: dataset parameters that take each seed's value

Relations: ``greater`` (a > b), ``less`` (a < b), ``at_least_as`` (a >= b), ``within`` (|a - b| <= tol),
``ratio_at_least`` (a / b >= value), ``close`` (|a - value| <= tol), ``at_least`` / ``at_most`` (a vs value).
Where the records hold per-item values (per-query AP, per-episode accuracy, ...) a relation is
decided by a 95% paired bootstrap interval: holds, does not hold, or inconclusive
(``visrep.reports.evaluate.decide_check``); a claim with ``seeds`` by the two-way bootstrap over
seeds x items, on the seeds whose records exist (the main job runs the first seed only). A claim has no other parameter than the talk's words:
no hand-set margins (``tol`` and ``value`` are the numbers the talk states: "within 0.5 mAP", "10x").
``${shared}`` in any string stands for the workplace's real-data folder (``../shared/data``).

This module only reads TOML (no numpy, no registries), so ``visrep list tables`` stays cheap.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from visrep.errors import UserError
from visrep.spec import Experiment

TABLES_DIR = Path(__file__).resolve().parent / "tables"
KINDS = ("table", "figure", "reference")
SCALES = ("full", "proxy")
RELATIONS = {"greater": ("a", "b"), "less": ("a", "b"), "at_least_as": ("a", "b"), "within": ("a", "b"),
             "ratio_at_least": ("a", "b"),
             "close": ("a",), "at_least": ("a",), "at_most": ("a",)}
_RUN_KEYS = {"method", "dataset", "protocol", "params", "dataset_params", "protocol_params", "seed",
             "data_root", "requires", "scale", "label"}   # a claim run: the fields of a visrep.spec.Experiment


@dataclass
class Column:
    id: str
    label: str
    dataset: str
    protocol: str | None = None
    metric: str = "map"
    scale: float = 1.0
    tolerance: float | None = None
    group: str = ""
    dataset_params: dict = field(default_factory=dict)
    protocol_params: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)          # method parameters of every row in this column
    method_params: dict = field(default_factory=dict)   # method name -> parameters of that method's rows here
    compare: bool = True          # False: shown, never judged (e.g. wall-clock timings)
    lower_is_better: bool = False


@dataclass
class Row:
    id: str
    label: str
    method: str = ""              # "" = a published comparison with no visrep configuration
    params: dict = field(default_factory=dict)
    dataset_params: dict = field(default_factory=dict)
    protocol_params: dict = field(default_factory=dict)
    requires: list = field(default_factory=list)
    scale: str = "full"
    seed: int = 0
    data_root: str | None = None
    published: dict = field(default_factory=dict)
    published_ci: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)   # columns of the talk that are settings (k, m, labels...)
    note: str = ""
    quick: bool = False


@dataclass
class Check:
    relation: str
    a: str
    metric: str
    b: str | None = None
    value: float | None = None
    tol: float | None = None


@dataclass
class Claim:
    id: str
    text: str
    checks: list
    quote: str = ""
    scale: str = "proxy"
    note: str = ""
    xfail: str = ""               # known not to hold here: why (the report still shows "does not hold")
    quick: bool = False
    seeds: list = field(default_factory=list)   # training seeds each run is repeated with ([] = the run's own)
    #: dataset parameters set to the seed in each seeded run (the SSL papers draw a labelled subset per run)
    seed_dataset_params: list = field(default_factory=list)

    @property
    def runs(self) -> list[str]:
        names = []
        for c in self.checks:
            for n in (c.a, c.b):
                if n and n not in names:
                    names.append(n)
        return names


@dataclass
class Table:
    id: str
    title: str
    slide: int
    citation: str
    path: Path
    kind: str = "table"
    source: str = "talk"
    caption: str = ""
    metric_label: str = "mAP"
    scale: float = 1.0
    tolerance: float = 0.0
    columns: list = field(default_factory=list)
    rows: list = field(default_factory=list)
    attr_labels: dict = field(default_factory=dict)
    runs: dict = field(default_factory=dict)
    claims: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def column(self, cid: str) -> Column:
        for c in self.columns:
            if c.id == cid:
                return c
        raise KeyError(cid)

    def cell_tolerance(self, col: Column) -> float:
        return self.tolerance if col.tolerance is None else col.tolerance


def _need(d: dict, key: str, where: str, typ=str):
    if key not in d:
        raise UserError(f"{where}: missing required field '{key}'")
    v = d[key]
    if typ is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if not isinstance(v, typ):
        raise UserError(f"{where}: field '{key}' must be {typ.__name__}, got {v!r}")
    return v


def _only(d: dict, allowed: set, where: str) -> None:
    extra = set(d) - allowed
    if extra:
        from visrep.errors import did_you_mean
        k = sorted(extra)[0]
        raise UserError(f"{where}: unknown field '{k}'{did_you_mean(k, allowed)}")


def _number(v, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise UserError(f"{where}: published value must be a number, got {v!r}")
    return float(v)


def load_table(path: str | Path) -> Table:
    """Parse and validate one table file; raise UserError naming the file and field on bad input."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UserError(f"cannot read table file {path}: {e}") from None
    w = str(path)
    _only(doc, {"id", "title", "slide", "citation", "kind", "source", "caption", "metric_label", "scale",
                "tolerance", "metric", "column", "row", "attr_labels", "runs", "claim", "notes"}, w)
    tid = _need(doc, "id", w)
    if tid != path.stem:
        raise UserError(f"{w}: id '{tid}' must equal the file name '{path.stem}'")
    kind = doc.get("kind", "table")
    if kind not in KINDS:
        raise UserError(f"{w}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    default_metric = doc.get("metric", "map")
    t = Table(id=tid, title=_need(doc, "title", w), slide=_need(doc, "slide", w, int),
              citation=_need(doc, "citation", w), path=path, kind=kind, source=doc.get("source", "talk"),
              caption=doc.get("caption", ""), metric_label=doc.get("metric_label", "mAP"),
              scale=float(doc.get("scale", 1.0)), tolerance=float(doc.get("tolerance", 0.0)),
              attr_labels=dict(doc.get("attr_labels", {})), notes=list(doc.get("notes", [])))
    col_fields = {"id", "label", "dataset", "protocol", "metric", "scale", "tolerance", "group",
                  "dataset_params", "protocol_params", "params", "method_params", "compare", "lower_is_better"}
    for i, c in enumerate(doc.get("column", [])):
        cw = f"{w} column {i + 1}"
        _only(c, col_fields, cw)
        mp = c.get("method_params", {})
        if not isinstance(c.get("params", {}), dict) or not isinstance(mp, dict) or \
                not all(isinstance(v, dict) for v in mp.values()):
            raise UserError(f"{cw}: 'params' must be a table of method parameters and 'method_params' a table of "
                            f"such tables by method name")
        t.columns.append(Column(id=_need(c, "id", cw), label=_need(c, "label", cw), dataset=_need(c, "dataset", cw),
                                protocol=c.get("protocol"), metric=c.get("metric", default_metric),
                                scale=float(c.get("scale", t.scale)),
                                tolerance=float(c["tolerance"]) if "tolerance" in c else None,
                                group=c.get("group", ""), dataset_params=dict(c.get("dataset_params", {})),
                                protocol_params=dict(c.get("protocol_params", {})),
                                params=dict(c.get("params", {})), method_params={k: dict(v) for k, v in mp.items()},
                                compare=bool(c.get("compare", True)),
                                lower_is_better=bool(c.get("lower_is_better", False))))
    col_ids = [c.id for c in t.columns]
    if len(set(col_ids)) != len(col_ids):
        raise UserError(f"{w}: duplicate column ids")
    row_fields = {"id", "label", "method", "params", "dataset_params", "protocol_params", "requires", "scale",
                  "seed", "data_root", "published", "published_ci", "attrs", "note", "quick"}
    for i, r in enumerate(doc.get("row", [])):
        rw = f"{w} row {i + 1}"
        _only(r, row_fields, rw)
        row = Row(id=_need(r, "id", rw), label=_need(r, "label", rw), method=r.get("method", ""),
                  params=dict(r.get("params", {})), dataset_params=dict(r.get("dataset_params", {})),
                  protocol_params=dict(r.get("protocol_params", {})), requires=list(r.get("requires", [])),
                  scale=r.get("scale", "full"), seed=int(r.get("seed", 0)), data_root=r.get("data_root"),
                  attrs=dict(r.get("attrs", {})), note=r.get("note", ""), quick=bool(r.get("quick", False)))
        if row.scale not in SCALES:
            raise UserError(f"{rw}: scale must be 'full' or 'proxy', got {row.scale!r}")
        for key in ("published", "published_ci"):
            for cid, v in dict(r.get(key, {})).items():
                if cid not in col_ids:
                    raise UserError(f"{rw}: {key} names unknown column '{cid}' (columns: {', '.join(col_ids)})")
                getattr(row, key)[cid] = _number(v, f"{rw} {key}.{cid}")
        t.rows.append(row)
    row_ids = [r.id for r in t.rows]
    if len(set(row_ids)) != len(row_ids):
        raise UserError(f"{w}: duplicate row ids")
    for name, r in dict(doc.get("runs", {})).items():
        rw = f"{w} runs.{name}"
        _only(r, _RUN_KEYS, rw)
        _need(r, "method", rw)
        _need(r, "dataset", rw)
        run = Experiment.from_dict({**r, "name": name, "scale": r.get("scale", "proxy"), "label": r.get("label", name)}, rw)
        if run.scale not in SCALES:
            raise UserError(f"{rw}: scale must be 'full' or 'proxy', got {run.scale!r}")
        t.runs[name] = run
    for i, c in enumerate(doc.get("claim", [])):
        cw = f"{w} claim {i + 1}"
        _only(c, {"id", "text", "quote", "scale", "note", "xfail", "quick", "checks", "seeds", "seed_dataset_params"},
              cw)
        seeds = c.get("seeds", [])
        if (not isinstance(seeds, list) or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                                                   for x in seeds) or len(set(seeds)) != len(seeds)):
            raise UserError(f"{cw}: seeds must be a list of distinct non-negative integers, got {seeds!r}")
        seed_params = c.get("seed_dataset_params", [])
        if not isinstance(seed_params, list) or not all(isinstance(x, str) and x for x in seed_params):
            raise UserError(f"{cw}: seed_dataset_params must be a list of dataset parameter names, got {seed_params!r}")
        if seed_params and not seeds:
            raise UserError(f"{cw}: seed_dataset_params {seed_params} need the claim's 'seeds'")
        checks = []
        for j, ch in enumerate(c.get("checks", [])):
            chw = f"{cw} check {j + 1}"
            if "margin" in ch:
                raise UserError(f"{chw}: a claim takes no hand-set margin; state the talk's relation "
                                f"('greater', 'at_least_as', 'within' with the tolerance the talk states)")
            _only(ch, {"relation", "a", "b", "metric", "value", "tol"}, chw)
            rel = _need(ch, "relation", chw)
            if rel not in RELATIONS:
                raise UserError(f"{chw}: relation must be one of {', '.join(RELATIONS)}, got {rel!r}")
            check = Check(relation=rel, a=_need(ch, "a", chw), b=ch.get("b"), metric=_need(ch, "metric", chw),
                          value=float(ch["value"]) if "value" in ch else None,
                          tol=float(ch["tol"]) if "tol" in ch else None)
            if "b" in RELATIONS[rel] and not check.b:
                raise UserError(f"{chw}: relation '{rel}' compares two runs: give 'b'")
            if rel in ("ratio_at_least", "close", "at_least", "at_most") and check.value is None:
                raise UserError(f"{chw}: relation '{rel}' needs 'value'")
            if rel in ("within", "close") and check.tol is None:
                raise UserError(f"{chw}: relation '{rel}' needs 'tol'")
            for n in (check.a, check.b):
                if n and n not in t.runs:
                    raise UserError(f"{chw}: run '{n}' is not defined under [runs] (defined: {', '.join(t.runs)})")
            checks.append(check)
        if not checks:
            raise UserError(f"{cw}: a claim needs at least one check")
        claim = Claim(id=_need(c, "id", cw), text=_need(c, "text", cw), checks=checks, quote=c.get("quote", ""),
                      scale=c.get("scale", "proxy"), note=c.get("note", ""), xfail=c.get("xfail", ""),
                      quick=bool(c.get("quick", False)), seeds=list(seeds), seed_dataset_params=list(seed_params))
        if claim.scale not in SCALES:
            raise UserError(f"{cw}: scale must be 'full' or 'proxy', got {claim.scale!r}")
        t.claims.append(claim)
    followed: dict[str, tuple] = {}     # run -> (claim id, its seed_dataset_params): one way for every claim
    for claim in t.claims:
        for name in claim.runs if claim.seeds else ():
            first = followed.setdefault(name, (claim.id, sorted(claim.seed_dataset_params)))
            if first[1] != sorted(claim.seed_dataset_params):
                raise UserError(f"{w}: run '{name}' follows the seed in dataset parameters {first[1]} in claim "
                                f"'{first[0]}' but {sorted(claim.seed_dataset_params)} in claim '{claim.id}': a run "
                                f"must have one record per seed")
    if t.kind == "table" and not t.rows:
        raise UserError(f"{w}: a table needs rows")
    return t


def table_paths(directory: str | Path | None = None) -> list[Path]:
    return sorted(Path(directory or TABLES_DIR).glob("*.toml"))


def load_tables(directory: str | Path | None = None) -> list[Table]:
    """All tables, in slide order."""
    return sorted((load_table(p) for p in table_paths(directory)), key=lambda t: (t.kind == "reference", t.slide, t.id))


def list_tables() -> list[dict]:
    """[{"name", "title", "slide", "kind"}] for `visrep list tables`."""
    return [{"name": t.id, "title": f"{t.title} (slide {t.slide})" if t.source == "talk" else t.title,
             "slide": t.slide, "kind": t.kind} for t in load_tables()]
