"""`visrep rehearse`: miniature copies of the real layouts load with their real loaders, and full-scale
rows run end to end on them (visrep/commands/rehearse.py, datasets/miniature.py)."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from visrep.datasets import miniature

from visrep.context import RunContext, shared_data_dir
from visrep.errors import UserError
from visrep.registry import datasets

SHARED = shared_data_dir()
#: dataset parameters a miniature needs to load at all (the rehearsal's SCALE_DOWN sets the same)
LOAD_PARAMS = {"miniimagenet": {"n_query": 2, "n_episodes": 2}}


@pytest.fixture(scope="module")
def mini_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mini")
    return root, {name: miniature.build(name, root, SHARED) for name in miniature.BUILDERS}


@pytest.mark.parametrize("name", sorted(miniature.BUILDERS))
def test_miniature_loads_with_its_real_loader(mini_root, name):
    root, minis = mini_root
    m = minis[name]
    params = dict(LOAD_PARAMS.get(name, {}))
    if "labelled" in m.implied:
        params["labelled"] = m.implied["labelled"]
    with miniature.digest_checks_suspended(root):
        data = datasets.create(name, **params).load(RunContext(data_root=root, quiet=True))
    if name in miniature.RETRIEVAL:
        assert data.has_images and 2 <= data.n_queries <= 3 and 6 <= data.n_db <= 30
        img = data.query_image(0)
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
        assert data.db_image(data.n_db - 1).ndim == 3
        for g in data.gnd:   # every query has a positive in the database, indices in range
            pos = np.concatenate([g[k] for k in ("ok", "easy", "hard") if k in g])
            assert pos.size and pos.max() < data.n_db
        if SHARED is not None:  # real names: the queries are the real ground truth's queries
            from visrep.datasets.matlab_gnd import read_instre_gnd, read_matlab_gnd
            from visrep.datasets.revisitop import read_revisitop_pickle
            real = next(iter((SHARED / "retrieval" / name).glob("gnd_*")))
            r = (read_revisitop_pickle(real) if real.suffix == ".pkl" else read_instre_gnd(real)
                 if name == "instre" else read_matlab_gnd(real))
            assert set(data.query_names) <= set(r["qimlist"])
            assert set(data.db_names) <= set(r["imlist"])
    elif name.endswith("-r1m"):             # the revisited miniature + R1M distractor images after its database
        with miniature.digest_checks_suspended(root):
            own = datasets.create(name.removesuffix("-r1m")).load(RunContext(data_root=root, quiet=True))
        assert data.n_db == own.n_db + 6 and data.db_names[:own.n_db] == own.db_names
        assert all(np.array_equal(a[k], b[k]) for a, b in zip(data.gnd, own.gnd) for k in ("easy", "hard", "junk"))
        assert data.extra["n_distractors"] == 6 and data.name.endswith("+r1m")
        assert data.db_image(own.n_db).shape[2] == 3 and data.db_image(0).shape == own.db_image(0).shape
    elif name == "miniimagenet":
        assert data.n_episodes == 2 and data.pool.get(0).shape == (84, 84, 3)
        # the 64-class train split is the base few-shot learners train on, with its pixels
        assert data.base is not None and data.base.x.shape[1:] == (84, 84, 3) and data.base.x.dtype == np.uint8
        assert set(data.base.labels.tolist()) and data.base.split == "train"
    else:
        assert len(data) >= 10 and data.train is not None and len(data.train) >= 10
        assert data.get(0).shape[-1] == 3
        if "labelled" in m.implied:
            assert len(data.train.labelled_idx) == m.implied["labelled"]
    assert m.n_images >= 6


def test_matlab_gnd_round_trip_known_answer(tmp_path):
    from visrep.datasets.matlab_gnd import read_matlab_gnd
    p = miniature.write_matlab_gnd(tmp_path / "g.mat", ["a", "b", "c", "d"], [("b", 1, "b_1"), ("d", 3, "d_1")],
                                   [{"ok": [1, 2], "junk": [], "bbx": [1, 2, 3, 4]},
                                    {"ok": [3], "junk": [0], "bbx": [0, 0, 5, 5]}])
    g = read_matlab_gnd(p)
    assert g["imlist"] == ["a", "b", "c", "d"] and g["qimlist"] == ["b", "d"] and g["qnames"] == ["b_1", "d_1"]
    assert g["qidx"].tolist() == [1, 3]
    assert g["gnd"][0]["ok"].tolist() == [1, 2] and g["gnd"][0]["junk"].size == 0
    assert g["gnd"][1]["junk"].tolist() == [0] and g["gnd"][1]["bbx"].tolist() == [0, 0, 5, 5]


def test_digest_checks_still_refuse_the_miniature_outside_the_rehearsal(mini_root):
    """The revisitop loader verifies the declared sha256: a miniature is not the publisher's file."""
    root, _ = mini_root
    with pytest.raises(UserError, match="sha256 mismatch"):
        datasets.create("roxford5k").load(RunContext(data_root=root, quiet=True))
    with miniature.digest_checks_suspended(root):
        datasets.create("roxford5k").load(RunContext(data_root=root, quiet=True))
    with pytest.raises(UserError, match="mismatch"):   # suspension ends with the context
        datasets.create("cifar10").load(RunContext(data_root=root, quiet=True))


