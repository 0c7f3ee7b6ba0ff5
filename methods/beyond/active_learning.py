"""Deep active learning with unlabelled data at model training: acquisition functions and cycle training.

Siméoni, Budnik, Avrithis & Gravier, *Rethinking deep active learning: using unlabeled data at
model training*, ICPR 2020 (arXiv 1911.08177; the talk's "deep active learning" slide). A pool of
n training items, a labelled set L (initially b labels, balanced) and U = the rest; every cycle
(i) trains a network on L -- or, the paper's proposal, on L and U by semi-supervised learning --
then (ii) an acquisition function ``a(L, U, theta)`` picks b items of U whose labels are revealed
and moved to L. Acquisition functions (paper Sec. 3.2; authors' ``selection_methods.py``):

- random: b items of U uniformly without replacement;
- entropy (uncertainty): the b items of U of maximum prediction entropy ``H(p_i) = -sum_j p_ij log p_ij``
  of the network's softmax ``p_i`` (Wang et al. 2017 / the paper's "entropy" row);
- core-set: greedy k-center of Sener & Savarese, ICLR 2018 (their Alg. 1): b times, add the item of
  U whose Euclidean distance to its nearest item of L (plus the items already chosen) is largest,
  on the network's features;
- jLP (the paper's own, Sec. 3.2, "joint label propagation"): label-agnostic diffusion on the kNN
  graph of the features -- solve ``(I - alpha W_n) z = y`` with ``y_i = 1`` on L and the items chosen
  so far, 0 elsewhere -- and choose the item of U least reached (minimum ``z_i``); b times, the chosen
  item joining y before the next diffusion (the authors' code). W_n is the graph of Iscen et al.
  CVPR 2019 Eq. 9 (k = 50, gamma = 3), alpha = 0.99.

Semi-supervised training between acquisitions (paper Sec. 3.3, "SEMI"): label propagation of
Iscen et al. CVPR 2019 (kernels :mod:`visrep.methods.learning.label_propagation`, Eqs. 9-12):
before every epoch, propagate the labels of L on the kNN graph of the network's features, give
every item of U its pseudo-label with certainty weight ``omega_i`` (Eq. 11) and class weight
``zeta_j`` (Eq. 12), and train one epoch of batches mixing labelled and pseudo-labelled items.
The network is re-initialised at every cycle (authors' ``main_al.py``).

CEAL (Wang et al. 2017, the paper's other semi-supervised baseline): confident predictions of U
(normalized entropy below a decaying threshold) join the next cycle's supervised training as
pseudo-labels (:func:`ceal_pseudo_labels`). Not here: the paper's unsupervised pre-training
(DeepCluster, "PRE").

Shapes: probabilities ``P`` (n, c) float; features ``V`` (n, d) float32; index arrays int64;
``W_n`` scipy csr (n, n).
"""
from __future__ import annotations

import numpy as np

from visrep.errors import UserError

CITE = ("Siméoni, Budnik, Avrithis & Gravier, Rethinking deep active learning: using unlabeled data at model "
        "training, ICPR 2020")
CITE_CORESET = "Sener & Savarese, Active learning for convolutional neural networks: a core-set approach, ICLR 2018"
STRATEGIES = ("random", "entropy", "coreset", "jlp")


def _check_budget(unlabelled: np.ndarray, b: int) -> np.ndarray:
    unlabelled = np.asarray(unlabelled, dtype=np.int64)
    if b < 1:
        raise UserError(f"acquisition budget must be >= 1, got {b}")
    if b > len(unlabelled):
        raise UserError(f"acquisition budget {b} exceeds the {len(unlabelled)} unlabelled items left in the pool")
    return unlabelled


