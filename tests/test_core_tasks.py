"""Tasks are a closed set, and every registered method runs with at least one (dataset, protocol).

PAIRS names, for every registered method, a dataset and protocol it runs with; the first test
fails as soon as a method is registered without one. Cheap runs (vocabulary methods on few
local features or a small descriptor file, PQ/IVFADC/LOPQ under the quantization protocol on the
real Oxford5k descriptors) go through ``run_job`` end to end.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "plugins"))
import visrep_testplugin  # noqa: E402,F401  (registers toy-retrieval and slow-knn, as other tests do)

from visrep import tasks  # noqa: E402
from visrep.api import Method  # noqa: E402
from visrep.data import RetrievalData  # noqa: E402
from visrep.errors import UserError  # noqa: E402
from visrep.registry import datasets, methods, protocols, register  # noqa: E402
from visrep.runner import RunSettings, run_job  # noqa: E402
from visrep.spec import expand_experiment  # noqa: E402

_RETRIEVAL = ("oxford5k", "oxford")
_IMAGES = ("sample-views", "oxford")
_ADV = ("mnist-adversarial", "adversarial")
PAIRS = {
    # retrieval methods (ranks) and descriptor methods (vectors, ranked by nearest neighbours)
    **{m: _RETRIEVAL for m in ("knn", "aqe", "alpha-qe", "diffusion", "fsr", "rwr", "whiten", "dsm")},
    **{m: _IMAGES for m in ("sift", "rootsift", "bow", "he", "he-wgc", "vlad", "smk", "asmk", "asmk-star",
                            "fsm", "hpm", "ransac", "crow", "gem", "histogram", "mac", "rmac", "spoc")},
    "slow-knn": ("toy-retrieval", "oxford"),
    **{m: ("cluttered-objects", "oxford") for m in ("r-match", "regional-diffusion", "regional-fsr")},
    **{m: ("cluttered-objects", "oxford") for m in ("fs-saliency", "fs-egm", "os-saliency", "os-egm")},
    "lowe-hough": ("sample-views", "oxford"),
    **{m: _IMAGES for m in ("total-recall", "scene-maps", "scene-maps-qe")}, "view-clustering": ("sample-views", "clustering"),
    **{m: ("sample-views", "suggestion") for m in ("location-suggest", "tag-suggest")},
    # vocabularies: learned on a retrieval dataset's local features (or a train file)
    **{m: ("sample-views", "vocabulary") for m in ("kmeans", "akm", "rakm", "agm")},
    # compact codes: ranks + codes, scored by the quantization protocol
    **{m: ("oxford5k", "quantization") for m in ("pq", "ivfadc", "lopq")},
    "dlp": ("cifar10", "classification"),
    "supervised": ("cifar10", "classification"),
    "mnist-model": ("mnist", "classification"),
    "mom": ("cub200", "metric-learning"),
    "mom-head": ("cub200", "metric-learning"),
    "pretrained-net": ("mnist-unseen", "metric-learning"),
    "pretrained": ("cub200", "metric-learning"),
    **{m: ("fashion-mnist-unseen", "metric-learning") for m in ("contrastive", "triplet")},
    "triplet-head": ("fashion-mnist-unseen", "metric-learning"),
    "contrastive-head": ("fashion-mnist-unseen", "metric-learning"),
    "cosine-classifier": ("miniimagenet", "few-shot"),
    "dense-classification": ("miniimagenet", "few-shot"),
    **{m: ("fashion-mnist", "classification") for m in ("mean-teacher", "pseudo-label", "mt-dlp")},
    **{m: ("fashion-mnist-fewshot", "few-shot") for m in ("imprinting", "protonet", "matching-net")},
    **{m: _ADV for m in ("bp", "cw", "ddn", "fgsm", "pgd")},
    "smooth-adv": ("mnist-adversarial", "adversarial"),
    "nsod": ("cluttered-detection", "detection"),
    "aml": ("sample-views", "oxford"),
    "active-learning": ("fashion-mnist", "classification"),
    "gcn-noisy": ("fashion-mnist-noisy", "classification"),
    "fsfsl": ("fashion-mnist-fewshot", "few-shot"),
}


def _shared_file(shared_data, *parts):
    path = shared_data.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path


def test_every_registered_method_has_a_pair_that_expand_accepts():
    missing = [m.name for m in methods if m.name not in PAIRS]
    assert not missing, (f"registered methods with no (dataset, protocol) they run with: {missing}; add them "
                         f"to PAIRS in tests/test_core_tasks.py (or give them a protocol)")
    for method_cls in methods:
        dataset, protocol = PAIRS[method_cls.name]
        assert tasks.fits(method_cls, datasets.get(dataset), protocols.get(protocol)) is None, method_cls.name
        [job] = expand_experiment({"method": method_cls.name, "dataset": dataset, "protocol": protocol})
        assert (job.method, job.dataset, job.protocol) == (method_cls.name, dataset, protocol)
    stale = sorted(set(PAIRS) - set(methods.names()))
    assert not stale, f"PAIRS names methods that are not registered: {stale}"


def test_every_plugin_task_is_in_the_closed_set():
    for registry in (methods, datasets, protocols):
        for cls in registry:
            assert cls.task in tasks.TASKS, cls.name
    for protocol_cls in protocols:  # every protocol reads some registered dataset
        assert any(d.task in tasks.protocol_data_tasks(protocol_cls) for d in datasets), protocol_cls.name
    assert set(tasks.TASKS) >= {"retrieval", "descriptor", "vocabulary", "quantization", "classification",
                                "metric-learning", "few-shot", "adversarial"}


def test_registering_an_unknown_task_raises_typeerror():
    class Typo(Method):
        name = "typo-method"
        task = "retreival"

    with pytest.raises(TypeError, match=r"typo-method.*'retreival'.*known tasks: retrieval, descriptor"):
        register(Typo)

    class BadExtra(Method):
        name = "bad-extra"
        task = "retrieval"
        output_tasks = ("compression",)

    with pytest.raises(TypeError, match="bad-extra.*output_tasks.*'compression'"):
        register(BadExtra)
    assert "typo-method" not in methods and "bad-extra" not in methods


def test_incompatible_triples_give_a_clear_user_error():
    with pytest.raises(UserError, match="method 'kmeans' outputs vocabulary, but protocol 'oxford' scores retrieval"):
        expand_experiment({"method": "kmeans", "dataset": "oxford5k"})
    with pytest.raises(UserError, match="dataset 'cifar10' is a classification dataset, but protocol 'vocabulary' "
                                        "reads retrieval datasets"):
        expand_experiment({"method": "agm", "dataset": "cifar10", "protocol": "vocabulary"})
    with pytest.raises(UserError, match="method 'knn' outputs retrieval, but protocol 'quantization'"):
        expand_experiment({"method": "knn", "dataset": "oxford5k", "protocol": "quantization"})
    # a descriptor method is scored as retrieval (output_tasks); pq both as retrieval and as quantization
    assert tasks.fits(methods.get("gem"), datasets.get("oxford5k"), protocols.get("oxford")) is None
    assert tasks.fits(methods.get("pq"), datasets.get("oxford5k"), protocols.get("oxford")) is None


def test_vocabulary_protocol_hand_made_case():
    x = np.array([[0, 0], [0, 2], [10, 0], [10, 2]], np.float32)
    c = np.array([[0, 1], [10, 1], [100, 100]], np.float32)   # the third word is empty
    out = {"centroids": c, "k": 3, "train": x, "held_out": np.array([[0, 4], [10, 1]], np.float32),
           "timings": {"vocabulary": 2.0}, "history": [{}] * 4}
    m = protocols.create("vocabulary").evaluate(out, None)
    assert m == {"k": 3, "k_nonempty": 2, "distortion": 1.0, "n_train": 4, "distortion_held_out": 4.5,
                 "n_held_out": 2, "seconds": 2.0, "iterations": 4, "seconds_per_iteration": 0.5}
    # without the training descriptors, the distortion the method reported is taken as is
    assert protocols.create("vocabulary").evaluate({"centroids": c, "distortion": 1.0}, None) == \
        {"k": 3, "distortion": 1.0}
    with pytest.raises(UserError, match="outputs\\['k'\\] = 2 but there are 3 centroids"):
        protocols.create("vocabulary").evaluate({"centroids": c, "k": 2}, None)
    with pytest.raises(UserError, match="train.*must be \\(n, 2\\)"):
        protocols.create("vocabulary").evaluate({"centroids": c, "train": np.zeros((4, 3))}, None)


def test_vocabulary_methods_run_on_sample_views_local_features(tmp_path):
    settings = RunSettings(results_dir=str(tmp_path / "res"), cache_dir=str(tmp_path / "cache"), quiet=True)
    seen = {}
    for name in ("kmeans", "akm", "rakm", "agm"):
        [job] = expand_experiment({"method": name, "dataset": "sample-views", "protocol": "vocabulary",
                                   "params": {"k": 16, "niter": 4, "max_features": 60, "local_features": "sift"},
                                   "dataset_params": {"views": 2, "distractor_views": 1}})
        m = run_job(job, settings)["metrics"]
        seen[name] = m
        assert 1 <= m["k_nonempty"] <= m["k"] <= 16, (name, m)
        assert m["n_train"] > 1000 and m["n_held_out"] > 100, (name, m)   # queries' features held out
        assert 0 < m["distortion"] < m["distortion_held_out"] * 2 and m["seconds"] > 0, (name, m)
        assert 1 <= m["iterations"] <= 4, (name, m)
    assert seen["kmeans"]["k"] == 16


def test_vocabulary_protocol_matches_the_kernels_on_real_sift(shared_data, tmp_path):
    from visrep.cache import Cache
    from visrep.context import RunContext
    sift = _shared_file(shared_data, "localfeatures", "oxford5k_queries_hesaff_sift")
    params = {"k": 64, "niter": 5, "train": str(sift), "train_limit": 5000, "held_out": 2000}
    settings = RunSettings(results_dir=str(tmp_path / "res"), quiet=True, use_cache=False)
    got = {}
    for name in ("kmeans", "akm", "rakm", "agm"):
        [job] = expand_experiment({"method": name, "dataset": "sample-views", "protocol": "vocabulary",
                                   "params": params, "dataset_params": {"graffiti": False}})
        got[name] = run_job(job, settings)["metrics"]
        assert got[name]["n_train"] == 5000 and got[name]["n_held_out"] == 2000
    km, ak, rk, ag = (got[n] for n in ("kmeans", "akm", "rakm", "agm"))
    # exact assignment <= robust approximate <= approximate (small slack), and unseen data costs more
    assert km["distortion"] <= rk["distortion"] * 1.02 <= ak["distortion"] * 1.04
    assert km["distortion"] < km["distortion_held_out"]
    assert km["k"] == km["k_nonempty"] == 64 and ag["k"] < 64   # AGM purges components
    # the protocol's distortion is the one the kernels report (same definition, recomputed)
    out = methods.create("kmeans", **params).run(None, RunContext(cache=Cache(enabled=False), quiet=True))
    assert km["distortion"] == pytest.approx(out["distortion"], rel=1e-4)
    assert out["train"].shape == (5000, 128) and out["held_out"].shape == (2000, 128)


def test_compact_methods_run_under_quantization_on_real_oxford5k(oxford5k_features, shared_data, tmp_path):
    root = shared_data / "retrieval"
    if not (root / "oxford5k" / "gnd_oxford5k.mat").exists():
        pytest.skip("Oxford5k ground truth is absent")
    settings = RunSettings(results_dir=str(tmp_path / "res"), quiet=True, use_cache=False)
    got = {}
    for name in ("pq", "ivfadc", "lopq"):
        [job] = expand_experiment({"method": name, "dataset": "oxford5k", "protocol": "quantization",
                                   "params": {"features": "${shared}/retrieval/oxford5k/"
                                                          "oxford_features_caffenet_pca128.fvecs"}},
                                  data_root=str(root))
        got[name] = m = run_job(job, settings)["metrics"]
        assert m["bytes_per_vector"] == 8.0, (name, m)
        assert m["recall@1"] >= 0.95 and m["recall@100"] == 1.0, (name, m)
        assert 0 < m["mse"] < 0.5, (name, m)    # unit vectors: squared norm 1
    # encoding residuals of a coarse quantizer lowers the error; local rotations + PQ lower it further
    assert got["lopq"]["mse"] < got["ivfadc"]["mse"] < got["pq"]["mse"]


def test_quantization_protocol_reads_a_retrieval_dataset():
    data = RetrievalData("toy", ["a", "b"], ["q"], [{}], db_features=np.eye(2, dtype=np.float32),
                         query_features=np.array([[0.9, 0.1]], np.float32))
    m = protocols.create("quantization").evaluate({"ranks": np.array([[0], [1]]), "bytes_per_vector": 1}, data)
    assert m == {"recall@1": 1.0, "bytes_per_vector": 1.0}
