"""DDN: Decoupling Direction and Norm (Rony et al., CVPR 2019), an L2 attack with a fixed budget.

Rony, Hafemann, Oliveira, Ben Ayed, Sabourin & Granger, Decoupling direction and norm for efficient
gradient-based L2 adversarial attacks and defenses, CVPR 2019, Algorithm 1. With delta_0 = 0 and
norm eps_0 = 1, at each of K iterations k:

    x~_k  = x + delta_{k-1}                                  (quantised to 256 levels and clipped to [0, 1])
    g     = grad_delta CE(f(x~_k), y);  g <- alpha_k * g / ||g||_2       (ascent: untargeted)
    if x~_k is adversarial:  eps_k = (1 - gamma) eps_{k-1}, keep x~_k if the smallest L2 so far
    else:                    eps_k = (1 + gamma) eps_{k-1}
    delta_k = eps_k * (delta_{k-1} + g) / ||delta_{k-1} + g||_2,   then x + delta_k quantised and clipped

The step alpha_k follows a cosine annealing from alpha = 1 to 0.01 (the authors' implementation);
gamma = 0.05 (paper). One gradient evaluation per iteration; the last iterate is checked once
more after the loop. The CE gradient direction is computed in a form exact at any logit margin
(:func:`visrep.methods.attacks.common.ce_direction`): with the plain float32 softmax the direction is wrong on
confident models (measured on the BP paper's MNIST model: DDN then succeeds on 29 % of images in 20
iterations). Shapes: x (b, 1, 28, 28) float32 in [0, 1], y (b,) int64.
"""
from __future__ import annotations

import math

from .common import (
    ce_direction,
    flat_norm,
    per_item,
    quantize_pixels,
    unit_or_random,
)


def ddn(model, x, y, iterations: int = 100, gamma: float = 0.05, init_norm: float = 1.0, alpha: float = 1.0,
        levels: int = 256, gen=None):
    """Batched DDN (Rony et al. 2019, Alg. 1). Returns (best adversarial (b, ...), its L2 (b,), inf if none)."""
    import torch
    x = x.detach()
    b = len(x)
    cur = x.clone()  # the iterate x + delta, kept as an image so that quantised values stay exact
    eps = torch.full((b,), float(init_norm))
    best = x.clone()
    best_l2 = torch.full((b,), float("inf"))

    def keep_best(adv_x, logits):
        nonlocal best, best_l2
        l2 = flat_norm(adv_x - x)
        better = (logits.argmax(1) != y) & (l2 < best_l2)
        best_l2 = torch.where(better, l2, best_l2)
        best[better] = adv_x[better]
        return logits.argmax(1) != y

    for k in range(iterations):
        a_k = 0.01 * alpha + (alpha - 0.01 * alpha) * (1 + math.cos(math.pi * k / iterations)) / 2
        logits, g = ce_direction(model, cur, y)
        with torch.no_grad():
            is_adv = keep_best(cur, logits)
            eps = torch.where(is_adv, eps * (1 - gamma), eps * (1 + gamma))
            step = (cur - x) + a_k * unit_or_random(g, gen)
            delta = step * per_item(eps / flat_norm(step).clamp_min(1e-12), step)
            cur = quantize_pixels((x + delta).clamp(0, 1), levels)
    with torch.no_grad():
        keep_best(cur, model(cur))
    return best, best_l2


