"""Run specs: which method, dataset, protocol and parameters to run, expanded into jobs.

A spec file (TOML or YAML) holds one experiment at top level or a list under
``experiment``::

    [[experiment]]
    method = "diffusion"        # a list of names runs each one
    dataset = "oxford5k"
    seed = 0
    [experiment.params]
    k = [30, 50]            # a list expands to a grid
    alpha = [0.9, 0.99]
    features = "../shared/data/retrieval/oxford5k/oxford_features_caffenet_pca128.fvecs"

Keys under ``params`` go to whichever plugin declares them (method first, then dataset,
then protocol); ``dataset_params`` / ``protocol_params`` address one plugin explicitly.
``protocol`` defaults to the dataset's standard protocol. ``data_root`` is optional.
Strings may contain ``${shared}``, the workplace's real-data folder (``../shared/data``);
an experiment with ``optional = true`` is skipped (with a message) when its data is absent.
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from pathlib import Path

import tomllib

from .cache import hash_key
from .errors import MissingDataError, UserError, did_you_mean
from .registry import datasets, methods, protocols

_EXPERIMENT_KEYS = {"method", "dataset", "protocol", "params", "dataset_params", "protocol_params",
                    "seed", "data_root", "name", "optional"}
SHARED = "${shared}"


@dataclass
class Job:
    """One fully-resolved run: plugin names, complete parameters (defaults filled), seed."""

    method: str
    dataset: str
    protocol: str
    params: dict = field(default_factory=dict)
    dataset_params: dict = field(default_factory=dict)
    protocol_params: dict = field(default_factory=dict)
    seed: int = 0
    data_root: str | None = None

    @property
    def job_id(self) -> str:
        """16 hex of the hash of everything that defines the result (not the data root)."""
        d = asdict(self)
        d.pop("data_root")
        return hash_key(d)[:16]

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


def _grid(params: dict) -> list[dict]:
    """Cartesian product over list-valued entries (scalars stay fixed)."""
    keys = list(params)
    values = [v if isinstance(v, list) else [v] for v in params.values()]
    if any(len(v) == 0 for v in values):
        empty = keys[[len(v) for v in values].index(0)]
        raise UserError(f"parameter '{empty}' has an empty list of values")
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def _substitute_shared(value, where: str):
    if isinstance(value, dict):
        return {k: _substitute_shared(v, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute_shared(v, where) for v in value]
    if isinstance(value, str) and SHARED in value:
        from .context import shared_data_dir
        shared = shared_data_dir()
        if shared is None:
            raise MissingDataError(f"{where}: needs the shared real-data folder (../shared/data or $VISREP_SHARED_DATA)")
        return value.replace(SHARED, str(shared))
    return value


def expand_experiment(exp: dict, data_root: str | None = None, where: str = "spec") -> list[Job]:
    """Turn one experiment dict into validated jobs (raises UserError on any bad name or value)."""
    exp = _substitute_shared(exp, where)
    for key in ("method", "dataset", "protocol"):
        if isinstance(exp.get(key), list):  # several plugins: one experiment each
            return [job for name in exp[key]
                    for job in expand_experiment({**exp, key: name}, data_root, where)]
        if exp.get(key) is not None and not isinstance(exp[key], str):
            raise UserError(f"{where}: '{key}' must be a name or a list of names, got {exp[key]!r}")
    unknown = set(exp) - _EXPERIMENT_KEYS
    if unknown:
        k = sorted(unknown)[0]
        raise UserError(f"{where}: unknown key '{k}'{did_you_mean(k, _EXPERIMENT_KEYS)}")
    for required in ("method", "dataset"):
        if not exp.get(required):
            raise UserError(f"{where}: '{required}' is required")
    method_cls = methods.get(exp["method"])
    dataset_cls = datasets.get(exp["dataset"])
    protocol_name = exp.get("protocol") or dataset_cls.default_protocol
    if not protocol_name:
        raise UserError(f"{where}: dataset '{dataset_cls.name}' has no default protocol; name one with --protocol")
    protocol_cls = protocols.get(protocol_name)
    if method_cls.task != protocol_cls.task and protocol_cls.task not in getattr(method_cls, "output_tasks", ()):
        raise UserError(f"method '{method_cls.name}' ({method_cls.task}) cannot be scored by protocol "
                        f"'{protocol_cls.name}' ({protocol_cls.task})")
    if dataset_cls.task != protocol_cls.task:
        raise UserError(f"dataset '{dataset_cls.name}' ({dataset_cls.task}) does not fit protocol "
                        f"'{protocol_cls.name}' ({protocol_cls.task})")
    try:
        seed = int(exp.get("seed", 0))
    except (TypeError, ValueError):
        raise UserError(f"{where}: seed must be an integer, got {exp.get('seed')!r}") from None
    root = data_root or exp.get("data_root")
    jobs = []
    for combo in _grid(dict(exp.get("params") or {})):
        m, d, p = _split_params(method_cls, dataset_cls, protocol_cls, combo)
        for extra_d in _grid(dict(exp.get("dataset_params") or {})):
            for extra_p in _grid(dict(exp.get("protocol_params") or {})):
                jobs.append(Job(
                    method=method_cls.name, dataset=dataset_cls.name, protocol=protocol_cls.name,
                    params=method_cls(**m).cfg,
                    dataset_params=dataset_cls(**{**d, **extra_d}).cfg,
                    protocol_params=protocol_cls(**{**p, **extra_p}).cfg,
                    seed=seed, data_root=str(root) if root else None))
    return jobs


def builtin_spec(name: str) -> Path | None:
    path = Path(__file__).parent / "specs" / f"{name}.toml"
    return path if path.exists() else None


def load_spec_file(path: str | Path) -> list[dict]:
    """Read a TOML or YAML spec file into a list of experiment dicts."""
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
    if "experiment" in doc:
        exps = doc["experiment"]
        if not isinstance(exps, list):
            raise UserError(f"{path}: 'experiment' must be a list of tables")
        defaults = {k: v for k, v in doc.items() if k != "experiment"}
        return [{**defaults, **e} for e in exps]
    return [doc]


def jobs_from_spec(path: str | Path, data_root: str | None = None, skipped: list | None = None) -> list[Job]:
    """All jobs of a spec file; optional experiments whose data is missing go to `skipped`."""
    jobs = []
    for i, exp in enumerate(load_spec_file(path)):
        where = f"{path} experiment {i + 1} ({exp.get('method')} on {exp.get('dataset')})"
        try:
            jobs += expand_experiment(exp, data_root, where=where)
        except MissingDataError as e:
            if not exp.get("optional"):
                raise
            if skipped is not None:
                skipped.append(str(e))
    return jobs
