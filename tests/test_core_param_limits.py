"""Absurd parameters are rejected (issue item 6): non-finite floats by Param, and count parameters
(k, kq, n, rank, topk, truncate, coarse_k, n_images) above what the data holds by the one rule of
:func:`visrep.params.check_at_most`: a UserError (exit code 2) naming the parameter and the limit,
raised before any expensive work (no graph, no features in the cache, no record written)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from visrep.commands import main
from visrep.errors import UserError
from visrep.params import Param, check_at_most, resolve_params

SAMPLE_VIEWS_DB = 127   # database images of the embedded sample-views benchmark (default parameters)
OXFORD5K_DB = 5063


# ---------------------------------------------------------------- Param: non-finite floats
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "Infinity", math.inf, -math.inf, math.nan, "1e999"])
def test_float_param_rejects_nan_and_inf(value):
    declared = (Param("alpha", float, 3.0, low=0.0),)
    with pytest.raises(UserError) as e:
        resolve_params(declared, {"alpha": value}, "method 'alpha-qe'")
    msg = str(e.value)
    assert "parameter 'alpha' of method 'alpha-qe'" in msg
    assert "finite float >= 0.0" in msg and repr(value) in msg


def test_float_param_without_bounds_and_list_items_reject_inf():
    with pytest.raises(UserError, match="parameter 'x' of m must be a finite float, got 'inf'"):
        resolve_params((Param("x", float, 1.0),), {"x": "inf"}, "m")
    with pytest.raises(UserError, match="item 2 of parameter 'ws' of m must be a finite float"):
        resolve_params((Param("ws", list, [1.0], item=float),), {"ws": "[1.0,inf]"}, "m")
    # finite values, large or small, still pass
    assert resolve_params((Param("x", float, 1.0),), {"x": "1e300"}, "m")["x"] == 1e300
    assert resolve_params((Param("x", float, 1.0),), {"x": "-0.0"}, "m")["x"] == 0.0


def test_no_declared_float_parameter_needs_infinity():
    """Param offers no opt-in for infinity because no plugin uses it as a meaningful value."""
    from visrep.registry import datasets, methods, protocols
    for registry in (methods, datasets, protocols):
        for cls in registry:
            for p in cls.params:
                for v in (p.default if p.is_list and p.default else [p.default]):
                    assert not (isinstance(v, float) and not math.isfinite(v)), (cls.name, p.name)


def test_alpha_qe_alpha_inf_exits_2_naming_alpha(capsys, isolated_store):
    rc = main(["run", "--method", "alpha-qe", "--dataset", "sample-views", "--set", "descriptor=histogram",
               "--set", "alpha=inf", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "parameter 'alpha' of method 'alpha-qe' must be a finite float >= 0.0, got 'inf'" in err
    assert not (isolated_store / "results").exists() or not any((isolated_store / "results").rglob("*.json"))


# ---------------------------------------------------------------- the helper
def test_check_at_most_names_parameter_value_and_limit():
    check_at_most(None, 5, "topk", "method 'knn'", "d has 5 database images")
    check_at_most(5, 5, "topk", "method 'knn'", "d has 5 database images")
    with pytest.raises(UserError) as e:
        check_at_most(10**9, 5063, "k", "method 'diffusion'", "oxford5k has 5063 database vectors")
    assert str(e.value) == ("parameter 'k' of method 'diffusion' is 1000000000, but oxford5k has 5063 "
                            "database vectors: use k <= 5063")


# ---------------------------------------------------------------- counts above the data: exit code 2, fast
def _assert_nothing_computed(store):
    cache = store / "cache"
    for kind in ("knn_graph", "features", "fsr_eigen", "local_features"):
        assert not (cache / kind).exists() or not any((cache / kind).iterdir()), f"{kind} was computed"
    assert not (store / "results").exists() or not any((store / "results").rglob("*.json"))


SAMPLE_CASES = [
    ("diffusion", "k", 10**9, SAMPLE_VIEWS_DB),
    ("diffusion", "kq", 1000, SAMPLE_VIEWS_DB),
    ("diffusion", "truncate", 128, SAMPLE_VIEWS_DB),
    ("diffusion", "topk", 128, SAMPLE_VIEWS_DB),
    ("rwr", "k", 500, SAMPLE_VIEWS_DB),
    ("fsr", "rank", 1000, SAMPLE_VIEWS_DB),
    ("aqe", "n", 10**9, SAMPLE_VIEWS_DB),
    ("alpha-qe", "n", 128, SAMPLE_VIEWS_DB),
    ("aqe", "topk", 10**6, SAMPLE_VIEWS_DB),
    ("knn", "topk", 128, SAMPLE_VIEWS_DB),
]


@pytest.mark.parametrize("method, name, value, limit", SAMPLE_CASES)
def test_count_above_the_database_exits_2_before_any_work(method, name, value, limit, capsys, isolated_store):
    extra = [] if (method, name) == ("fsr", "rank") else ["--set", "alpha=0.9"] if method in ("diffusion", "rwr") else []
    rc = main(["run", "--method", method, "--dataset", "sample-views", "--set", "descriptor=histogram",
               "--set", f"{name}={value}", *extra, "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert f"parameter '{name}' of method '{method}' is {value}, but sample-views has {limit}" in err
    assert f"use {name} <= {limit}" in err
    _assert_nothing_computed(isolated_store)   # the check comes before any features, graph or cache entry


def test_counts_at_the_limit_still_run(capsys, isolated_store):
    import json
    rc = main(["run", "--method", "knn", "--dataset", "sample-views", "--set", "descriptor=histogram",
               "--set", f"topk={SAMPLE_VIEWS_DB}", "--json", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0
    [rec] = json.loads(out)
    assert rec["params"]["topk"] == SAMPLE_VIEWS_DB and rec["metrics"]["map"] > 0.5


@pytest.mark.parametrize("method, sets, name, limit", [
    ("diffusion", ["k=1000000000", "alpha=0.9"], "k", OXFORD5K_DB),
    ("aqe", ["n=1000000000"], "n", OXFORD5K_DB),
    ("fsr", ["k=30", "alpha=0.9", "rank=6000"], "rank", OXFORD5K_DB),
    ("knn", ["topk=6000"], "topk", OXFORD5K_DB),
])
def test_oxford5k_counts_above_the_database(method, sets, name, limit, oxford5k_features, capsys, isolated_store):
    root = oxford5k_features.parent.parent
    args = ["run", "--method", method, "--dataset", "oxford5k", "--data-root", str(root),
            "--set", f"features={oxford5k_features}", "--quiet"]
    for s in sets:
        args += ["--set", s]
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert f"parameter '{name}' of method '{method}'" in err and f"oxford5k has {limit} database" in err
    assert f"use {name} <= {limit}" in err
    assert not (isolated_store / "cache" / "knn_graph").exists()
    assert not (isolated_store / "cache" / "fsr_eigen").exists()


# ---------------------------------------------------------------- other rooms
def test_vocabulary_k_above_the_training_descriptors(tmp_path):
    from visrep.cache import Cache
    from visrep.context import RunContext
    from visrep.registry import methods
    np.save(tmp_path / "v.npy", np.random.default_rng(0).standard_normal((10, 8)).astype(np.float32))
    ctx = RunContext(cache=Cache(tmp_path / "cache"), quiet=True)
    with pytest.raises(UserError, match=r"parameter 'k' of method 'kmeans' is 11, but there are 10 training "
                                        r"descriptors \(from .*v\.npy\): use k <= 10"):
        methods.create("kmeans", k=11, train=str(tmp_path / "v.npy")).run(None, ctx)
    assert not (tmp_path / "cache" / "vocabulary").exists()


def test_bow_vocabulary_k_is_an_error_not_a_silent_clamp(tmp_path):
    """Training on the database's own descriptors used to warn and clamp k; now the one rule applies."""
    from skimage import data as skd

    from visrep.cache import Cache
    from visrep.context import RunContext
    from visrep.data import RetrievalData
    from visrep.registry import methods
    img = np.dstack([skd.camera()[::4, ::4]] * 3)
    data = RetrievalData(name="tiny", db_names=["d0", "d1"], query_names=["q0"],
                         gnd=[{"ok": np.array([0]), "junk": np.array([], int)}],
                         db_image=lambda i: img if i == 0 else img[:, ::-1], query_image=lambda j: img[10:100, 10:100],
                         manifest="tiny-limits-v1")
    ctx = RunContext(cache=Cache(tmp_path / "cache"), quiet=True)
    with pytest.raises(UserError, match=r"parameter 'k' of method 'bow' is 1000000, but there are \d+ training "
                                        r"descriptors \(from the database images of tiny.*\): use k <= \d+"):
        methods.create("bow", k=10**6, max_features=50, vocab_limit=0).run(data, ctx)
    # a k above the training-sample cap is refused too, before any work, instead of being capped with a warning
    with pytest.raises(UserError, match=r"k = 1000000 words cannot be learned from at most vocab_limit = 200000"):
        methods.create("bow", k=10**6, max_features=50).run(data, ctx)
    assert not (tmp_path / "cache" / "vocabulary").exists()


