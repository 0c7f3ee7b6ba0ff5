"""The method plugins of methods/collections/: `total-recall`, `scene-maps`, `scene-maps-qe`, `view-clustering`
(talk Part I: exploring photo collections; the talk's QE1, scene maps and QE2).

Each class is named after its registered name; its parameters are declared as
``params = FAMILY_PARAMS + (...)`` and its numbers come from the kernels beside this file.
"""
from __future__ import annotations

import time

import numpy as np

from visrep.params import Param
from visrep.registry import register

from .pipeline import CollectionRetrieval
from .query_expansion import (
    average_expansion,
    back_project_inside,
    merge_verified,
    rank_by_scores,
    tfidf_vector,
)
from .scene_maps import build_scene_map, kvq_clusters


@register
class TotalRecall(CollectionRetrieval):
    name = "total-recall"
    summary = ("QE1: BoW + spatial verification, recursive average query expansion with back-projected "
               "verified features, re-queried 3 times, results merged")
    cite = ("Chum, Philbin, Sivic, Isard & Zisserman, Total recall: automatic query expansion with a "
            "generative feature model for object retrieval, ICCV 2007 (recursive average query expansion)")
    model = "affine"
    params = CollectionRetrieval.params + (
        Param("iterations", int, 3, "re-queries of the recursive average expansion (the talk's QE1: 3; "
              "1 = the paper's average query expansion); stops earlier when a round verifies no new image",
              low=1),
        Param("m", int, 50, "average the top m verified images by inliers (50 in the paper)", low=1),
    )

    def run(self, data, ctx) -> dict:
        cfg = self.cfg
        col = self.collection(data, ctx)
        N = min(cfg["shortlist"], data.n_db)
        ranks = np.zeros((data.n_db, data.n_queries), np.int64)
        n_verified, n_requeries, n_checked = [], [], 0
        t0 = time.perf_counter()
        with ctx.phase("online"):
            for j in ctx.progress(range(data.n_queries), desc=f"{self.name} query", total=data.n_queries):
                qf, qw = col.q_frames[j], col.q_words[j]
                d0 = tfidf_vector(qw, col.idf)
                rank = rank_by_scores(col.D @ d0)
                checked: set[int] = set()
                ver, inl, exp = [], [], []
                requeries = 0
                for it in range(cfg["iterations"] + 1):
                    new = 0
                    for i in (int(i) for i in rank[:N]):
                        if i in checked:
                            continue
                        checked.add(i)
                        score, T = self.verify(qf, qw, col.db_frames[i], col.db_words[i])
                        if score >= cfg["min_inliers"] and T is not None:
                            _, inside = back_project_inside(col.db_frames[i][:, :2], T, col.regions[j])
                            ver.append(i)
                            inl.append(score)
                            exp.append(tfidf_vector(col.db_words[i][inside], col.idf))
                            new += 1
                    if it == cfg["iterations"] or new == 0:
                        break
                    top = np.lexsort((np.arange(len(inl)), -np.asarray(inl)))[:cfg["m"]]
                    rank = rank_by_scores(col.D @ average_expansion(d0, np.asarray(exp)[top]))
                    requeries += 1
                n_checked += len(checked)
                ranks[:, j] = merge_verified(np.asarray(ver, np.int64), np.asarray(inl), rank)
                n_verified.append(len(ver))
                n_requeries.append(requeries)
        per_q = (time.perf_counter() - t0) / max(data.n_queries, 1) + col.assign_per_query
        return {"ranks": ranks, "verified_counts": np.asarray(n_verified, np.int64),
                "timings": {"query": per_q, "vocabulary": col.vocabulary_seconds},
                "stats": {"verified_per_query": float(np.mean(n_verified)) if n_verified else 0.0,
                          "requeries_per_query": float(np.mean(n_requeries)) if n_requeries else 0.0,
                          "verified_pairs_per_query": n_checked / max(data.n_queries, 1), "k": col.k}}


