"""asv benchmarks of the photo-collection kernels: one query against n documents with average query
expansion (total recall, QE1) vs against scene maps, and scene-map construction.

Input (fixed seed): a tf-idf inverted file of n images of 400 words each over k = 4096 words
(images of one scene share 60% of their words), grouped into scenes of 6 views; scene maps merge
the views of a scene. The query side of QE1 is the average of the query's and 5 verified images'
vectors (Chum et al. ICCV 2007), re-issued 3 times; a scene-map query scores n / 6 documents
(Avrithis et al. ACM-MM 2010). Spatial verification is timed in bench_spatial.py. Run as a script
to print the times once (best of 5).
"""
from __future__ import annotations

import time

import numpy as np

K, WORDS, VIEWS = 4096, 400, 6


def collection(n: int, seed: int = 0):
    """(image vectors (n, K) CSR, scene-map vectors (n / VIEWS, K) CSR, per-view words, idf)."""
    from visrep.methods.local.bow import bow_vectors
    rng = np.random.default_rng(seed)
    scenes = n // VIEWS
    base = rng.integers(0, K, (scenes, WORDS))
    words = []
    for i in range(n):
        w = base[i // VIEWS].copy()
        new = rng.random(WORDS) > 0.6
        w[new] = rng.integers(0, K, int(new.sum()))
        words.append(w)
    idf = np.ones(K)
    ids = np.repeat(np.arange(n), WORDS)
    D = bow_vectors(np.concatenate(words), ids, n, K, idf, False)
    map_words = [np.unique(np.concatenate(words[s * VIEWS:(s + 1) * VIEWS])) for s in range(scenes)]
    M = bow_vectors(np.concatenate(map_words), np.repeat(np.arange(scenes), [len(w) for w in map_words]), scenes,
                    K, idf, False)
    return D, M, words, idf


class CollectionQuerySuite:
    """Time of one query (scoring only) against n images."""

    params = ([1200, 12000],)
    param_names = ("n",)
    timeout = 300

    def setup(self, n):
        self.D, self.M, self.words, self.idf = collection(n)

    def time_bow(self, n):
        from visrep.methods.collections.query_expansion import (
            rank_by_scores,
            tfidf_vector,
        )
        rank_by_scores(self.D @ tfidf_vector(self.words[0], self.idf))

    def time_total_recall_3_requeries(self, n):
        from visrep.methods.collections.query_expansion import (
            average_expansion,
            rank_by_scores,
            tfidf_vector,
        )
        d0 = tfidf_vector(self.words[0], self.idf)
        rank_by_scores(self.D @ d0)
        E = np.stack([tfidf_vector(self.words[i], self.idf) for i in range(1, 6)])
        for _ in range(3):
            rank_by_scores(self.D @ average_expansion(d0, E))

    def time_scene_maps(self, n):
        from visrep.methods.collections.query_expansion import (
            rank_by_scores,
            tfidf_vector,
        )
        rank_by_scores(self.M @ tfidf_vector(self.words[0], self.idf))


class SceneMapSuite:
    """Merging the features of 6 views aligned to their reference view (m features per view)."""

    params = ([500, 2000],)
    param_names = ("m",)
    timeout = 300

    def setup(self, m):
        rng = np.random.default_rng(0)
        self.xy = [rng.uniform(0, 640, (m, 2)) for _ in range(VIEWS)]
        self.words = [rng.integers(0, K, m) for _ in range(VIEWS)]
        self.H = [np.eye(3)] * VIEWS

    def time_build_scene_map(self, m):
        from visrep.methods.collections.scene_maps import build_scene_map
        build_scene_map(self.xy, self.words, self.H, 4.0)


def _best(f, *args, repeat=5):
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        f(*args)
        best = min(best, time.perf_counter() - t0)
    return best


if __name__ == "__main__":
    for n in CollectionQuerySuite.params[0]:
        s = CollectionQuerySuite()
        s.setup(n)
        t = {k: _best(getattr(s, f"time_{k}"), n) for k in ("bow", "total_recall_3_requeries", "scene_maps")}
        print(f"n={n}: " + ", ".join(f"{k} {1e3 * v:.2f} ms" for k, v in t.items()))
    for m in SceneMapSuite.params[0]:
        s = SceneMapSuite()
        s.setup(m)
        print(f"scene map of {VIEWS} x {m} features: {1e3 * _best(s.time_build_scene_map, m):.2f} ms")
