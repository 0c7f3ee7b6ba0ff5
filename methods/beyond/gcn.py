"""Kernels of GCN cleaning of noisy labels (talk Part IV, "learning from few clean and many noisy labels").

Iscen, Tolias, Avrithis, Chum & Schmid, "Graph convolutional networks for learning with few clean
and many noisy labels", ECCV 2020 (arXiv:1910.00324); the GCN of Kipf & Welling, "Semi-supervised
classification with graph convolutional networks", ICLR 2017. The paper's full text was not
reachable from here: the method follows its abstract (a graph per class over clean + noisy data, the
GCN as a binary classifier of clean vs noisy trained with a weighted binary cross-entropy, its
"clean" probability as the relevance weight of each noisy example in the classifier's training) and
the authors' released code (google-research/noisy-fewshot-learning, ``cleaner.py`` / ``utils.py``),
which was read, not copied, and fixes the details. Steps are numbered here (not the paper's equation
numbers). Per class c, with V_c the L2-normalised features of its few clean (positive) and many noisy
examples:

1. reciprocal kNN affinity: a_ij = [v_i^T v_j]_+ if j in NN_k(i) (self excluded), A = min(A, A^T);
2. normalised adjacency with self-loops: A_hat = D~^-1 (A + I) (released code, as pygcn) or the
   symmetric D~^-1/2 (A + I) D~^-1/2 of Kipf & Welling Eq. (2);
3. two-layer GCN g(V) = A_hat ReLU(A_hat V W1 + b1) W2 + b2 (Kipf & Welling Eq. (9), one output);
4. the paper's weighted binary cross-entropy: clean examples are positives, noisy ones negatives with
   weight lambda: L = -mean_clean log s(g_i) - lambda mean_noisy log(1 - s(g_j)), s = sigmoid;
5. relevance of noisy example j: r_j = s(g_j) of the trained GCN in evaluation mode (no dropout);
6. the end classifier is trained on clean (weight 1) + noisy examples weighted by r_j: a prototype
   (weighted mean, released code) or a cosine classifier with a weighted cross-entropy.

Arrays in, arrays out; torch is imported inside the functions.
"""
from __future__ import annotations

import numpy as np

from visrep.errors import UserError

#: lambda of the paper's loss as tuned per number of clean shots on the validation classes
#: (released code ``utils.load_config``, ResNet-10 features)
PAPER_LAMBDA = {1: 0.01, 2: 0.05, 5: 0.5, 10: 1.0, 20: 5.0}


def paper_lambda(k_shot: int) -> float:
    """lambda of the released code for `k_shot` clean examples per class (nearest tabulated shot)."""
    shots = np.array(sorted(PAPER_LAMBDA))
    return PAPER_LAMBDA[int(shots[np.argmin(np.abs(np.log(shots) - np.log(max(k_shot, 1))))])]


def l2_rows(X: np.ndarray) -> np.ndarray:
    """(n, d) float -> (n, d) float32 rows of unit L2 norm (zero rows stay zero)."""
    X = np.asarray(X, dtype=np.float32)
    n = np.linalg.norm(X, axis=1, keepdims=True)
    return np.divide(X, n, out=np.zeros_like(X), where=n > 0)


def pixel_features(images: np.ndarray) -> np.ndarray:
    """(n, H, W) uint8 images -> (n, H*W) float32 features: pixels in [0, 1], L2-normalised.

    The fixed feature of the Fashion-MNIST proxy: like the paper's post-ReLU CNN features it is
    non-negative and L2-normalised, so inner products are cosine similarities in [0, 1].
    """
    x = np.asarray(images)
    return l2_rows(x.reshape(len(x), -1).astype(np.float32) / 255.0)


