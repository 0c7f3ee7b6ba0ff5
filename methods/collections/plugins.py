"""The method plugins of methods/collections/: `total-recall`, `scene-maps`, `scene-maps-qe`, `view-clustering`,
`location-suggest`, `tag-suggest` (talk Part I: exploring photo collections; the talk's QE1, scene maps and QE2,
geo + visual clustering, VIRaL's estimated location and suggested tags).

Each class is named after its registered name; its parameters are declared as
``params = FAMILY_PARAMS + (...)`` and its numbers come from the kernels beside this file.
"""
from __future__ import annotations

import time

import numpy as np

from visrep.params import Param
from visrep.registry import register

from .geo import geo_clusters, location_vote, tag_votes
from .pipeline import GEO_PARAMS, KVQ_PARAMS, CollectionRetrieval, geo_meta
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
    """Shared offline step of `scene-maps`, `view-clustering`, `location-suggest`, `tag-suggest`: verify every
    image against its top `shortlist` BoW neighbours (cached), then, for the clustering methods, visual clusters
    (:func:`kvq_clusters`, solver `kvq`)."""

    model = "homography"

    def graph(self, data, ctx, col, kvq: str | None = None) -> dict:
        """{"inliers": (n, n) float64, "T": {(a, b): (3, 3) a -> b}, "pairs": int}, plus "labels": (n,) and
        "centres": (c,) of :func:`kvq_clusters` when a KVQ solver `kvq` ("lp" / "greedy") is given."""
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
            return {"inliers": W, "T": T, "pairs": len(pairs)}

        what = {k: cfg[k] for k in ("vocabulary", "k", "vocab_niter", "vocab_train", "vocab_limit", "local_features",
                                    "max_features", "shortlist", "threshold", "min_inliers", "max_per_word")}
        with ctx.phase("offline"):
            g = ctx.cached("collection_graph", {**what, "model": self.model, "seed": ctx.seed},
                           [kvq_clusters, type(self)], compute, data=data)
            if kvq is not None:
                labels, centres = kvq_clusters(g["inliers"], cfg["min_inliers"], kvq)
                g = {**g, "labels": labels, "centres": centres}
        return g


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
    ) + KVQ_PARAMS

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
        g = self.graph(data, ctx, col, self.cfg["kvq"])
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
    """Avrithis et al. ACM-MM 2010, Sec. 3: geo clustering (:func:`geo.geo_clusters`, KVQ by great-circle
    distance), visual clustering (:func:`scene_maps.kvq_clusters`, KVQ on verified inliers), or both in the
    paper's order; KVQ is solved by Tipping & Schölkopf's linear program (kvq="lp", the default) or the greedy
    set-cover approximation (kvq="greedy", a simplification). Simplification of "geo+visual": the verified pairs are those of the shared collection graph
    (each image against its BoW top `shortlist` over the whole collection), and pairs across geo clusters are
    dropped before the visual KVQ; the paper verifies pairs inside each geo cluster only (cheaper at scale, the
    same clusters whenever the shortlist holds an image's same-scene views). labels (n_db,) int64."""

    name = "view-clustering"
    task = "clustering"
    summary = ("view clustering of a collection: visual (KVQ centres covering every image within min_inliers "
               "verified inliers), geo (KVQ by great-circle distance) or geo then visual inside each geo cluster")
    cite = ("Avrithis, Kalantidis, Tolias & Spyrou, Retrieving landmark and non-landmark images from community "
            "photo collections, ACM-MM 2010 (geo and visual clustering; KVQ: Tipping & Schölkopf, AISTATS 2001)")
    params = CollectionRetrieval.params + (
        Param("mode", str, "visual", "visual: KVQ on verified inliers; geo: KVQ on the images' geo-tags "
              "(great-circle distance, geo_radius); geo+visual: the paper's two stages, visual clusters inside each "
              "geo cluster (pairs across geo clusters never link)", choices=("visual", "geo", "geo+visual")),
    ) + GEO_PARAMS + KVQ_PARAMS

    def run(self, data, ctx) -> dict:
        mode = self.cfg["mode"]
        if mode == "geo":                       # geo-tags only: no features, no verification
            meta = geo_meta(data, f"{self.name} (mode geo)")
            t0 = time.perf_counter()
            with ctx.phase("offline"):
                labels, centres = geo_clusters(meta["lat"], meta["lon"], self.cfg["geo_radius"], self.cfg["kvq"])
            sizes = np.bincount(labels)
            return {"labels": labels, "centres": centres, "timings": {"clustering": time.perf_counter() - t0},
                    "stats": {"clusters": len(sizes), "singletons": int((sizes == 1).sum()),
                              "largest_cluster": int(sizes.max()) if len(sizes) else 0, "geo_clusters": len(sizes)}}
        meta = geo_meta(data, f"{self.name} (mode {mode})") if mode == "geo+visual" else None
        col = self.collection(data, ctx)
        t0 = time.perf_counter()
        g = self.graph(data, ctx, col, self.cfg["kvq"])
        labels, centres, stats = g["labels"], g["centres"], {}
        if mode == "geo+visual":
            with ctx.phase("offline"):
                geo, geo_centres = geo_clusters(meta["lat"], meta["lon"], self.cfg["geo_radius"], self.cfg["kvq"])
                # KVQ on inliers with cross-geo-cluster pairs removed = KVQ inside each geo cluster (the LP of
                # disjoint blocks separates, its optimum is the sum of the blocks'; the greedy cover picks the
                # same centres block by block)
                labels, centres = kvq_clusters(np.where(geo[:, None] == geo[None], g["inliers"], 0.0),
                                               self.cfg["min_inliers"], self.cfg["kvq"])
            stats["geo_clusters"] = len(geo_centres)
        sizes = np.bincount(labels)
        return {"labels": labels, "centres": centres,
                "timings": {"clustering": time.perf_counter() - t0, "vocabulary": col.vocabulary_seconds},
                "stats": {"clusters": len(sizes), "singletons": int((sizes == 1).sum()),
                          "largest_cluster": int(sizes.max()) if len(sizes) else 0, "verified_pairs": g["pairs"],
                          **stats}}