def test_cifar_batch_is_the_published_layout(mini_root):
    root, _ = mini_root
    with open(root / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        d = pickle.load(f, encoding="bytes")
    assert d[b"data"].dtype == np.uint8 and d[b"data"].shape[1] == 3072 and isinstance(d[b"labels"], list)
    from visrep.datasets.cifar import read_cifar_batch
    x, y = read_cifar_batch(root / "cifar-10-batches-py" / "data_batch_1")
    assert x.shape[1:] == (32, 32, 3) and y.tolist() == d[b"labels"]
    # channel planes: the first 1024 values are the red channel of row-major pixels
    assert np.array_equal(d[b"data"][0, :1024].reshape(32, 32), x[0, :, :, 0])


def test_scale_job_rules_known_values():
    from visrep.commands.rehearse import scale_job
    from visrep.spec import Job
    job = Job(method="bow", dataset="oxford5k", protocol="oxford",
              params={"k": 65536, "max_features": 0, "vocab_niter": 20, "idf": True, "ma": 5},
              dataset_params={"labelled": 500, "features": None}, protocol_params={})
    new, changed = scale_job(job, 24, {"labelled": 20})
    assert new.params == {"k": 16, "max_features": 200, "vocab_niter": 3, "idf": True, "ma": 5}
    assert new.dataset_params == {"labelled": 20, "features": None}
    assert changed == {"params.k": (65536, 16), "params.max_features": (0, 200), "params.vocab_niter": (20, 3),
                       "dataset_params.labelled": (500, 20)}
    small, _ = scale_job(job, 8, {})          # kNN k is kept below the miniature's size
    assert small.params["k"] == 6
    # the supervised metric-learning baselines: class-balanced minibatches of the miniature's few images
    trip = Job(method="triplet", dataset="cub200", protocol="metric-learning",
               params={"per_class": 40, "classes_per_batch": 5, "images_per_epoch": None, "margin": 0.2},
               dataset_params={}, protocol_params={})
    new, changed = scale_job(trip, 12, {})
    assert new.params == {"per_class": 4, "classes_per_batch": 5, "images_per_epoch": None, "margin": 0.2}
    assert changed == {"params.per_class": (40, 4)}
    assert scale_job(Job(method="triplet", dataset="cub200", protocol="metric-learning",
                         params={"images_per_epoch": 6000}, dataset_params={}, protocol_params={}),
                     12, {})[0].params == {"images_per_epoch": 12}
    # episodic training (ProtoNet): support + queries per class fit the miniature's 4 base images a class
    proto = Job(method="protonet", dataset="miniimagenet", protocol="few-shot",
                params={"train_shot": None, "train_query": 15, "episodes": 30000}, dataset_params={}, protocol_params={})
    assert scale_job(proto, 12, {})[0].params == {"train_shot": 2, "train_query": 2, "episodes": 2}
    proto.params["train_shot"] = 1
    assert scale_job(proto, 12, {})[0].params["train_shot"] == 1


def test_rehearse_is_a_registered_command():
    from visrep.commands import commands
    assert "rehearse" in [c.name for c in commands()]


def test_quick_rehearsal_runs_rows_with_zero_failures(tmp_path):
    from visrep.commands.rehearse import rehearse
    rows = ["asmk/asmk-star/holidays", "asmk/he/holidays"]
    out = rehearse(tmp_path / "r", rows=rows, warm_up=False)
    assert [f"{r['table']}/{r['row']}/{r['column']}" for r in out] == rows
    assert all(r["status"] == "ok" for r in out), [r["reason"] for r in out]
    for r in out:
        assert r["wall_s"] > 0 and r["est_full_s"] >= r["wall_s"] and r["scaled"]["params.k"] == [65536, min(16, r["n_scale"] - 2)]
        assert 0 <= r["metrics"]["map"] <= 1
    doc = json.loads((tmp_path / "r" / "rehearsal.json").read_text())
    assert doc["counts"] == {"ok": 2}
    assert "asmk/asmk-star/holidays" in (tmp_path / "r" / "rehearsal.md").read_text()


#: failures the rehearsal found in code outside its own files (loaders / methods); see the issue note
KNOWN_FINDINGS: tuple[str, ...] = ()      # failure reasons accepted as findings (none at present)


@pytest.mark.slow
def test_whole_rehearsal(tmp_path):
    """Every full-scale cell on the miniatures: any failure other than the known findings fails."""
    from visrep.commands.rehearse import rehearse
    out = rehearse(tmp_path / "r", log=print)
    assert any(r["status"] == "ok" for r in out)
    new = [f"{r['table']}/{r['row']}/{r['column']}: {r['reason']}" for r in out
           if r["status"] == "failed" and not any(k in r["reason"] for k in KNOWN_FINDINGS)]
    assert not new, new


def test_missing_weights_get_a_random_stand_in_in_the_published_layout(tmp_path):
    """Rows whose weights file is absent rehearse on a stand-in of the same name and layout; others stay missing."""
    import torch
    from visrep.commands.rehearse import _missing_file, with_stand_ins
    from visrep.methods.cnn.backbones import is_cirtorch, make_architecture, stand_in_weights
    from visrep.spec import Job
    gone = tmp_path / "absent"
    job = Job(method="dsm", dataset="roxford5k", protocol="revisitop",
              params={"descriptor": f"gem:backbone=resnet101;weights={gone}/retrievalSfM120k-resnet101-gem.pth",
                      "weights": f"{gone}/googlenet-1378be20.pth", "other": f"{gone}/efficientnet_b3_imagenet.pth"},
              dataset_params={}, protocol_params={})
    new, names = with_stand_ins(job, tmp_path / "data")
    assert names == ["googlenet-1378be20.pth", "retrievalSfM120k-resnet101-gem.pth"]
    models = tmp_path / "data" / "models"
    assert new.params["descriptor"] == f"gem:backbone=resnet101;weights={models}/retrievalSfM120k-resnet101-gem.pth"
    assert new.params["weights"] == str(models / "googlenet-1378be20.pth")
    assert new.params["other"] == job.params["other"]                      # no architecture in its name
    assert _missing_file(new.params) == f"other = {job.params['other']}"
    assert _missing_file({k: v for k, v in new.params.items() if k != "other"}) is None
    ck = torch.load(models / "retrievalSfM120k-resnet101-gem.pth", weights_only=True)
    assert is_cirtorch(ck) and ck["meta"]["architecture"] == "resnet101" and ck["meta"]["pooling"] == "gem"
    sd = torch.load(models / "googlenet-1378be20.pth", weights_only=True)
    ref = make_architecture("googlenet").state_dict()
    assert set(sd) == set(ref) and all(sd[k].shape == ref[k].shape for k in ref)
    assert stand_in_weights("efficientnet_b3_imagenet.pth") is None


def test_r1m_dataset_reads_distractor_images_or_needs_distractor_descriptors(tmp_path):
    from visrep.errors import MissingDataError, UserError
    m = miniature.build("roxford5k-r1m", tmp_path, SHARED)
    ctx = RunContext(data_root=tmp_path, quiet=True)
    with miniature.digest_checks_suspended(tmp_path):
        two = datasets.create("roxford5k-r1m", r1m_images=2).load(ctx)
        assert two.extra["n_distractors"] == 2 and two.db_names[-2:] == (tmp_path / "revisitop1m" / "revisitop1m.txt"
                                                                          ).read_text().split()[:2]
        with pytest.raises(UserError, match="`distractors` must name the R1M descriptors"):
            datasets.create("roxford5k-r1m", features="db.npy", query_features="q.npy").load(ctx)
        listed = (tmp_path / "revisitop1m" / "revisitop1m.txt").read_text().split()
        (tmp_path / "revisitop1m" / "jpg" / f"{listed[-1]}.jpg").unlink()
        with pytest.raises(MissingDataError, match="extract the revisitop1m tarballs"):
            datasets.create("roxford5k-r1m").load(ctx)
        (tmp_path / "revisitop1m" / "revisitop1m.txt").unlink()
        with pytest.raises(MissingDataError, match="R1M image list"):
            datasets.create("roxford5k-r1m").load(ctx)
    assert m.n_images == m.n_scale + 3          # database + 6 distractors, and the 3 queries outside it