def reciprocal_knn_affinity(V: np.ndarray, k: int):
    """Affinity of step 1: (n, d) L2-normalised rows -> scipy.sparse csr (n, n) symmetric, zero diagonal.

    a_ij = max(0, v_i^T v_j) for j among the k nearest neighbours of i (self excluded, ties by index),
    then A = min(A, A^T): an edge survives only when each end is among the other's k neighbours
    (released code ``features2affinitymax`` + ``affinitymat.minimum(affinitymat.T)``).
    """
    import scipy.sparse as sp
    V = np.asarray(V, dtype=np.float32)
    n = len(V)
    if k < 1:
        raise UserError(f"kNN graph: k must be >= 1, got {k}")
    kk = min(k, n - 1)
    if kk < 1:
        return sp.csr_matrix((n, n), dtype=np.float64)
    S = V @ V.T
    np.fill_diagonal(S, -np.inf)
    nn = np.argsort(-S, axis=1, kind="stable")[:, :kk]
    rows = np.repeat(np.arange(n), kk)
    vals = np.maximum(S[rows, nn.ravel()], 0.0).astype(np.float64)
    A = sp.csr_matrix((vals, (rows, nn.ravel())), shape=(n, n))
    A = A.minimum(A.T).tocsr()
    A.eliminate_zeros()
    return A


def gcn_adjacency(A, normalization: str = "row"):
    """Step 2: (n, n) affinity (dense or sparse, symmetric, non-negative) -> A_hat as scipy.sparse csr.

    A~ = A + I, D~ = diag(A~ 1); ``row``: A_hat = D~^-1 A~ (released code, pygcn's ``normalize``);
    ``sym``: A_hat = D~^-1/2 A~ D~^-1/2 (Kipf & Welling 2017, Eq. 2, the renormalisation trick).
    """
    import scipy.sparse as sp
    A = sp.csr_matrix(A, dtype=np.float64)
    if A.shape[0] != A.shape[1]:
        raise UserError(f"adjacency must be square, got {A.shape}")
    if A.nnz and A.data.min() < 0:
        raise UserError("adjacency must be non-negative (affinities are clipped at 0)")
    At = A + sp.eye(A.shape[0], format="csr")
    d = np.asarray(At.sum(axis=1)).ravel()
    if normalization == "row":
        return (sp.diags(1.0 / d) @ At).tocsr()
    if normalization == "sym":
        s = sp.diags(1.0 / np.sqrt(d))
        return (s @ At @ s).tocsr()
    raise UserError(f"normalization must be 'row' or 'sym', got {normalization!r}")


#: graphs up to this many nodes are propagated as dense matrices (faster on CPU), larger ones as sparse
DENSE_MAX = 4096


def _torch_adjacency(A_hat):
    """scipy matrix -> torch float32, dense up to DENSE_MAX nodes, else sparse COO."""
    import torch
    if A_hat.shape[0] <= DENSE_MAX:
        return torch.from_numpy(A_hat.toarray().astype(np.float32))
    c = A_hat.tocoo()
    idx = torch.from_numpy(np.vstack([c.row, c.col]).astype(np.int64))
    return torch.sparse_coo_tensor(idx, torch.from_numpy(c.data.astype(np.float32)), c.shape,
                                   check_invariants=True).coalesce()


def _mm(A, B):
    import torch
    return torch.sparse.mm(A, B) if A.is_sparse else A @ B


def _gcn_logits(X, A, W1, b1, W2, b2, dropout: float = 0.0, generator=None):
    """torch: the two-layer GCN of step 3 -> logits (n,); dropout on the hidden layer when dropout > 0."""
    import torch
    H = torch.relu(_mm(A, X @ W1) + b1)
    if dropout > 0:
        keep = (torch.rand(H.shape, generator=generator) >= dropout).to(H.dtype)
        H = H * keep / (1.0 - dropout)
    return (_mm(A, H @ W2) + b2).squeeze(1)


