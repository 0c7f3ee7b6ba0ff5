"""What every adversarial-attack plugin shares: the target model, the batch loop, the output contract.

An attack plugin (task ``adversarial``) subclasses :class:`AttackMethod` and implements
``attack_batch(model, x, y, gen) -> (x_adv, iterations)`` on torch tensors:

- ``x`` (b, 1, 28, 28) float32 in [0, 1], ``y`` (b,) int64 true labels, ``gen`` a seeded
  ``torch.Generator`` (random starts);
- ``x_adv`` (b, 1, 28, 28) float32 in [0, 1]; ``iterations`` (b,) or an int: gradient
  evaluations spent on each image.

:meth:`AttackMethod.run` loads the model named by the ``model`` parameter
(:mod:`visrep.methods.mnist_models`), takes the first ``n_images`` images of the dataset, attacks
them in batches of ``batch_size`` and returns the outputs of the ``adversarial`` protocol
(:mod:`visrep.protocols.adversarial`): ``adversarial`` (m, 28, 28) float32, ``clean`` (m, 28, 28)
float32, ``indices`` (m,) the dataset items attacked, ``clean_predictions`` / ``adv_predictions``
(m,) int64, ``iterations`` (m,), ``time`` (seconds spent in ``attack_batch``, model loading and
predictions excluded).

Shared numerical helpers (batched, per image): :func:`flat_norm`, :func:`logit_margin`,
:func:`quantize`. torch is imported inside functions only.
"""
from __future__ import annotations

import time

import numpy as np

from visrep.api import Method
from visrep.errors import UserError
from visrep.params import Param

from .mnist_models import MODEL_NAMES


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


def quantize(x, levels: int):
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


COMMON_PARAMS = (
    Param("model", str, "walking", "target model: clean / adv (advertorch LeNet5, normally / adversarially "
          "trained) or walking (the BP paper's SmallCNN)", choices=MODEL_NAMES),
    Param("weights", str, None, "state_dict file of the model (default: the shared data folder's)"),
    Param("n_images", int, 1000, "attack the first N images of the dataset (0 = all)", low=0),
    Param("batch_size", int, 100, "images per attacked batch", low=1),
)


class AttackMethod(Method):
    """Base of the attack plugins (not registered itself)."""

    task = "adversarial"
    attack_params: tuple = ()

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        cls.params = tuple(cls.attack_params) + COMMON_PARAMS

    def attack_batch(self, model, x, y, gen):
        raise NotImplementedError

    def attack(self, model, x, y, seed: int = 0):
        """Attack tensors x (n, 1, 28, 28) in [0, 1] with labels y (n,) in batches; return (x_adv, iterations (n,))."""
        import torch
        gen = torch.Generator().manual_seed(int(seed))
        advs, its = [], []
        b = self.cfg["batch_size"]
        for i in range(0, len(x), b):
            xa, it = self.attack_batch(model, x[i:i + b], y[i:i + b], gen)
            if isinstance(it, int):
                it = torch.full((len(xa),), it)
            advs.append(xa.detach())
            its.append(torch.as_tensor(it).reshape(-1))
        return torch.cat(advs), torch.cat(its)

    def run(self, data, ctx) -> dict:
        import torch

        from .mnist_models import images_to_tensor, load_model, predict
        if getattr(data, "x", None) is None or np.asarray(data.x).ndim != 3:
            raise UserError(f"method '{self.name}' needs (n, 28, 28) images; dataset {getattr(data, 'name', '?')} "
                            f"has none")
        n = len(data.labels) if not self.cfg["n_images"] else min(self.cfg["n_images"], len(data.labels))
        idx = np.arange(n)
        model = load_model(self.cfg["model"], self.cfg["weights"])
        x = images_to_tensor(data.x[idx])
        y = torch.as_tensor(np.asarray(data.labels)[idx], dtype=torch.int64)
        clean_pred = predict(model, x).argmax(1)
        with ctx.phase("attack"):
            t0 = time.perf_counter()
            x_adv, iterations = self.attack(model, x, y, seed=ctx.seed)
            elapsed = time.perf_counter() - t0
        if x_adv.shape != x.shape or not torch.isfinite(x_adv).all():
            raise RuntimeError(f"attack '{self.name}' returned a bad batch: shape {tuple(x_adv.shape)}")
        adv_pred = predict(model, x_adv).argmax(1)
        return {
            "adversarial": x_adv.squeeze(1).clamp(0, 1).numpy(),
            "clean": x.squeeze(1).numpy(),
            "indices": idx,
            "clean_predictions": clean_pred.numpy(),
            "adv_predictions": adv_pred.numpy(),
            "iterations": iterations.numpy(),
            "time": elapsed,
            "timings": {"attack": elapsed, "per_image": elapsed / max(n, 1)},
            "stats": {"clean_accuracy": float((clean_pred == y).float().mean()) if n else 0.0},
        }
