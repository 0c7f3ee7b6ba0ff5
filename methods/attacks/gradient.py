"""Bounded gradient attacks: FGSM and PGD (L-inf and L2).

- FGSM: Goodfellow, Shlens & Szegedy, Explaining and harnessing adversarial examples, ICLR 2015,
  eq. (3): ``x_adv = clip_[0,1](x + eps * sign(grad_x J(theta, x, y)))`` with J the cross-entropy.
- PGD: Madry, Makelov, Schmidt, Tsipras & Vladu, Towards deep learning models resistant to
  adversarial attacks, ICLR 2018, eq. (2): ``x_{t+1} = Proj_{x + S}(x_t + alpha * sign(grad J))``
  for S the L-inf ball of radius eps; the L2 version steps along the L2-normalised gradient
  ``alpha * g / ||g||`` and projects onto the L2 ball (Kurakin et al. style L2 PGD). Projection
  onto the ball is followed by clipping to [0, 1], as in the reference implementations
  (cleverhans, torchattacks). Random start (Madry et al.): uniform in the L-inf ball; for L2, a
  Gaussian direction scaled to a radius uniform in [0, eps].

Defaults are Madry et al.'s MNIST setting: eps = 0.3 (L-inf), 40 iterations; the step defaults to
``2.5 * eps / iterations`` (the rule of Madry et al.'s robustness library) when not given. For L2
the default radius is eps = 2.0 (pixel values in [0, 1]; a common MNIST L2 budget).

Shapes: batches x (b, 1, 28, 28) float32 in [0, 1], labels (b,) int64. These attacks are bounded,
so their success rate is below 100 % on robust models; distortion is at most eps in their norm.
"""
from __future__ import annotations

from .common import flat_norm, per_item


def _ce_grad(model, x, y):
    """grad_x of the summed cross-entropy (b, ...) (the sign/direction equals that of the mean)."""
    import torch
    import torch.nn.functional as F
    x = x.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction="sum")
    (g,) = torch.autograd.grad(loss, x)
    return g


def fgsm(model, x, y, eps: float):
    """One signed-gradient step of size `eps` (L-inf), clipped to [0, 1]. Goodfellow et al. 2015, eq. (3)."""
    g = _ce_grad(model, x, y)
    return (x + eps * g.sign()).clamp(0, 1).detach()


def pgd(model, x, y, eps: float, step: float, iterations: int, norm: str = "linf",
        random_start: bool = False, gen=None):
    """Projected gradient ascent on the cross-entropy within the `norm` ball of radius `eps` (Madry et al. eq. 2).

    x (b, ...) float32 in [0, 1], y (b,) int64 -> x_adv (b, ...) with ||x_adv - x|| <= eps, values in [0, 1].
    """
    import torch
    x = x.detach()
    adv = x.clone()
    if random_start:
        if norm == "linf":
            adv = adv + (torch.rand(x.shape, generator=gen) * 2 - 1) * eps
        else:
            d = torch.randn(x.shape, generator=gen)
            r = torch.rand(len(x), generator=gen)
            adv = adv + d * per_item(r * eps / flat_norm(d), d)
        adv = adv.clamp(0, 1)
    for _ in range(iterations):
        g = _ce_grad(model, adv, y)
        if norm == "linf":
            adv = adv + step * g.sign()
            delta = (adv - x).clamp(-eps, eps)
        else:
            adv = adv + step * g / per_item(flat_norm(g) + 1e-10, g)
            delta = adv - x
            factor = (eps / flat_norm(delta)).clamp(max=1.0)  # ||delta|| = 0 gives inf -> 1
            delta = delta * per_item(factor, delta)
        adv = (x + delta).clamp(0, 1).detach()
    return adv


