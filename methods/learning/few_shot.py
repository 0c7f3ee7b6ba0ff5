"""Few-shot learning: dense classification, implanting, and the cosine-classifier (GAP) baseline.

Lifchitz, Avrithis, Picard & Bursuc, *Dense classification and implanting for few-shot
learning*, CVPR 2019 (the talk's slides 86-90), on top of the cosine-similarity classifier of
Gidaris & Komodakis (CVPR 2018) / Qi, Brown & Lowe (imprinted weights, CVPR 2018).

Base training (base classes, cross-entropy, learned scale s, class weights ``w_c``):

- ``cosine-classifier`` (GAP): one prediction per image from the global average pooled feature
  ``phi(x) = mean_p f_p(x)``: ``logits_c = s cos(w_c, phi(x))``;
- ``dense-classification`` (DC): the same cosine classifier applied at *every* position p of the
  last feature map f(x) (C, h, w) -- a 1x1 convolution followed by a depth-wise softmax -- and
  the loss averaged over positions, ``(1 / hw) sum_p CE(s cos(w, f_p(x)), y)`` (Sec. 3.2).

Novel classes (every episode, the backbone frozen): class prototypes are the means of the
L2-normalized GAP features of the support images (imprinting); a query goes to the class of
highest cosine similarity. Implanting (Sec. 3.3, ``implanting = true``): new convolution filters
(``implant_width`` channels, 3x3) are added in parallel to the last block, fed by that block's
input, and their output is concatenated to its output; the implants and the novel class weights
(initialized by imprinting) are trained on the support set with the dense loss, then prototypes
are recomputed on the widened features. The backbone here is a small proxy of ResNet-12.

Shapes: images (n, H, W[, C]) uint8; feature maps (n, C, h, w) float32; outputs (task
``few-shot``): ``scores`` (E, N*Q, N) float32 cosine similarities of each episode's queries.
"""
from __future__ import annotations

import numpy as np

CITE = "Lifchitz, Avrithis, Picard & Bursuc, Dense classification and implanting for few-shot learning, CVPR 2019"


def dense_loss(model, xb, yb):
    """Per-image dense classification loss (B,): CE of the cosine classifier averaged over positions."""
    import torch.nn.functional as F
    s = model.classify(model.feature_map(xb))                       # (B, K, h, w)
    y = yb[:, None, None].expand(-1, s.shape[2], s.shape[3])
    return F.cross_entropy(s, y, reduction="none").mean(dim=(1, 2))


def prototype_scores(sup: np.ndarray, sup_labels: np.ndarray, qry: np.ndarray, n_way: int) -> np.ndarray:
    """Cosine similarities (q, N) of queries to class prototypes (means of unit support features)."""
    def unit(a):
        return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    sup = unit(sup)
    protos = np.stack([sup[sup_labels == c].mean(0) for c in range(n_way)])
    return unit(qry) @ unit(protos).T


def _last_block(model) -> int:
    """Index in model.trunk where the last conv block starts."""
    import torch
    convs = [i for i, m in enumerate(model.trunk) if isinstance(m, torch.nn.Conv2d)]
    return convs[-1]


def implant_episode(inner, outer, sup, sup_y, qry, n_way: int, width: int, lr: float, steps: int, seed: int,
                    scale: float) -> np.ndarray:
    """One episode of implanting -> (q, N) cosine scores.

    ``inner`` (n, C_in, h, w): input of the last block (frozen); ``outer`` (n, C, h, w): its output.
    Implants g (3x3 conv C_in -> width, ReLU); features [outer, g(inner)]; novel class
    weights initialized to the imprinted prototypes; both trained with the dense loss on the support
    (SGD, learning rate `lr`, momentum 0.9, `steps` full-batch steps).
    """
    import torch
    import torch.nn.functional as F
    torch.manual_seed(seed)
    sup_t = torch.as_tensor(np.asarray(sup))
    y = torch.as_tensor(np.asarray(sup_y), dtype=torch.long)
    conv = torch.nn.Conv2d(inner.shape[1], width, 3, padding=1)
    torch.nn.init.normal_(conv.weight, std=1e-2)
    torch.nn.init.zeros_(conv.bias)

    def feats(idx):
        return torch.cat([outer[idx], F.relu(conv(inner[idx]))], dim=1)

    with torch.no_grad():
        g = F.normalize(feats(sup_t).mean(dim=(2, 3)), dim=1)
        w0 = torch.stack([g[y == c].mean(0) for c in range(n_way)])
    w = torch.nn.Parameter(w0.clone())
    opt = torch.optim.SGD(list(conv.parameters()) + [w], lr=lr, momentum=0.9)
    for _ in range(steps):
        f = F.normalize(feats(sup_t), dim=1)                                   # (K, C', h, w)
        s = scale * torch.einsum("kchw,nc->knhw", f, F.normalize(w, dim=1))
        loss = F.cross_entropy(s, y[:, None, None].expand(-1, s.shape[2], s.shape[3]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        fs = feats(sup_t).mean(dim=(2, 3)).numpy()
        fq = feats(torch.as_tensor(np.asarray(qry))).mean(dim=(2, 3)).numpy()
    return prototype_scores(fs, np.asarray(sup_y), fq, n_way)
