"""Retrieval protocols: hand-computed AP / P@k, properties, and a per-query loop cross-check
(revisitop's compute_map, rewritten here as a plain loop) on the real ROxford/RParis ground truth."""
from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
from visrep.protocols.oxford import HolidaysMAP, InstreMAP, OxfordMAP
from visrep.protocols.ranking_metrics import (
    average_precision,
    check_ranks,
    map_and_precision,
)
from visrep.protocols.revisitop import RevisitOP, revisitop_scores

from visrep.context import shared_data_dir
from visrep.data import RetrievalData
from visrep.errors import UserError

SHARED = shared_data_dir()


def _real(path):
    if SHARED is None or not (SHARED / path).exists():
        pytest.skip(f"real data {path} not found under ../shared/data (set VISREP_SHARED_DATA)")
    return SHARED / path


# ---------------------------------------------------------------- reference loop (revisitop semantics)
def loop_compute_map(ranks, gnd, ks=(1, 5, 10)):
    """Straightforward per-query loop following revisitop's compute_map / compute_ap."""
    nq = len(gnd)
    aps, prs = np.zeros(nq), np.zeros((nq, len(ks)))
    total, pr, nempty = 0.0, np.zeros(len(ks)), 0
    for i in range(nq):
        ok = np.asarray(gnd[i]["ok"])
        if ok.shape[0] == 0:
            aps[i], prs[i] = np.nan, np.nan
            nempty += 1
            continue
        junk_ids = np.asarray(gnd[i].get("junk", np.empty(0)))
        pos = np.arange(ranks.shape[0])[np.isin(ranks[:, i], ok)]
        junk = np.arange(ranks.shape[0])[np.isin(ranks[:, i], junk_ids)]
        k, ij = 0, 0
        for ip in range(len(pos)):
            while ij < len(junk) and pos[ip] > junk[ij]:
                k += 1
                ij += 1
            pos[ip] -= k
        ap, step = 0, 1.0 / len(ok)
        for j, r in enumerate(pos):
            p0 = 1.0 if r == 0 else float(j) / r
            ap += (p0 + float(j + 1) / (r + 1)) * step / 2.0
        total += ap
        aps[i] = ap
        pos = pos + 1
        for j, kk in enumerate(ks):
            if len(pos) == 0:  # no positive ranked (truncated ranking): revisitop raises; visrep gives 0
                prs[i, j] = 0.0
                continue
            kq = min(max(pos), kk)
            prs[i, j] = (pos <= kq).sum() / kq
        pr = pr + prs[i]
    return total / (nq - nempty), aps, pr / (nq - nempty), prs


def loop_revisitop(ranks, gnd):
    out = {}
    for setup, (pk, jk) in {"easy": (["easy"], ["junk", "hard"]), "medium": (["easy", "hard"], ["junk"]),
                            "hard": (["hard"], ["junk", "easy"])}.items():
        g = [{"ok": np.concatenate([np.asarray(x[k], np.int64) for k in pk]),
              "junk": np.concatenate([np.asarray(x[k], np.int64) for k in jk])} for x in gnd]
        out[setup] = loop_compute_map(ranks, g)
    return out


# ---------------------------------------------------------------- known answers
def test_ap_hand_computed_with_junk():
    # ranking 3,0,1,2,4; positives {0,2}; junk {1} -> junk-free order 3,0,2,4: positives at 1, 2
    # AP = [(0/1 + 1/2)/2 + (1/2 + 2/3)/2] / 2 = 5/12
    ranks = np.array([[3], [0], [1], [2], [4]])
    aps, prs = map_and_precision(ranks, [np.array([0, 2])], [np.array([1])], ks=(1, 5, 10))
    assert aps[0] == pytest.approx(5 / 12, abs=1e-15)
    # revisitop P@k: pos (1-based) = [2, 3]; k=1 -> kq=1 -> 0; k=5 -> kq=min(3,5)=3 -> 2/3
    np.testing.assert_allclose(prs[0], [0.0, 2 / 3, 2 / 3])


def test_ap_first_position_and_missing_positive():
    # positive at junk-free position 0 -> precision before = 1: AP = (1 + 1)/2 / 1 = 1
    assert average_precision(np.array([[5], [1], [2]]), [np.array([5])], [np.array([], int)])[0] == 1.0
    # truncated ranking: a positive not ranked contributes 0 but counts: AP = 1/2
    assert average_precision(np.array([[5], [1]]), [np.array([5, 9])], [np.array([], int)])[0] == 0.5


def test_empty_positive_query_is_skipped():
    ranks = np.array([[0, 0], [1, 1], [2, 2]])
    aps = average_precision(ranks, [np.array([1]), np.array([], int)], [np.array([], int)] * 2)
    assert aps[0] == pytest.approx((0 / 1 + 1 / 2) / 2) and np.isnan(aps[1])
    data = RetrievalData("toy", ["a", "b", "c"], ["q1", "q2"],
                         [{"ok": np.array([1]), "junk": np.array([], int)}, {"ok": np.array([], int)}])
    m = OxfordMAP().evaluate({"ranks": ranks}, data)
    assert m["n_queries"] == 1 and m["map"] == pytest.approx(0.25)


