"""asv benchmarks of the Part IV "beyond" families: one deep active-learning cycle, one GCN cleaner training.

- ``ActiveLearningCycle``: one cycle of Siméoni et al. ICPR 2020 (methods/beyond/active_learning.py):
  train the cycle's network on the labelled set (supervised, ``lp_epochs = 0``) or on labelled +
  unlabelled (label propagation, ``lp_epochs = 1``), then acquire b = 10 items by each strategy
  (random, entropy, core-set, jLP), on a pool of 500 images 28 x 28 (real Fashion-MNIST when the
  Debian dataset package is installed, else seeded noise images: timings of the same operations).
- ``GCNTraining``: the GCN cleaner of Iscen et al. (methods/beyond/gcn.py, ``train_gcn_cleaner``,
  100 Adam iterations, hidden 16) on one class of 50 clean + 450 noisy items of 64-d L2-normalised
  features (seeded Gaussian) on their reciprocal kNN graph (k = 50), and ``gcn_relevance`` over 10
  classes of 20 clean + 180 noisy items.

Torch runs on one thread. Run as a script (``python benchmarks/bench_beyond.py``) to print the times once.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar

import numpy as np

FASHION = Path("/usr/share/datasets/fashion-mnist")


def _pool(n: int = 500):
    """(x (n, 1, 28, 28) float32 torch tensor in [0, 1], labels (n,) int64)."""
    import torch
    torch.set_num_threads(1)
    f = FASHION / "train-images-idx3-ubyte.gz"
    if f.exists():
        from visrep.datasets.mnist import read_mnist_split
        d = read_mnist_split(FASHION, "train", "fashion-mnist")
        x, y = d.x[:n].astype(np.float32) / 255.0, d.labels[:n]
    else:
        rng = np.random.default_rng(0)
        x, y = rng.random((n, 28, 28), dtype=np.float32), rng.integers(0, 10, n)
    return torch.from_numpy(x[:, None].copy()), np.asarray(y, np.int64)


class ActiveLearningCycle:
    """One active-learning cycle: training (supervised or with label propagation), then acquisition."""

    timeout = 600
    params = ([0, 1],)
    param_names: ClassVar[list] = ["lp_epochs"]

    def setup(self, lp_epochs):
        import torch
        from visrep.methods.learning.convnets import embed, make_convnet
        self.x, self.y = _pool()
        n = len(self.y)
        self.labelled = np.concatenate([np.flatnonzero(self.y == c)[:2] for c in range(10)])
        self.unlabelled = np.setdiff1d(np.arange(n), self.labelled)
        torch.manual_seed(0)
        self.model = make_convnet(1, 16, 3, 10)
        self.v = embed(self.model.embed, self.x)
        with torch.no_grad():
            self.p = torch.softmax(self.model(self.x), 1).numpy()

    def time_train_cycle(self, lp_epochs):
        from visrep.methods.beyond.active_learning import train_cycle
        from visrep.methods.learning.convnets import make_convnet
        train_cycle(make_convnet(1, 16, 3, 10), self.x, self.labelled, self.y[self.labelled], 10, epochs=10,
                    lp_epochs=lp_epochs, k=20, batch=50, labelled_per_batch=20)

    def time_acquire(self, lp_epochs):
        from visrep.methods.beyond.active_learning import (
            acquire_entropy,
            acquire_jlp,
            acquire_random,
            k_center_greedy,
        )
        from visrep.methods.learning.label_propagation import dlp_graph
        acquire_random(self.unlabelled, 10, np.random.default_rng(0))
        acquire_entropy(self.p, self.unlabelled, 10)
        k_center_greedy(self.v, self.labelled, self.unlabelled, 10)
        vn = self.v / np.linalg.norm(self.v, axis=1, keepdims=True).clip(1e-12)
        acquire_jlp(dlp_graph(vn, 20, 3.0), self.labelled, self.unlabelled, 10)


class GCNTraining:
    """The GCN that scores how clean each noisy example is (one class; ten classes)."""

    timeout = 600

    def setup(self):
        import torch
        torch.set_num_threads(1)
        from visrep.methods.beyond.gcn import (
            gcn_adjacency,
            l2_rows,
            reciprocal_knn_affinity,
        )
        rng = np.random.default_rng(0)
        one = l2_rows(rng.standard_normal((500, 64)).astype(np.float32))
        self.V = l2_rows(rng.standard_normal((2000, 64)).astype(np.float32))
        self.labels = np.repeat(np.arange(10), 200)
        self.clean = (np.arange(2000) % 200) < 20
        self.A = gcn_adjacency(reciprocal_knn_affinity(one, 50))
        self.X1 = one

    def time_train_gcn_one_class(self):
        from visrep.methods.beyond.gcn import train_gcn_cleaner
        train_gcn_cleaner(self.X1, self.A, 50, 0.5, seed=0)

    def time_gcn_relevance_ten_classes(self):
        from visrep.methods.beyond.gcn import gcn_relevance
        gcn_relevance(self.V, self.labels, self.clean, 10, k=50, lam=0.5, seed=0)


if __name__ == "__main__":
    for cls, cases in ((ActiveLearningCycle, [(0,), (1,)]), (GCNTraining, [()])):
        for args in cases:
            s = cls()
            s.setup(*args)
            for name in [m for m in dir(cls) if m.startswith("time_")]:
                t0 = time.perf_counter()
                getattr(s, name)(*args)
                print(f"{cls.__name__}{list(args) or ''} {name[5:]:28s} {time.perf_counter() - t0:.3f} s")
