"""asv benchmarks for the adversarial attacks (Part IV, slides 93-94): time per batch of 100 MNIST
images for BP vs C&W vs PGD vs DDN vs smooth C&W (smooth-adv) vs FGSM at fixed budgets of gradient
evaluations (time per image = the time / 100), and ``PhotoAttackSuite``: C&W and sC&W on one
224 x 224 photograph attacking the ImageNet EfficientNet-Lite0 (time per image directly).

Inputs (fixed seeds): the first 100 real MNIST test images and the BP paper's MNIST CNN when
``../shared/data`` is present, else 100 uniform-noise images and the same architecture with
seeded random weights (timings of the same operations; distortions then mean nothing). Torch runs
on 1 thread so that numbers are comparable across runs on shared machines. Run as a script
(``python benchmarks/bench_attacks.py``) to print the times once (best of 3).
"""
from __future__ import annotations

import time
from typing import ClassVar


def _inputs():
    import numpy as np
    import torch
    torch.set_num_threads(1)
    from visrep.methods.attacks.mnist_models import (
        load_model,
        make_mnist_net,
        mnist_to_tensor,
    )

    from visrep.context import shared_data_dir
    root = shared_data_dir()
    if root is not None and (root / "classification" / "mnist").is_dir() and \
            (root / "models" / "mnist_cnn_walking_on_the_edge.pth").exists():
        from visrep.datasets.mnist import read_mnist_split
        d = read_mnist_split(root / "classification" / "mnist", "test")
        return load_model("walking"), mnist_to_tensor(d.x[:100]), torch.as_tensor(d.labels[:100])
    torch.manual_seed(0)
    model = make_mnist_net("walking").eval()
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((100, 1, 28, 28), dtype=np.float32))
    return model, x, model(x).argmax(1).detach()


class AttackSuite:
    """One batch of 100 images, budgets in gradient evaluations per image."""

    timeout = 600
    params = ([20, 100],)
    param_names: ClassVar[list] = ["budget"]

    def setup(self, budget):
        self.model, self.x, self.y = _inputs()

    def time_bp(self, budget):
        from visrep.methods.attacks.boundary_projection import boundary_projection
        boundary_projection(self.model, self.x, self.y, iterations=budget)

    def time_ddn(self, budget):
        from visrep.methods.attacks.ddn import ddn
        ddn(self.model, self.x, self.y, iterations=budget)

    def time_cw(self, budget):
        from visrep.methods.attacks.carlini_wagner import carlini_wagner_l2
        steps = 1 if budget <= 20 else 5
        carlini_wagner_l2(self.model, self.x, self.y, binary_steps=steps, iterations=budget // steps)

    def time_smooth_cw(self, budget):
        from visrep.methods.attacks.smoothing import smooth_carlini_wagner
        steps = 1 if budget <= 20 else 5
        smooth_carlini_wagner(self.model, self.x, self.y, binary_steps=steps, iterations=budget // steps)

    def time_pgd_l2(self, budget):
        from visrep.methods.attacks.gradient import pgd
        pgd(self.model, self.x, self.y, 2.0, 2.5 * 2.0 / budget, budget, "l2")

    def time_pgd_linf(self, budget):
        from visrep.methods.attacks.gradient import pgd
        pgd(self.model, self.x, self.y, 0.3, 2.5 * 0.3 / budget, budget, "linf")

    def time_fgsm(self, budget):
        from visrep.methods.attacks.gradient import fgsm
        fgsm(self.model, self.x, self.y, 0.3)


class PhotoAttackSuite:
    """C&W (smooth-adv with alpha = 0) and sC&W on one photograph (chelsea, 224 x 224), EfficientNet-Lite0,
    2 binary-search steps x 5 iterations, the photo proxy's graph (lam 300, alpha 0.997, 50 CG iterations)."""

    timeout = 600

    def setup(self):
        import torch
        torch.set_num_threads(1)
        try:
            from visrep.datasets.adversarial_photos import PHOTOS, square_photo
            from visrep.datasets.sample_views import package_image_path
            from visrep.methods.attacks.imagenet_models import (
                load_imagenet_model,
                photos_to_tensor,
                predict_logits,
            )
            self.model = load_imagenet_model()
        except Exception as e:  # noqa: BLE001 -- asv skips a benchmark whose setup raises NotImplementedError
            raise NotImplementedError(f"EfficientNet-Lite0 is not available: {e}") from None
        self.x = photos_to_tensor(square_photo(package_image_path(*PHOTOS[0]), 224)[None])
        self.y = predict_logits(self.model, self.x).argmax(1)

    def _run(self, alpha):
        from visrep.methods.attacks.smoothing import smooth_carlini_wagner
        smooth_carlini_wagner(self.model, self.x, self.y, 2, 5, 1.0, 0.01, 0.0, alpha, 300.0, 50)

    def time_cw_photo(self):
        self._run(0.0)

    def time_smooth_cw_photo(self):
        self._run(0.997)


if __name__ == "__main__":
    for budget in AttackSuite.params[0]:
        s = AttackSuite()
        s.setup(budget)
        for name in ("time_bp", "time_ddn", "time_cw", "time_smooth_cw", "time_pgd_l2", "time_pgd_linf", "time_fgsm"):
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                getattr(s, name)(budget)
                best = min(best, time.perf_counter() - t0)
            print(f"budget {budget:4d}  {name[5:]:10s} {best:.3f} s / 100 images")
    p = PhotoAttackSuite()
    p.setup()
    for name in ("time_cw_photo", "time_smooth_cw_photo"):
        t0 = time.perf_counter()
        getattr(p, name)()
        print(f"photo       {name[5:]:16s} {time.perf_counter() - t0:.3f} s / image")
