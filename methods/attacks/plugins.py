"""The method plugins of methods/attacks/: `fgsm`, `pgd`, `bp`, `cw`, `ddn`, `smooth-adv`, `mnist-model` (talk Part IV).

Each class is named after its registered name; its parameters are declared as
``params = FAMILY_PARAMS + (...)`` and its numbers come from the kernels beside this file.
"""
from __future__ import annotations

from visrep.api import Method
from visrep.errors import UserError
from visrep.params import Param
from visrep.registry import register

from .boundary_projection import boundary_projection
from .carlini_wagner import carlini_wagner_l2
from .ddn import ddn
from .gradient import fgsm, pgd
from .mnist_models import MODEL_NAMES, load_model, predict
from .pipeline import ATTACK_PARAMS, AttackMethod
from .smoothing import smooth_carlini_wagner


@register
class FGSM(AttackMethod):
    name = "fgsm"
    summary = "fast gradient sign method: one L-inf step of size eps along sign(grad CE)"
    cite = "Goodfellow, Shlens & Szegedy, Explaining and harnessing adversarial examples, ICLR 2015"
    params = ATTACK_PARAMS + (Param("eps", float, 0.3, "L-inf radius (pixel values in [0, 1])", low=0),)

    def attack_batch(self, model, x, y, gen):
        return fgsm(model, x, y, self.cfg["eps"]), 1


@register
class PGD(AttackMethod):
    name = "pgd"
    summary = "projected gradient descent (L-inf or L2 ball), optional random start"
    cite = ("Madry, Makelov, Schmidt, Tsipras & Vladu, Towards deep learning models resistant to adversarial "
            "attacks, ICLR 2018")
    params = ATTACK_PARAMS + (
        Param("norm", str, "linf", "ball: linf or l2", choices=("linf", "l2")),
        Param("eps", float, None, "ball radius (default 0.3 for linf, 2.0 for l2; pixels in [0, 1])", low=0),
        Param("step", float, None, "step size (default 2.5 * eps / iterations)", low=0, open_low=True),
        Param("iterations", int, 40, "gradient steps", low=1),
        Param("random_start", bool, True, "start from a random point of the ball (Madry et al.)"),
    )

    def radius(self) -> float:
        eps = self.cfg["eps"]
        return eps if eps is not None else (0.3 if self.cfg["norm"] == "linf" else 2.0)

    def attack_batch(self, model, x, y, gen):
        eps = self.radius()
        step = self.cfg["step"] or 2.5 * eps / self.cfg["iterations"]
        adv = pgd(model, x, y, eps, step, self.cfg["iterations"], self.cfg["norm"], self.cfg["random_start"], gen)
        return adv, self.cfg["iterations"]


@register
class BP(AttackMethod):
    name = "bp"
    summary = "boundary projection: reach the boundary along the gradient, then walk on it reducing L2"
    cite = ("Zhang, Avrithis, Furon & Amsaleg, Walking on the edge: fast, low-distortion adversarial examples, "
            "IEEE TIFS 2021 (arXiv:1912.02153)")
    params = ATTACK_PARAMS + (
        Param("iterations", int, 20, "iterations K, one gradient each (paper: 20 and 100)", low=1),
        Param("gamma", float, 0.7, "schedule eps_i = gamma + (1 - gamma) i / K", low=0, high=1,
              open_low=True, open_high=True),
        Param("alpha", float, 1.0, "stage-1 step length (L2, pixels in [0, 1])", low=0, open_low=True),
        Param("levels", int, 256, "quantisation levels of every iterate (0: none)", low=0),
        Param("loss", str, "smoothed", "loss whose gradient gives the direction: smoothed (the authors' smoothed "
              "margin), margin (logit margin) or ce", choices=("smoothed", "margin", "ce")),
        Param("out_search", int, 7, "bisections of the OUT step length on the quantised distortion (authors: 7; "
              "0 = closed form on the real-valued line)", low=0),
        Param("min_in_step", float, 0.1, "minimum IN step length (authors: 0.1; 0 = none)", low=0),
    )

    def attack_batch(self, model, x, y, gen):
        c = self.cfg
        adv, _, _ = boundary_projection(model, x, y, c["iterations"], c["gamma"], c["alpha"], c["levels"], c["loss"],
                                        gen, c["out_search"], c["min_in_step"])
        return adv, self.cfg["iterations"]