@register
class SceneMapsQE(CollectionRetrieval):
    name = "scene-maps-qe"
    summary = ("QE2: BoW + spatial verification, a scene map built from the query and its verified results "
               "(aligned to the query, features merged), re-queried once, results merged")
    cite = ("Avrithis, Kalantidis, Tolias & Spyrou, Retrieving landmark and non-landmark images from community "
            "photo collections, ACM-MM 2010 (scene maps); query expansion as Chum et al., ICCV 2007")
    model = "homography"
    params = CollectionRetrieval.params + (
        Param("merge_radius", float, 4.0, "merge same-word features landing within this many pixels of each "
              "other in the reference frame", low=0),
    )

    def run(self, data, ctx) -> dict:
        cfg = self.cfg
        col = self.collection(data, ctx)
        N = min(cfg["shortlist"], data.n_db)
        ranks = np.zeros((data.n_db, data.n_queries), np.int64)
        n_verified, map_sizes = [], []
        t0 = time.perf_counter()
        with ctx.phase("online"):
            for j in ctx.progress(range(data.n_queries), desc=f"{self.name} query", total=data.n_queries):
                qf, qw = col.q_frames[j], col.q_words[j]
                rank = rank_by_scores(col.D @ tfidf_vector(qw, col.idf))
                ver, inl, xy, words, Hs = [], [], [qf[:, :2]], [qw], [np.eye(3)]
                for i in (int(i) for i in rank[:N]):
                    score, T = self.verify(qf, qw, col.db_frames[i], col.db_words[i])
                    if score >= cfg["min_inliers"] and T is not None:
                        ver.append(i)
                        inl.append(score)
                        xy.append(col.db_frames[i][:, :2])
                        words.append(col.db_words[i])
                        Hs.append(np.linalg.inv(T))          # database image -> query (the reference view)
                if ver:
                    _, mw, _ = build_scene_map(xy, words, Hs, cfg["merge_radius"])
                    rank = rank_by_scores(col.D @ tfidf_vector(mw, col.idf))
                    map_sizes.append(len(mw))
                ranks[:, j] = merge_verified(np.asarray(ver, np.int64), np.asarray(inl), rank)
                n_verified.append(len(ver))
        per_q = (time.perf_counter() - t0) / max(data.n_queries, 1) + col.assign_per_query
        return {"ranks": ranks, "verified_counts": np.asarray(n_verified, np.int64),
                "timings": {"query": per_q, "vocabulary": col.vocabulary_seconds},
                "stats": {"verified_per_query": float(np.mean(n_verified)) if n_verified else 0.0,
                          "scene_map_features": float(np.mean(map_sizes)) if map_sizes else 0.0, "k": col.k}}


class _CollectionGraph(CollectionRetrieval):
    """Shared offline step of `scene-maps` and `view-clustering`: verify every image against its
    top `shortlist` BoW neighbours, then visual clusters (:func:`kvq_clusters`)."""

    model = "homography"

    def graph(self, data, ctx, col) -> dict:
        """{"inliers": (n, n) float64, "T": {(a, b): (3, 3) a -> b}, "labels": (n,), "centres": (c,)}."""
        cfg = self.cfg
        n = data.n_db

        def compute():
            S = (col.D @ col.D.T).toarray()
            np.fill_diagonal(S, -np.inf)
            K = min(cfg["shortlist"], n - 1)
            nb = np.argsort(-S, axis=1, kind="stable")[:, :K] if K > 0 else np.zeros((n, 0), np.int64)
            pairs = np.unique(np.sort(np.column_stack([np.repeat(np.arange(n), K), nb.ravel()]), 1), axis=0)
            W = np.zeros((n, n))
            T = {}
            for a, b in ctx.progress(pairs, desc=f"{self.name} verify pairs", total=len(pairs)):
                score, Tab = self.verify(col.db_frames[a], col.db_words[a], col.db_frames[b], col.db_words[b])
                if Tab is not None and abs(np.linalg.det(Tab)) > 1e-12:
                    W[a, b] = W[b, a] = score
                    T[(int(a), int(b))] = Tab
                    T[(int(b), int(a))] = np.linalg.inv(Tab)
            labels, centres = kvq_clusters(W, cfg["min_inliers"])
            return {"inliers": W, "T": T, "labels": labels, "centres": centres, "pairs": len(pairs)}

        what = {k: cfg[k] for k in ("vocabulary", "k", "vocab_niter", "vocab_train", "vocab_limit", "local_features",
                                    "max_features", "shortlist", "threshold", "min_inliers", "max_per_word")}
        with ctx.phase("offline"):
            return ctx.cached("collection_graph", {**what, "model": self.model, "seed": ctx.seed},
                              [kvq_clusters, type(self)], compute, data=data)


