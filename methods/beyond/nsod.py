"""Kernels of nano-supervised object detection (NSOD): proposals, region features, WSDDN, pseudo-labels.

Yang, Shi, Xu, Ferrari & Avrithis, Training object detectors from few weakly-labeled and many
unlabeled images, Pattern Recognition 2021 (arXiv:1912.00384). Its abstract's pipeline: a
weakly-supervised detector cannot be bootstrapped from the few labeled images alone, so a *teacher
classifier*, bootstrapped by *region-level similarities to the labeled images*, gives image-level
*pseudo-labels* to the unlabeled images, and a weakly-supervised *student detector* (PCL in the paper)
is trained on labeled + pseudo-labeled images.

What is a simplification (named as such, never the paper's own recipe; we could read the abstract only):
- proposals: a multi-scale sliding-window box set (:func:`sliding_window_proposals`), not selective search;
- region features: box-averaged (a linear ROI pooling) square-rooted last-layer activations of a
  *frozen* ImageNet backbone, PCA-reduced and L2-normalized (:func:`roi_features`, :func:`pca_fit`), no
  fine-tuning;
- the weakly-supervised detector: WSDDN's two streams (Bilen & Vedaldi, Weakly supervised deep detection
  networks, CVPR 2016), linear on those features (:func:`wsddn_train`), without PCL's proposal-cluster
  refinement (Tang et al., TPAMI 2018);
- the teacher: region similarity = the best margin, over an unlabeled image's regions, between the region's
  max cosine to the regions of the labeled images of a class and to those of any other class
  (:func:`region_similarity`, on a coarser window set); the
  `k_boot` most similar unlabeled images per class bootstrap a linear softmax classifier on max-pooled
  region features (:func:`softmax_classifier`), whose confident predictions (probability >= tau) are the
  pseudo-labels (:func:`select_pseudo_labels`); the rest (unknown classes in the wild) is left out.
"""
from __future__ import annotations

import numpy as np


def sliding_window_proposals(width: int, height: int, scales=(0.2, 0.27, 0.35, 0.45, 0.6),
                             ratios=(0.5, 1.0, 2.0), stride: float = 1 / 3) -> np.ndarray:
    """Boxes (R, 4) float32 (x0, y0, x1, y1): for each scale s and aspect ratio a (w / h) a box of area
    (s * min(W, H))^2, slid over the image with a step of `stride` times its own width / height (last
    position flush with the border), unique rows. A stand-in for selective search (a simplification)."""
    out = []
    base = min(width, height)
    for s in scales:
        for a in ratios:
            w, h = min(width, s * base * np.sqrt(a)), min(height, s * base / np.sqrt(a))
            xs = np.unique(np.append(np.arange(0, width - w + 1e-6, max(1.0, stride * w)), width - w))
            ys = np.unique(np.append(np.arange(0, height - h + 1e-6, max(1.0, stride * h)), height - h))
            X, Y = np.meshgrid(xs, ys)
            out.append(np.stack([X.ravel(), Y.ravel(), X.ravel() + w, Y.ravel() + h], 1))
    return np.unique(np.round(np.concatenate(out), 2), axis=0).astype(np.float32)


def box_cell_weights(boxes: np.ndarray, width: int, height: int, w: int, h: int, offset: float = 0.0) -> np.ndarray:
    """(R, h * w) float32 average-pooling weights of boxes (R, 4) (pixels) over a w x h feature map laid on
    the width x height image: the area of the box inside each cell, divided by the box's area (rows sum to 1;
    row-major cells). A linear ROI pooling (exact box average of a piecewise-constant map). Cell j spans
    [(j - offset), (j + 1 - offset)] cell sides: offset 0.5 when stride-2 convolutions with symmetric
    padding centre map cell j on pixel j * stride (the backbones here)."""
    b = np.asarray(boxes, np.float64)
    cx, cy = width / w, height / h
    ex, ey = (np.arange(w + 1) - offset) * cx, (np.arange(h + 1) - offset) * cy
    ox = np.clip(np.minimum(b[:, 2:3], ex[None, 1:]) - np.maximum(b[:, 0:1], ex[None, :-1]), 0, None)   # (R, w)
    oy = np.clip(np.minimum(b[:, 3:4], ey[None, 1:]) - np.maximum(b[:, 1:2], ey[None, :-1]), 0, None)   # (R, h)
    A = (oy[:, :, None] * ox[:, None, :]).reshape(len(b), h * w)
    return (A / np.maximum(A.sum(1, keepdims=True), 1e-12)).astype(np.float32)


