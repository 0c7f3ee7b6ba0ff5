"""asv benchmarks for Part III: label propagation by conjugate gradient (DLP, Iscen et al. CVPR 2019,
Eq. 10) vs scikit-learn's LabelSpreading (iterative, Zhou et al. 2004) on the same 10k graph.

Input: the real MNIST test set (10,000 images, pixels as 784-D unit vectors) when
``../shared/data/classification/mnist`` is here, else 10,000 synthetic clustered unit vectors
(d = 128, fixed seed); 100 balanced labels (10 per class). Graph: k = 50, gamma = 3,
``W = A + A^T`` normalized (built once in ``setup_cache``). CG: 20 iterations, tol 1e-6 (the
paper's code); LabelSpreading: alpha 0.99, its default 30 iterations, on the same sparse
affinity through a callable kernel. ``track_agreement`` is the fraction of items both label alike.

Run as a script (``python benchmarks/bench_learning.py``) to print the times and agreement.
"""
from __future__ import annotations

import time

import numpy as np

N = 10_000
ALPHA = 0.99


def _data():
    from visrep.context import shared_data_dir
    shared = shared_data_dir()
    mnist = shared / "classification" / "mnist" if shared else None
    if mnist is not None and (mnist / "t10k-images-idx3-ubyte.gz").exists():
        from visrep.datasets.mnist import read_mnist_split
        d = read_mnist_split(mnist, "test")
        x, y = d.x.reshape(len(d), -1).astype(np.float32), d.labels
    else:
        rng = np.random.default_rng(0)
        centers = rng.standard_normal((10, 128)).astype(np.float32)
        y = rng.integers(0, 10, N)
        x = centers[y] + 1.5 * rng.standard_normal((N, 128)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    rng = np.random.default_rng(0)
    li = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), 10, replace=False) for c in range(10)]))
    return x, y, li


def _unnormalized(x, k=50, gamma=3.0):
    import scipy.sparse as sp
    from visrep.methods.manifolds.knn_graph import knn
    sims, ids = knn(x, k + 1)
    rows = np.repeat(np.arange(len(x)), k + 1)
    keep = ids.ravel() != rows
    a = sp.csr_matrix((np.maximum(sims.ravel(), 0)[keep] ** gamma, (rows[keep], ids.ravel()[keep])),
                      shape=(len(x),) * 2)
    return (a + a.T).tocsr()


def _cg(state):
    from visrep.methods.learning.label_propagation import propagate
    x, y, li, wn, _ = state
    return propagate(wn, li, y[li], 10, ALPHA, tol=1e-6, maxiter=20).argmax(1)


def _labelspreading(state):
    from sklearn.semi_supervised import LabelSpreading
    x, y, li, _, a = state
    lab = np.full(len(y), -1)
    lab[li] = y[li]
    return LabelSpreading(kernel=lambda p, q: a, alpha=ALPHA, max_iter=30).fit(x, lab).transduction_


class LabelPropagation10k:
    timeout = 300

    def setup_cache(self):
        from visrep.methods.learning.label_propagation import dlp_graph
        x, y, li = _data()
        return x, y, li, dlp_graph(x, 50, 3.0), _unnormalized(x)

    def time_cg(self, state):
        _cg(state)

    def time_labelspreading(self, state):
        _labelspreading(state)

    def track_agreement(self, state):
        return float(np.mean(_cg(state) == _labelspreading(state)))

    def track_cg_accuracy(self, state):
        return float(np.mean(_cg(state) == state[1]))


if __name__ == "__main__":
    b = LabelPropagation10k()
    t = time.perf_counter()
    st = b.setup_cache()
    print(f"graph (n = {len(st[1])}): {time.perf_counter() - t:.2f} s")
    for name, fn in (("CG (20 it)", _cg), ("LabelSpreading (30 it)", _labelspreading)):
        t = time.perf_counter()
        pred = fn(st)
        print(f"{name}: {time.perf_counter() - t:.3f} s, accuracy {np.mean(pred == st[1]):.4f}")
    print(f"agreement: {b.track_agreement(st):.4f}")
