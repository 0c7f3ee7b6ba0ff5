"""Mean teacher, pseudo-labels, and the two-stream training loop they share (talk Part III).

- Mean teacher (Tarvainen & Valpola, *Mean teachers are better role models: weight-averaged
  consistency targets improve semi-supervised deep learning results*, NIPS 2017): the teacher's
  weights are an exponential moving average of the student's, ``theta'_t = alpha theta'_{t-1} +
  (1 - alpha) theta_t`` (Sec. 2, Eq. 2), with ``alpha_t = min(1 - 1 / (t + 1), alpha)`` in the
  authors' code (the true average while it is the better estimate); the consistency cost is the
  squared difference of the softmax outputs of student and teacher on differently perturbed
  copies of the same input, ``J = E ||f(x, theta', eta') - f(x, theta, eta)||^2`` (Eq. 1; divided
  by the number of classes as in the authors' ``softmax_mse_loss``), weighted by ``w(t) = w_max
  exp(-5 (1 - T)^2)``, ``T = min(t / rampup, 1)`` (the sigmoid-shaped ramp-up of Laine & Aila,
  their App. B). Perturbations: random translations by up to 2 pixels and Gaussian input noise
  (sigma 0.15), drawn independently for student and teacher (their App. B).
- Pseudo-label (Lee, *Pseudo-label: the simple and efficient semi-supervised learning method for
  deep neural networks*, ICML 2013 Workshop on Challenges in Representation Learning): the class
  of maximum predicted probability of each unlabelled item, recomputed at every weight update
  (Eq. 1), used as if it were true in ``L = 1/n sum_labelled CE + alpha(t) 1/n' sum_unlabelled
  CE(pseudo)`` (Eq. 15) with ``alpha(t) = 0`` for ``t < T1``, ``alpha_f (t - T1) / (T2 - T1)``
  for ``T1 <= t < T2``, ``alpha_f`` after (Eq. 16; paper: alpha_f = 3, T1 = 100, T2 = 600 epochs).
  ``threshold`` (not in the paper, whose value 0 keeps every item) drops pseudo-labels whose
  maximum probability is below it.
- MT + DLP (Iscen, Tolias, Avrithis & Chum, CVPR 2019, Sec. 3.4 / their code's ``isMT``): the
  DLP rounds of :mod:`.label_propagation` (features of the student, Eqs. 9-12) with the mean
  teacher's consistency cost added to the weighted classification loss.

Shapes: images x (n, C, H, W) float32 torch in [0, 1]; logits (B, c); per-item losses (B,).
"""
from __future__ import annotations

import math

import numpy as np

from visrep.errors import UserError

CITE_MT = ("Tarvainen & Valpola, Mean teachers are better role models: weight-averaged consistency targets "
           "improve semi-supervised deep learning results, NIPS 2017")
CITE_PL = ("Lee, Pseudo-label: the simple and efficient semi-supervised learning method for deep neural "
           "networks, ICML 2013 Workshop on Challenges in Representation Learning")


# ---------------------------------------------------------------- schedules (scalars)
def sigmoid_rampup(t: float, length: float) -> float:
    """``exp(-5 (1 - T)^2)``, ``T = clip(t / length, 0, 1)``; 1 when ``length <= 0`` (MT App. B)."""
    if length <= 0:
        return 1.0
    p = min(max(float(t) / float(length), 0.0), 1.0)
    return float(math.exp(-5.0 * (1.0 - p) ** 2))


def ema_decay_at(step: int, alpha: float) -> float:
    """alpha_t = min(1 - 1 / (step + 1), alpha): the true mean of the first steps, then alpha."""
    return min(1.0 - 1.0 / (int(step) + 1), float(alpha))


def pseudo_label_weight(t: float, t1: float, t2: float, alpha_f: float) -> float:
    """alpha(t) of Lee 2013, Eq. 16 (t, T1, T2 in epochs; T2 > T1)."""
    if t2 <= t1:
        raise UserError(f"pseudo-label schedule needs T2 > T1, got T1 = {t1}, T2 = {t2}")
    if t < t1:
        return 0.0
    if t < t2:
        return float(alpha_f) * (float(t) - t1) / (t2 - t1)
    return float(alpha_f)


# ---------------------------------------------------------------- tensors
def ema_update(teacher, student, alpha: float) -> None:
    """In place, for every parameter: ``theta' <- alpha theta' + (1 - alpha) theta`` (MT Eq. 2).

    Buffers (batch-norm statistics) are not averaged: the teacher keeps its own, updated by its own
    forward passes in training mode, as in the authors' code.
    """
    import torch
    with torch.no_grad():
        for tp, sp in zip(teacher.parameters(), student.parameters()):
            tp.mul_(alpha).add_(sp.detach(), alpha=1.0 - alpha)


