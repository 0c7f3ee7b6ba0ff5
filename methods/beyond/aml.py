"""Asymmetric metric learning (AML) kernels: losses, teacher-space tuples, the student, its training.

Budnik & Avrithis, "Asymmetric metric learning for knowledge transfer", CVPR 2021 (arXiv 2006.16331).
A fixed teacher ``g`` embeds the database; a smaller student ``f`` is trained so that its embedding
of an *anchor* lives in the teacher's space: every pair-based loss is made asymmetric by taking the
anchor from the student and its positives / negatives from the teacher (paper Sec. 3, Fig. 1(d)):

    L(theta) = sum_a  l( f(x_a), { g(x_p) : p in P(a) }, { g(x_n) : n in N(a) } )

with, for the contrastive loss (Radenović et al.'s form, which the authors' code builds on)

    l_C(a, P, N) = 1/2 sum_{p in P} ||a - p||^2 + 1/2 sum_{n in N} [m - ||a - n||]_+^2 ,

*regression* (absolute knowledge transfer) being the special case P(a) = {a}, N(a) = {} (the anchor
attracted to its own teacher vector), and *Contr+* the contrastive loss whose positives also include
the anchor's own teacher vector. Asymmetric testing: student queries against the teacher database;
symmetric testing: student against student.

Torch is imported inside the functions (plugin modules are imported when a registry is listed).
"""
from __future__ import annotations

import numpy as np

from visrep.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LOSSES = ("contrastive", "contrastive+", "regression")


# ----------------------------------------------------------------------------------------- losses
def asymmetric_contrastive_loss(anchor, pos, pos_mask, neg, neg_mask, margin: float):
    """Asymmetric contrastive loss (paper Sec. 3; contrastive form of Radenović et al.), mean over anchors.

    anchor (B, d): student vectors f(x_a); pos (B, P, d), neg (B, N, d): teacher vectors g(x_p), g(x_n);
    pos_mask (B, P), neg_mask (B, N) bool (padding slots False). Returns a scalar tensor
    ``mean_a [ 1/2 sum_p ||a - p||^2 + 1/2 sum_n max(0, m - ||a - n||)^2 ]``.
    """
    import torch
    a = anchor[:, None, :]
    dp = ((a - pos) ** 2).sum(-1)                                        # (B, P) squared distances
    dn = torch.sqrt(((a - neg) ** 2).sum(-1) + 1e-12)                    # (B, N) distances
    lp = 0.5 * (dp * pos_mask.to(dp.dtype)).sum(1)
    ln = 0.5 * (torch.clamp(margin - dn, min=0) ** 2 * neg_mask.to(dn.dtype)).sum(1)
    return (lp + ln).mean()


def regression_loss(student, teacher):
    """Regression (absolute knowledge transfer; paper Sec. 3, P(a) = {a}, N(a) = {}): mean_a 1/2 ||f(x_a) - g(x_a)||^2.

    student, teacher: (B, d) tensors. Returns a scalar tensor.
    """
    return 0.5 * ((student - teacher) ** 2).sum(1).mean()


