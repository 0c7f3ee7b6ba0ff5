"""Few-shot few-shot learning (FSFSL) and spatial attention from a network of another domain.

Lifchitz, Avrithis & Picard, *Few-shot few-shot learning and the role of spatial attention*,
ICPR 2020 (arXiv 2002.07522; the talk's Part IV slide "few-shot few-shot learning").

The problem: the representation comes from a classifier pre-trained on a large dataset of a
*different domain* (the paper: ResNet-18 on Places365), used as it is, without access to its
training; the base classes have only a *few* examples each (k = 0, 1, ..., 20 per class) and
serve to adapt the representation, not to learn it; novel classes come as N-way K-shot episodes.
The paper adapts in two stages (on the few base examples if any, then on the novel support) and
obtains from the pre-trained classifier a *spatial attention map*: its class prediction at each
position of the last feature map, whose entropy is low where the network recognizes something
(an object) and high on background clutter. The attention weights the global pooling of the
features, in training and in testing.

Here (a proxy, named as such in the plugin and table):

- the network of another domain is the real ImageNet EfficientNet-Lite0 of
  :mod:`visrep.methods.cnn.backbones` standing in for the paper's Places365 ResNet-18: its
  classifier (1280 -> 1000 ImageNet classes) is applied at every position of its last feature map
  (a 1x1 convolution, as the paper applies the Places classifier densely);
- attention (:func:`entropy_attention`): ``w_i = softmax_i(-H(p_i) / T)`` over the r positions,
  ``p_i = softmax(W a_i + b)`` the pre-trained classifier's prediction at position i and
  ``H(p) = -sum_j p_j log p_j``. The paper defines the attention from this entropy (low entropy ->
  high weight); only its abstract could be read from here, so the normalization over positions
  (softmax with temperature T) is this module's choice, stated as such. T -> infinity gives GAP;
- attention-weighted pooling (:func:`attention_pool`): ``a = sum_i w_i a_i / sum_i w_i``;
- stage 1 (base classes, k examples each): the last layer of the network (its 1x1 conv head and
  batch norm, initialized from the pre-trained weights; earlier layers frozen, a CPU proxy of the
  paper's fine-tuning) is trained with a cosine classifier (learned scale) on the pooled features;
- stage 2 (novel classes): imprinting (Qi, Brown & Lowe CVPR 2018, as in the paper): class
  weights = normalized means of the normalized pooled support features; a query goes to the
  class of highest cosine similarity. The paper's further fine-tuning on the novel support is not
  done here.

Shapes: images (n, H, W) or (n, H, W, 3) uint8; maps (n, C, h, w) float32; entropies and
attention (n, r) float32, r = h w; pooled features (n, d) float32.
"""
from __future__ import annotations

import numpy as np

CITE = ("Lifchitz, Avrithis & Picard, Few-shot few-shot learning and the role of spatial attention, "
        "ICPR 2020 (arXiv 2002.07522)")


def position_entropy(logits):
    """Entropy H(p_i) (n, r) of p_i = softmax(logits[:, i]) at every position; logits (n, r, c).

    numpy in, numpy out (float64 internally, log-sum-exp stable)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return -(np.exp(logp) * logp).sum(axis=-1)


def entropy_attention(entropy, temperature: float = 1.0) -> np.ndarray:
    """Attention (n, r) float32 from entropies (n, r): ``softmax_i(-H_i / T)`` over positions (sums to 1).

    Low entropy (a confident prediction of the pre-trained classifier) -> high weight."""
    h = -np.asarray(entropy, dtype=np.float64) / float(temperature)
    h = h - h.max(axis=-1, keepdims=True)
    w = np.exp(h)
    return (w / w.sum(axis=-1, keepdims=True)).astype(np.float32)


def attention_pool(fmap, weights):
    """Attention-weighted global pooling ``sum_i w_i a_i / sum_i w_i``.

    fmap (n, r, d) and weights (n, r), numpy or torch (same type out): (n, d). Uniform weights give
    global average pooling; a one-hot weight gives that position's vector."""
    return (weights[..., None] * fmap).sum(-2) / weights.sum(-1)[..., None]


