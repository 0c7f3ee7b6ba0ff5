"""What every adversarial-attack plugin shares: the target model, the batch loop, the output contract.

An attack plugin (task ``adversarial``) subclasses :class:`AttackMethod` and implements
``attack_batch(model, x, y, gen) -> (x_adv, iterations)`` on torch tensors:

- ``x`` (b, 1, 28, 28) float32 in [0, 1], ``y`` (b,) int64 true labels, ``gen`` a seeded
  ``torch.Generator`` (random starts);
- ``x_adv`` (b, 1, 28, 28) float32 in [0, 1]; ``iterations`` (b,) or an int: gradient
  evaluations spent on each image.

:meth:`AttackMethod.run` loads the model named by the ``model`` parameter
(:mod:`visrep.methods.attacks.mnist_models`), takes the first ``n_images`` images of the dataset, attacks
them in batches of ``batch_size`` and returns the outputs of the ``adversarial`` protocol
(:mod:`visrep.protocols.adversarial`): ``adversarial`` (m, 28, 28) float32, ``clean`` (m, 28, 28)
float32, ``indices`` (m,) the dataset items attacked, ``clean_predictions`` / ``adv_predictions``
(m,) int64, ``iterations`` (m,), ``time`` (seconds spent in ``attack_batch``, model loading and
predictions excluded).

Shared numerical helpers (batched, per image): :func:`flat_norm`, :func:`logit_margin`,
:func:`quantize_pixels`. torch is imported inside functions only.
"""
from __future__ import annotations


def flat_norm(t, p: float = 2.0):
    """(b,) p-norm of each item of a (b, ...) tensor."""
    return t.flatten(1).norm(p=p, dim=1)


def per_item(v, like):
    """Reshape a (b,) tensor to (b, 1, 1, ...) to broadcast against `like` (b, ...)."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def logit_margin(logits, y):
    """(b,) z_y - max_{k != y} z_k: positive iff the true class wins (Carlini & Wagner 2017, eq. f_6 with kappa = 0)."""
    import torch
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(torch.nn.functional.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    return true - other


def ce_direction(model, x, y):
    """(logits (b, C), g (b, ...)): a positive multiple, per image, of grad_x CE(f(x), y) (ascent direction).

    The cross-entropy gradient w.r.t. the logits is softmax(z) - onehot(y); for a confident model
    (margin z_y - max z_k above ~17 in float32) ``p_y - 1`` rounds to 0 and the -grad z_y term is
    lost, so the direction is wrong (measured on the BP paper's MNIST model, whose margins reach
    40). Here the logit gradient is computed scaled by exp(lse(z) - max_{k != y} z_k) > 0:
    q_k = exp(z_k - max_{j != y} z_j) for k != y and -sum_k q_k for y, exact at any margin. Only
    attacks that use the gradient's direction (normalised) may use it.
    """
    import torch
    x = x.detach().clone().requires_grad_(True)
    logits = model(x)
    z = logits.detach()
    onehot = torch.nn.functional.one_hot(y, z.shape[1]).bool()
    q = torch.exp(z - z.masked_fill(onehot, float("-inf")).amax(1, keepdim=True)).masked_fill(onehot, 0.0)
    gz = q - onehot * q.sum(1, keepdim=True)
    (g,) = torch.autograd.grad(logits, x, grad_outputs=gz)
    return z, g


def quantize_pixels(x, levels: int):
    """Round values in [0, 1] to `levels` grey levels (256: valid 8-bit images); levels 0 = unchanged."""
    if not levels:
        return x
    return (x * (levels - 1)).round() / (levels - 1)


def unit_or_random(g, gen=None):
    """g / ||g|| per item; an item with zero gradient gets a random unit direction instead."""
    import torch
    n = flat_norm(g)
    zero = n == 0
    if zero.any():
        g = g.clone()
        g[zero] = torch.randn(g[zero].shape, generator=gen, dtype=g.dtype)
        n = flat_norm(g)
    return g / per_item(n, g)


