"""Carlini & Wagner's L2 attack, with binary search over the constant c.

Carlini & Wagner, Towards evaluating the robustness of neural networks, IEEE S&P 2017, §V.A:
minimise over w

    || x' - x ||_2^2 + c * f(x'),   x' = (tanh(w) + 1) / 2          (eq. 7 with the change of variables of §V.A)
    f(x') = max(Z(x')_t - max_{k != t} Z(x')_k, -kappa)               (untargeted form of their f_6)

with Adam (learning rate 0.01), keeping for each image the adversarial x' of least L2 seen. An
outer binary search adapts c per image: after a run that succeeded, c moves down to the midpoint
with the last failing c; after a failure, c is multiplied by 10 until a success bounds it, then
bisected. The paper runs 9 binary steps x 10,000 iterations from c = 1e-3; at the small budgets
the speed comparison of the BP paper is about (e.g. 5 x 20 = 100 gradient evaluations), the
default here is ``binary_steps = 5``, ``iterations = 20`` per step and ``initial_const = 1`` (a
c of the order the MNIST models need, so that few steps suffice); without early abort. The
output is not quantised (the original attack returns real-valued images).

Shapes: x (b, 1, 28, 28) float32 in [0, 1], y (b,) int64 -> x_adv (b, 1, 28, 28); an image never
made adversarial is returned unchanged (counted as a failure by the protocol).
"""
from __future__ import annotations

from .common import logit_margin


def carlini_wagner_l2(model, x, y, binary_steps: int = 5, iterations: int = 20, initial_const: float = 1.0,
                      lr: float = 0.01, kappa: float = 0.0):
    """Batched C&W L2 (eq. 7 of Carlini & Wagner 2017). Returns (x_adv (b, ...), best L2 (b,), success (b,) bool)."""
    import torch
    x = x.detach()
    b = len(x)
    w0 = torch.atanh((2 * x - 1).clamp(-1 + 1e-6, 1 - 1e-6))
    c = torch.full((b,), float(initial_const))
    lo = torch.zeros(b)
    hi = torch.full((b,), float("inf"))
    best = x.clone()
    best_l2 = torch.full((b,), float("inf"))
    for _ in range(binary_steps):
        w = w0.clone().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=lr)
        succeeded = torch.zeros(b, dtype=torch.bool)
        for _ in range(iterations):
            adv = (torch.tanh(w) + 1) / 2
            logits = model(adv)
            l2sq = (adv - x).flatten(1).pow(2).sum(1)
            f = logit_margin(logits, y).clamp(min=-kappa)
            loss = (l2sq + c * f).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                is_adv = logits.argmax(1) != y
                best_l2 = keep_best(best, best_l2, adv, l2sq.sqrt(), is_adv)
                succeeded |= is_adv
        c, lo, hi = next_const(c, lo, hi, succeeded)
    return best, best_l2, torch.isfinite(best_l2)


def keep_best(best, best_l2, adv, l2, is_adv):
    """Keep, per image, the adversarial example of least L2 so far: `best` (b, ...) is updated in place;
    returns the new best L2 (b,) (inf where none yet)."""
    import torch
    better = is_adv & (l2 < best_l2)
    best[better] = adv.detach()[better]
    return torch.where(better, l2, best_l2)


def next_const(c, lo, hi, succeeded):
    """C&W's binary search on the constant c, per image (Carlini & Wagner 2017, Sec. V): bisect between the
    largest failing and smallest succeeding c, or multiply c by 10 until one succeeds. Returns (c, lo, hi)."""
    import torch
    with torch.no_grad():
        hi = torch.where(succeeded, torch.minimum(hi, c), hi)
        lo = torch.where(succeeded, lo, torch.maximum(lo, c))
        c = torch.where(torch.isfinite(hi), (lo + hi) / 2, c * 10)
    return c, lo, hi