def test_revisitop_setups_hand_computed():
    # one query; ranking 0..5; easy {2}, hard {0}, junk {1}
    ranks = np.arange(6)[:, None]
    gnd = [{"easy": np.array([2]), "hard": np.array([0]), "junk": np.array([1])}]
    s = revisitop_scores(ranks, gnd)
    # Easy: junk {1, 0} removed -> easy at 0 -> AP 1
    assert s["easy"]["map"] == 1.0
    # Medium: junk {1}: order 0,2,3..: positives at 0,1 -> AP 1
    assert s["medium"]["map"] == 1.0
    # Hard: junk {1, 2}: hard at 0 -> AP 1; now put hard last
    ranks2 = np.array([2, 1, 3, 4, 5, 0])[:, None]
    s2 = revisitop_scores(ranks2, gnd)
    # Hard: junk-free order 3,4,5,0 -> hard at position 3: AP = (0/3 + 1/4)/2 = 1/8
    assert s2["hard"]["map"] == 0.125
    # Medium: order 2,3,4,5,0: positives at 0 and 4: AP = [(1+1)/2 + (1/4 + 2/5)/2]/2
    assert s2["medium"]["map"] == pytest.approx((1 + (0.25 + 0.4) / 2) / 2)


# ---------------------------------------------------------------- properties
def test_perfect_reverse_and_junk_properties():
    rng = np.random.default_rng(1)
    n = 50
    ok = rng.choice(n, 7, replace=False)
    junk = rng.choice(np.setdiff1d(np.arange(n), ok), 5, replace=False)
    rest = np.setdiff1d(np.arange(n), np.concatenate([ok, junk]))
    perfect = np.concatenate([ok, rest, junk])[:, None]
    assert average_precision(perfect, [ok], [junk])[0] == pytest.approx(1.0, abs=1e-12)
    # junk anywhere never counts: junk first still gives 1
    assert average_precision(np.concatenate([junk, ok, rest])[:, None], [ok], [junk])[0] == pytest.approx(1.0, abs=1e-12)
    worse = np.concatenate([rest, junk, ok])[:, None]
    assert average_precision(worse, [ok], [junk])[0] < 0.5
    # a random ranking scores between the two
    r = rng.permutation(n)[:, None]
    assert average_precision(worse, [ok], [junk])[0] <= average_precision(r, [ok], [junk])[0] <= 1.0


def test_duplicates_in_gnd_follow_revisitop():
    # revisitop finds positives with np.in1d (once) but divides by len(list): AP 0.5 for a perfect ranking
    ranks = np.arange(4)[:, None]
    g = [{"ok": np.array([0, 0]), "junk": np.array([], int)}]
    assert average_precision(ranks, [g[0]["ok"]], [g[0]["junk"]])[0] == loop_compute_map(ranks, g)[1][0] == 0.5


# ---------------------------------------------------------------- cross-check on real ground truth
@pytest.mark.parametrize("name", ["roxford5k", "rparis6k"])
def test_revisitop_matches_loop_bitwise_on_real_gnd(name):
    d = pickle.load(open(_real(f"retrieval/{name}/gnd_{name}.pkl"), "rb"))
    gnd, n = d["gnd"], len(d["imlist"])
    rng = np.random.default_rng(0)
    rand = np.stack([rng.permutation(n) for _ in gnd], 1)
    # a good ranking: each query's easy+hard first (shuffled with some junk), then the rest
    good = []
    for g in gnd:
        top = rng.permutation(np.concatenate([g["easy"], g["hard"], g["junk"][:5]]))
        good.append(np.concatenate([top, rng.permutation(np.setdiff1d(np.arange(n), top))]))
    good = np.stack(good, 1).astype(np.int64)
    for ranks in (rand, good, good[:100]):
        ref = loop_revisitop(ranks, gnd)
        got = revisitop_scores(ranks, [{k: np.asarray(v) for k, v in g.items()} for g in gnd], n_db=n)
        for s in ("easy", "medium", "hard"):
            assert got[s]["map"] == ref[s][0]
            assert np.array_equal(got[s]["aps"], ref[s][1], equal_nan=True)
            assert np.array_equal(got[s]["mpr"], ref[s][2])
            assert np.array_equal(got[s]["prs"], ref[s][3], equal_nan=True)


def _roxford_data():
    d = pickle.load(open(_real("retrieval/roxford5k/gnd_roxford5k.pkl"), "rb"))
    gnd = [{k: np.asarray(v) for k, v in g.items()} for g in d["gnd"]]
    return RetrievalData("roxford5k", d["imlist"], d["qimlist"], gnd)


