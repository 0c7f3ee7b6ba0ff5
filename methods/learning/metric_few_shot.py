"""Few-shot classifiers on an embedding: prototypical networks, matching networks, imprinted weights.

- ProtoNet (Snell, Swersky & Zemel, *Prototypical networks for few-shot learning*, NIPS 2017):
  prototype ``c_k = 1/|S_k| sum_{x in S_k} f(x)`` (Eq. 1), ``p(y = k | x) = softmax_k(-d(f(x), c_k))``
  with the squared Euclidean distance (Eq. 2); trained by episodes on the base classes with the
  negative log-probability of the true class of every query (Algorithm 1).
- Matching networks (Vinyals, Blundell, Lillicrap, Kavukcuoglu & Wierstra, *Matching networks for
  one shot learning*, NIPS 2016): ``P(y | x, S) = sum_i a(x, x_i) y_i`` (Eq. 1) with attention
  ``a(x, x_i) = softmax_i(cos(f(x), g(x_i)))`` (Eq. 2), here with ``f = g`` = the embedding network
  -- the paper's model without full context embeddings ("Matching Nets" rows of its Tables 1-2,
  not "Matching Nets FCE"); trained by episodes with the log-likelihood of the query labels.
- Imprinting (Qi, Brown & Lowe, *Low-shot learning with imprinted weights*, CVPR 2018): with a
  cosine classifier over L2-normalized embeddings, a novel class's weight is the normalized mean of
  the normalized embeddings of its examples, ``w = w~ / ||w~||``, ``w~ = 1/n sum_i phi(x_i)``
  (Sec. 3.2, Eq. 3); scores ``s w^T phi(x)`` (Eq. 2).

Shapes: embeddings (n, d) float; labels (n,) int in [0, N); prototypes / weights (N, d); scores (q, N).
torch in, torch out (so that training back-propagates through them).
"""
from __future__ import annotations

import numpy as np

from visrep.errors import UserError

CITE_PROTO = "Snell, Swersky & Zemel, Prototypical networks for few-shot learning, NIPS 2017"
CITE_MATCH = "Vinyals, Blundell, Lillicrap, Kavukcuoglu & Wierstra, Matching networks for one shot learning, NIPS 2016"
CITE_IMPRINT = "Qi, Brown & Lowe, Low-shot learning with imprinted weights, CVPR 2018"


def class_means(emb, labels, n_way: int):
    """(N, d) mean embedding of every class 0..N-1 (ProtoNet Eq. 1)."""
    import torch
    labels = torch.as_tensor(np.array(labels) if not torch.is_tensor(labels) else labels, dtype=torch.long)
    onehot = torch.nn.functional.one_hot(labels, n_way).to(emb.dtype)        # (n, N)
    return (onehot.T @ emb) / onehot.sum(0).clamp_min(1)[:, None]


def protonet_logits(query, protos):
    """(q, N) ``-||f(x) - c_k||^2`` (ProtoNet Eq. 2; its softmax is p(y = k | x))."""
    import torch
    return -torch.cdist(query, protos).pow(2)


def matching_probs(query, support, support_labels, n_way: int):
    """(q, N) ``sum_i softmax_i(cos(f(x), g(x_i))) onehot(y_i)`` (Matching nets Eqs. 1-2)."""
    import torch
    import torch.nn.functional as F
    a = torch.softmax(F.normalize(query, dim=1) @ F.normalize(support, dim=1).T, dim=1)      # (q, s)
    labels = torch.as_tensor(np.array(support_labels) if not torch.is_tensor(support_labels) else support_labels,
                             dtype=torch.long)
    return a @ F.one_hot(labels, n_way).to(a.dtype)


def imprint_weights(emb, labels, n_classes: int):
    """(N, d) imprinted weights: normalized means of the normalized embeddings (Qi et al. Eq. 3)."""
    import torch.nn.functional as F
    return F.normalize(class_means(F.normalize(emb, dim=1), labels, n_classes), dim=1)


def sample_base_episode(labels: np.ndarray, n_way: int, k_shot: int, n_query: int, rng) -> tuple:
    """(support idx (N*K,), support labels, query idx (N*Q,), query labels) from base `labels` (n,)."""
    values, counts = np.unique(labels, return_counts=True)
    enough = values[counts >= k_shot + n_query]
    if len(enough) < n_way:
        raise UserError(f"episodic training needs {n_way} base classes with >= {k_shot + n_query} images each "
                        f"(k_shot {k_shot} + n_query {n_query}); the base split has {len(enough)} such classes "
                        f"of {len(values)} (fewest images in a class: {counts.min()})")
    classes = rng.choice(enough, n_way, replace=False)
    sup, qry = [], []
    for c in classes:
        idx = rng.choice(np.flatnonzero(labels == c), k_shot + n_query, replace=False)
        sup.append(idx[:k_shot])
        qry.append(idx[k_shot:])
    ys = np.repeat(np.arange(n_way), k_shot)
    yq = np.repeat(np.arange(n_way), n_query)
    return np.concatenate(sup), ys, np.concatenate(qry), yq


def episode_log_probs(kind: str, emb_s, ys, emb_q, n_way: int):
    """(q, N) log p(y | x, S) of ProtoNet (``kind = 'protonet'``) or matching nets (``'matching'``)."""
    import torch
    if kind == "protonet":
        return torch.log_softmax(protonet_logits(emb_q, class_means(emb_s, ys, n_way)), dim=1)
    return torch.log(matching_probs(emb_q, emb_s, ys, n_way).clamp_min(1e-12))


def train_episodic(embed, params, x, labels: np.ndarray, kind: str, episodes: int, n_way: int, k_shot: int,
                   n_query: int, lr: float = 1e-3, halve_every: int = 2000, seed: int = 0, progress=None) -> list:
    """Episodic training (Snell Alg. 1 / Vinyals Sec. 2.2): Adam, lr halved every `halve_every` episodes.

    ``embed``: x (B, C, H, W) -> (B, d); ``params`` its parameters. Returns the loss of every episode.
    """
    import torch
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, halve_every), gamma=0.5)
    losses = []
    it = range(episodes) if progress is None else progress(range(episodes), desc=f"{kind} episodes",
                                                           total=episodes, unit="episode")
    for _ in it:
        si, ys, qi, yq = sample_base_episode(labels, n_way, k_shot, n_query, rng)
        emb = embed(x[torch.from_numpy(np.concatenate([si, qi]))])
        lp = episode_log_probs(kind, emb[:len(si)], ys, emb[len(si):], n_way)
        loss = torch.nn.functional.nll_loss(lp, torch.from_numpy(yq))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    return losses
