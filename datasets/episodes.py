"""Seeded N-way K-shot episode sampler (Vinyals et al., Matching networks, NeurIPS 2016;
Ravi & Larochelle, ICLR 2017 protocol: 5-way 1/5-shot, 15 queries per class, 600+ episodes).

Episode e draws N classes without replacement from the pool's classes, then K + Q distinct
items per class (support first, then queries). The same seed gives the same episodes on any
machine (numpy PCG64 ``default_rng(seed)``); the draw is vectorized over episodes.
"""
from __future__ import annotations

import numpy as np

from visrep.data import EpisodeData, LabelledData
from visrep.errors import UserError


def sample_episodes(pool: LabelledData, n_way: int = 5, k_shot: int = 1, n_query: int = 15,
                    n_episodes: int = 600, seed: int = 0) -> EpisodeData:
    """Sample `n_episodes` episodes from `pool`; see :class:`EpisodeData` for shapes."""
    if n_way < 1 or k_shot < 1 or n_query < 1 or n_episodes < 1:
        raise UserError(f"episodes need n_way, k_shot, n_query, n_episodes >= 1, got "
                        f"{n_way}, {k_shot}, {n_query}, {n_episodes}")
    labels = pool.labels
    classes, counts = np.unique(labels, return_counts=True)
    per = k_shot + n_query
    eligible = classes[counts >= per]
    if len(eligible) < n_way:
        raise UserError(f"{pool.name} ({pool.split}): {n_way}-way {k_shot}-shot with {n_query} queries needs "
                        f"{n_way} classes with >= {per} items; only {len(eligible)} have that many")
    rng = np.random.default_rng(seed)
    order = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[order], eligible)
    cnt = counts[np.searchsorted(classes, eligible)]
    # classes per episode: N distinct among eligible (argsort of uniform keys)
    pick = np.argsort(rng.random((n_episodes, len(eligible))), axis=1)[:, :n_way]       # (E, N)
    # items per class: `per` distinct positions within the class (argsort of uniform keys)
    maxc = int(cnt.max())
    keys = rng.random((n_episodes, n_way, maxc))
    keys[np.arange(maxc)[None, None, :] >= cnt[pick][:, :, None]] = np.inf
    within = np.argsort(keys, axis=2)[:, :, :per]                                        # (E, N, K+Q)
    items = order[starts[pick][:, :, None] + within]
    local = np.broadcast_to(np.arange(n_way)[None, :, None], items.shape)
    sup, qry = items[:, :, :k_shot], items[:, :, k_shot:]
    E = n_episodes
    return EpisodeData(name=pool.name, pool=pool, n_way=n_way, k_shot=k_shot, n_query=n_query,
                       support=sup.reshape(E, -1), query=qry.reshape(E, -1),
                       support_labels=local[:, :, :k_shot].reshape(E, -1),
                       query_labels=local[:, :, k_shot:].reshape(E, -1),
                       classes=eligible[pick], seed=seed, manifest=pool.manifest)
