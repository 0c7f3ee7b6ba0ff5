"""BP, the boundary projection attack: reach the class boundary fast, then walk along it.

Zhang, Avrithis, Furon & Amsaleg, Walking on the edge: fast, low-distortion adversarial examples,
IEEE TIFS 16, 2021 (arXiv:1912.02153), §IV; the talk's slide "boundary projection (BP) attack":
"optimize distortion on class boundary, avoiding oscillations; low-distortion adversarial examples
at unprecedented speed".

Notation (per image, pixel values in [0, 1]): x the clean image of true class t, y_i the current
iterate, delta = y_i - x, r = ||delta||_2, u = g / ||g|| the unit gradient at y_i of the loss that
decreases towards the adversarial region (the authors' smoothed margin by default, below; or the logit
margin ell(y) = Z(y)_t - max_{k!=t} Z(y)_k), u = -grad ell / ||grad ell|| (the margin's zero level set is the class boundary, so u is the boundary's
normal there), c = <delta, u>. A schedule eps_i = gamma + (1 - gamma) i / K, i = 0..K-1, rises
from gamma towards 1. With K iterations, each one gradient:

- Stage 1 (no iterate adversarial yet): y_{i+1} = y_i + alpha * eps_i * u -- fixed-length steps
  along the normalised gradient until the boundary is crossed.
- Stage 2, case OUT (y_i adversarial): reduce the distortion to the target rho = eps_i * r by moving
  on the hyperplane tangent to the boundary at y_i (orthogonal to u), towards x. On the line
  y_i - beta * v, v = P delta / ||P delta||, P = I - u u^T, the distortion is
  sqrt(r^2 - 2 beta s + beta^2) with s = ||P delta|| = r sin(psi); the step is
  beta = s - sqrt(rho^2 - c^2) (first point at distortion rho), or beta = s (the projection of x
  onto the tangent plane, distortion |c|) when rho < |c| and the sphere of radius rho is out of reach.
- Stage 2, case IN (crossed before, y_i not adversarial): go back out along u to the distortion
  target rho = r / eps_i: y_{i+1} = y_i + beta u with ||delta + beta u|| = rho, i.e.
  beta = -c + sqrt(c^2 + rho^2 - r^2).

Every iterate is clipped to [0, 1] and quantised to 256 grey levels (the paper's quantisation
step: the output is a valid 8-bit image). The output is the adversarial iterate of least L2 seen
(the last one is checked with one more forward pass after the loop).

Defaults are those of the authors' MNIST experiments: gamma = 0.7, alpha = 1, K = 20 (and 100).

As the authors run it (their TensorFlow code, ``attacks.py`` / ``utils.py`` of
hanwei0912/walking-on-the-edge-fast-low-distortion-adversarial-examples), the defaults here; each
deviation is an option:

- ``loss = "smoothed"``: the direction is the gradient of the authors' smoothed margin
  ell(y) = Z_t - m - log(C + 1 + sum_{k != t} exp(Z_k - m)), m = max_{k != t} Z_k, C classes
  (``softmax_cross_entropy_better``; read without its quirk of taking the maxima over vectors whose
  masked entries are 0 instead of -inf). ``margin`` uses the logit margin Z_t - max_{k != t} Z_k,
  ``ce`` the cross-entropy.
- ``out_search = 7``: the OUT step length beta is searched by 7 bisections on the line
  y_i - beta v between the real-valued solution (distortion rho) and the projection of x on the
  tangent plane (beta = s), so that the *quantised* next iterate has distortion closest to rho
  (``estimate_beta_out_LS``; here measured on the clipped, quantised image); 0 = the closed form on
  the real-valued line.
- ``min_in_step = 0.1``: the IN step beta is at least 0.1 (``estimate_beta_in_simple``); 0 = none.

The geometry of both stage-2 cases -- the tangent-plane step with its target eps_i * r and the
normal step with target r / eps_i -- is the paper's.

Shapes: x (b, 1, 28, 28) float32 in [0, 1], y (b,) int64.
"""
from __future__ import annotations

from .common import (
    ce_direction,
    flat_norm,
    logit_margin,
    per_item,
    quantize_pixels,
    unit_or_random,
)


def smoothed_margin(logits, y):
    """(b,) the authors' smoothed margin Z_t - m - log(C + 1 + sum_{k != t} exp(Z_k - m)), m = max_{k != t} Z_k.

    logits (b, C), y (b,) int64; decreasing it moves towards the adversarial region (BP authors' code).
    """
    import torch
    onehot = torch.nn.functional.one_hot(y, logits.shape[1]).bool()
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.masked_fill(onehot, float("-inf"))
    m = others.amax(1)
    rest = torch.exp(others - m[:, None]).sum(1)
    return true - m - torch.log(logits.shape[1] + 1 + rest)


def _descent_direction(model, y_img, labels, loss: str, gen):
    """(logits (b, C), u (b, ...)): unit vector along which the true class loses (towards adversarial)."""
    import torch
    if loss == "ce":
        logits, g = ce_direction(model, y_img, labels)
        return logits, unit_or_random(g, gen)
    z = y_img.detach().clone().requires_grad_(True)
    logits = model(z)
    f = smoothed_margin if loss == "smoothed" else logit_margin
    (g,) = torch.autograd.grad(-f(logits, labels).sum(), z)
    return logits.detach(), unit_or_random(g, gen)