# ------------------------------------------------------------------------------- tuple selection
def teacher_tuples(T: np.ndarray, k_pos: int, n_neg: int, neg_after: int, labels: np.ndarray | None = None,
                   self_positive: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Positives P(a) and hard negatives N(a) of every anchor, chosen in the teacher's space.

    T (n, d) L2-normalized teacher vectors of the training images. Unsupervised (``labels`` None):
    P(a) = the ``k_pos`` nearest teacher neighbours of a (pseudo-positives), N(a) = the ``n_neg``
    nearest among those ranked after the first ``neg_after`` neighbours. Supervised (``labels`` (n,)
    int): P(a) = the ``k_pos`` nearest with a's label, N(a) = the ``n_neg`` nearest with another label
    (hard negatives, mined with the teacher as in the paper). ``self_positive`` (Contr+) puts a itself
    first in P(a). Returns (pos (n, P) int64, neg (n, N) int64), -1 where a slot is empty.
    """
    T = np.asarray(T, np.float32)
    n = len(T)
    S = T @ T.T
    np.fill_diagonal(S, -np.inf)
    order = np.argsort(-S, axis=1, kind="stable")[:, : n - 1]          # neighbours, self excluded
    if labels is None:
        pos = order[:, :k_pos]
        rest = order[:, neg_after:]
        neg = rest[:, :n_neg]
    else:
        labels = np.asarray(labels)
        same = labels[order] == labels[:, None]                        # (n, n-1) in neighbour order
        pos = _first_where(order, same, k_pos)
        neg = _first_where(order, ~same, n_neg)
    pos = _pad(pos, k_pos)
    neg = _pad(neg, n_neg)
    if self_positive:
        pos = np.concatenate([np.arange(n)[:, None], pos], axis=1)
    return pos.astype(np.int64), neg.astype(np.int64)


def _first_where(order: np.ndarray, ok: np.ndarray, k: int) -> np.ndarray:
    """Per row, the first k entries of `order` where `ok`; -1 padding. (n, k)."""
    rank = np.where(ok, np.cumsum(ok, axis=1) - 1, k)                  # position among the kept ones
    out = np.full((len(order), k), -1, np.int64)
    r, c = np.nonzero(rank < k)
    out[r, rank[r, c]] = order[r, c]
    return out


def _pad(a: np.ndarray, k: int) -> np.ndarray:
    a = np.asarray(a, np.int64)
    if a.shape[1] < k:
        a = np.concatenate([a, np.full((len(a), k - a.shape[1]), -1, np.int64)], axis=1)
    return a


# ------------------------------------------------------------------------------------ the student
def make_student(arch: str, dim: int, weights: str | None = None):
    """The student f: a convolutional trunk, GeM pooling (p = 3), a linear layer to the teacher's
    dimension ``dim`` (as the authors' code makes the student's last layer match the teacher) and L2
    normalization. ``arch``: 'tiny' (four 3x3 conv-BN-ReLU layers, stride 2, 16-32-64-128 channels)
    or a torchvision model name (built with weights=None: random init, nothing downloaded), filled
    from ``weights`` (a state dict of that network) when given. Module: (B, 3, h, w) -> (B, dim);
    'tiny' runs in channels-last memory."""
    import torch
    from torch import nn

    if arch == "tiny":
        layers, c = [], 3
        for out in (16, 32, 64, 128):
            layers += [nn.Conv2d(c, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            c = out
        trunk = nn.Sequential(*layers)
    else:
        import torchvision
        from visrep.methods.cnn.backbones import (
            make_architecture,
            match_state_dict,
            retrieval_trunk,
        )
        if arch not in torchvision.models.list_models():
            raise UserError(f"student '{arch}': not 'tiny' nor a torchvision model name")
        model = make_architecture(arch)
        if weights:
            from pathlib import Path

            from visrep.methods.cnn.backbones import _read_state_dict
            sd = match_state_dict(model.state_dict(), _read_state_dict(Path(weights)), f"student weights {weights}")
            model.load_state_dict(sd, strict=True)
        trunk = retrieval_trunk(model, arch)
        with torch.no_grad():
            c = int(trunk(torch.zeros(1, 3, 64, 64)).shape[1])

    class Student(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = trunk
            self.fc = nn.Linear(c, dim)

        def forward(self, x):
            if tiny:
                x = x.contiguous(memory_format=torch.channels_last)
            f = torch.relu(self.trunk(x)).clamp(min=1e-6)
            v = f.pow(3).mean(dim=(2, 3)).pow(1.0 / 3)                     # GeM, p = 3
            return nn.functional.normalize(self.fc(v), dim=1)

    tiny = arch == "tiny"
    student = Student()
    if tiny:   # channels-last: a training step ~1.35x faster on one CPU thread (batch 16 at 64: 15 -> 11 ms)
        student.to(memory_format=torch.channels_last)
    return student


def to_tensor(image: np.ndarray, size: int, square: bool = False):
    """HxWx3 uint8 RGB -> (1, 3, h, w) float32, ImageNet-normalized; longer side ``size`` (aspect kept),
    or ``size`` x ``size`` when ``square``."""
    import torch
    import torch.nn.functional as F
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    x = torch.from_numpy(np.ascontiguousarray(img[..., :3])).permute(2, 0, 1).float()[None] / 255.0
    h, w = x.shape[-2:]
    if square:
        hw = (size, size)
    else:
        s = size / max(h, w)
        hw = (max(1, round(h * s)), max(1, round(w * s)))
    x = F.interpolate(x, size=hw, mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def square_uint8(image: np.ndarray, size: int):
    """HxWx3 uint8 RGB -> (3, size, size) uint8 tensor (training images are kept as bytes: 4x less memory
    than floats; :func:`train_student` normalizes each batch)."""
    import torch
    x = to_tensor(image, size, square=True)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((x * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)[0]


def _normalize(x):
    """(B, 3, s, s) uint8 -> ImageNet-normalized float32."""
    import torch
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x.float() / 255.0 - mean) / std


def _augment(x, gen, min_scale: float = 0.5):
    """Random resized crop (area scale in [min_scale, 1], back to the input size) and horizontal flip
    of each image of a (B, 3, s, s) batch, from the torch generator `gen`."""
    import torch
    import torch.nn.functional as F
    B, _, s, _ = x.shape
    out = torch.empty_like(x)
    r = torch.rand(B, 4, generator=gen)
    for i in range(B):
        side = max(4, round(s * float(min_scale + (1 - min_scale) * r[i, 0]) ** 0.5))
        y0 = int(r[i, 1] * (s - side + 1))
        x0 = int(r[i, 2] * (s - side + 1))
        crop = x[i:i + 1, :, y0:y0 + side, x0:x0 + side]
        crop = F.interpolate(crop, size=(s, s), mode="bilinear", align_corners=False)
        out[i] = crop[0].flip(-1) if r[i, 3] < 0.5 else crop[0]
    return out


def train_student(X, T: np.ndarray, pos: np.ndarray, neg: np.ndarray, *, arch: str = "tiny",
                  weights: str | None = None, loss: str = "contrastive", margin: float = 0.7, epochs: int = 10,
                  batch: int = 16, lr: float = 1e-3, weight_decay: float = 1e-6, augment: bool = True,
                  seed: int = 0, progress=None):
    """Train the student with an asymmetric loss on fixed teacher vectors; returns (model, loss per epoch).

    X (n, 3, s, s) tensor: the training images, normalized float32 or uint8 bytes (:func:`square_uint8`,
    normalized per batch); T (n, d) their teacher vectors (fixed, from
    the teacher: only anchors pass through the student); pos (n, P), neg (n, N) int64 tuple indices
    into T (-1 = empty; :func:`teacher_tuples`). ``loss``: 'contrastive' / 'contrastive+'
    (:func:`asymmetric_contrastive_loss` on those tuples; Contr+ tuples carry the anchor itself) or
    'regression' (:func:`regression_loss`). Adam, ``epochs`` passes over shuffled anchors. Seeded:
    same inputs and seed, same model (single-threaded CPU).
    """
    import torch
    if loss not in LOSSES:
        raise UserError(f"loss '{loss}': expected one of {', '.join(LOSSES)}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    n, d = T.shape
    model = make_student(arch, d, weights)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    Tt = torch.from_numpy(np.asarray(T, np.float32))
    Tpad = torch.cat([Tt, torch.zeros(1, d)])                            # index -1 -> a zero row
    pos_t, neg_t = torch.from_numpy(pos), torch.from_numpy(neg)
    history = []
    epochs_it = range(epochs) if progress is None else progress(range(epochs))
    for _ in epochs_it:
        model.train()
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for start in range(0, n, batch):
            idx = perm[start:start + batch]
            if len(idx) < 2 and n >= 2:                                  # BatchNorm needs 2 anchors
                idx = perm[max(0, n - 2):]
            xb = X[idx]
            if xb.dtype == torch.uint8:
                xb = _normalize(xb)
            if augment:
                xb = _augment(xb, gen)
            a = model(xb)
            if loss == "regression":
                value = regression_loss(a, Tt[idx])
            else:
                p, q = pos_t[idx], neg_t[idx]
                value = asymmetric_contrastive_loss(a, Tpad[p], p >= 0, Tpad[q], q >= 0, margin)
            opt.zero_grad()
            value.backward()
            opt.step()
            total += float(value.detach()) * len(idx)
        history.append(total / n)
    model.eval()
    return model, np.asarray(history)


def embed_student(model, images, size: int) -> np.ndarray:
    """Student vectors of an iterable of HxWx3 uint8 images, longer side ``size`` -> (n, d) float32."""
    import torch
    out = []
    with torch.inference_mode():
        for img in images:
            out.append(model(to_tensor(img, size))[0].numpy())
    return np.stack(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)


def asymmetric_scores(queries: np.ndarray, database: np.ndarray) -> np.ndarray:
    """(n_db, n_q) cosine similarities of student queries (n_q, d) with database vectors (n_db, d):
    asymmetric testing when the database is the teacher's, symmetric when it is the student's."""
    q, x = np.asarray(queries, np.float32), np.asarray(database, np.float32)
    if q.shape[1] != x.shape[1]:
        raise UserError(f"student queries are {q.shape[1]}-d but the database vectors {x.shape[1]}-d")
    return x @ q.T
