"""asv benchmarks for Part I: ASMK vs the authors' asmk package, AKM vs exact assignment,
AGM vs AKM vocabulary time, inverted-file query vs a dense matrix product.

Inputs (fixed seeds): SIFT-like clustered descriptors, d = 128, L2-normalized; for the
vocabulary suites the real Oxford query Hessian-affine SIFT (~75k) when ``../shared/data`` is
present, else clustered data of the same size. Peer timings run in the same process so the
ratios are meaningful. Run as a script (``python benchmarks/bench_local.py``) to print the
ratios once (best of 3).
"""
from __future__ import annotations

import itertools
import time

import numpy as np

D = 128


def clustered(n, k_true=2000, d=D, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((k_true, d)).astype(np.float32)
    x = c[rng.integers(0, k_true, n)] + 0.5 * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def sift_or_clustered(n=75000):
    from visrep.context import shared_data_dir
    root = shared_data_dir()
    p = root / "localfeatures" / "oxford5k_queries_hesaff_sift" if root else None
    if p is not None and p.is_dir():
        from visrep.methods.local.vocabularies import read_training_descriptors
        return read_training_descriptors(str(p))[:n]
    return clustered(n) * 512


class ASMKSuite:
    """ASMK aggregation (database) and search (per query image) vs the asmk package.
    200 database images x 500 descriptors, 20 queries of 500 descriptors; k = 4096 words (exact
    assignment shared), query multiple assignment ma (1 or 5). k = 65536 is measured by hand (it
    takes about a minute of set-up per combination: too long for every asv run)."""

    timeout = 300
    params = ([False, True], [4096], [1, 5])
    param_names = ("binary", "k", "ma")

    def setup(self, binary, k=1024, ma=1, n_images=200, n_desc=500, n_queries=20):
        """``n_images`` x ``n_desc`` database descriptors, ``n_queries`` queries of ``n_desc``
        (bench_ratios uses smaller sizes than this suite's 200 x 500, 20)."""
        from asmk import inverted_file as ivf_pkg
        from asmk import kernel as kern_pkg
        from visrep.methods.local.match_kernels import ASMKIndex
        from visrep.methods.local.vocabularies import assign
        self.n_images = n_images
        self.c = clustered(k, seed=1)
        self.x = clustered(n_images * n_desc, seed=2)
        self.ids = np.repeat(np.arange(n_images), n_desc)
        self.w, _ = assign(self.x, self.c)
        self.q = [clustered(n_desc, seed=10 + j) for j in range(n_queries)]
        self.qw = [assign(q, self.c, ma)[0] for q in self.q]
        kk = k

        class Codebook:
            centroids = self.c
            size = kk
        self.k = k
        self.kern = kern_pkg.ASMKKernel(Codebook(), binary=binary)
        self.ivf_pkg = ivf_pkg
        self.ours = ASMKIndex(self.x, self.w, self.ids, n_images, self.c, binary)
        agg = self.kern.aggregate(self.x, self.w, self.ids.copy())
        self.theirs = ivf_pkg.IVF.initialize_empty(codebook_size=k, use_idf=True)
        self.theirs.add(*agg[:2], agg[2].copy())
        self.binary = binary

    def time_aggregate_ours(self, binary, k=1024, ma=1):
        from visrep.methods.local.match_kernels import ASMKIndex
        ASMKIndex(self.x, self.w, self.ids, self.n_images, self.c, binary)

    def time_aggregate_asmk(self, binary, k=1024, ma=1):
        agg = self.kern.aggregate(self.x, self.w, self.ids.copy())
        ivf = self.ivf_pkg.IVF.initialize_empty(codebook_size=self.k, use_idf=True)
        ivf.add(*agg[:2], agg[2].copy())

    def time_search_ours(self, binary, k=1024, ma=1):
        for q, qw in zip(self.q, self.qw):
            self.ours.search_image(q, qw, 3.0, 0.0)

    def time_search_asmk(self, binary, k=1024, ma=1):
        sim = lambda *a: self.kern.similarity(*a, alpha=3.0, similarity_threshold=0.0)
        for q, qw in zip(self.q, self.qw):
            self.theirs.search(*self.kern.aggregate_image(q, qw), similarity_func=sim, topk=self.n_images)

    def peakmem_index_ours(self, binary, k=1024, ma=1):
        from visrep.methods.local.match_kernels import ASMKIndex
        ASMKIndex(self.x, self.w, self.ids, self.n_images, self.c, binary)


def database_ours(s: ASMKSuite):
    """visrep's database side of the asmk plugin (methods/local/plugins.py ASMK.index): exact word of
    each database descriptor (``assign``, faiss flat, MA 1) + the ASMK(*) inverted file."""
    from visrep.methods.local.match_kernels import ASMKIndex
    from visrep.methods.local.vocabularies import assign
    w, _ = assign(s.x, s.c, 1, "database descriptors")
    return ASMKIndex(s.x, w, s.ids, s.n_images, s.c, s.binary)


def database_asmk(s: ASMKSuite):
    """The asmk package's database side as ``ASMKMethod.build_ivf`` runs it: ``Codebook.quantize``
    (a faiss IndexFlatL2 over the centroids, MA 1), ``ASMKKernel.aggregate``, ``IVF.add``."""
    import faiss
    index = faiss.IndexFlatL2(s.c.shape[1])
    index.add(s.c)
    _, w = index.search(np.ascontiguousarray(s.x, dtype=np.float32), 1)
    agg = s.kern.aggregate(s.x, w, s.ids.copy())
    ivf = s.ivf_pkg.IVF.initialize_empty(codebook_size=s.k, use_idf=True)
    ivf.add(*agg[:2], agg[2].copy())
    return ivf


class AKMAssignSuite:
    """Assignment of the remaining ~9.4k real SIFT descriptors to 65,536 words (65,536 other real
    SIFT descriptors): k-d forest (8 trees, build included, as in one AKM iteration) vs exact faiss
    flat search."""

    timeout = 600

    def setup(self):
        x = sift_or_clustered(10 ** 6)
        x = x[np.random.default_rng(3).permutation(len(x))]
        self.c, self.x = x[:65536], x[65536:][:20000]

    def time_forest(self):
        from visrep.methods.local.vocabularies import KDForest
        KDForest(self.c, 8, 16).search(self.x, 1)

    def time_exact(self):
        from visrep.methods.local.vocabularies import nearest_centroids
        nearest_centroids(self.x, self.c, 1)


class VocabularyTimeSuite:
    """End-to-end vocabulary learning on 20k SIFT: AGM (k_init 2000, k inferred) vs AKM (k 2000),
    10 iterations each."""

    timeout = 600

    def setup(self):
        x = sift_or_clustered()
        self.x = x[np.random.default_rng(0).choice(len(x), 20000, replace=False)]

    def time_akm(self):
        from visrep.methods.local.vocabularies import akm_fit
        akm_fit(self.x, 2000, niter=10)

    def time_agm(self):
        from visrep.methods.local.vocabularies import agm_fit
        agm_fit(self.x, 2000, niter=10)


class InvertedFileSuite:
    """BoW query on a 10k-image database (1000 words per image, k = 4096): inverted file
    (scipy CSR posting lists, only the query's rows) vs a dense (10k x 4096) matrix product."""

    timeout = 300

    def setup(self):
        import scipy.sparse as sp
        from visrep.methods.local.bow import bow_vectors
        rng = np.random.default_rng(5)
        n, k = 10000, 4096
        p = 1.0 / np.arange(1, k + 1) ** 0.8
        p /= p.sum()
        words = rng.choice(k, n * 1000, p=p)
        ids = np.repeat(np.arange(n), 1000)
        df = np.bincount(np.unique(ids * k + words) % k, minlength=k)
        from visrep.methods.local.inverted_file import idf_weights
        self.idf = idf_weights(df, n)
        db = bow_vectors(words, ids, n, k, self.idf, False)
        self.M = sp.csr_matrix(db.T)
        self.dense = db.toarray().astype(np.float32)
        self.queries = [bow_vectors(rng.choice(k, 1000, p=p), np.zeros(1000, int), 1, k, self.idf, False)
                        for _ in range(20)]

    def time_inverted_file(self):
        for q in self.queries:
            self.M[q.indices].T @ q.data

    def time_dense(self):
        for q in self.queries:
            self.dense @ q.toarray()[0].astype(np.float32)


def _best(fn, reps=3):
    best = np.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


if __name__ == "__main__":
    import sys
    only = sys.argv[1:]
    for binary, k, ma in (itertools.product((False, True), (4096, 65536), (1, 5)) if not only or "asmk" in only else ()):
        s = ASMKSuite()
        s.setup(binary, k, ma)
        a, b = _best(lambda s=s, b=binary: s.time_aggregate_ours(b)), _best(lambda s=s, b=binary: s.time_aggregate_asmk(b))
        c, d = _best(lambda s=s, b=binary: s.time_search_ours(b)), _best(lambda s=s, b=binary: s.time_search_asmk(b))
        print(f"ASMK{'*' if binary else ''} k={k} ma={ma}: aggregate+index ours {a:.3f}s asmk {b:.3f}s (x{b / a:.1f}); "
              f"20 queries ours {c:.3f}s asmk {d:.3f}s (x{d / c:.1f}); index bytes/image {s.ours.nbytes() / 200:.0f}")
    s = AKMAssignSuite()
    s.setup()
    a, b = _best(s.time_forest, 1), _best(s.time_exact, 1)
    from visrep.methods.local.vocabularies import KDForest, nearest_centroids
    _, i1 = KDForest(s.c, 8, 16).search(s.x[:5000], 1)
    _, i2 = nearest_centroids(s.x[:5000], s.c, 1)
    print(f"AKM assignment {len(s.x)} x 65536: forest {a:.2f}s exact {b:.2f}s (exact/forest x{b / a:.2f}); "
          f"forest 1-NN accuracy {(i1 == i2).mean():.3f}")
    s = VocabularyTimeSuite()
    s.setup()
    a, b = _best(s.time_akm, 1), _best(s.time_agm, 1)
    print(f"vocabulary 20k SIFT: AKM k=2000 {a:.1f}s, AGM k_init=2000 {b:.1f}s (AGM/AKM x{b / a:.2f})")
    s = InvertedFileSuite()
    s.setup()
    a, b = _best(s.time_inverted_file), _best(s.time_dense)
    M = s.M
    print(f"BoW 10k images, 20 queries: inverted file {a:.3f}s dense {b:.3f}s (dense/ivf x{b / a:.1f}); "
          f"bytes/image ivf {(M.data.nbytes + M.indices.nbytes + M.indptr.nbytes) / 10000:.0f} "
          f"dense {s.dense.nbytes / 10000:.0f}")
