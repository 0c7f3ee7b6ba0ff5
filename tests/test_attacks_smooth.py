"""smooth-adv (Zhang et al., Smooth adversarial examples, 2020): the Laplacian smoothing operator on
known answers (constants, identity at alpha = 0, a dense solve, no leakage across a hard edge, the
bipartite grid's top eigenvector), its gradient, the protocol's graph smoothness, and the attack on
the real MNIST model against C&W without smoothing."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from visrep.methods.attacks.smoothing import (
    LaplacianSmoother,
    adjacency_apply,
    degrees,
    image_affinities,
    smooth,
    smooth_carlini_wagner,
)
from visrep.protocols.adversarial import graph_smoothness


def _dense_l_alpha(img: np.ndarray, lam: float, alpha: float) -> np.ndarray:
    """I - alpha D^-1/2 W D^-1/2 for one (H, W) image, built entry by entry from the 4-neighbour pairs."""
    h, w = img.shape
    n = h * w
    W = np.zeros((n, n))
    for i in range(h):
        for j in range(w):
            for di, dj in ((0, 1), (1, 0)):
                a, b = i + di, j + dj
                if a < h and b < w:
                    wt = np.exp(-lam * (img[i, j] - img[a, b]) ** 2)
                    W[i * w + j, a * w + b] = W[a * w + b, i * w + j] = wt
    d = W.sum(1)
    return np.eye(n) - alpha * W / np.sqrt(np.outer(d, d))


def _images(seed=0, b=3, h=7, w=6):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, h, w, generator=g, dtype=torch.float64)


def test_cg_solve_matches_a_dense_solve():
    x = _images()
    sm = LaplacianSmoother(x, lam=10.0, alpha=0.95, maxiter=200, tol=1e-12)
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got = sm.solve(v)
    for k in range(len(x)):
        L = _dense_l_alpha(x[k, 0].numpy(), 10.0, 0.95)
        ref = np.linalg.solve(L, v[k, 0].numpy().ravel())
        assert np.allclose(got[k, 0].numpy().ravel(), ref, atol=1e-9)
    assert 0 < sm.iterations <= 200


def test_stencil_apply_equals_the_normalised_adjacency_formula():
    """The CG's in-place stencil (edge weights alpha d_i^-1/2 w_ij d_j^-1/2 precomputed) equals
    L_alpha v = v - alpha D^-1/2 W D^-1/2 v on colour images (one graph shared by the channels)."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 6, 7, generator=g, dtype=torch.float64)
    v = torch.randn(2, 3, 6, 7, generator=g, dtype=torch.float64)
    sm = LaplacianSmoother(x, lam=10.0, alpha=0.95)
    s = degrees(sm.wr, sm.wd).rsqrt()
    want = v - 0.95 * s * adjacency_apply(s * v, sm.wr, sm.wd)
    assert torch.allclose(sm.apply(v), want, rtol=0, atol=1e-12)
    assert not torch.allclose(sm.apply(v), v)


@pytest.mark.parametrize("alpha", [0.5, 0.95, 0.997])
def test_smoothing_keeps_a_constant_perturbation_constant(alpha):
    """phi(c 1) = c 1 on any image (the normalisation by L_alpha^-1 1), including a constant image."""
    for x in (_images(2), torch.full((2, 1, 9, 9), 0.4, dtype=torch.float64)):
        sm = LaplacianSmoother(x, alpha=alpha, maxiter=500, tol=1e-12)
        out = smooth(torch.full_like(x, -0.3), sm)
        assert torch.allclose(out, torch.full_like(x, -0.3), atol=1e-8)


def test_constant_image_gives_unit_weights_and_grid_degrees():
    x = torch.full((1, 1, 4, 5), 0.7)
    wr, wd = image_affinities(x, 10.0)
    assert torch.equal(wr, torch.ones_like(wr)) and torch.equal(wd, torch.ones_like(wd))
    d = degrees(wr, wd)[0, 0]
    assert d[0, 0] == 2 and d[0, 2] == 3 and d[1, 1] == 4 and d[3, 4] == 2


def test_alpha_zero_is_the_identity():
    x = _images(3)
    z = torch.randn(x.shape, dtype=torch.float64)
    assert torch.allclose(smooth(z, LaplacianSmoother(x, alpha=0.0)), z)


def test_smoothing_does_not_leak_across_a_hard_edge():
    """Left half 0, right half 1, lam = 1000: an impulse on the left stays on the left, smoothed there."""
    x = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    x[..., 4:] = 1.0
    sm = LaplacianSmoother(x, lam=1000.0, alpha=0.95, maxiter=500, tol=1e-12)
    z = torch.zeros_like(x)
    z[0, 0, 3, 1] = 1.0
    out = smooth(z, sm)[0, 0]
    assert out[:, 4:].abs().max() < 1e-12
    assert (out[:, :4] > 0).all()                      # spread over the whole flat left region
    assert out[3, 1] == out.max() and out[3, 1] < 1.0  # peak at the impulse, lowered by smoothing