def test_revisitop_protocol_metrics_and_format():
    data = _roxford_data()
    n = data.n_db
    perfect = []
    for g in data.gnd:
        top = np.concatenate([g["easy"], g["hard"]])
        perfect.append(np.concatenate([top, np.setdiff1d(np.arange(n), top)]))
    m = RevisitOP().evaluate({"ranks": np.stack(perfect, 1)}, data)
    assert m["medium.map"] == pytest.approx(1.0, abs=1e-12) and m["map"] == m["medium.map"]
    assert m["medium.mp@1"] == 1.0
    assert m["easy.map"] == pytest.approx(1.0, abs=1e-12)  # hard images are junk in Easy
    assert m["hard.map"] == pytest.approx(1.0, abs=1e-12)  # easy images are junk in Hard
    assert set(m) >= {f"{s}.{k}" for s in ("easy", "medium", "hard") for k in ("map", "mp@1", "mp@5", "mp@10")}
    text = RevisitOP().format(m, data)
    lines = text.splitlines()
    assert re.fullmatch(r">> roxford5k: mAP E: [\d.]+, M: [\d.]+, H: [\d.]+", lines[0])
    assert lines[1].startswith(">> roxford5k: mP@k[1, 5, 10] E: [")
    assert "M: 100.0," in lines[0]


def test_bad_rankings_are_clear_errors():
    data = RetrievalData("toy", list("abcd"), ["q"], [{"easy": np.array([0]), "hard": np.array([], int),
                                                        "junk": np.array([], int)}])
    p = RevisitOP()
    with pytest.raises(UserError, match=r"expected shape \(n_db, 1\)"):
        p.evaluate({"ranks": np.zeros((4, 2), int)}, data)
    with pytest.raises(UserError, match="index 4 .* out of range"):
        p.evaluate({"ranks": np.array([[0], [1], [2], [4]])}, data)
    with pytest.raises(UserError, match="query 0 lists database index 1 more than once"):
        p.evaluate({"ranks": np.array([[0], [1], [1], [3]])}, data)
    with pytest.raises(UserError, match="more than once"):  # truncated ranking with a duplicate
        p.evaluate({"ranks": np.array([[2], [2]])}, data)
    with pytest.raises(UserError, match="integers"):
        p.evaluate({"ranks": np.array([[0.5], [1], [2], [3]])}, data)
    with pytest.raises(UserError, match="needs outputs\\['ranks'\\]"):
        p.evaluate({}, data)
    bad = RetrievalData("toy", list("abcd"), ["q"], [{"easy": np.array([0]), "junk": np.array([], int)}])
    with pytest.raises(UserError, match="query 0 has no 'hard' list"):
        p.evaluate({"ranks": np.arange(4)[:, None]}, bad)
    with pytest.raises(UserError, match="has no 'ok'"):
        OxfordMAP().evaluate({"ranks": np.arange(4)[:, None]}, bad)
    assert check_ranks(np.arange(4.0)[:, None], 4, 1).dtype == np.int64


def test_holidays_removes_query_from_its_list():
    # db 0..3; query is db 0, positives {1}; ranking puts the query itself first
    data = RetrievalData("holidays", list("abcd"), ["a"], [{"ok": np.array([1]), "junk": np.array([], int)}],
                         query_db_index=np.array([0]))
    ranks = np.array([[0], [1], [2], [3]])
    assert HolidaysMAP().evaluate({"ranks": ranks}, data)["map"] == 1.0
    # without removal the positive sits at position 1: AP = (0/1 + 1/2) / 2
    assert OxfordMAP().evaluate({"ranks": ranks}, data)["map"] == 0.25


def test_holidays_and_instre_real_gnd():
    from visrep.commands.eval import ground_truth_data
    from visrep.context import RunContext
    from visrep.registry import datasets
    root = _real("retrieval")
    ctx = RunContext(root, quiet=True)
    for name, proto in (("holidays", HolidaysMAP()), ("instre", InstreMAP())):
        data = ground_truth_data(datasets.create(name), ctx)
        perfect = []
        for j, g in enumerate(data.gnd):
            top = g["ok"]
            perfect.append(np.concatenate([top, np.setdiff1d(np.arange(data.n_db), top)]))
        assert proto.evaluate({"ranks": np.stack(perfect, 1)}, data)["map"] == pytest.approx(1.0, abs=1e-12)
        rng = np.random.default_rng(0)
        r = (np.arange(300)[:, None] + rng.integers(0, data.n_db, data.n_queries)[None, :]) % data.n_db
        m = proto.evaluate({"ranks": r}, data)
        g = [{"ok": g["ok"], "junk": g["junk"] if name == "instre" else np.union1d(g["junk"], [q])}
             for g, q in zip(data.gnd, data.query_db_index if name == "holidays" else range(data.n_queries))]
        if name == "instre":
            g = [{"ok": x["ok"], "junk": np.array([], int)} for x in data.gnd]
        assert m["map"] == pytest.approx(loop_compute_map(r, g)[0], abs=1e-12)
