"""Run specs: which method, dataset, protocol and parameters to run, expanded into jobs.

A spec file (TOML or YAML) holds one experiment at top level or a list under
``experiment``::

    [[experiment]]
    method = "diffusion"        # a list of names runs each one
    dataset = "oxford5k"
    seed = 0
    [experiment.params]
    k = [30, 50]            # a list expands to a grid (for a single-valued parameter)
    alpha = [0.9, 0.99]
    features = "${shared}/retrieval/oxford5k/oxford_features_caffenet_pca128.fvecs"

Keys under ``params`` go to whichever plugin declares them (method first, then dataset,
then protocol); ``dataset_params`` / ``protocol_params`` address one plugin explicitly.
For a list parameter (declared ``type=list``, e.g. the metric-learning protocol's ``ks``) a list
is one value, ``ks = [1, 2, 4, 8]``, and a list of lists is a grid, ``ks = [[1], [1, 2, 4, 8]]``.
``protocol`` defaults to the dataset's standard protocol. ``data_root`` is optional.
Strings may contain ``${shared}``, the workplace's real-data folder (``../shared/data``);
an experiment with ``optional = true`` is skipped (with a message) when its data is absent.
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import tomllib

from .cache import hash_key
from .errors import MissingDataError, UserError, did_you_mean
from .manifest import content_id
from .registry import datasets, methods, protocols

SHARED = "${shared}"


@dataclass
class Experiment:
    """What to run: the one type shared by spec files, the command line, the runner and the tables
    of the talk (cells and claim runs).

    Plugin names (a list of names runs each), parameters (a list of values makes a grid for a
    single-valued parameter), seed and data root, with ``${shared}`` not yet substituted.
    :meth:`jobs` validates and expands it into :class:`Job` s; the rest describes it: ``name``
    (how a table's claims refer to it), ``label`` (how the report shows it), ``requires``
    (further methods it needs), ``optional`` (a spec entry skipped with a message when its data
    is absent), ``scale`` ('full' or 'proxy', in the tables).
    """

    method: str | list = ""
    dataset: str | list = ""
    protocol: str | list | None = None
    params: dict = field(default_factory=dict)
    dataset_params: dict = field(default_factory=dict)
    protocol_params: dict = field(default_factory=dict)
    seed: int = 0
    data_root: str | None = None
    name: str = ""
    label: str = ""
    requires: list = field(default_factory=list)
    optional: bool = False
    scale: str = ""

    @classmethod
    def from_dict(cls, d: dict, where: str = "spec") -> "Experiment":
        """An experiment from a spec file's table (unknown keys are a UserError with a suggestion)."""
        if isinstance(d, Experiment):
            return d
        if not isinstance(d, dict):
            raise UserError(f"{where}: an experiment must be a table/mapping, got {type(d).__name__}")
        unknown = set(d) - EXPERIMENT_KEYS
        if unknown:
            k = sorted(unknown)[0]
            raise UserError(f"{where}: unknown key '{k}'{did_you_mean(k, EXPERIMENT_KEYS)}")
        for key in ("params", "dataset_params", "protocol_params"):
            if d.get(key) is not None and not isinstance(d[key], dict):
                raise UserError(f"{where}: '{key}' must be a table of parameters, got {d[key]!r}")
        if d.get("requires") is not None and not isinstance(d["requires"], list):
            raise UserError(f"{where}: 'requires' must be a list of method names, got {d['requires']!r}")
        try:
            seed = int(d.get("seed", 0))
        except (TypeError, ValueError):
            raise UserError(f"{where}: seed must be an integer, got {d.get('seed')!r}") from None
        return cls(**{**{k: v for k, v in d.items() if v is not None or k == "protocol"},
                      "params": dict(d.get("params") or {}), "dataset_params": dict(d.get("dataset_params") or {}),
                      "protocol_params": dict(d.get("protocol_params") or {}),
                      "requires": list(d.get("requires") or []), "seed": seed})

    def jobs(self, data_root: str | None = None, where: str = "spec") -> list["Job"]:
        """The validated jobs of this experiment (raises UserError on any bad name or value)."""
        return expand_experiment(self, data_root, where)


EXPERIMENT_KEYS = frozenset(Experiment.__dataclass_fields__)


_PARAM_GROUPS = ("params", "dataset_params", "protocol_params")


def input_hashes(groups: dict) -> dict:
    """{"params.features": "sha256:<hex>", ...}: the content of every file (or folder) a parameter
    value names (:func:`visrep.manifest.content_id`); other values are absent."""
    out = {}
    for group in _PARAM_GROUPS:
        for key, value in (groups.get(group) or {}).items():
            try:
                cid = content_id(value)
            except OSError as e:
                raise UserError(f"parameter '{key}': cannot read {value}: {e}") from None
            if cid:
                out[f"{group}.{key}"] = cid
    return out


@dataclass
class Job:
    """One fully-resolved run: plugin names, complete parameters (defaults filled), seed.

    ``inputs`` holds the content hash of every file (or folder) a parameter names, taken when the
    job is made; the job's identity uses these hashes instead of the paths, so the same file
    reached by a relative or an absolute path (or on another mount) is the same job, and a file
    whose content changed makes a new job (never a stale record).
    """

    method: str
    dataset: str
    protocol: str
    params: dict = field(default_factory=dict)
    dataset_params: dict = field(default_factory=dict)
    protocol_params: dict = field(default_factory=dict)
    seed: int = 0
    data_root: str | None = None
    inputs: dict | None = None

    def __post_init__(self):
        if self.inputs is None:
            self.inputs = input_hashes(asdict(self))

    def identity(self) -> dict:
        """Everything that defines the result: plugins, parameters with file paths replaced by
        their content hashes, seed (not the data root: the dataset's files are in the record's manifest)."""
        d = asdict(self)
        d.pop("data_root")
        inputs = d.pop("inputs") or {}
        for group in _PARAM_GROUPS:
            d[group] = {k: inputs.get(f"{group}.{k}", v) for k, v in d[group].items()}
        return d

    @property
    def job_id(self) -> str:
        """16 hex of the hash of :meth:`identity`."""
        return hash_key(self.identity())[:16]

    def to_dict(self) -> dict:
        return asdict(self)


def _split_params(method_cls, dataset_cls, protocol_cls, params: dict) -> tuple[dict, dict, dict]:
    m, d, p = {}, {}, {}
    for key, value in params.items():
        for cls, target in ((method_cls, m), (dataset_cls, d), (protocol_cls, p)):
            if key in cls.param_names():
                target[key] = value
                break
        else:
            known = set(method_cls.param_names()) | set(dataset_cls.param_names()) | set(protocol_cls.param_names())
            raise UserError(f"no parameter '{key}' in method '{method_cls.name}', dataset '{dataset_cls.name}' "
                            f"or protocol '{protocol_cls.name}'{did_you_mean(key, known)}; "
                            f"known: {', '.join(sorted(known)) or 'none'}")
    return m, d, p


def _list_params(*classes) -> set[str]:
    """Names of list-typed parameters, each looked up in the first of `classes` that declares it."""
    seen, out = set(), set()
    for cls in classes:
        for p in cls.params:
            if p.name not in seen:
                seen.add(p.name)
                if p.is_list:
                    out.add(p.name)
    return out


def _grid(params: dict, list_keys=frozenset()) -> list[dict]:
    """Cartesian product over the grid entries, the others stay fixed.

    A list is a grid for a single-valued parameter; for a parameter in `list_keys` (a list
    parameter) a list is one value and a list of lists is a grid of lists.
    """
    keys = list(params)
    values = []
    for key, v in params.items():
        if key in list_keys and isinstance(v, (list, tuple)):
            nested = [isinstance(x, (list, tuple)) for x in v]
            if v and all(nested):
                values.append(list(v))
            elif any(nested):
                raise UserError(f"parameter '{key}' is a list: give one list, e.g. [1, 2], or a list of "
                                f"lists for a grid, e.g. [[1, 2], [4, 8]], got {v!r}")
            else:
                values.append([v])
        else:
            values.append(v if isinstance(v, list) else [v])
    if any(len(v) == 0 for v in values):
        empty = keys[[len(v) for v in values].index(0)]
        raise UserError(f"parameter '{empty}' has an empty list of values")
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def substitute_shared(value, shared="auto", where: str = "spec"):
    """Replace ``${shared}`` in every string of `value` (dicts and lists walked) by the real-data
    folder `shared` ("auto": :func:`visrep.context.shared_data_dir`); MissingDataError when a
    string needs it and it is absent. The one spelling of the placeholder (spec files, report
    tables); a bare ``{shared}`` is a UserError that names it."""
    if isinstance(value, dict):
        return {k: substitute_shared(v, shared, where) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [substitute_shared(v, shared, where) for v in value]
    if isinstance(value, str) and "{shared}" in value.replace(SHARED, ""):
        raise UserError(f"{where}: write the shared real-data folder as {SHARED}, got {value!r}")
    if isinstance(value, str) and SHARED in value:
        if shared == "auto":
            from .context import shared_data_dir
            shared = shared_data_dir()
        if shared is None:
            raise MissingDataError(f"{where}: {value!r} needs the shared real-data folder "
                                   f"(../shared/data or $VISREP_SHARED_DATA)")
        return value.replace(SHARED, str(shared))
    return value


def _substitute_shared(value, where: str):
    return substitute_shared(value, "auto", where)


def expand_experiment(exp: Experiment | dict, data_root: str | None = None, where: str = "spec") -> list[Job]:
    """Turn one experiment into validated jobs (raises UserError on any bad name or value)."""
    exp = Experiment.from_dict(exp, where)
    for key in ("method", "dataset", "protocol"):
        value = getattr(exp, key)
        if isinstance(value, list):  # several plugins: one experiment each
            return [job for name in value
                    for job in expand_experiment(replace(exp, **{key: name}), data_root, where)]
        if value is not None and not isinstance(value, str):
            raise UserError(f"{where}: '{key}' must be a name or a list of names, got {value!r}")
    for required in ("method", "dataset"):
        if not getattr(exp, required):
            raise UserError(f"{where}: '{required}' is required")
    method_cls = methods.get(exp.method)
    dataset_cls = datasets.get(exp.dataset)
    protocol_name = exp.protocol or dataset_cls.default_protocol
    if not protocol_name:
        raise UserError(f"{where}: dataset '{dataset_cls.name}' has no default protocol; name one with --protocol")
    protocol_cls = protocols.get(protocol_name)
    from .tasks import fits
    why = fits(method_cls, dataset_cls, protocol_cls)
    if why:
        raise UserError(f"{where}: {why} (task rules: visrep/tasks.py)")
    params = _substitute_shared(exp.params, where)
    dataset_params = _substitute_shared(exp.dataset_params, where)
    protocol_params = _substitute_shared(exp.protocol_params, where)
    root = data_root or (_substitute_shared(exp.data_root, where) if exp.data_root else None)
    jobs = []
    for combo in _grid(dict(params), _list_params(method_cls, dataset_cls, protocol_cls)):
        m, d, p = _split_params(method_cls, dataset_cls, protocol_cls, combo)
        for extra_d in _grid(dict(dataset_params), _list_params(dataset_cls)):
            for extra_p in _grid(dict(protocol_params), _list_params(protocol_cls)):
                jobs.append(Job(
                    method=method_cls.name, dataset=dataset_cls.name, protocol=protocol_cls.name,
                    params=method_cls(**m).cfg,
                    dataset_params=dataset_cls(**{**d, **extra_d}).cfg,
                    protocol_params=protocol_cls(**{**p, **extra_p}).cfg,
                    seed=exp.seed, data_root=str(root) if root else None))
    return jobs


def builtin_spec(name: str) -> Path | None:
    path = Path(__file__).parent / "specs" / f"{name}.toml"
    return path if path.exists() else None


def load_spec_file(path: str | Path) -> list[Experiment]:
    """Read a TOML or YAML spec file into its experiments (top-level keys are defaults for each)."""
    return read_spec(path)[0]


class SpecFile(NamedTuple):
    """What a spec file holds: its experiments, its ``claims`` key ("all": also every run a claim of
    the report's tables needs; the command line adds those, the core does not read the tables) and
    its ``workers`` key (jobs run at once by the local executor: a number, or "auto" = one per core)."""

    experiments: list
    claims: str | None
    workers: int | str | None


def read_spec(path: str | Path) -> SpecFile:
    """Read a spec file (or a built-in spec by name): :class:`SpecFile`."""
    path = Path(path)
    if not path.exists():
        builtin = builtin_spec(str(path))
        if builtin is None:
            raise UserError(f"spec file {path} does not exist (built-in specs: "
                            f"{', '.join(sorted(p.stem for p in (Path(__file__).parent / 'specs').glob('*.toml')))})")
        path = builtin
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            doc = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml
            doc = yaml.safe_load(text)
        else:
            raise UserError(f"spec file {path} must end in .toml, .yaml or .yml")
    except (tomllib.TOMLDecodeError, Exception) as e:
        if isinstance(e, UserError):
            raise
        raise UserError(f"cannot parse spec file {path}: {e}") from None
    if not isinstance(doc, dict):
        raise UserError(f"spec file {path} must hold a table/mapping at top level")
    doc = dict(doc)
    claims = doc.pop("claims", None)
    if claims not in (None, "all"):
        raise UserError(f"{path}: claims = {claims!r}: the only value is \"all\" (every run the report's claims need)")
    workers = doc.pop("workers", None)
    if not (workers in (None, "auto") or (isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1)):
        raise UserError(f"{path}: workers = {workers!r}: a number >= 1, or \"auto\" (one per core)")
    if "experiment" in doc:
        exps = doc["experiment"]
        if not isinstance(exps, list):
            raise UserError(f"{path}: 'experiment' must be a list of tables")
        defaults = {k: v for k, v in doc.items() if k != "experiment"}
        return SpecFile([Experiment.from_dict({**defaults, **e} if isinstance(e, dict) else e,
                                              f"{path} experiment {i + 1}") for i, e in enumerate(exps)],
                        claims, workers)
    if not doc and claims:
        return SpecFile([], claims, workers)
    return SpecFile([Experiment.from_dict(doc, str(path))], claims, workers)


def jobs_from_spec(path: str | Path, data_root: str | None = None, skipped: list | None = None) -> list[Job]:
    """All jobs of a spec file's experiments; optional experiments whose data is missing go to `skipped`."""
    jobs = []
    for i, exp in enumerate(load_spec_file(path)):
        where = f"{path} experiment {i + 1} ({exp.method} on {exp.dataset})"
        try:
            jobs += exp.jobs(data_root, where=where)
        except MissingDataError as e:
            if not exp.optional:
                raise
            if skipped is not None:
                skipped.append(str(e))
    return jobs
