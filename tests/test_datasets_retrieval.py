"""Retrieval loaders on the real ground truth in ../shared/data, and their bad-input errors."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from visrep.datasets.matlab_gnd import read_instre_gnd, read_matlab_gnd
from visrep.datasets.revisitop import read_revisitop_pickle

from visrep.commands.eval import ground_truth_data
from visrep.context import RunContext, shared_data_dir
from visrep.descriptor_files import write_vecs
from visrep.errors import MissingDataError, UserError
from visrep.registry import datasets

SHARED = shared_data_dir()


def _root():
    if SHARED is None or not (SHARED / "retrieval").is_dir():
        pytest.skip("../shared/data/retrieval not found (set VISREP_SHARED_DATA)")
    return SHARED / "retrieval"


@pytest.mark.parametrize("name,n_db,n_q", [("roxford5k", 4993, 70), ("rparis6k", 6322, 70)])
def test_revisitop_pickles_real(name, n_db, n_q):
    root = _root()
    data = datasets.create(name).load_ground_truth(RunContext(root, quiet=True))
    assert (data.n_db, data.n_queries) == (n_db, n_q)
    raw = pickle.load(open(root / name / f"gnd_{name}.pkl", "rb"))
    for g, r in zip(data.gnd, raw["gnd"]):
        for k in ("easy", "hard", "junk"):
            assert g[k].dtype == np.int64 and list(g[k]) == list(r[k])
        assert g["bbx"].shape == (4,)
    assert set(data.query_names).isdisjoint(data.db_names)


@pytest.mark.parametrize("name,n_db,n_q", [("holidays", 1491, 500), ("instre", 27293, 1250),
                                           ("oxford105k", 105134, 55)])
def test_matlab_gnd_real(name, n_db, n_q):
    data = ground_truth_data(datasets.create(name), RunContext(_root(), quiet=True))
    assert (data.n_db, data.n_queries) == (n_db, n_q)
    assert all(len(g["ok"]) > 0 for g in data.gnd)
    if name == "holidays":   # the query is junk of its own list, never a positive
        assert all(q in g["junk"] and q not in g["ok"] for g, q in zip(data.gnd, data.query_db_index))
    if name == "instre":
        assert all(g["bbx"].shape == (4,) for g in data.gnd) and data.db_names[0].startswith("INSTRE-")


def _fake_revisitop(tmp_path, monkeypatch, n=6, nq=2):
    # a fixture at the standard path is not the published file: roxford5k declares no digest here
    # (a user's own ground truth), so only the restricted unpickler guards it
    from visrep.datasets.revisitop import ROxford5k
    monkeypatch.setattr(ROxford5k, "files", ())
    root = tmp_path / "root"
    (root / "roxford5k").mkdir(parents=True)
    gnd = [{"easy": [0, 1], "hard": [2], "junk": [3], "bbx": [0, 0, 5, 5]}, {"easy": [4], "hard": [], "junk": []}]
    d = {"imlist": [f"im{i}" for i in range(n)], "qimlist": [f"q{j}" for j in range(nq)], "gnd": gnd}
    pickle.dump(d, open(root / "roxford5k/gnd_roxford5k.pkl", "wb"))
    return root, d


def test_revisitop_features_and_distractors(tmp_path, monkeypatch):
    root, _ = _fake_revisitop(tmp_path, monkeypatch)
    rng = np.random.default_rng(0)
    write_vecs(tmp_path / "db.fvecs", rng.random((6, 8)))
    np.save(tmp_path / "q.npy", rng.random((2, 8)).astype(np.float32))
    np.save(tmp_path / "r1m.npy", rng.random((10, 8)).astype(np.float32))
    ctx = RunContext(root, quiet=True)
    ds = datasets.create("roxford5k", features=str(tmp_path / "db.fvecs"), query_features=str(tmp_path / "q.npy"),
                         distractors=str(tmp_path / "r1m.npy"))
    data = ds.load(ctx)
    assert data.db_features.shape == (16, 8) and data.n_db == 16 and data.name == "roxford5k+r1m"
    from visrep.registry import methods, protocols
    out = methods.create("knn").run(data, ctx)
    m = protocols.create("revisitop").evaluate(out, data)
    assert 0 <= m["map"] <= 1
    np.save(tmp_path / "q7.npy", rng.random((2, 7)).astype(np.float32))
    with pytest.raises(UserError, match="q7.npy: dimension 7 differs"):
        datasets.create("roxford5k", features=str(tmp_path / "db.fvecs"),
                        query_features=str(tmp_path / "q7.npy")).load(ctx)
    nan = rng.random((2, 8)).astype(np.float32)
    nan[1, 3] = np.nan
    np.save(tmp_path / "qnan.npy", nan)
    with pytest.raises(UserError, match="qnan.npy: descriptor 1 contains NaN"):
        datasets.create("roxford5k", features=str(tmp_path / "db.fvecs"),
                        query_features=str(tmp_path / "qnan.npy")).load(ctx)
    write_vecs(tmp_path / "db5.fvecs", rng.random((5, 8)))
    with pytest.raises(UserError, match="db5.fvecs: 5 descriptors but roxford5k has 6"):
        datasets.create("roxford5k", features=str(tmp_path / "db5.fvecs"),
                        query_features=str(tmp_path / "q.npy")).load(ctx)
    with pytest.raises(UserError, match="needs `query_features`"):
        datasets.create("roxford5k", features=str(tmp_path / "db.fvecs")).load(ctx)
    with pytest.raises(MissingDataError):
        datasets.create("roxford5k").load(RunContext(tmp_path / "nowhere", quiet=True))


def test_bad_ground_truth_files(tmp_path, monkeypatch):
    root, d = _fake_revisitop(tmp_path, monkeypatch)
    p = root / "roxford5k/gnd_roxford5k.pkl"
    t = tmp_path / "trunc.pkl"
    t.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    with pytest.raises(UserError, match="trunc.pkl: not a readable revisitop pickle"):
        read_revisitop_pickle(t)
    bad = dict(d)
    del bad["qimlist"]
    pickle.dump(bad, open(tmp_path / "nokey.pkl", "wb"))
    with pytest.raises(UserError, match="nokey.pkl: missing key 'qimlist'"):
        read_revisitop_pickle(tmp_path / "nokey.pkl")
    bad = {**d, "gnd": [{"easy": [0], "junk": []}, d["gnd"][1]]}
    pickle.dump(bad, open(tmp_path / "nohard.pkl", "wb"))
    with pytest.raises(UserError, match=r"nohard.pkl: gnd\[0\] has no 'hard'"):
        read_revisitop_pickle(tmp_path / "nohard.pkl")
    bad = {**d, "gnd": [{"easy": [99], "hard": [], "junk": []}, d["gnd"][1]]}
    pickle.dump(bad, open(tmp_path / "oor.pkl", "wb"))
    with pytest.raises(UserError, match="oor.pkl: .*out of range"):
        read_revisitop_pickle(tmp_path / "oor.pkl")
    if SHARED is not None and (SHARED / "retrieval/holidays/gnd_holidays.mat").exists():
        raw = (SHARED / "retrieval/holidays/gnd_holidays.mat").read_bytes()
        (tmp_path / "t.mat").write_bytes(raw[: len(raw) // 2])
        with pytest.raises(UserError, match="t.mat: not a readable Matlab file"):
            read_matlab_gnd(tmp_path / "t.mat")
        raw = (SHARED / "retrieval/instre/gnd_instre.mat").read_bytes()
        (tmp_path / "i.mat").write_bytes(raw[:1000])
        with pytest.raises(UserError, match="i.mat"):
            read_instre_gnd(tmp_path / "i.mat")
    import scipy.io
    scipy.io.savemat(tmp_path / "nogt.mat", {"imlist": np.array(["a"], dtype=object)})
    with pytest.raises(UserError, match="nogt.mat: missing field 'qimlist'"):
        read_instre_gnd(tmp_path / "nogt.mat")


def test_revisitop_images_crop(tmp_path, monkeypatch):
    import cv2
    root, _ = _fake_revisitop(tmp_path, monkeypatch)
    jpg = root / "roxford5k/jpg"
    jpg.mkdir()
    img = np.zeros((10, 12, 3), np.uint8)
    img[:, :, 2] = 255  # red in BGR -> blue channel 2; RGB red = channel 0
    for name in [f"im{i}" for i in range(6)] + ["q0", "q1"]:
        cv2.imwrite(str(jpg / f"{name}.jpg"), img)
    data = datasets.create("roxford5k").load(RunContext(root, quiet=True))
    assert data.db_image(0).shape == (10, 12, 3) and data.db_image(0)[..., 0].mean() > 200
    assert data.query_image(0).shape == (5, 5, 3)       # cropped by bbx [0, 0, 5, 5]
    assert data.query_image(1).shape == (10, 12, 3)     # no bbx