def roi_features(maps: np.ndarray, A: np.ndarray) -> np.ndarray:
    """(n, R, C) float32 box-averaged features: maps (n, C, h, w), pooling weights A (R, h * w)
    (:func:`box_cell_weights`)."""
    n, C = maps.shape[:2]
    X = np.asarray(maps, np.float32).reshape(n, C, -1)
    return np.einsum("rk,nck->nrc", A, X, optimize=True).astype(np.float32)


def l2n(x: np.ndarray) -> np.ndarray:
    """Rows of x (..., d) divided by their L2 norm (zero rows stay zero)."""
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def pca_fit(x: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), P (D, d)) float32: the top-d principal directions of x (n, D) (eigenvectors of the
    covariance, decreasing eigenvalue)."""
    x = np.asarray(x, np.float64)
    mu = x.mean(0)
    cov = np.cov(x - mu, rowvar=False)
    _, v = np.linalg.eigh(cov)
    return mu.astype(np.float32), v[:, ::-1][:, :min(d, x.shape[1])].astype(np.float32)


def pca_apply(x: np.ndarray, mean: np.ndarray, P: np.ndarray) -> np.ndarray:
    """L2-normalized projection (..., d) of x (..., D)."""
    return l2n((x - mean) @ P).astype(np.float32)


def wsddn_forward(params: dict, feats):
    """WSDDN region and image scores (Bilen & Vedaldi, CVPR 2016, Sec. 3): feats (N, R, d) torch ->
    (x (N, R, C), y (N, C)): x_rc = softmax_c(phi_r W_c + b_c) * softmax_r(phi_r W_d + b_d), the
    classification stream (softmax over classes) times the detection stream (softmax over the regions
    of the image); y_c = sum_r x_rc in (0, 1)."""
    import torch
    cls = torch.softmax(feats @ params["Wc"] + params["bc"], dim=2)
    det = torch.softmax(feats @ params["Wd"] + params["bd"], dim=1)
    x = cls * det
    return x, x.sum(1)


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU (n, m) float32 of boxes a (n, 4) and b (m, 4) (x0, y0, x1, y1)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    union = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))[:, None] + ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[None] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0).astype(np.float32)


def oicr_targets(prev, top_iou, labels, thr: float = 0.5):
    """OICR supervision of a refinement stream (Tang et al., Multiple instance detection network with online
    instance classifier refinement, CVPR 2017, Sec. 3.3; PCL's starting point): for every image class c,
    the proposal j_c that the previous stream scores highest for c; a proposal takes the class of the top
    box it overlaps most when that IoU >= thr, else background (index C), with weight = the previous score
    of that top box. prev (N, R, C) torch (detached), top_iou: IoU (R, R) torch of the shared proposals,
    labels (N, C) torch {0, 1} -> (targets (N, R) long, weights (N, R) float)."""
    import torch
    C = prev.shape[2]
    top = prev.argmax(1)                                                    # (N, C)
    ov = top_iou[top]                                                       # (N, C, R)
    ov = torch.where(labels[:, :, None] > 0, ov, torch.full_like(ov, -1.0))
    best_ov, best_c = ov.max(1)                                             # (N, R)
    w_top = prev.gather(1, top[:, None, :])[:, 0, :]                       # (N, C): score of each top box
    w = w_top.gather(1, best_c)                                             # (N, R)
    tgt = torch.where(best_ov >= thr, best_c, torch.full_like(best_c, C))
    w = torch.where(best_ov >= -0.5, w, torch.zeros_like(w))                # images with no label: no loss
    return tgt, w


def wsddn_train(feats: np.ndarray, labels: np.ndarray, epochs: int = 300, lr: float = 0.01,
                weight_decay: float = 5e-4, seed: int = 0, refine: int = 0, boxes: np.ndarray | None = None) -> dict:
    """Train WSDDN's two linear streams from image-level labels (WSDDN's binary log loss:
    -sum_c [t_c log y_c + (1 - t_c) log(1 - y_c)], mean over images; L2 weight decay), Adam, full batch,
    with `refine` OICR instance-classifier streams trained jointly (:func:`oicr_targets`; stream k is
    supervised by stream k - 1, stream 1 by WSDDN; loss -mean_r w_r log p_r[target_r]); `boxes` (R, 4)
    the proposals shared by all images (needed when refine > 0).

    feats (N, R, d) float32 region features, labels (N, C) {0, 1} -> params {Wc (d, C), bc (C,),
    Wd (d, C), bd (C,), Wk (refine, d, C + 1), bk (refine, C + 1)} as numpy float32. Deterministic for a
    seed (one thread)."""
    import torch
    g = torch.Generator().manual_seed(seed)
    f = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))
    t = torch.from_numpy(np.asarray(labels, dtype=np.float32))
    d, C = f.shape[2], t.shape[1]
    params = {"Wc": (torch.randn(d, C, generator=g) * 0.01).requires_grad_(),
              "bc": torch.zeros(C, requires_grad=True),
              "Wd": (torch.randn(d, C, generator=g) * 0.01).requires_grad_(),
              "bd": torch.zeros(C, requires_grad=True),
              "Wk": (torch.randn(refine, d, C + 1, generator=g) * 0.01).requires_grad_(),
              "bk": torch.zeros(refine, C + 1, requires_grad=True)}
    if refine:
        top_iou = torch.from_numpy(pairwise_iou(boxes, boxes))
    opt = torch.optim.Adam(params.values(), lr=lr)
    for _ in range(epochs):
        opt.zero_grad()
        x, y = wsddn_forward(params, f)
        y = y.clamp(1e-6, 1 - 1e-6)
        loss = -(t * y.log() + (1 - t) * (1 - y).log()).sum(1).mean()
        prev = x.detach()
        for k in range(refine):
            logp = torch.log_softmax(f @ params["Wk"][k] + params["bk"][k], dim=2)       # (N, R, C + 1)
            tgt, w = oicr_targets(prev, top_iou, t)
            loss = loss - (w * logp.gather(2, tgt[:, :, None])[:, :, 0]).mean()
            prev = logp.detach().exp()[:, :, :C]
        loss = loss + 0.5 * weight_decay * (params["Wc"].square().sum() + params["Wd"].square().sum()
                                            + params["Wk"].square().sum())
        loss.backward()
        opt.step()
    return {k: v.detach().numpy().copy() for k, v in params.items()}


def wsddn_region_scores(params: dict, feats: np.ndarray) -> np.ndarray:
    """(N, R, C) float32 region scores for feats (N, R, d): the mean of the OICR refinement streams' class
    probabilities when the model has any (OICR's test rule), else WSDDN's x_rc (:func:`wsddn_forward`)."""
    import torch
    p = {k: torch.from_numpy(v) for k, v in params.items()}
    f = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))
    with torch.inference_mode():
        K = p["Wk"].shape[0] if "Wk" in p else 0
        if K:
            C = p["Wc"].shape[1]
            return torch.stack([torch.softmax(f @ p["Wk"][k] + p["bk"][k], 2)[:, :, :C] for k in range(K)]).mean(0).numpy()
        x, _ = wsddn_forward(p, f)
    return x.numpy()


def nms_top(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.3, keep: int = 3) -> np.ndarray:
    """Indices (<= keep,) of the highest-scoring boxes (R, 4) after greedy non-maximum suppression at
    `iou` (the test-time NMS of WSDDN / PCL, 0.3)."""
    import torch
    from torchvision.ops import nms
    k = nms(torch.from_numpy(np.asarray(boxes, np.float32)), torch.from_numpy(np.asarray(scores, np.float32)), iou)
    return k.numpy()[:keep]


def detections(boxes: np.ndarray, region_scores: np.ndarray, keep: int = 3, iou: float = 0.3):
    """Per class the `keep` top boxes after NMS: boxes (R, 4), region_scores (R, C) ->
    (boxes (m, 4) float32, scores (m,) float32, classes (m,) int64), m = C * keep at most."""
    B, S, K = [], [], []
    for c in range(region_scores.shape[1]):
        k = nms_top(boxes, region_scores[:, c], iou, keep)
        B.append(boxes[k])
        S.append(region_scores[k, c])
        K.append(np.full(len(k), c, np.int64))
    return np.concatenate(B).astype(np.float32), np.concatenate(S).astype(np.float32), np.concatenate(K)


def localize(region_scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N, C) int: the top region of each image for each class (used for the classes an image is labeled
    with): region_scores (N, R, C), labels (N, C) (unused, kept for the shape check)."""
    assert region_scores.shape[0] == labels.shape[0] and region_scores.shape[2] == labels.shape[1]
    return region_scores.argmax(1)


def region_similarity(unl_feats: np.ndarray, lab_feats: np.ndarray, lab_labels: np.ndarray) -> np.ndarray:
    """(U, C) float32 region-level similarity of unlabeled images to the labeled images of each class.

    m_rc = max cosine between region r of the unlabeled image (unl_feats (U, R, d), L2-normalized) and any
    region of a labeled image of class c (lab_feats (L, S, d), lab_labels (L, C) bool); the similarity to c is
    max_r (m_rc - max_{c' != c} m_rc'): the best region match *to c rather than to another class* (a margin,
    so that background regions, which match labeled images of every class alike, do not count; ours).
    -inf for a class with no labeled image."""
    U, R, d = unl_feats.shape
    L, S, _ = lab_feats.shape
    C = lab_labels.shape[1]
    best = (unl_feats.reshape(U * R, d) @ lab_feats.reshape(L * S, d).T).reshape(U * R, L, S).max(2)  # (U R, L)
    m = np.full((U * R, C), -np.inf, np.float32)
    for c in range(C):
        has = lab_labels[:, c].astype(bool)
        if has.any():
            m[:, c] = best[:, has].max(1)
    if C < 2:
        return m.reshape(U, R, C).max(1)
    top2 = np.sort(m, 1)[:, -2:]                                   # (U R, 2): second best, best
    other = np.where(m >= top2[:, 1:2], top2[:, 0:1], top2[:, 1:2])
    margin = np.where(np.isfinite(m), m - other, -np.inf)
    return margin.reshape(U, R, C).max(1).astype(np.float32)


def bootstrap_set(sim: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(images (n,), classes (n,)) int64: for every class c, the k unlabeled images of highest sim[:, c]
    among those whose most similar class is c. sim (U, C)."""
    best = sim.argmax(1)
    imgs, cls = [], []
    for c in range(sim.shape[1]):
        cand = np.flatnonzero(best == c)
        top = cand[np.argsort(-sim[cand, c], kind="stable")[:k]]
        imgs.append(top)
        cls.append(np.full(len(top), c))
    return np.concatenate(imgs).astype(np.int64), np.concatenate(cls).astype(np.int64)


def softmax_classifier(x: np.ndarray, y: np.ndarray, n_classes: int, epochs: int = 200, lr: float = 0.05,
                       weight_decay: float = 1e-3, seed: int = 0):
    """Multinomial logistic regression (cross-entropy, L2 weight decay, Adam, full batch) on x (n, d),
    y (n,) in [0, C) -> (W (d, C), b (C,)) float32."""
    import torch
    g = torch.Generator().manual_seed(seed)
    X = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    Y = torch.from_numpy(np.asarray(y, np.int64))
    W = (torch.randn(X.shape[1], n_classes, generator=g) * 0.01).requires_grad_()
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.Adam([W, b], lr=lr)
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(X @ W + b, Y) + 0.5 * weight_decay * W.square().sum()
        loss.backward()
        opt.step()
    return W.detach().numpy(), b.detach().numpy()


def softmax_probs(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, C) class probabilities softmax(x W + b), x (n, d)."""
    z = x @ W + b
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def select_pseudo_labels(probs: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """(images (n,), classes (n,)) int64: the unlabeled images whose top teacher probability (probs (U, C))
    is >= tau, with that class; the others get no pseudo-label."""
    keep = np.flatnonzero(probs.max(1) >= tau)
    return keep.astype(np.int64), probs[keep].argmax(1).astype(np.int64)
