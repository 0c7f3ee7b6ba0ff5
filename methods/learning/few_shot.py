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
(``implant_width`` channels, 3x3, ReLU) are added alongside the existing ones at each of the last
``implant_layers`` convolutional layers; an implant of layer l sees the old channels of its input
and the implant channels of layer l-1, while the old filters keep seeing only the old channels and
stay frozen, so the old activations are unchanged and the network's output is the old feature map
widened by the new channels. The implants and the novel class weights (initialized by imprinting)
are trained on the support set with the dense loss, then prototypes are recomputed on the widened
features. The paper implants in the last layers of its ResNet-12 (the last residual block); the
proxy backbone has one conv layer per block, and ``implant_layers = 2`` (the default: our reading of
"several last layers") implants in its last two. ``implant_layers = 1`` is the single-layer variant
(implants beside the last layer only). The backbone here is a small proxy of ResNet-12.

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


def trunk_blocks(model) -> list:
    """The blocks of ``model.trunk`` (a Sequential): lists of modules, each starting at a Conv2d."""
    import torch
    blocks = []
    for m in model.trunk.children():
        if isinstance(m, torch.nn.Conv2d) or not blocks:
            blocks.append([])
        blocks[-1].append(m)
    return blocks


def frozen_activations(model, x, n_layers: int, batch: int = 512):
    """Old activations of the frozen trunk around its last `n_layers` conv blocks.

    x (n, C, H, W) torch. Returns (acts, pools): acts[0] (n, C_0, h_0, w_0) the input of the first
    implanted block, acts[j + 1] the (old) output of implanted block j; pools[j] the block's
    max-pool module or None (applied to the implant output too).
    """
    import torch
    blocks = trunk_blocks(model)
    if not 1 <= n_layers <= len(blocks):
        raise ValueError(f"implant_layers must be in 1..{len(blocks)}, got {n_layers}")
    first = len(blocks) - n_layers
    pre = torch.nn.Sequential(*[m for b in blocks[:first] for m in b])
    stages = [torch.nn.Sequential(*b) for b in blocks[first:]]
    pools = [next((m for m in b if isinstance(m, torch.nn.MaxPool2d)), None) for b in blocks[first:]]
    acts = [[] for _ in range(n_layers + 1)]
    with torch.no_grad():
        for s in range(0, len(x), batch):
            h = pre(x[s:s + batch])
            acts[0].append(h)
            for j, st in enumerate(stages):
                h = st(h)
                acts[j + 1].append(h)
    return [torch.cat(a) for a in acts], pools


def make_implants(acts, width: int, init_std: float = 1e-2):
    """One 3x3 conv per implanted layer: layer j maps [old input channels, implant channels of j-1] -> width.
    Weights N(0, init_std^2) (``init_std = 0``: zero implants), biases 0. Returns a torch ModuleList."""
    import torch
    convs = []
    for j in range(len(acts) - 1):
        c_in = acts[j].shape[1] + (width if j else 0)
        conv = torch.nn.Conv2d(c_in, width, 3, padding=1)
        if init_std > 0:
            torch.nn.init.normal_(conv.weight, std=init_std)
        else:
            torch.nn.init.zeros_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
        convs.append(conv)
    return torch.nn.ModuleList(convs)


def implanted_features(acts, pools, implants, idx):
    """Feature maps of the implanted network (k, C + width, h, w) for items idx: the old output
    (frozen, precomputed) concatenated with the last implant's output."""
    import torch
    import torch.nn.functional as F
    new = None
    for j, conv in enumerate(implants):
        inp = acts[j][idx] if new is None else torch.cat([acts[j][idx], new], dim=1)
        new = F.relu(conv(inp))
        if pools[j] is not None:
            new = pools[j](new)
    return torch.cat([acts[-1][idx], new], dim=1)


def implant_episode(acts, pools, sup, sup_y, qry, n_way: int, width: int, lr: float, steps: int, seed: int,
                    scale: float, init_std: float = 1e-2, return_implants: bool = False):
    """One episode of implanting (Sec. 3.3) -> (q, N) cosine scores.

    ``acts``, ``pools``: :func:`frozen_activations` of the episode's pool images (frozen network);
    sup (K,), qry (q,) int indices into them, sup_y (K,) labels 0..N-1. Implants
    (:func:`make_implants`) and novel class weights (initialized to the imprinted prototypes of the
    widened GAP features) are trained with the dense loss on the support set (SGD, learning rate
    `lr`, momentum 0.9, `steps` full-batch steps); the old filters are not touched.
    ``return_implants``: return (scores, trained implants) instead.
    """
    import torch
    import torch.nn.functional as F
    torch.manual_seed(seed)
    sup_t = torch.as_tensor(np.asarray(sup))
    y = torch.as_tensor(np.asarray(sup_y), dtype=torch.long)
    implants = make_implants(acts, width, init_std)

    def feats(idx):
        return implanted_features(acts, pools, implants, idx)

    with torch.no_grad():
        g = F.normalize(feats(sup_t).mean(dim=(2, 3)), dim=1)
        w0 = torch.stack([g[y == c].mean(0) for c in range(n_way)])
    w = torch.nn.Parameter(w0.clone())
    opt = torch.optim.SGD(list(implants.parameters()) + [w], lr=lr, momentum=0.9)
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
    scores = prototype_scores(fs, np.asarray(sup_y), fq, n_way)
    return (scores, implants) if return_implants else scores
