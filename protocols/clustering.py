"""Clustering of a collection's database images against its known scenes: purity, inverse purity, NMI.

The scenes come from a retrieval dataset's ground truth: a database image belongs to the scene
of the query whose positives (``ok``, else ``easy`` + ``hard``) contain it (the first such query
when several do). Images that are a positive of no query (distractors) have no known scene and
are left out of every metric (they are still clustered by the method).

Metrics, over the n labelled images with clusters K and scenes C:

- purity = (1/n) sum_k max_c |k ∩ c| (Manning, Raghavan & Schütze, Introduction to
  information retrieval, 2008, Sec. 16.3, Eq. 16.1); per item: 1 when the image's scene is the
  majority scene of its cluster (ties: the smallest scene id), so its mean is the purity;
- inverse purity = (1/n) sum_c max_k |k ∩ c| (purity with the roles swapped: singletons score
  purity 1 but a low inverse purity);
- NMI = I(K; C) / sqrt(H(K) H(C)) (Strehl & Ghosh, Cluster ensembles, JMLR 2002, Eq. 2), 1 when
  both partitions have a single block;
- n_clusters: clusters among the labelled images.

Outputs contract (task ``clustering``): ``outputs["labels"]`` int (n_db,): the cluster of each
database image.
"""
from __future__ import annotations

import numpy as np

from visrep.api import Protocol
from visrep.errors import UserError
from visrep.registry import register


def scenes_from_ground_truth(gnd: list, n_db: int) -> np.ndarray:
    """(n_db,) int64 scene of each database image: the index of the first query listing it as a
    positive (``ok``, else ``easy`` and ``hard``), -1 for none."""
    scene = np.full(n_db, -1, np.int64)
    for j in range(len(gnd) - 1, -1, -1):
        g = gnd[j]
        pos = g["ok"] if "ok" in g else np.concatenate([np.asarray(g.get("easy", []), np.int64),
                                                          np.asarray(g.get("hard", []), np.int64)])
        scene[np.asarray(pos, np.int64)] = j
    return scene


def contingency(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """(n_clusters, n_classes) counts of items per (cluster, class); ids are relabelled to 0.. in
    sorted order."""
    _, k = np.unique(labels, return_inverse=True)
    _, c = np.unique(classes, return_inverse=True)
    N = np.zeros((k.max() + 1 if len(k) else 0, c.max() + 1 if len(c) else 0), np.int64)
    np.add.at(N, (k, c), 1)
    return N


def purity(N: np.ndarray) -> float:
    """sum_k max_c N[k, c] / n (Manning et al. 2008, Eq. 16.1)."""
    n = N.sum()
    return float(N.max(1).sum() / n) if n else float("nan")


def nmi(N: np.ndarray) -> float:
    """I(K; C) / sqrt(H(K) H(C)) of a contingency table (Strehl & Ghosh 2002, Eq. 2); 1.0 when both
    entropies are 0, 0.0 when only one is."""
    n = N.sum()
    if n == 0:
        return float("nan")
    P = N / n
    pk, pc = P.sum(1), P.sum(0)
    nz = P > 0
    mi = float((P[nz] * np.log(P[nz] / (pk[:, None] * pc[None])[nz])).sum())
    hk = float(-(pk[pk > 0] * np.log(pk[pk > 0])).sum())
    hc = float(-(pc[pc > 0] * np.log(pc[pc > 0])).sum())
    if hk == 0 and hc == 0:
        return 1.0
    if hk == 0 or hc == 0:
        return 0.0
    return float(max(0.0, min(1.0, mi / np.sqrt(hk * hc))))


@register
class Clustering(Protocol):
    name = "clustering"
    task = "clustering"
    data_tasks = ("retrieval",)
    summary = "purity, inverse purity and NMI of database-image clusters against the scenes of the ground truth"
    cite = ("Manning, Raghavan & Schütze, Introduction to information retrieval, 2008 (purity); Strehl & Ghosh, "
            "Cluster ensembles, JMLR 2002 (NMI)")

    def score(self, outputs: dict, data) -> tuple[dict, dict]:
        if "labels" not in outputs:
            raise UserError(f"protocol 'clustering' needs outputs['labels'] (n_db,); got keys {sorted(outputs)}")
        lab = np.asarray(outputs["labels"])
        if lab.shape != (data.n_db,) or lab.dtype.kind not in "iu":
            raise UserError(f"labels for {data.name}: expected ({data.n_db},) integers, got {lab.shape} {lab.dtype}")
        scene = scenes_from_ground_truth(data.gnd, data.n_db)
        keep = scene >= 0
        if not keep.any():
            raise UserError(f"{data.name}: no database image is a positive of any query, so no scene is known")
        k, c = lab[keep], scene[keep]
        N = contingency(k, c)
        # per item: its scene is its cluster's majority scene (ties: smallest scene id)
        _, ki = np.unique(k, return_inverse=True)
        _, ci = np.unique(c, return_inverse=True)
        hit = (N.argmax(1)[ki] == ci).astype(np.float64)
        per = np.full(data.n_db, np.nan)
        per[keep] = hit
        m = {"purity": purity(N), "inverse_purity": purity(N.T), "nmi": nmi(N),
             "n_clusters": int(N.shape[0]), "n_labelled": int(keep.sum())}
        return m, {"purity": per}

    def format(self, metrics: dict, data) -> str:
        return (f">> {data.name}: purity {metrics['purity']:.4f}, inverse purity {metrics['inverse_purity']:.4f}, "
                f"NMI {metrics['nmi']:.4f}, {metrics['n_clusters']} clusters over {metrics['n_labelled']} images")
