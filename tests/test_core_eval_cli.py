"""`visrep eval RANKS --dataset roxford5k`: users' own rankings scored on the real ground truth."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from visrep.commands import main
from visrep.context import shared_data_dir

SHARED = shared_data_dir()
pytestmark = pytest.mark.skipif(SHARED is None or not (SHARED / "retrieval/roxford5k/gnd_roxford5k.pkl").exists(),
                                reason="../shared/data/retrieval not found (set VISREP_SHARED_DATA)")


@pytest.fixture(scope="module")
def roxford():
    d = pickle.load(open(SHARED / "retrieval/roxford5k/gnd_roxford5k.pkl", "rb"))
    rng = np.random.default_rng(3)
    ranks = []
    for g in d["gnd"]:  # a decent ranking: positives and junk shuffled into the top 600
        top = np.concatenate([g["easy"], g["hard"], g["junk"]]).astype(np.int64)
        head = rng.permutation(np.concatenate([top, rng.choice(np.setdiff1d(np.arange(4993), top),
                                                                max(600 - len(top), 0), replace=False)]))
        ranks.append(np.concatenate([head, rng.permutation(np.setdiff1d(np.arange(4993), head))]))
    return d, np.stack(ranks, 1)


def _expected(d, ranks):
    from visrep.protocols.revisitop import revisitop_scores
    return revisitop_scores(ranks, [{k: np.asarray(v) for k, v in g.items()} for g in d["gnd"]], n_db=4993)


def test_eval_json_npy_and_text(roxford, tmp_path, capsys):
    d, ranks = roxford
    exp = _expected(d, ranks)
    np.save(tmp_path / "r.npy", ranks)
    np.savetxt(tmp_path / "r.txt", ranks, fmt="%d")
    for f in ("r.npy", "r.txt"):
        assert main(["eval", str(tmp_path / f), "--dataset", "roxford5k", "--data-root",
                     str(SHARED / "retrieval"), "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["dataset"] == "roxford5k"
        for s in ("easy", "medium", "hard"):
            assert set(out[s]) == {"map", "mp@1", "mp@5", "mp@10"}
            assert out[s]["map"] == exp[s]["map"]
            assert [out[s][f"mp@{k}"] for k in (1, 5, 10)] == list(exp[s]["mpr"])
            assert 0 <= out[s]["map"] <= 1


def test_eval_human_lines(roxford, tmp_path, capsys):
    d, ranks = roxford
    np.save(tmp_path / "r.npy", ranks)
    assert main(["eval", str(tmp_path / "r.npy"), "-d", "roxford5k", "--data-root", str(SHARED / "retrieval")]) == 0
    lines = capsys.readouterr().out.splitlines()
    exp = _expected(d, ranks)
    assert lines[0] == ">> roxford5k: mAP E: {}, M: {}, H: {}".format(
        *[np.around(exp[s]["map"] * 100, decimals=2) for s in ("easy", "medium", "hard")])
    assert lines[1].startswith(">> roxford5k: mP@k[1, 5, 10] E: [")


def test_eval_bad_files(roxford, tmp_path, capsys):
    d, ranks = roxford
    root = ["--data-root", str(SHARED / "retrieval")]
    np.save(tmp_path / "t.npy", ranks.T)
    assert main(["eval", str(tmp_path / "t.npy"), "-d", "roxford5k", *root]) == 2
    assert "transpose" in capsys.readouterr().err
    bad = ranks.copy()
    bad[5, 3] = bad[0, 3]
    np.save(tmp_path / "dup.npy", bad)
    assert main(["eval", str(tmp_path / "dup.npy"), "-d", "roxford5k", *root]) == 2
    err = capsys.readouterr().err
    assert "dup.npy" in err and "query 3 lists database index" in err
    bad = ranks.copy()
    bad[0, 0] = 4993
    np.save(tmp_path / "oor.npy", bad)
    assert main(["eval", str(tmp_path / "oor.npy"), "-d", "roxford5k", *root]) == 2
    assert "out of range" in capsys.readouterr().err
    (tmp_path / "junk.txt").write_text("1 2\nfoo bar\n")
    assert main(["eval", str(tmp_path / "junk.txt"), "-d", "roxford5k", *root]) == 2
    assert "junk.txt" in capsys.readouterr().err
    (tmp_path / "trunc.npy").write_bytes((tmp_path / "t.npy").read_bytes()[:200])
    assert main(["eval", str(tmp_path / "trunc.npy"), "-d", "roxford5k", *root]) == 2
    assert "trunc.npy" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "r.npy"), "-d", "roxford5k", "--data-root", str(tmp_path)]) == 2


def test_eval_other_datasets(tmp_path, capsys):
    ranks = np.stack([np.roll(np.arange(5063), j) for j in range(55)], 1)
    np.save(tmp_path / "o.npy", ranks)
    assert main(["eval", str(tmp_path / "o.npy"), "-d", "oxford5k", "--data-root", str(SHARED / "retrieval"),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["protocol"] == "oxford" and 0 <= out["map"] <= 1 and out["n_queries"] == 55
