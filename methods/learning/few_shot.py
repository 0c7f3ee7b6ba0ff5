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
features. Episodes are trained in blocks (:func:`implant_episodes`: their implants stacked along
channels as grouped convolutions, the loss the sum of the episodes' losses), which gives each episode
exactly the training it gets alone, at about half the CPU time. The paper implants in the last layers of its ResNet-12 (the last residual block); the
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
    """One episode of implanting (Sec. 3.3) -> (q, N) cosine scores: :func:`implant_episodes` with E = 1.

    ``acts``, ``pools``: :func:`frozen_activations` of the episode's pool images (frozen network);
    sup (K,), qry (q,) int indices into them, sup_y (K,) labels 0..N-1. Implants
    (:func:`make_implants`) and novel class weights (initialized to the imprinted prototypes of the
    widened GAP features) are trained with the dense loss on the support set (SGD, learning rate
    `lr`, momentum 0.9, `steps` full-batch steps); the old filters are not touched.
    ``return_implants``: return (scores, trained implants) instead.
    """
    out = implant_episodes(acts, pools, [sup], [sup_y], [qry], n_way, width, lr, steps, [seed], scale, init_std,
                           return_implants=return_implants)
    return (out[0][0], out[1][0]) if return_implants else out[0]


def _grouped_inputs(acts, idx):
    """Frozen inputs of the implanted layers for E episodes, [acts[j][idx] as (n, E*C_j, h_j, w_j)]
    (idx (n, E) pool indices), the first in channels-last memory (a faster ReLU and max-pool backward)."""
    import torch
    ins = [a[idx].flatten(1, 2) for a in acts[:-1]]
    ins[0] = ins[0].contiguous(memory_format=torch.channels_last)
    return ins


def _implant_maps(ins, pools, weights, biases, n_ep: int):
    """Implant channels (n, E, width, h*w) of the last implanted layer for E = n_ep episodes at once.

    ins: :func:`_grouped_inputs`. Episode e's implants are the output channels
    ``e*width:(e+1)*width`` of the stacked ``weights[j]`` (E*width, c_in_j, 3, 3) and its input the
    group e of a grouped convolution (groups = E): [old channels, implant channels of layer j-1],
    the layout of :func:`implanted_features`, so each episode sees only its own implants.
    """
    import torch
    import torch.nn.functional as F
    new = None
    for j, (w, b) in enumerate(zip(weights, biases)):
        inp = ins[j] if new is None else torch.cat([ins[j].unflatten(1, (n_ep, -1)),
                                                    new.unflatten(1, (n_ep, -1))], dim=2).flatten(1, 2)
        new = F.relu(F.conv2d(inp, w, b, padding=1, groups=n_ep))            # (n, E*width, h, w)
        if pools[j] is not None:
            new = pools[j](new)
    return new.reshape(len(new), n_ep, -1, new.shape[2] * new.shape[3])


def _widened_gap(acts, pools, weights, biases, idx):
    """GAP features (n, E, C + width) of the implanted networks of E episodes; idx (n, E) pool indices."""
    import torch
    new = _implant_maps(_grouped_inputs(acts, idx), pools, weights, biases, idx.shape[1])
    return torch.cat([acts[-1][idx].flatten(3), new], dim=2).mean(3)


def implant_episodes(acts, pools, sups, sup_ys, qrys, n_way: int, width: int, lr: float, steps: int, seeds,
                     scale: float, init_std: float = 1e-2, block: int = 25, return_implants: bool = False):
    """Implanting (Sec. 3.3) of E episodes -> (E, q, N) cosine scores, `block` episodes trained at once.

    sups (E, K), sup_ys (E, K), qrys (E, q) pool indices / labels, seeds (E,): episode e is trained
    exactly as :func:`implant_episode` alone would be (its implants made by :func:`make_implants`
    after ``torch.manual_seed(seeds[e])``, its novel weights imprinted). A block stacks its episodes'
    implants along channels (grouped convolutions, groups = episodes) and minimizes the sum over
    episodes of each episode's mean dense loss, so every parameter gets its own episode's gradient
    and SGD with momentum (per parameter) equals separate training; only float rounding differs.
    The frozen old channels enter the cosine through precomputed squared norms.
    ``return_implants``: return (scores, list of E trained implant ModuleLists) instead.
    """
    import torch
    import torch.nn.functional as F
    sups, sup_ys, qrys = (np.asarray(a, dtype=np.int64) for a in (sups, sup_ys, qrys))
    seeds = [int(s) for s in seeds]
    if sups.ndim != 2 or sup_ys.shape != sups.shape or qrys.ndim != 2 or not len(qrys) == len(sups) == len(seeds):
        raise ValueError("implant_episodes needs (E, K) supports and labels, (E, q) queries and E seeds")
    n_impl = len(acts) - 1
    scores, trained = [], []
    for s in range(0, len(sups), block):
        sl = slice(s, s + block)
        sup, y = torch.as_tensor(sups[sl].T), torch.as_tensor(sup_ys[sl])      # (K, E), (E, K)
        K, E = sup.shape
        per_ep = []
        for seed in seeds[sl]:
            torch.manual_seed(seed)
            per_ep.append(make_implants(acts, width, init_std))
        weights = [torch.nn.Parameter(torch.cat([imp[j].weight.detach() for imp in per_ep])) for j in range(n_impl)]
        biases = [torch.nn.Parameter(torch.cat([imp[j].bias.detach() for imp in per_ep])) for j in range(n_impl)]
        ins = _grouped_inputs(acts, sup)                                       # frozen layer inputs
        old = acts[-1][sup].flatten(3)                                         # (K, E, C, hw) frozen output
        old_sq, c_old = (old * old).sum(2), old.shape[2]                       # (K, E, hw)
        with torch.no_grad():
            g = F.normalize(_widened_gap(acts, pools, weights, biases, sup), dim=2)          # (K, E, C')
            onehot = F.one_hot(y, n_way).to(g.dtype)                                         # (E, K, N)
            w0 = torch.einsum("ekn,kec->enc", onehot / onehot.sum(1, keepdim=True), g)       # imprinted (E, N, C')
        w = torch.nn.Parameter(w0.clone())
        opt = torch.optim.SGD(weights + biases + [w], lr=lr, momentum=0.9)
        target = y.T[:, :, None].expand(-1, -1, old.shape[3])                              # (K, E, hw)
        for _ in range(steps):
            new = _implant_maps(ins, pools, weights, biases, E)                              # (K, E, width, hw)
            wn = F.normalize(w, dim=2)
            cos = (wn[:, :, :c_old] @ old + wn[:, :, c_old:] @ new)                          # (K, E, N, hw)
            norm = (old_sq + (new * new).sum(2)).sqrt().clamp_min(1e-12)
            logits = cos * (scale / norm[:, :, None])
            loss = F.cross_entropy(logits.transpose(1, 2), target, reduction="sum") / (K * old.shape[3])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            fs = _widened_gap(acts, pools, weights, biases, sup).numpy()
            fq = _widened_gap(acts, pools, weights, biases, torch.as_tensor(qrys[sl].T)).numpy()
        for e in range(E):
            scores.append(prototype_scores(fs[:, e], sup_ys[s + e], fq[:, e], n_way))
        if return_implants:
            with torch.no_grad():
                for e, imp in enumerate(per_ep):
                    for j, conv in enumerate(imp):
                        conv.weight.copy_(weights[j][e * width:(e + 1) * width])
                        conv.bias.copy_(biases[j][e * width:(e + 1) * width])
            trained += per_ep
    scores = np.stack(scores)
    return (scores, trained) if return_implants else scores