def test_gradient_is_the_smoothed_gradient():
    x = _images(4, b=2, h=4, w=3)
    sm = LaplacianSmoother(x, alpha=0.9, maxiter=500, tol=1e-14)
    one = sm.solve(torch.ones_like(x))
    z = torch.randn(x.shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: smooth(t, sm, one), (z,), eps=1e-6, atol=1e-6)


def test_graph_smoothness_known_answers_and_cross_check():
    rng = np.random.default_rng(0)
    clean = rng.random((4, 6, 5))
    xt = torch.from_numpy(clean[:, None])
    sm = LaplacianSmoother(xt, lam=10.0, alpha=0.5)
    d = degrees(sm.wr, sm.wd)[:, 0].numpy()
    sign = (-1.0) ** np.add.outer(np.arange(6), np.arange(5))
    # the grid is bipartite: r = +-sqrt(d) alternating is the top eigenvector of L, value 2; sqrt(d) is the bottom, 0
    assert np.allclose(graph_smoothness(clean, clean + 1e-3 * sign * np.sqrt(d)), 2.0)
    assert np.allclose(graph_smoothness(clean, clean + 1e-3 * np.sqrt(d)), 0.0, atol=1e-12)
    assert np.isnan(graph_smoothness(clean, clean)).all()
    r = rng.normal(size=clean.shape)
    q = sm.quadratic_form(torch.from_numpy(r[:, None])).numpy() / (r * r).reshape(4, -1).sum(1)
    assert np.allclose(graph_smoothness(clean, clean + r), q)
    assert ((q > 0) & (q < 2)).all()


def test_smoothing_lowers_graph_smoothness_of_noise():
    rng = np.random.default_rng(1)
    clean = rng.random((3, 10, 10)) * 0.2
    r = rng.normal(size=clean.shape)
    sm = LaplacianSmoother(torch.from_numpy(clean[:, None]), lam=10.0, alpha=0.95)
    rs = smooth(torch.from_numpy(r[:, None]), sm)[:, 0].numpy()
    assert (graph_smoothness(clean, clean + rs) < 0.2 * graph_smoothness(clean, clean + r)).all()


# ---------------------------------------------------------------- on the real model and images

@pytest.fixture(scope="module")
def batch(real_mnist_walking):
    return real_mnist_walking(24)


def test_smooth_attack_is_smoother_than_cw_at_equal_success(batch):
    """sC&W vs the same attack without smoothing (alpha = 0): valid images, success, lower graph energy."""
    model, x, y = batch
    adv_s, l2_s, ok_s = smooth_carlini_wagner(model, x, y, binary_steps=3, iterations=15)
    adv_c, _, ok_c = smooth_carlini_wagner(model, x, y, binary_steps=3, iterations=15, alpha=0.0)
    for adv in (adv_s, adv_c):
        assert adv.min() >= 0 and adv.max() <= 1
    assert torch.equal(ok_s, model(adv_s).argmax(1) != y)
    assert ok_s.float().mean() >= 0.8 and ok_c.float().mean() >= 0.8
    both = (ok_s & ok_c).numpy()
    clean = x[:, 0].numpy()
    s_s = graph_smoothness(clean, adv_s[:, 0].numpy())[both]
    s_c = graph_smoothness(clean, adv_c[:, 0].numpy())[both]
    assert both.sum() >= 10 and np.median(s_s) < 0.5 * np.median(s_c)
    assert torch.allclose(l2_s[ok_s], (adv_s - x).flatten(1).norm(dim=1)[ok_s])


def test_smooth_adv_end_to_end_through_the_runner(shared_data, tmp_path):
    if not (shared_data / "classification" / "mnist").is_dir():
        pytest.skip("real MNIST test set absent")
    from visrep.runner import RunSettings, run_job
    from visrep.spec import expand_experiment
    (job,) = expand_experiment({"method": "smooth-adv", "dataset": "mnist-adversarial",
                                "data_root": str(shared_data / "classification"),
                                "params": {"n_images": 10, "binary_steps": 2, "iterations": 10}})
    rec = run_job(job, RunSettings(results_dir=str(tmp_path / "results"), quiet=True))
    m = rec["metrics"]
    assert m["n_attacked"] == 10 and m["success_rate"] >= 0.7 and m["iterations_mean"] == 20.0
    assert 0 < m["graph_smoothness"] < 0.6 and 0.1 < m["l2_mean"] < 5
    assert len(rec["per_item"]["graph_smoothness"]) == 10