@register
class SceneMaps(_CollectionGraph):
    name = "scene-maps"
    summary = ("index scene maps (visual clusters aligned to a reference view, features merged) instead of "
               "images; a query returns the member images of the retrieved scene maps")
    cite = ("Avrithis, Kalantidis, Tolias & Spyrou, Retrieving landmark and non-landmark images from community "
            "photo collections, ACM-MM 2010")
    params = CollectionRetrieval.params + (
        Param("merge_radius", float, 4.0, "merge same-word features landing within this many pixels of each "
              "other in the reference frame", low=0),
    )

    def scene_maps(self, data, ctx, col, g) -> dict:
        """Scene maps of the clusters of graph `g`: {"words": (F,), "map": (F,) map id, "members": list of
        (m_c,) image ids (reference first, then by inliers to it)}."""
        from visrep.methods.local.bow import bow_vectors
        from visrep.methods.local.inverted_file import idf_weights

        words, owner, members = [], [], []
        for c, ref in enumerate(g["centres"]):
            mem = np.flatnonzero(g["labels"] == c)
            mem = mem[np.lexsort((mem, -np.where(mem == ref, np.inf, g["inliers"][ref, mem])))]
            Hs = [np.eye(3) if m == ref else g["T"][(int(m), int(ref))] for m in mem]
            _, mw, _ = build_scene_map([col.db_frames[m][:, :2] for m in mem], [col.db_words[m] for m in mem], Hs,
                                       self.cfg["merge_radius"])
            words.append(mw)
            owner.append(np.full(len(mw), c))
            members.append(mem)
        w = np.concatenate(words) if words else np.zeros(0, np.int64)
        o = np.concatenate(owner) if owner else np.zeros(0, np.int64)
        n_maps = len(members)
        df = np.bincount(np.unique(o * col.k + w) % col.k, minlength=col.k) if len(w) else np.zeros(col.k)
        idf = idf_weights(df, n_maps)
        return {"D": bow_vectors(w, o, n_maps, col.k, idf, False), "idf": idf, "members": members,
                "features": len(w)}

    def run(self, data, ctx) -> dict:
        col = self.collection(data, ctx)
        g = self.graph(data, ctx, col)
        with ctx.phase("offline"):
            sm = self.scene_maps(data, ctx, col, g)
        ranks = np.zeros((data.n_db, data.n_queries), np.int64)
        t0 = time.perf_counter()
        with ctx.phase("online"):
            for j in ctx.progress(range(data.n_queries), desc=f"{self.name} query", total=data.n_queries):
                order = rank_by_scores(sm["D"] @ tfidf_vector(col.q_words[j], sm["idf"]))
                ranks[:, j] = np.concatenate([sm["members"][c] for c in order])
        per_q = (time.perf_counter() - t0) / max(data.n_queries, 1) + col.assign_per_query
        sizes = np.array([len(m) for m in sm["members"]])
        return {"ranks": ranks, "timings": {"query": per_q, "vocabulary": col.vocabulary_seconds},
                "stats": {"scene_maps": len(sizes), "images_per_scene_map": float(sizes.mean()),
                          "features_per_scene_map": sm["features"] / max(len(sizes), 1),
                          "features_per_image": float(np.mean([len(w) for w in col.db_words])),
                          "verified_pairs": g["pairs"], "k": col.k}}


@register
class ViewClustering(_CollectionGraph):
    name = "view-clustering"
    task = "clustering"
    summary = ("visual clustering of a collection: KVQ centres (reference views) covering every image within "
               "min_inliers spatially verified inliers")
    cite = ("Avrithis, Kalantidis, Tolias & Spyrou, Retrieving landmark and non-landmark images from community "
            "photo collections, ACM-MM 2010 (visual clustering; KVQ: Tipping & Schölkopf, AISTATS 2001)")

    def run(self, data, ctx) -> dict:
        col = self.collection(data, ctx)
        t0 = time.perf_counter()
        g = self.graph(data, ctx, col)
        sizes = np.bincount(g["labels"])
        return {"labels": g["labels"], "centres": g["centres"],
                "timings": {"clustering": time.perf_counter() - t0, "vocabulary": col.vocabulary_seconds},
                "stats": {"clusters": len(sizes), "singletons": int((sizes == 1).sum()),
                          "largest_cluster": int(sizes.max()) if len(sizes) else 0, "verified_pairs": g["pairs"]}}
