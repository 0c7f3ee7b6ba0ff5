"""Family base classes and run-context helpers of this chapter (talk Part IV).

They hold what the plugins of a family share (parameters, the run loop, cached intermediates);
the numerical work is in the kernel modules beside this file.
"""
from __future__ import annotations

import time

import numpy as np

from visrep.api import Method
from visrep.errors import UserError
from visrep.params import Param, check_at_most

from .imagenet_models import IMAGENET_MODEL_NAMES
from .mnist_models import MODEL_NAMES

ATTACK_PARAMS = (
    Param("model", str, "walking", "target model: clean / adv (advertorch LeNet5, normally / adversarially "
          "trained) or walking (the BP paper's SmallCNN) on MNIST; efficientnet-lite0 (the real ImageNet "
          "network, [0, 1] RGB photos, labels = its own top-1 on the clean image)",
          choices=MODEL_NAMES + IMAGENET_MODEL_NAMES),
    Param("weights", str, None, "state_dict file of the model (default: the shared data folder's)"),
    Param("n_images", int, 1000, "attack the first N images of the dataset (0 = all)", low=0),
    Param("batch_size", int, 100, "images per attacked batch", low=1),
)


class AttackMethod(Method):
    """Base of the attack plugins (not registered itself)."""

    task = "adversarial"
    params = ATTACK_PARAMS

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

    def _chosen(self, data, ndim: int, missing: str) -> np.ndarray:
        """Indices (n,) of the images to attack: the first ``n_images`` (0 = all); UserError `missing`
        when the dataset has no ``ndim``-dimensional image array."""
        if getattr(data, "x", None) is None or np.asarray(data.x).ndim != ndim:
            raise UserError(missing)
        check_at_most(self.cfg["n_images"], len(data.labels), "n_images", f"method '{self.name}'",
                      f"{getattr(data, 'name', 'the dataset')} has {len(data.labels)} images", "or n_images=0 for all")
        return np.arange(self.cfg["n_images"] or len(data.labels))

    def _timed_attack(self, model, x, y, ctx):
        """:meth:`attack` under the "attack" phase -> (x_adv, iterations, seconds); a bad batch is an error."""
        import torch
        with ctx.phase("attack"):
            t0 = time.perf_counter()
            x_adv, iterations = self.attack(model, x, y, seed=ctx.seed)
            elapsed = time.perf_counter() - t0
        if x_adv.shape != x.shape or not torch.isfinite(x_adv).all():
            raise RuntimeError(f"attack '{self.name}' returned a bad batch: shape {tuple(x_adv.shape)}")
        return x_adv, iterations, elapsed

    def run(self, data, ctx) -> dict:
        import torch

        if self.cfg["model"] in IMAGENET_MODEL_NAMES:
            return self.run_photos(data, ctx)
        from .mnist_models import (
            load_model,
            mnist_to_tensor,
            predict,
        )
        idx = self._chosen(data, 3, f"method '{self.name}' needs (n, 28, 28) images; dataset "
                                    f"{getattr(data, 'name', '?')} has none")
        n = len(idx)
        model = load_model(self.cfg["model"], self.cfg["weights"])
        x = mnist_to_tensor(data.x[idx])
        y = torch.as_tensor(np.asarray(data.labels)[idx], dtype=torch.int64)
        clean_pred = predict(model, x).argmax(1)
        x_adv, iterations, elapsed = self._timed_attack(model, x, y, ctx)
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

    def run_photos(self, data, ctx) -> dict:
        """Attack RGB photographs (n, H, W, 3) with the ImageNet network named by ``model``.

        The photographs have no ImageNet ground truth: the label attacked is the network's own top-1
        class on the clean image (so every image is attacked and "success" = the top-1 changed).
        Outputs as :meth:`run`, with ``success`` (n,) instead of the predictions against the
        dataset's labels, ``clean_top1`` / ``adv_top1`` (n,) and ``adversarial`` / ``clean``
        (m, H, W, 3) float32 in [0, 1].
        """
        from .imagenet_models import (
            load_imagenet_model,
            photos_to_tensor,
            predict_logits,
        )
        idx = self._chosen(data, 4, f"method '{self.name}' with model={self.cfg['model']} needs (n, H, W, 3) "
                                    f"photographs; dataset {getattr(data, 'name', '?')} has none (use photos-adversarial)")
        n = len(idx)
        model = load_imagenet_model(self.cfg["model"], self.cfg["weights"])
        x = photos_to_tensor(data.x[idx])
        y = predict_logits(model, x).argmax(1)
        x_adv, iterations, elapsed = self._timed_attack(model, x, y, ctx)
        x_adv = x_adv.clamp(0, 1)
        adv_top1 = predict_logits(model, x_adv).argmax(1)
        return {
            "adversarial": x_adv.permute(0, 2, 3, 1).numpy(),
            "clean": x.permute(0, 2, 3, 1).numpy(),
            "indices": idx,
            "success": (adv_top1 != y).numpy(),
            "clean_top1": y.numpy(),
            "adv_top1": adv_top1.numpy(),
            "iterations": iterations.numpy(),
            "time": elapsed,
            "timings": {"attack": elapsed, "per_image": elapsed / max(n, 1)},
        }
