"""Attack plugins: known-answer geometry of BP, bounds of PGD/FGSM, cross-checks with torchattacks on the
same model and inputs, 100 % success of the unbounded attacks, and one end-to-end run through the runner."""
from __future__ import annotations

import numpy as np
import pytest

from visrep.errors import UserError

torch = pytest.importorskip("torch")

from visrep.methods.attacks.boundary_projection import boundary_projection, bp_step
from visrep.methods.attacks.common import (
    ce_direction,
    flat_norm,
    logit_margin,
    quantize_pixels,
)

# ---------------------------------------------------------------- hand-computed cases (no data needed)

def test_logit_margin_and_quantize_known_answers():
    z = torch.tensor([[1.0, 3.0, 2.0], [5.0, -1.0, 4.5]])
    assert logit_margin(z, torch.tensor([1, 2])).tolist() == pytest.approx([1.0, -0.5])
    x = torch.tensor([0.0, 0.5, 1.0, 0.0021, 0.0019])
    assert (quantize_pixels(x, 256) * 255).tolist() == pytest.approx([0, 128, 255, 1, 0])  # 127.5 rounds to even
    assert torch.equal(quantize_pixels(x, 0), x)


def _unit(v):
    return v / v.norm()


def test_bp_step_geometry():
    """OUT lands at distortion eps*r on the tangent plane; IN at r/eps along u; stage 1 is alpha*eps*u."""
    g = torch.Generator().manual_seed(0)
    delta = torch.randn(3, 1, 4, 4, generator=g)
    u = torch.stack([_unit(torch.randn(1, 4, 4, generator=g)) for _ in range(3)])
    # make delta mostly orthogonal to u so that the target sphere is reachable (rho >= |c|)
    c = (delta * u).flatten(1).sum(1)
    delta = delta - 0.8 * c.view(-1, 1, 1, 1) * u
    r = flat_norm(delta)
    eps = 0.8
    crossed = torch.tensor([False, True, True])
    is_adv = torch.tensor([False, False, True])
    step = bp_step(delta, u, eps, crossed, is_adv, alpha=0.5)
    # stage 1: alpha * eps * u
    assert torch.allclose(step[0], 0.5 * eps * u[0], atol=1e-6)
    # IN: along u, new distortion r / eps
    assert torch.allclose(_unit(step[1]), u[1], atol=1e-5)
    assert flat_norm(delta[1:2] + step[1:2]).item() == pytest.approx(r[1].item() / eps, rel=1e-5)
    # OUT: orthogonal to u (tangent plane), new distortion eps * r
    assert abs(float((step[2] * u[2]).sum())) < 1e-5
    assert flat_norm(delta[2:3] + step[2:3]).item() == pytest.approx(eps * r[2].item(), rel=1e-5)


def test_bp_out_step_stops_at_the_projection_when_target_unreachable():
    u = torch.zeros(1, 1, 1, 2)
    u[..., 0] = 1.0
    delta = torch.tensor([[[[3.0, 4.0]]]])  # r = 5, c = 3: the tangent line's closest point to x is at distortion 3
    step = bp_step(delta, u, 0.5, torch.tensor([True]), torch.tensor([True]), alpha=1.0)  # target 2.5 < 3
    assert (delta + step).flatten().tolist() == pytest.approx([3.0, 0.0])
    step = bp_step(delta, u, 0.8, torch.tensor([True]), torch.tensor([True]), alpha=1.0)  # target 4 >= 3
    assert (delta + step).flatten().tolist() == pytest.approx([3.0, np.sqrt(16 - 9)])