def out_step_search(x, cur, u, eps, levels: int, steps: int = 7):
    """OUT step (b, ...) with its length searched on the quantised distortion (BP authors' ``estimate_beta_out_LS``).

    x, cur (b, ...) clean image and adversarial iterate, u (b, ...) unit normal, eps scalar in (0, 1].
    On y - beta v (v = P delta / ||P delta||, P = I - u u^T, delta = cur - x) the real-valued
    distortion falls from rho = eps ||delta|| at beta_lo = s - sqrt(rho^2 - c^2) to |c| at beta_hi = s;
    `steps` bisections keep the bracket [lo, hi] with D(lo) >= rho > D(hi), D the L2 of the clipped,
    quantised next iterate, and the end whose D is closer to rho is returned.
    """
    import torch
    delta = cur - x
    r = flat_norm(delta)
    c = (delta * u).flatten(1).sum(1)
    pd = delta - per_item(c, u) * u
    s = flat_norm(pd)
    v = pd / per_item(s.clamp_min(1e-12), pd)
    rho = eps * r
    lo = s - torch.sqrt((rho * rho - c * c).clamp_min(0))
    hi = s.clone()

    def dist(beta):
        return flat_norm(quantize_pixels((cur - per_item(beta, v) * v).clamp(0, 1), levels) - x)

    d_lo, d_hi = dist(lo), dist(hi)
    for _ in range(steps):
        mid = (lo + hi) / 2
        d_mid = dist(mid)
        below = d_mid < rho
        hi = torch.where(below, mid, hi)
        d_hi = torch.where(below, d_mid, d_hi)
        lo = torch.where(below, lo, mid)
        d_lo = torch.where(below, d_lo, d_mid)
    beta = torch.where((d_hi - rho).abs() < (d_lo - rho).abs(), hi, lo)
    return -per_item(beta, v) * v


def bp_step(delta, u, eps, crossed, is_adv, alpha: float, min_in_step: float = 0.0, step_out=None):
    """The BP update (b, ...) for perturbations `delta` and unit directions `u` (Zhang et al. 2021, §IV).

    eps: scalar schedule value in (0, 1]; crossed / is_adv: (b,) bool. Stage 1 where not crossed,
    OUT where is_adv, IN otherwise. min_in_step: lower bound of the IN step length (authors: 0.1);
    step_out (b, ...): an OUT step computed elsewhere (the quantised-distortion search) instead of
    the closed form.
    """
    import torch
    r = flat_norm(delta)
    c = (delta * u).flatten(1).sum(1)
    # stage 1
    step1 = alpha * eps * u
    # OUT: along the tangent plane towards x
    pd = delta - per_item(c, u) * u
    s = flat_norm(pd)
    rho = eps * r
    reach = rho >= c.abs()
    beta_out = torch.where(reach, s - torch.sqrt((rho * rho - c * c).clamp_min(0)), s)
    closed_out = -per_item(beta_out / s.clamp_min(1e-12), pd) * pd
    step_out = closed_out if step_out is None else step_out
    # IN: along the normal, out to distortion r / eps
    rho_in = r / eps
    beta_in = (-c + torch.sqrt((c * c + rho_in * rho_in - r * r).clamp_min(0))).clamp_min(min_in_step)
    step_in = per_item(beta_in, u) * u
    step = torch.where(per_item(crossed, u), step_in, step1)
    return torch.where(per_item(is_adv, u), step_out, step)


def boundary_projection(model, x, y, iterations: int = 20, gamma: float = 0.7, alpha: float = 1.0,
                        levels: int = 256, loss: str = "smoothed", gen=None, out_search: int = 7,
                        min_in_step: float = 0.1):
    """Batched BP attack. Returns (best adversarial (b, ...), its L2 (b,) (inf where none),
    first iteration at which each image was adversarial (b,) (-1 where never))."""
    import torch
    x = x.detach()
    b = len(x)
    cur = x.clone()
    crossed = torch.zeros(b, dtype=torch.bool)
    first = torch.full((b,), -1, dtype=torch.int64)
    best = x.clone()
    best_l2 = torch.full((b,), float("inf"))

    def keep_best(img, logits, i):
        nonlocal best, best_l2
        is_adv = logits.argmax(1) != y
        l2 = flat_norm(img - x)
        better = is_adv & (l2 < best_l2)
        best_l2 = torch.where(better, l2, best_l2)
        best[better] = img[better]
        first.masked_fill_(is_adv & (first < 0), i)
        return is_adv

    for i in range(iterations):
        eps = gamma + (1 - gamma) * i / iterations
        logits, u = _descent_direction(model, cur, y, loss, gen)
        with torch.no_grad():
            is_adv = keep_best(cur, logits, i)
            crossed |= is_adv
            out = out_step_search(x, cur, u, eps, levels, out_search) if out_search else None
            step = bp_step(cur - x, u, eps, crossed, is_adv, alpha, min_in_step, out)
            cur = quantize_pixels((cur + step).clamp(0, 1), levels)
    with torch.no_grad():
        keep_best(cur, model(cur), iterations)
    return best, best_l2, first