def gcn_forward(X: np.ndarray, A_hat, W1: np.ndarray, b1: np.ndarray, W2: np.ndarray, b2: np.ndarray) -> np.ndarray:
    """Step 3 (evaluation mode): g = A_hat ReLU(A_hat X W1 + b1) W2 + b2 (Kipf & Welling Eq. 9).

    X (n, d), A_hat (n, n) dense or sparse, W1 (d, h), b1 (h,), W2 (h, 1), b2 (1,) -> logits (n,) float32.
    """
    import torch
    t = [torch.as_tensor(np.asarray(a, dtype=np.float32)) for a in (X, W1, b1, W2, b2)]
    with torch.no_grad():
        return _gcn_logits(t[0], _torch_adjacency(_as_sparse(A_hat)), *t[1:]).numpy()


def _as_sparse(A):
    import scipy.sparse as sp
    return sp.csr_matrix(A, dtype=np.float64)


def train_gcn_cleaner(X: np.ndarray, A_hat, n_clean: int, lam: float, hidden: int = 16, dropout: float = 0.5,
                      lr: float = 0.1, iters: int = 100, weight_decay: float = 5e-4, lr_step: int = 30,
                      seed: int = 0) -> tuple[np.ndarray, dict, list]:
    """Steps 3-5 for one class: train the GCN with the paper's loss; return (relevance (n,), params, losses).

    X (n, d) float32: the clean examples first (rows < n_clean, positives), then the noisy ones
    (negatives of weight ``lam``); A_hat (n, n) from :func:`gcn_adjacency`. Optimiser of the released
    code: Adam(lr, weight_decay), lr x 0.1 every ``lr_step`` iterations, full batch, dropout on the
    hidden layer. Initialisation as pygcn: U(-1/sqrt(out), 1/sqrt(out)) for weights and biases.
    Loss (the paper's weighted binary cross-entropy, with log-sigmoid instead of the code's +1e-6):
    L = -mean_{i<n_clean} log s(g_i) - lam * mean_{j>=n_clean} log(1 - s(g_j)).
    relevance = s(g) of the trained GCN without dropout; params: numpy W1, b1, W2, b2 (for gcn_forward).
    """
    import torch
    import torch.nn.functional as F
    X = np.asarray(X, dtype=np.float32)
    n, d = X.shape
    if not 0 < n_clean <= n:
        raise UserError(f"GCN cleaner: n_clean must lie in 1..{n}, got {n_clean}")
    g = torch.Generator().manual_seed(int(seed))

    def uni(shape, fan_out):
        s = 1.0 / np.sqrt(fan_out)
        return ((torch.rand(shape, generator=g) * 2 - 1) * s).requires_grad_(True)

    W1, b1, W2, b2 = uni((d, hidden), hidden), uni((hidden,), hidden), uni((hidden, 1), 1), uni((1,), 1)
    Xt, At = torch.from_numpy(X), _torch_adjacency(_as_sparse(A_hat))
    pos = torch.arange(n_clean)
    neg = torch.arange(n_clean, n)
    opt = torch.optim.Adam([W1, b1, W2, b2], lr=lr, weight_decay=weight_decay)
    losses = []
    for it in range(iters):
        for group in opt.param_groups:
            group["lr"] = lr * 0.1 ** (it // lr_step)
        opt.zero_grad()
        z = _gcn_logits(Xt, At, W1, b1, W2, b2, dropout, g)
        loss = -F.logsigmoid(z[pos]).mean()
        if len(neg):
            loss = loss - lam * F.logsigmoid(-z[neg]).mean()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        rel = torch.sigmoid(_gcn_logits(Xt, At, W1, b1, W2, b2)).numpy()
    params = {k: v.detach().numpy().copy() for k, v in (("W1", W1), ("b1", b1), ("W2", W2), ("b2", b2))}
    return rel.astype(np.float64), params, losses


def gcn_relevance(V: np.ndarray, labels: np.ndarray, clean: np.ndarray, n_classes: int, k: int = 50,
                  lam: float = 0.5, normalization: str = "row", seed: int = 0, **train) -> np.ndarray:
    """Steps 1-5 over all classes: relevance weights (n,) float64 of the training items.

    V (n, d) L2-normalised features; labels (n,) int observed (clean or noisy) labels; clean (n,) bool.
    For each class c one graph over its clean + noisy items and one GCN (seed ``seed + c``); a clean
    item gets weight 1, a noisy item its relevance r_j; a class without clean items leaves its
    noisy items at weight 0 (nothing to learn clean from). ``train``: options of train_gcn_cleaner.
    """
    V = np.asarray(V, dtype=np.float32)
    labels = np.asarray(labels)
    clean = np.asarray(clean, dtype=bool)
    w = np.where(clean, 1.0, 0.0)
    for c in range(n_classes):
        ci, ni = np.flatnonzero(clean & (labels == c)), np.flatnonzero(~clean & (labels == c))
        if not len(ci) or not len(ni):
            continue
        idx = np.concatenate([ci, ni])
        A_hat = gcn_adjacency(reciprocal_knn_affinity(V[idx], k), normalization)
        rel, _, _ = train_gcn_cleaner(V[idx], A_hat, len(ci), lam, seed=seed + c, **train)
        w[ni] = rel[len(ci):]
    return w


def weighted_prototypes(V: np.ndarray, labels: np.ndarray, weights: np.ndarray, n_classes: int) -> np.ndarray:
    """Step 6, prototype classifier: (C, d) float32 rows p_c = normalise(sum_{y_i = c} w_i v_i).

    The released code's prototypical classifier (``get_prototypical_classifier``: mean of the clean
    features and of the relevance-weighted noisy ones, then L2-normalised). Scores: V_test @ P^T.
    """
    V = np.asarray(V, dtype=np.float64)
    W = np.zeros((n_classes, V.shape[1]))
    np.add.at(W, np.asarray(labels), np.asarray(weights, dtype=np.float64)[:, None] * V)
    return l2_rows(W)


def train_weighted_cosine_classifier(V: np.ndarray, labels: np.ndarray, weights: np.ndarray, n_classes: int,
                                     scale: float = 10.0, epochs: int = 100, lr: float = 0.01) -> np.ndarray:
    """Step 6, cosine classifier (Gidaris & Komodakis, CVPR 2018) with a relevance-weighted loss.

    V (n, d), labels (n,), weights (n,) >= 0 -> class weights (C, d) float32, L2-normalised.
    Minimises sum_i w_i CE(scale * cos(W, v_i), y_i) / sum_i w_i full batch with Adam, starting
    from :func:`weighted_prototypes` (deterministic: full batch). Scores: normalise(V_test) @ W^T. (The paper fine-tunes a
    cosine classifier too; its schedule is not in the released code, these settings are ours.)
    """
    import torch
    import torch.nn.functional as F
    w = np.asarray(weights, dtype=np.float32)
    if (w < 0).any() or w.sum() <= 0:
        raise UserError("classifier weights must be non-negative with a positive sum")
    Wc = torch.tensor(weighted_prototypes(V, labels, w, n_classes), requires_grad=True)
    Xt = torch.from_numpy(l2_rows(V))
    yt = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    wt = torch.from_numpy(w)
    opt = torch.optim.Adam([Wc], lr=lr)
    for _ in range(epochs):
        opt.zero_grad()
        logits = scale * Xt @ F.normalize(Wc, dim=1).T
        loss = (wt * F.cross_entropy(logits, yt, reduction="none")).sum() / wt.sum()
        loss.backward()
        opt.step()
    return l2_rows(Wc.detach().numpy())


def relevance_auc(relevance: np.ndarray, correct: np.ndarray) -> float:
    """Area under the ROC curve of `relevance` (n,) separating correct (True) from wrong noisy labels.

    = P(r_correct > r_wrong) + P(tie) / 2 (Mann-Whitney U / (n_correct n_wrong)); NaN if a side is empty.
    """
    from scipy.stats import rankdata
    r = np.asarray(relevance, dtype=np.float64)
    y = np.asarray(correct, dtype=bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if not n1 or not n0:
        return float("nan")
    ranks = rankdata(r)
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
