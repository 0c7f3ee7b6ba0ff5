"""asv benchmarks of the search room: the kernels every retrieval run goes through.

- exact nearest-neighbour search (``visrep.methods.search.knn.search``, faiss flat index, chunked),
- query expansion (``visrep.methods.search.query_expansion.expand_queries``: AQE and alpha-QE re-queries),

Inputs are seeded synthetic L2-normalized descriptors of the sizes of Oxford5k (5063 x 128, 55
queries) and of a 100k database; and, when ``../shared/data`` has them, the real Oxford5k
CaffeNet PCA-128 descriptors. Everything is built in ``setup()`` so only the kernel is timed.
"""
from __future__ import annotations

import numpy as np


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _descriptors(n_db: int, n_q: int, d: int = 128, seed: int = 0):
    rng = np.random.default_rng(seed)
    db = _unit(rng.standard_normal((n_db, d), dtype=np.float32))
    q = _unit(db[rng.choice(n_db, n_q, replace=False)] + 0.1 * rng.standard_normal((n_q, d), dtype=np.float32))
    return db, q


def _oxford5k():
    """Real Oxford5k descriptors (5063 x 128) and the 55 query rows, or None when absent."""
    from visrep.context import shared_data_dir
    root = shared_data_dir()
    path = root / "retrieval/oxford5k/oxford_features_caffenet_pca128.fvecs" if root else None
    if path is None or not path.exists():
        return None
    raw = np.fromfile(path, dtype=np.int32)
    d = int(raw[0])
    db = _unit(raw.reshape(-1, d + 1)[:, 1:].view(np.float32))
    rng = np.random.default_rng(0)
    return db, db[rng.choice(db.shape[0], 55, replace=False)]


class ExactSearch:
    """search(db, queries): full ranking (k=None) and top-100, Oxford5k-sized and 100k database."""

    params = ([5063, 100_000], [None, 100])
    param_names = ["n_db", "k"]
    timeout = 120

    def setup(self, n_db, k):
        import faiss
        if n_db > 10_000 and k is None:
            raise NotImplementedError("full ranking of a 100k database: seconds per call, left out")  # asv: skip
        faiss.omp_set_num_threads(1)
        self.db, self.q = _descriptors(n_db, 55)

    def time_search(self, n_db, k):
        from visrep.methods.search.knn import search
        search(self.db, self.q, k=k)

    def peakmem_search(self, n_db, k):
        from visrep.methods.search.knn import search
        search(self.db, self.q, k=k)


class ExactSearchOxford5kReal:
    """search on the real Oxford5k CaffeNet PCA-128 descriptors (skipped when absent)."""

    def setup(self):
        import faiss
        faiss.omp_set_num_threads(1)
        real = _oxford5k()
        if real is None:
            raise NotImplementedError("real Oxford5k descriptors not here")  # asv: skip
        self.db, self.q = real

    def time_search_full_ranking(self):
        from visrep.methods.search.knn import search
        search(self.db, self.q)


class QueryExpansion:
    """expand_queries for AQE (alpha=0) and alpha-QE (alpha=3) with n=10, then the second search."""

    params = ([0.0, 3.0],)
    param_names = ["alpha"]

    def setup(self, alpha):
        import faiss
        faiss.omp_set_num_threads(1)
        from visrep.methods.search.knn import search
        self.db, self.q = _descriptors(5063, 55)
        self.sims, self.ranks = search(self.db, self.q, k=10)

    def time_expand(self, alpha):
        from visrep.methods.search.query_expansion import expand_queries
        expand_queries(self.db, self.q, self.sims, self.ranks, 10, alpha)

    def time_expand_and_requery(self, alpha):
        from visrep.methods.search.knn import search
        from visrep.methods.search.query_expansion import expand_queries
        search(self.db, expand_queries(self.db, self.q, self.sims, self.ranks, 10, alpha))