@register
class CW(AttackMethod):
    name = "cw"
    summary = "Carlini & Wagner L2 (tanh box, Adam, binary search over c); small budget by default"
    cite = "Carlini & Wagner, Towards evaluating the robustness of neural networks, IEEE S&P 2017"
    params = ATTACK_PARAMS + (
        Param("binary_steps", int, 5, "binary-search steps over c (paper: 9)", low=1),
        Param("iterations", int, 20, "Adam iterations per binary step (paper: up to 10,000)", low=1),
        Param("initial_const", float, 1.0, "first c of the search (paper: 1e-3)", low=0, open_low=True),
        Param("lr", float, 0.01, "Adam learning rate (paper: 0.01)", low=0, open_low=True),
        Param("kappa", float, 0.0, "confidence margin kappa of f", low=0),
    )

    def attack_batch(self, model, x, y, gen):
        adv, _, _ = carlini_wagner_l2(model, x, y, self.cfg["binary_steps"], self.cfg["iterations"],
                                      self.cfg["initial_const"], self.cfg["lr"], self.cfg["kappa"])
        return adv, self.cfg["binary_steps"] * self.cfg["iterations"]


@register
class DDN(AttackMethod):
    name = "ddn"
    summary = "decoupling direction and norm: fixed-budget L2 attack adapting the norm up/down by gamma"
    cite = ("Rony, Hafemann, Oliveira, Ben Ayed, Sabourin & Granger, Decoupling direction and norm for efficient "
            "gradient-based L2 adversarial attacks and defenses, CVPR 2019")
    params = ATTACK_PARAMS + (
        Param("iterations", int, 100, "iterations K (one gradient each)", low=1),
        Param("gamma", float, 0.05, "norm update factor", low=0, high=1, open_low=True, open_high=True),
        Param("init_norm", float, 1.0, "initial norm eps_0", low=0, open_low=True),
        Param("alpha", float, 1.0, "initial step (cosine-annealed to alpha / 100)", low=0, open_low=True),
        Param("levels", int, 256, "quantisation levels of every iterate (0: none)", low=0),
    )

    def attack_batch(self, model, x, y, gen):
        adv, _ = ddn(model, x, y, self.cfg["iterations"], self.cfg["gamma"], self.cfg["init_norm"],
                     self.cfg["alpha"], self.cfg["levels"], gen)
        return adv, self.cfg["iterations"]


@register
class SmoothAdv(AttackMethod):
    name = "smooth-adv"
    summary = ("smooth C&W (sC&W): perturbation phi(z) Laplacian-smoothed on the attacked image's graph "
               "(CG solve of I - alpha D^-1/2 W D^-1/2), Adam, binary search over c")
    cite = ("Zhang, Avrithis, Furon & Amsaleg, Smooth adversarial examples, EURASIP J. Information Security "
            "2020:15 (arXiv:1903.11862)")
    params = ATTACK_PARAMS + (
        Param("alpha", float, 0.95, "smoothing alpha of L_alpha = I - alpha W_n (authors' MNIST graphs: 0.95; "
              "0 = no smoothing, C&W with a clipped box)", low=0, high=1, open_high=True),
        Param("lam", float, 10.0, "graph weights exp(-lam (x_i - x_j)^2), pixels in [0, 1] (authors' MNIST: 10)",
              low=0),
        Param("cg_iterations", int, 50, "conjugate-gradient iterations of each solve (authors' code: 50)", low=1),
        Param("binary_steps", int, 5, "binary-search steps over c (as the cw plugin)", low=1),
        Param("iterations", int, 20, "Adam iterations per binary step (as the cw plugin)", low=1),
        Param("initial_const", float, 1.0, "first c of the search (as the cw plugin)", low=0, open_low=True),
        Param("lr", float, 0.1, "Adam learning rate on z, pixel space (authors' MNIST script: 0.1)", low=0,
              open_low=True),
        Param("kappa", float, 0.0, "confidence margin kappa", low=0),
    )

    def attack_batch(self, model, x, y, gen):
        c = self.cfg
        adv, _, _ = smooth_carlini_wagner(model, x, y, c["binary_steps"], c["iterations"], c["initial_const"],
                                          c["lr"], c["kappa"], c["alpha"], c["lam"], c["cg_iterations"])
        return adv, c["binary_steps"] * c["iterations"]


@register
class MnistModel(Method):
    """Classify the MNIST test images with one of the three trained models (sanity check of the weights)."""

    name = "mnist-model"
    task = "classification"
    summary = "trained MNIST CNNs (LeNet5 clean/adv-trained, BP paper's SmallCNN): logits for the classification protocol"
    cite = ("Zhang, Avrithis, Furon & Amsaleg, Walking on the edge, TIFS 2021 (SmallCNN); "
            "advertorch LeNet5 (Ding, Wang & Jin, arXiv:1902.07623)")
    params = (Param("model", str, "walking", "which trained model", choices=MODEL_NAMES),
              Param("weights", str, None, "state_dict file (default: the shared data folder's)"))

    def run(self, data, ctx) -> dict:
        model = load_model(self.cfg["model"], self.cfg["weights"])
        if getattr(data, "x", None) is None:
            raise UserError(f"method 'mnist-model' needs images in {data.name}")
        with ctx.phase("online"):
            scores = predict(model, data.x).numpy()
        return {"scores": scores, "predictions": scores.argmax(1),
                "timings": {"query": ctx.timings["online"] / max(len(scores), 1)}}