def to_network_input(images, imsize: int, mean, std):
    """(n, H, W) grey or (n, H, W, 3) uint8 -> torch (n, 3, imsize, imsize) float32, normalized.

    Grey images are replicated to three channels (an RGB network on another domain)."""
    import torch
    import torch.nn.functional as F
    x = torch.from_numpy(np.ascontiguousarray(images)).float() / 255.0
    x = x[:, None].expand(-1, 3, -1, -1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    if x.shape[-1] != imsize or x.shape[-2] != imsize:
        x = F.interpolate(x, size=(imsize, imsize), mode="bilinear", align_corners=False)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


def split_efficientnet(model):
    """(body, head, classifier) of a timm EfficientNet: body = stem + blocks, head = conv_head + bn2
    (with its activation), classifier = the Linear layer on pooled features."""
    import torch
    body = torch.nn.Sequential(model.conv_stem, model.bn1, model.blocks)
    head = torch.nn.Sequential(model.conv_head, model.bn2)
    return body, head, model.classifier


def backbone_maps(model, images, imsize: int, mean, std, batch: int = 100, device: str = "cpu"):
    """Frozen pass of the pre-trained network: (inner (n, C_in, h, w) float32, entropy (n, h w) float32).

    ``inner`` = the input of the last layer (head), which stage 1 adapts; ``entropy`` = entropy of
    the pre-trained classifier's prediction at each position of the last feature map (attention)."""
    import torch
    body, head, clf = split_efficientnet(model)
    inner, ent = [], []
    with torch.inference_mode():
        for s in range(0, len(images), batch):
            x = to_network_input(images[s:s + batch], imsize, mean, std).to(device)
            x = x.contiguous(memory_format=torch.channels_last)
            a = body(x)
            f = head(a)                                                   # (b, d, h, w)
            logits = clf(f.flatten(2).transpose(1, 2))                    # (b, r, c)
            inner.append(a.float().cpu().numpy())
            ent.append(position_entropy(logits.double().cpu().numpy()).astype(np.float32))
    return np.concatenate(inner), np.concatenate(ent)


def head_features(head, inner, weights, batch: int = 500) -> np.ndarray:
    """Pooled features (n, d) float32 of the (adapted) head on inner maps (n, C_in, h, w), weights (n, r)."""
    import torch
    out = []
    with torch.no_grad():
        for s in range(0, len(inner), batch):
            f = head(torch.from_numpy(inner[s:s + batch])).flatten(2).transpose(1, 2)   # (b, r, d)
            out.append(attention_pool(f, torch.from_numpy(weights[s:s + batch])).numpy())
    return np.concatenate(out).astype(np.float32)


def adapt_head(head, inner, weights, labels, n_classes: int, epochs: int, lr: float, batch: int, seed: int,
               scale0: float = 10.0):
    """Stage 1: train the head on the base examples with a cosine classifier -> per-step losses.

    Class weights start imprinted (normalized means of the pooled, normalized features), the scale
    s (learned) at ``scale0``; loss CE(s cos(w_c, pool(head(inner)))); SGD, momentum 0.9. The head's
    batch norm keeps its pre-trained statistics (eval mode): k examples per class cannot estimate them."""
    import torch
    import torch.nn.functional as F
    g = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    x, w = torch.from_numpy(inner), torch.from_numpy(weights)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    head.eval()

    def pooled(idx):
        return F.normalize(attention_pool(head(x[idx]).flatten(2).transpose(1, 2), w[idx]), dim=1)

    with torch.no_grad():
        f0 = pooled(torch.arange(len(y)))
        w0 = torch.stack([F.normalize(f0[y == c].mean(0), dim=0) for c in range(n_classes)])
    cls = torch.nn.Parameter(w0.clone())
    s = torch.nn.Parameter(torch.tensor(float(scale0)))
    opt = torch.optim.SGD(list(head.parameters()) + [cls, s], lr=lr, momentum=0.9)
    losses = []
    for _ in range(epochs):
        for b in torch.randperm(len(y), generator=g).split(batch):
            loss = F.cross_entropy(s * pooled(b) @ F.normalize(cls, dim=1).T, y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    return losses


def per_class_subset(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Sorted indices of at most k items of every class (seeded draw): the few base examples."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    keep = [rng.permutation(np.flatnonzero(labels == c))[:k] for c in np.unique(labels)]
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)