def softmax_mse(student_logits, teacher_logits):
    """(B,) ``sum_c (softmax(s)_c - softmax(t)_c)^2 / c`` -- the consistency cost of MT (Eq. 1).

    The teacher side carries no gradient.
    """
    import torch.nn.functional as F
    c = student_logits.shape[1]
    d = F.softmax(student_logits, dim=1) - F.softmax(teacher_logits.detach(), dim=1)
    return (d * d).sum(1) / c


def pseudo_label_targets(logits, threshold: float = 0.0):
    """(targets (B,) int64 = argmax (Lee Eq. 1), keep (B,) bool = max probability >= threshold)."""
    import torch
    with torch.no_grad():
        p = torch.softmax(logits.detach(), dim=1)
        conf, y = p.max(1)
    return y, conf >= threshold


def perturb(x, max_shift: int, sigma: float, generator, flip: bool = False, pad: str = "zeros",
            rotate: float = 0.0):
    """Random rotation by an angle uniform in [-rotate, rotate] degrees about the centre (nearest pixel, zeros
    outside: torchvision's RandomRotation, the DLP code on miniImageNet), random horizontal flip with
    probability 1/2 (``flip``; the MT and DLP code), random translation by up to ``max_shift`` pixels (``pad``
    'zeros', or 'reflect' as the MT code's RandomTranslateWithReflect) plus Gaussian noise of std ``sigma``:
    the input noise of MT (App. B). x (B, C, H, W) on any device -> same shape and device; the random numbers
    come from the CPU `generator`."""
    import torch
    b, _, h, w = x.shape
    dev = x.device
    if rotate > 0:
        import torch.nn.functional as F
        a = (torch.rand(b, generator=generator) * 2 - 1) * math.radians(rotate)
        c, s_ = torch.cos(a), torch.sin(a)
        theta = torch.zeros(b, 2, 3)                       # normalized coordinates; aspect ratio kept
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = c, -s_ * h / w, s_ * w / h, c
        grid = F.affine_grid(theta.to(dev), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    if flip:
        f = (torch.rand(b, generator=generator) < 0.5).to(dev)
        x = torch.where(f[:, None, None, None], x.flip(3), x)
    if max_shift > 0:
        s = int(max_shift)
        xp = torch.nn.functional.pad(x, (s, s, s, s), mode="reflect" if pad == "reflect" else "constant")
        dy = torch.randint(0, 2 * s + 1, (b,), generator=generator)
        dx = torch.randint(0, 2 * s + 1, (b,), generator=generator)
        rows = (torch.arange(h)[None, :] + dy[:, None])[:, :, None].to(dev)          # (B, H, 1)
        cols = (torch.arange(w)[None, :] + dx[:, None])[:, None, :].to(dev)          # (B, 1, W)
        x = xp.permute(0, 2, 3, 1)[torch.arange(b, device=dev)[:, None, None], rows, cols].permute(0, 3, 1, 2)
    if sigma > 0:
        x = x + sigma * torch.randn(x.shape, generator=generator).to(dev)
    return x


# ---------------------------------------------------------------- losses and the loop
def mt_loss(y, is_lab, consistency: float, rampup: float, weights=None):
    """Loss of a mean-teacher step: ``sum_i w_i CE(s_i, y_i) / B + w(t) sum_i J_i / B`` (MT Eq. 1; DLP Eq. 12).

    ``y`` (n,) targets (-1 where none), ``is_lab`` (n,) bool items with a target, ``weights`` (n,)
    per-item weights (DLP's omega_i zeta_{y_i}; ones by default).
    """
    import torch.nn.functional as F

    def loss(s, t, idx, ep):
        b = len(idx)
        m = is_lab[idx]
        ce = F.cross_entropy(s[m], y[idx][m], reduction="none")
        if weights is not None:
            ce = ce * weights[idx][m]
        return ce.sum() / b + consistency * sigmoid_rampup(ep, rampup) * softmax_mse(s, t).sum() / b
    return loss


def two_stream_batches(labelled: np.ndarray, unlabelled: np.ndarray, batch: int, labelled_per_batch: int,
                       generator) -> list:
    """One epoch of batches of ``labelled_per_batch`` labelled + the rest unlabelled items (index tensors).

    An epoch is one pass over the unlabelled items; the labelled ones are cycled (reshuffled each
    cycle), as the TwoStreamBatchSampler of the MT / DLP code. Without unlabelled items: batches of
    labelled items only.
    """
    import torch
    if len(labelled) == 0:
        raise UserError("semi-supervised training needs at least one labelled item")
    if len(unlabelled) == 0:
        p = labelled[torch.randperm(len(labelled), generator=generator).numpy()]
        return [torch.from_numpy(p[s:s + batch]) for s in range(0, len(p), batch)]
    nl = max(1, min(labelled_per_batch, batch - 1))
    nu = batch - nl
    pu = unlabelled[torch.randperm(len(unlabelled), generator=generator).numpy()]
    n_b = -(-len(pu) // nu)
    reps = -(-n_b * nl // len(labelled))
    pl = np.concatenate([labelled[torch.randperm(len(labelled), generator=generator).numpy()] for _ in range(reps)])
    return [torch.from_numpy(np.concatenate([pl[b * nl:(b + 1) * nl], pu[b * nu:(b + 1) * nu]])) for b in range(n_b)]


def train_two_stream(model, x, labelled: np.ndarray, unlabelled: np.ndarray, epochs: int, loss_fn, *,
                     lr: float = 0.05, batch: int = 100, labelled_per_batch: int = 50, seed: int = 0,
                     weight_decay: float = 2e-4, teacher=None, ema_decay: float = 0.99,
                     ema_decay_after: float | None = None, rampup_epochs: float = 0.0, max_shift: int = 2,
                     sigma: float = 0.15, flip: bool = False, pad: str = "zeros", rotate: float = 0.0,
                     epoch_offset: float = 0.0,
                     total_epochs: float | None = None,
                     step_offset: int = 0, progress=None) -> tuple[list, int]:
    """SGD (Nesterov momentum 0.9, cosine-annealed lr) over two-stream batches; returns (losses per epoch, steps).

    ``loss_fn(student_logits (B, c), teacher_logits (B, c) or None, idx (B,) tensor, t) -> scalar``
    with ``t`` the fractional epoch since ``epoch_offset`` + the epochs before. With a ``teacher``
    (same architecture), it sees its own perturbation of the batch (training mode, no gradient) and
    is EMA-updated after every step with ``ema_decay`` during the ramp-up and ``ema_decay_after``
    (default: the same) after it. ``total_epochs`` (default epoch_offset + epochs) sets the cosine
    schedule, so a training split in stages follows one schedule. Images, perturbations and losses stay on
    the CPU; each perturbed batch goes to the networks' device and the logits come back.
    """
    import torch

    from .convnets import module_device
    dev = module_device(model)
    labelled = np.asarray(labelled, dtype=np.int64)
    unlabelled = np.asarray(unlabelled, dtype=np.int64)
    g = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9,
                          weight_decay=weight_decay, nesterov=True)
    total = float(total_epochs if total_epochs is not None else epoch_offset + epochs)
    history, step = [], int(step_offset)
    model.train()
    if teacher is not None:
        teacher.train()
        for p in teacher.parameters():
            p.requires_grad_(False)
    it = range(epochs) if progress is None else progress(range(epochs), desc="train", total=epochs, unit="epoch")
    for e in it:
        batches = two_stream_batches(labelled, unlabelled, batch, labelled_per_batch, g)
        tot, seen = 0.0, 0
        for j, idx in enumerate(batches):
            if len(idx) < 2:
                continue
            t = epoch_offset + e + j / len(batches)
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * min(t / total, 1.0)))
            xb = x[idx]
            s_logits = model(perturb(xb, max_shift, sigma, g, flip, pad, rotate).to(dev)).cpu()
            t_logits = None
            if teacher is not None:
                with torch.no_grad():
                    t_logits = teacher(perturb(xb, max_shift, sigma, g, flip, pad, rotate).to(dev)).cpu()
            loss = loss_fn(s_logits, t_logits, idx, t)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if teacher is not None:
                a = ema_decay if (ema_decay_after is None or t < rampup_epochs) else ema_decay_after
                ema_update(teacher, model, ema_decay_at(step, a))
            tot += float(loss.detach()) * len(idx)
            seen += len(idx)
        history.append(tot / max(seen, 1))
    model.eval()
    if teacher is not None:
        teacher.eval()
    return history, step


def copy_model(model):
    """A deep copy (the teacher starts as the student; MT code: same initialisation)."""
    import copy
    return copy.deepcopy(model)