def test_bp_on_a_linear_classifier_finds_the_minimal_perturbation():
    """For an affine binary classifier the minimal L2 adversarial perturbation is known: |w.x + b| / ||w||."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 2)
    model = torch.nn.Sequential(torch.nn.Flatten(), lin).eval()
    x = torch.rand(20, 1, 4, 4) * 0.4 + 0.3  # well inside the box: clipping never binds
    y = model(x).argmax(1)
    w = lin.weight[0] - lin.weight[1]
    bias = lin.bias[0] - lin.bias[1]
    dist = ((x.flatten(1) @ w + bias).abs() / w.norm()).detach()
    keep = dist < 0.25
    adv, l2, _ = boundary_projection(model, x[keep], y[keep], iterations=100, gamma=0.7, alpha=0.1, levels=0,
                                     loss="margin", out_search=0, min_in_step=0.0)
    assert (model(adv).argmax(1) != y[keep]).all()
    assert torch.all(l2 >= dist[keep] - 1e-5)
    assert torch.allclose(l2, dist[keep], rtol=0.02, atol=1e-3)
    # as the authors run it (smoothed margin, searched OUT step, IN step >= 0.1): no step can go below the
    # minimal distortion, and it still ends near it (the 0.1 minimum IN step bounds the last overshoot)
    adv, l2, _ = boundary_projection(model, x[keep], y[keep], iterations=100, gamma=0.7, alpha=0.1, levels=0)
    assert (model(adv).argmax(1) != y[keep]).all()
    assert torch.all(l2 >= dist[keep] - 1e-5)
    assert torch.allclose(l2, dist[keep], rtol=0.1, atol=0.02)


def test_smoothed_margin_known_answer_and_direction():
    from visrep.methods.attacks.boundary_projection import smoothed_margin
    z = torch.tensor([[1.0, 3.0, 2.0]])
    # t = 1: m = max(1, 2) = 2; 3 - 2 - log(3 + 1 + e^-1 + e^0)
    want = 3.0 - 2.0 - np.log(3 + 1 + np.exp(-1.0) + 1.0)
    assert smoothed_margin(z, torch.tensor([1])).item() == pytest.approx(want, rel=1e-6)
    # on a 2-class linear model its gradient is parallel to the margin's (both are functions of z_0 - z_1)
    torch.manual_seed(3)
    lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 2)).eval()
    x = torch.rand(4, 1, 2, 4, requires_grad=True)
    y = lin(x).argmax(1)
    (g1,) = torch.autograd.grad(smoothed_margin(lin(x), y).sum(), x)
    (g2,) = torch.autograd.grad(logit_margin(lin(x), y).sum(), x)
    cos = (g1 * g2).flatten(1).sum(1) / (flat_norm(g1) * flat_norm(g2))
    assert torch.allclose(cos, torch.ones(4), atol=1e-5)


def test_out_step_search_lands_closest_to_the_target_on_the_quantised_grid():
    from visrep.methods.attacks.boundary_projection import out_step_search
    g = torch.Generator().manual_seed(5)
    x = quantize_pixels(torch.rand(6, 1, 5, 5, generator=g) * 0.5 + 0.25, 256)
    cur = quantize_pixels(x + 0.2 * torch.randn(6, 1, 5, 5, generator=g), 256)
    u = torch.randn(6, 1, 5, 5, generator=g)
    u = u / flat_norm(u).view(-1, 1, 1, 1)
    # make the target reachable: shrink the normal component of delta
    delta = cur - x
    c = (delta * u).flatten(1).sum(1)
    cur = quantize_pixels(x + delta - 0.9 * c.view(-1, 1, 1, 1) * u, 256)
    eps = 0.8
    rho = eps * flat_norm(cur - x)
    step = out_step_search(x, cur, u, eps, 256, steps=30)
    d_q = flat_norm(quantize_pixels((cur + step).clamp(0, 1), 256) - x)
    # the searched step is tangent and its quantised distortion is within a grey level or so of rho
    assert torch.allclose((step * u).flatten(1).sum(1), torch.zeros(6), atol=1e-5)
    assert torch.all((d_q - rho).abs() < 0.02)
    # without quantisation the search converges to the closed form of bp_step
    closed = bp_step(cur - x, u, eps, torch.ones(6, dtype=torch.bool), torch.ones(6, dtype=torch.bool), 1.0)
    assert torch.allclose(out_step_search(x, cur, u, eps, 0, steps=40), closed, atol=1e-5)


def test_min_in_step_bounds_the_in_step():
    u = torch.zeros(1, 1, 1, 2)
    u[..., 0] = 1.0
    delta = torch.tensor([[[[0.0, 0.01]]]])  # r = 0.01, IN target r / eps = 0.0125: closed-form step 0.0075
    crossed, is_adv = torch.tensor([True]), torch.tensor([False])
    assert flat_norm(bp_step(delta, u, 0.8, crossed, is_adv, 1.0)).item() == pytest.approx(0.0075, rel=1e-4)
    assert flat_norm(bp_step(delta, u, 0.8, crossed, is_adv, 1.0, min_in_step=0.1)).item() == pytest.approx(0.1)


def test_ce_direction_is_the_cross_entropy_gradient_direction():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 5)).eval()
    x = torch.rand(6, 1, 4, 4)
    y = torch.randint(0, 5, (6,))
    _, g = ce_direction(model, x, y)
    xr = x.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(xr), y, reduction="sum"), xr)
    cos = (g * ref).flatten(1).sum(1) / (flat_norm(g) * flat_norm(ref))
    assert torch.allclose(cos, torch.ones(6), atol=1e-5)
    # at a huge margin the plain float32 gradient loses the true-class term; ce_direction does not
    big = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 5)).eval()
    with torch.no_grad():
        big[1].weight.mul_(200.0)
    yb = big(x).argmax(1)
    _, gb = ce_direction(big, x, yb)
    xr = x.clone().requires_grad_(True)
    margin = logit_margin(big(xr), yb)
    (gm,) = torch.autograd.grad(-margin.sum(), xr)
    # direction decreases the margin (positive inner product with the margin's descent direction)
    assert ((gb * gm).flatten(1).sum(1) > 0).all()


def test_attack_params_are_checked():
    from visrep.registry import methods
    with pytest.raises(UserError, match="model"):
        methods.create("bp", model="resnet")
    with pytest.raises(UserError, match="norm"):
        methods.create("pgd", norm="l1")
    with pytest.raises(UserError, match="gamma"):
        methods.create("bp", gamma=1.5)
    with pytest.raises(UserError, match="loss"):
        methods.create("bp", loss="hinge")


# ---------------------------------------------------------------- on the real model and images

@pytest.fixture(scope="module")
def batch(real_mnist_walking):
    return real_mnist_walking(50)


def test_fgsm_matches_torchattacks(batch):
    ta = pytest.importorskip("torchattacks")
    from visrep.methods.attacks.gradient import fgsm
    model, x, y = batch
    ours = fgsm(model, x, y, 0.2)
    ref = ta.FGSM(model, eps=0.2)(x, y)
    assert (ours - ref).abs().max().item() <= 1e-5
    assert (ours - x).abs().max().item() <= 0.2 + 1e-6


class _Scale(torch.nn.Module):
    def __init__(self, s):
        super().__init__()
        self.s = s

    def forward(self, z):
        return z * self.s


@pytest.mark.parametrize("norm,eps,step", [("linf", 0.2, 0.05), ("l2", 1.5, 0.4)])
def test_pgd_matches_torchattacks(batch, norm, eps, step):
    ta = pytest.importorskip("torchattacks")
    from visrep.methods.attacks.gradient import pgd
    model, x, y = batch
    if norm == "l2":
        # torchattacks divides the mean-CE gradient by ||g|| + 1e-10; on these confident models the float32 CE
        # gradient is ~1e-7 on many images, so that constant would decide the step. Both implementations
        # get the same model with logits divided by 20 (softmax not saturated), where the constant is negligible.
        model = torch.nn.Sequential(model, _Scale(1 / 20)).eval()
        xr = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(xr), y), xr)
        assert flat_norm(g).min() > 1e-6
    ours = pgd(model, x, y, eps, step, 10, norm, random_start=False)
    ref = (ta.PGD(model, eps=eps, alpha=step, steps=10, random_start=False) if norm == "linf"
           else ta.PGDL2(model, eps=eps, alpha=step, steps=10, random_start=False))(x, y)
    assert (ours - ref).abs().max().item() <= 1e-5
    d = (ours - x).flatten(1)
    bound = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert (bound <= eps + 1e-5).all()
    assert ours.min() >= 0 and ours.max() <= 1
    assert (model(ours).argmax(1) != y).any()  # the test can fail: the attack must change something


def test_cw_statistics_match_torchattacks(batch):
    """Same objective, optimiser and box (one c, no binary search): compare success and mean L2."""
    ta = pytest.importorskip("torchattacks")
    from visrep.methods.attacks.carlini_wagner import carlini_wagner_l2
    model, x, y = batch
    x, y = x[:30], y[:30]
    ref = ta.CW(model, c=1.0, kappa=0, steps=30, lr=0.1)(x, y)
    ref_ok = model(ref).argmax(1) != y
    ours, l2, ok = carlini_wagner_l2(model, x, y, binary_steps=1, iterations=30, initial_const=1.0, lr=0.1)
    assert torch.equal(ok, model(ours).argmax(1) != y)
    assert abs(ok.float().mean().item() - ref_ok.float().mean().item()) <= 0.1
    assert ref_ok.sum() >= 10
    both = ok & ref_ok
    assert l2[both].mean().item() == pytest.approx(flat_norm(ref - x)[both].mean().item(), rel=0.05)


@pytest.mark.parametrize("name,params", [("bp", {"iterations": 20}), ("ddn", {"iterations": 40})])
def test_unbounded_attacks_always_succeed(batch, name, params):
    from visrep.registry import methods
    model, x, y = batch
    attack = methods.create(name, **params)
    adv, iters = attack.attack(model, x, y)
    assert (model(adv).argmax(1) != y).all(), f"{name}: not every correctly classified image was turned"
    assert iters.tolist() == [params["iterations"]] * len(x)
    # quantised outputs are valid 8-bit images
    assert torch.equal(adv, quantize_pixels(adv, 256))
    l2 = flat_norm(adv - x)
    assert (l2 > 0.1).all() and l2.mean() < 2.0  # the model's known L2 robustness scale (~0.9 mean)


@pytest.mark.slow
def test_cw_succeeds_with_enough_budget(batch):
    from visrep.methods.attacks.carlini_wagner import carlini_wagner_l2
    model, x, y = batch
    _, _, ok = carlini_wagner_l2(model, x, y, binary_steps=5, iterations=100, initial_const=1.0, lr=0.1)
    assert ok.float().mean() >= 0.95


def test_bp_end_to_end_through_the_runner(shared_data, tmp_path):
    if not (shared_data / "classification" / "mnist").is_dir():
        pytest.skip("real MNIST test set absent")
    from visrep.runner import RunSettings, run_job
    from visrep.spec import expand_experiment
    (job,) = expand_experiment({"method": "bp", "dataset": "mnist-adversarial",
                                "data_root": str(shared_data / "classification"),
                                "params": {"n_images": 20, "iterations": 10, "model": "walking"}})
    rec = run_job(job, RunSettings(results_dir=str(tmp_path / "results"), quiet=True))
    m = rec["metrics"]
    assert m["n_attacked"] == 20 and m["success_rate"] == 1.0
    assert 0.1 < m["l2_mean"] < 3.0 and m["iterations_mean"] == 10.0 and m["time_per_image"] > 0
    assert rec["summary"].startswith(">> mnist-adversarial: success 100.00 %")