def test_ivfadc_coarse_k_above_the_database_fails_before_allocating(tmp_path):
    from visrep.cache import Cache
    from visrep.context import RunContext
    from visrep.data import RetrievalData
    from visrep.registry import methods
    rng = np.random.default_rng(0)
    data = RetrievalData(name="vecs", db_names=[f"d{i}" for i in range(50)], query_names=["q0"],
                         gnd=[{"ok": np.array([0]), "junk": np.array([], int)}], manifest="vecs-limits-v1",
                         db_features=rng.standard_normal((50, 16)).astype(np.float32),
                         query_features=rng.standard_normal((1, 16)).astype(np.float32))
    ctx = RunContext(cache=Cache(tmp_path / "cache"), quiet=True)
    for method in ("ivfadc", "lopq"):
        with pytest.raises(UserError, match=f"parameter 'coarse_k' of method '{method}' is 1000000000000, but "
                                            "vecs has 50 database vectors.*use coarse_k <= 50"):
            methods.create(method, coarse_k=10**12, m=4).run(data, ctx)
    # `candidates` keeps its meaning "at least this many" (above the database: all); the record says how many
    out = methods.create("lopq", coarse_k=4, m=4, nbits=4, candidates=10**6).run(data, ctx)
    assert out["stats"]["candidates"] == 50


def test_attack_n_images_above_the_dataset():
    from visrep.context import RunContext
    from visrep.registry import methods
    stub = SimpleNamespace(name="stub-mnist", x=np.zeros((5, 28, 28), np.uint8), labels=np.zeros(5, np.int64))
    with pytest.raises(UserError, match=r"parameter 'n_images' of method 'fgsm' is 6, but stub-mnist has 5 images: "
                                        r"use n_images <= 5 \(or n_images=0 for all\)"):
        methods.create("fgsm", n_images=6).run(stub, RunContext(quiet=True))