class _VerifiedNeighbours(_CollectionGraph):
    """Shared step of `location-suggest` and `tag-suggest` (VIRaL, leave-one-out): every database image is a
    query against the others; its verified neighbours are the images sharing >= min_inliers inliers with it in
    the collection graph (BoW top `shortlist`, fast spatial matching; the graph `view-clustering` and
    `scene-maps` build, cached). :meth:`neighbours` gives (graph, [(neighbours (m_i,) int64, votes (m_i,)
    float64) per database image]); votes are the inliers with the image, or ones."""

    task = "suggestion"
    vote_param = Param("vote", str, "inliers", "weight of a verified neighbour's vote: its inlier count with the "
                       "query, or 1 (count)", choices=("inliers", "count"))

    def neighbours(self, data, ctx) -> tuple[dict, list]:
        col = self.collection(data, ctx)
        g = self.graph(data, ctx, col)
        g = {**g, "vocabulary_seconds": col.vocabulary_seconds}
        W = g["inliers"]
        out = []
        for i in range(data.n_db):
            nb = np.flatnonzero(W[i] >= self.cfg["min_inliers"])
            nb = nb[nb != i]
            out.append((nb, W[i, nb] if self.cfg["vote"] == "inliers" else np.ones(len(nb))))
        return g, out


@register
class LocationSuggest(_VerifiedNeighbours):
    """VIRaL (Kalantidis et al. MTAP 2011), estimated location, my reading (see :mod:`geo`): the verified
    neighbours' geo-tags are geo-clustered (KVQ, geo_radius), the cluster of largest vote wins, the estimate
    is its members' vote-weighted spherical mean (:func:`geo.location_vote`). locations (n_db, 2) lat/lon
    degrees, NaN rows for images with no verified neighbour."""

    name = "location-suggest"
    summary = ("VIRaL's estimated location: geo-cluster the query's spatially verified neighbours, the cluster of "
               "largest (inlier-weighted) vote wins, estimate = its weighted centre (leave-one-out over the database)")
    cite = ("Kalantidis, Tolias, Avrithis, Phinikettos, Spyrou, Mylonas & Kollias, VIRaL: visual image retrieval "
            "and localization, MTAP 2011; geo clustering as Avrithis et al., ACM-MM 2010")
    params = CollectionRetrieval.params + GEO_PARAMS + (_VerifiedNeighbours.vote_param,) + KVQ_PARAMS

    def run(self, data, ctx) -> dict:
        meta = geo_meta(data, self.name)
        lat, lon = np.asarray(meta["lat"], np.float64), np.asarray(meta["lon"], np.float64)
        locations = np.full((data.n_db, 2), np.nan)
        g, nbs = self.neighbours(data, ctx)
        n_nb = np.array([len(nb) for nb, _ in nbs], np.int64)
        t0 = time.perf_counter()
        with ctx.phase("online"):
            for i, (nb, w) in enumerate(nbs):
                if len(nb):
                    la, lo, _ = location_vote(lat[nb], lon[nb], w, self.cfg["geo_radius"], self.cfg["kvq"])
                    locations[i] = la, lo
        return {"locations": locations, "neighbours": n_nb,
                "timings": {"suggest": time.perf_counter() - t0, "vocabulary": g["vocabulary_seconds"]},
                "stats": {"neighbours_per_image": float(n_nb.mean()) if len(n_nb) else 0.0,
                          "answered": float((n_nb > 0).mean()) if len(n_nb) else 0.0,
                          "verified_pairs": g["pairs"]}}


@register
class TagSuggest(_VerifiedNeighbours):
    """VIRaL's suggested tags, my reading: tags of the verified neighbours ranked by sum of votes / total vote
    (:func:`geo.tag_votes`). tags: n_db lists of at most max_tags str, best first; tag_scores alike."""

    name = "tag-suggest"
    summary = ("VIRaL's suggested tags: the tags of the query's spatially verified neighbours ranked by summed "
               "(inlier-weighted) votes (leave-one-out over the database)")
    cite = ("Kalantidis, Tolias, Avrithis, Phinikettos, Spyrou, Mylonas & Kollias, VIRaL: visual image retrieval "
            "and localization, MTAP 2011")
    params = CollectionRetrieval.params + (
        _VerifiedNeighbours.vote_param,
        Param("max_tags", int, 10, "suggest at most this many tags per image", low=1),
    )

    def run(self, data, ctx) -> dict:
        meta = geo_meta(data, self.name)
        g, nbs = self.neighbours(data, ctx)
        n_nb = np.array([len(nb) for nb, _ in nbs], np.int64)
        tags, scores = [], []
        t0 = time.perf_counter()
        with ctx.phase("online"):
            for nb, w in nbs:
                ranked = tag_votes([meta["tags"][k] for k in nb], w)[:self.cfg["max_tags"]]
                tags.append([t for t, _ in ranked])
                scores.append([s for _, s in ranked])
        return {"tags": tags, "tag_scores": scores, "neighbours": n_nb,
                "timings": {"suggest": time.perf_counter() - t0, "vocabulary": g["vocabulary_seconds"]},
                "stats": {"neighbours_per_image": float(n_nb.mean()) if len(n_nb) else 0.0,
                          "tags_per_image": float(np.mean([len(t) for t in tags])) if tags else 0.0,
                          "verified_pairs": g["pairs"]}}