# ---------------------------------------------------------------- acquisition functions
def prediction_entropy(p: np.ndarray) -> np.ndarray:
    """``H(p_i) = -sum_j p_ij log p_ij`` (n,) float64 of probability rows ``p`` (n, c) (0 log 0 = 0)."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(1)


def acquire_random(unlabelled: np.ndarray, b: int, rng: np.random.Generator) -> np.ndarray:
    """b distinct items of ``unlabelled`` (m,), uniformly at random -> (b,) int64."""
    unlabelled = _check_budget(unlabelled, b)
    return unlabelled[rng.choice(len(unlabelled), size=b, replace=False)]


def acquire_entropy(p: np.ndarray, unlabelled: np.ndarray, b: int) -> np.ndarray:
    """The b items of ``unlabelled`` of largest prediction entropy, most uncertain first -> (b,) int64.

    ``p`` (n, c) softmax of the network on the whole pool. Ties: smaller index first.
    """
    unlabelled = _check_budget(unlabelled, b)
    h = prediction_entropy(np.asarray(p)[unlabelled])
    order = np.lexsort((unlabelled, -h))
    return unlabelled[order[:b]]


def k_center_greedy(v: np.ndarray, labelled: np.ndarray, unlabelled: np.ndarray, b: int) -> np.ndarray:
    """Greedy k-center (Sener & Savarese 2018, Alg. 1) -> (b,) int64 items of ``unlabelled``, in order chosen.

    ``v`` (n, d) features. ``delta_i = min_{j in L + chosen} ||v_i - v_j||``; each step adds
    ``argmax_{i in U} delta_i`` (smallest index on ties). With L empty the first pick is the item
    farthest from the mean of U.
    """
    unlabelled = _check_budget(unlabelled, b)
    v = np.asarray(v, dtype=np.float64)
    labelled = np.asarray(labelled, dtype=np.int64)
    u = v[unlabelled]
    un = (u * u).sum(1)

    def sqdist(centres):                                      # (len(U), len(centres)), clipped at 0
        return np.maximum(un[:, None] - 2 * u @ centres.T + (centres * centres).sum(1)[None, :], 0.0)

    if len(labelled):
        d = np.full(len(u), np.inf)
        for s in range(0, len(labelled), 1024):               # chunks keep the (|U|, chunk) block small
            d = np.minimum(d, sqdist(v[labelled[s:s + 1024]]).min(1))
    else:
        d = sqdist(u.mean(0, keepdims=True))[:, 0]
    chosen = []
    for _ in range(b):
        i = int(np.argmax(d))
        chosen.append(i)
        d = np.minimum(d, sqdist(u[i:i + 1])[:, 0])
        d[i] = -1.0                                           # never twice (duplicates have distance 0 anyway)
    return unlabelled[np.asarray(chosen, dtype=np.int64)]


def acquire_jlp(wn, labelled: np.ndarray, unlabelled: np.ndarray, b: int, alpha: float = 0.99,
                tol: float = 1e-6, maxiter: int = 20) -> np.ndarray:
    """jLP acquisition (Siméoni et al. ICPR 2020, Sec. 3.2) -> (b,) int64 items of ``unlabelled``, in order chosen.

    ``wn`` (n, n) normalized kNN graph (Iscen et al. CVPR 2019 Eq. 9). b times: solve
    ``(I - alpha W_n) z = y`` by conjugate gradient with ``y`` (n,) = 1 on the labelled items and
    those chosen so far, 0 elsewhere (one class-agnostic column), and choose the not yet chosen
    item of U with minimum ``z`` (the least reached by diffusion from the labelled set; smallest
    index on ties).
    """
    from visrep.methods.manifolds.diffusion import cg

    unlabelled = _check_budget(unlabelled, b)
    n = wn.shape[0]
    y = np.zeros((n, 1))
    y[np.asarray(labelled, dtype=np.int64)] = 1.0
    free = np.ones(len(unlabelled), dtype=bool)
    chosen = []
    for _ in range(b):
        if y.any():
            z, _, _ = cg(wn, y, alpha, tol=tol, maxiter=maxiter)
            zu = z[unlabelled, 0]
        else:
            zu = np.zeros(len(unlabelled))
        zu = np.where(free, zu, np.inf)
        i = int(np.argmin(zu))
        free[i] = False
        chosen.append(unlabelled[i])
        y[unlabelled[i]] = 1.0
    return np.asarray(chosen, dtype=np.int64)


def ceal_pseudo_labels(p: np.ndarray, unlabelled: np.ndarray, threshold: float = 0.1, decay: float = 0.00033,
                       cycle: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """CEAL's confident pseudo-labels (Wang et al., Cost-effective active learning for deep image classification,
    IEEE TCSVT 2017; the "CEAL" rows of Siméoni et al.) -> (items (m,) int64 of ``unlabelled``, labels (m,) int64).

    An unlabelled item whose normalized prediction entropy ``H(p_i) / log c`` is below
    ``threshold - decay * cycle`` gets the pseudo-label ``argmax_j p_ij`` for the next cycle's
    training (authors' code: threshold 0.1, decay 0.00033 per cycle). ``p`` (n, c) softmax.
    """
    unlabelled = np.asarray(unlabelled, dtype=np.int64)
    p = np.asarray(p)
    c = p.shape[1]
    h = prediction_entropy(p[unlabelled]) / (np.log(c) if c > 1 else 1.0)
    keep = h < float(threshold) - float(decay) * int(cycle)
    return unlabelled[keep], p[unlabelled[keep]].argmax(1).astype(np.int64)


# ---------------------------------------------------------------- training of one cycle
def train_cycle(model, x, labelled: np.ndarray, labels: np.ndarray, n_classes: int, *, epochs: int,
                lp_epochs: int = 0, lr: float = 0.05, weight_decay: float = 2e-4, batch: int = 100,
                labelled_per_batch: int = 50, max_shift: int = 0, k: int = 50, gamma: float = 3.0,
                alpha: float = 0.99, cg_iters: int = 20, seed: int = 0) -> dict:
    """Train ``model`` in place for one active-learning cycle; returns diagnostics.

    ``x`` torch (n, C, H, W) the pool's images, ``labelled`` (m,) indices with ``labels`` (m,).
    Stage 1: ``epochs`` epochs of cross-entropy on L only (the supervised training of every AL
    cycle). Stage 2 (semi-supervised, ``lp_epochs`` > 0): before each epoch the labels of L are
    propagated on the kNN graph of the network's features of the whole pool (Iscen et al. CVPR
    2019 Eqs. 9-10), every item of U gets its pseudo-label with weight ``omega_i zeta_{yhat_i}``
    (Eqs. 11-12), then one epoch of batches of ``labelled_per_batch`` labelled + the rest
    unlabelled items minimizes ``sum_i w_i CE(f(x_i), y_i) / B``; one cosine learning-rate schedule
    spans the ``lp_epochs`` epochs. SGD with Nesterov momentum 0.9.
    """
    import torch
    import torch.nn.functional as F
    from visrep.methods.learning.convnets import embed
    from visrep.methods.learning.label_propagation import (
        class_weights,
        dlp_graph,
        propagate,
        pseudo_labels,
    )
    from visrep.methods.learning.semi_supervised import train_two_stream

    labelled = np.asarray(labelled, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    n = len(x)
    unl = np.setdiff1d(np.arange(n), labelled)
    y = torch.full((n,), -1, dtype=torch.long)
    y[labelled] = torch.as_tensor(labels)
    w = torch.zeros(n)
    w[labelled] = 1.0

    def loss(s, _t, idx, _ep):
        yi, wi = y[idx], w[idx]
        m = yi >= 0
        return (F.cross_entropy(s[m], yi[m], reduction="none") * wi[m]).sum() / len(idx)

    kw = {"lr": lr, "weight_decay": weight_decay, "batch": batch, "labelled_per_batch": labelled_per_batch,
          "max_shift": max_shift, "sigma": 0.0}
    out = {}
    if epochs:
        train_two_stream(model, x, labelled, np.zeros(0, np.int64), epochs, loss, seed=seed,
                         **{**kw, "batch": min(batch, max(2, len(labelled)))})
    if lp_epochs and len(unl):
        kk = min(int(k), n - 1)
        step = 0
        for e in range(lp_epochs):
            model.eval()
            v = embed(model.embed, x)
            z = propagate(dlp_graph(v, kk, gamma), labelled, labels, n_classes, alpha, tol=1e-6, maxiter=cg_iters)
            yp, wp = pseudo_labels(z, labelled, labels)
            wp = wp * class_weights(yp, n_classes)[yp]
            y[:] = torch.as_tensor(yp)
            w[:] = torch.as_tensor(wp, dtype=torch.float32)
            out["pseudo_labels"] = yp
            _, step = train_two_stream(model, x, labelled, unl, 1, loss, seed=seed + 1 + e, epoch_offset=e,
                                       total_epochs=lp_epochs, step_offset=step, **kw)
    model.eval()
    return out
