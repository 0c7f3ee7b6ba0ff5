"""The method plugins of methods/local/: `sift`, `rootsift`, `kmeans`, `akm`, `rakm`, `agm`, `bow`, `he`, `he-wgc`, `vlad`, `asmk`, `asmk-star`, `smk` (talk Part I: visual vocabularies, beyond vocabularies).

Each class is named after its registered name; its parameters are declared as
``params = FAMILY_PARAMS + (...)`` and its numbers come from the kernels beside this file.
"""
from __future__ import annotations

import time

import numpy as np

from visrep.api import Method
from visrep.params import Param, check_at_most
from visrep.registry import register

from .bow import bow_vectors
from .features import mutual_nn_matches
from .hamming_embedding import (
    N_BITS,
    hamming,
    median_thresholds,
    random_projection,
    signatures,
)
from .inverted_file import InvertedFile, idf_weights
from .match_kernels import ASMKIndex, SMKIndex
from .pipeline import (
    VOCAB_PARAMS,
    LocalFeatureRetrieval,
    local_features,
    vocabulary_for,
)
from .vlad import vlad
from .vocabularies import assign, read_training_descriptors


class _LocalMatching(Method):
    task = "retrieval"
    kind_fixed = "sift"
    params = (
        Param("max_features", int, 2000, "keep the strongest n keypoints per image (0 = all)", low=0),
        Param("ratio", float, 0.8, "Lowe's ratio test threshold (1 = off)", low=0, high=1, open_low=True),
    )

    def run(self, data, ctx) -> dict:
        feats = local_features(data, ctx, self.kind_fixed, self.cfg["max_features"] or None)
        db, q = feats["db"][0], feats["query"][0]
        t0 = time.perf_counter()
        with ctx.phase("online"):
            scores = np.zeros((len(db), len(q)), np.float32)
            for j in ctx.progress(range(len(q)), desc="match", total=len(q)):
                for i in range(len(db)):
                    scores[i, j] = mutual_nn_matches(q[j], db[i], self.cfg["ratio"])
            ranks = np.argsort(-scores, axis=0, kind="stable")
        return {"ranks": ranks, "scores": scores,
                "timings": {"query": (time.perf_counter() - t0) / max(len(q), 1)}}


@register
class SIFT(_LocalMatching):
    name = "sift"
    summary = "DoG+SIFT local features; ranks by mutual-NN ratio-test matches (pairwise baseline)"
    cite = "Lowe, Distinctive image features from scale-invariant keypoints, IJCV 2004"
    kind_fixed = "sift"


@register
class RootSIFT(_LocalMatching):
    name = "rootsift"
    summary = "DoG+RootSIFT local features; ranks by mutual-NN ratio-test matches (pairwise baseline)"
    cite = "Arandjelović & Zisserman, Three things everyone should know to improve object retrieval, CVPR 2012"
    kind_fixed = "rootsift"


class VocabularyMethod(Method):
    """Learns a visual vocabulary; scored by the ``vocabulary`` protocol (protocols/vocabulary.py).

    Outputs: ``centroids`` (k, d), ``k``, ``distortion`` (as the kernel measured it), ``history``,
    ``timings["vocabulary"]`` (learning seconds, also when the vocabulary comes from the cache),
    ``train`` (the training descriptors, a reference, so that the protocol measures distortion
    and non-empty words itself) and, when there are descriptors that training did not see,
    ``held_out`` (n, d): a seeded sample of the rest of the ``train`` file (when ``train_limit``
    subsamples it) or the query images' local features (when training on the database images).
    """

    task = "vocabulary"
    algo = "kmeans"
    params = (
        Param("k", int, 1024, "number of visual words (AGM: initial number of components)", low=1),
        Param("niter", int, 20, "iterations", low=1),
        Param("train", str, None, "training descriptors: a .fvecs/.npy/.bin file or a folder of .bin files; "
              "None = the dataset's database local features"),
        Param("train_limit", int, None, "subsample at most this many training descriptors", low=1),
        Param("local_features", str, "rootsift", "local features when training on the dataset's images",
              choices=("sift", "rootsift")),
        Param("max_features", int, 2000, "strongest keypoints per image when training on the dataset's "
              "images (0 = all)", low=0),
        Param("held_out", int, 10000, "at most this many descriptors unseen in training (rest of the train "
              "file, or the query images' features) on which the protocol also measures distortion; 0 = none",
              low=0),
    )

    def extra_opts(self) -> dict:
        return {}

    def _sample(self, x, n, seed):
        if n and len(x) > n:
            return x[np.sort(np.random.default_rng(seed).choice(len(x), n, replace=False))]
        return x

    def run(self, data, ctx) -> dict:
        held = None
        if self.cfg["train"]:
            limit = self.cfg["train_limit"]
            everything = read_training_descriptors(self.cfg["train"], None, ctx.seed)
            x = everything
            if limit and len(everything) > limit:  # the same seeded subsample as read_training_descriptors
                chosen = np.sort(np.random.default_rng(ctx.seed).choice(len(everything), limit, replace=False))
                x = everything[chosen]
                rest = np.ones(len(everything), bool)
                rest[chosen] = False
                held = everything[self._sample(np.flatnonzero(rest), self.cfg["held_out"], ctx.seed + 1)]
            key = {"train": str(self.cfg["train"]), "limit": limit}
        else:
            from .features import stack_features
            from .pipeline import local_features
            feats = local_features(data, ctx, self.cfg["local_features"], self.cfg["max_features"] or None)
            x, _ = stack_features(feats["db"][0], f"{data.name} database")
            held, _ = stack_features(feats["query"][0], f"{data.name} queries")
            key = {"manifest": data.manifest, "features": self.cfg["local_features"]}
            if self.cfg["max_features"] != 2000:
                key["max_features"] = self.cfg["max_features"]
        source = str(self.cfg["train"]) if self.cfg["train"] else f"the database images of {data.name}"
        limit = f", train_limit={self.cfg['train_limit']}" if self.cfg["train_limit"] else ""
        check_at_most(self.cfg["k"], len(x), "k", f"method '{self.name}'",
                      f"there are {len(x)} training descriptors (from {source}{limit})")
        with ctx.phase("offline"):
            voc = vocabulary_for(x, self.algo, self.cfg["k"], ctx, key, niter=self.cfg["niter"], **self.extra_opts())
        out = {"centroids": voc.centroids, "k": voc.k, "distortion": voc.distortion,
               "timings": {"vocabulary": voc.seconds}, "history": voc.history, "train": x}
        if held is not None and len(held) and self.cfg["held_out"]:
            out["held_out"] = self._sample(held, self.cfg["held_out"], ctx.seed + 1)
        return out


@register
class KMeans(VocabularyMethod):
    name = "kmeans"
    summary = "flat k-means visual vocabulary (exact assignment, faiss)"
    cite = "Sivic & Zisserman, Video Google, ICCV 2003"
    algo = "kmeans"


FOREST_PARAMS = (Param("n_trees", int, 8, "randomized k-d trees", low=1),
           Param("leaf_size", int, 16, "points per leaf (checks = n_trees x leaf_size)", low=1))


@register
class AKM(VocabularyMethod):
    name = "akm"
    summary = "approximate k-means: assignment by a randomized k-d forest"
    cite = "Philbin, Chum, Isard, Sivic & Zisserman, Object retrieval with large vocabularies and fast spatial matching, CVPR 2007"
    algo = "akm"
    params = VocabularyMethod.params + FOREST_PARAMS

    def extra_opts(self):
        return {"n_trees": self.cfg["n_trees"], "leaf_size": self.cfg["leaf_size"]}


@register
class RAKM(AKM):
    name = "rakm"
    summary = "robust approximate k-means: keep the previous assignment unless a closer centroid is found"
    cite = "Li, Yang, Hua & Zhang, Large-scale robust visual codebook construction, ACM-MM 2010"
    algo = "rakm"


@register
class AGM(VocabularyMethod):
    name = "agm"
    summary = "approximate Gaussian mixtures: EM on approximate nearest components, k inferred by purging"
    cite = "Avrithis & Kalantidis, Approximate Gaussian mixtures for large scale vocabularies, ECCV 2012"
    algo = "agm"
    params = VocabularyMethod.params + FOREST_PARAMS + (
        Param("m", int, 4, "nearest components per point in the E-step", low=1),
        Param("expand", float, 0.6, "expansion factor lambda of the purging test (our default: k converges on 128-D SIFT at 0.6 and collapses above 0.7; low-dimensional well-separated clusters need ~1.5; not a value from the paper)", low=0, open_low=True),
    )

    def extra_opts(self):
        return {"n_trees": self.cfg["n_trees"], "leaf_size": self.cfg["leaf_size"], "m": self.cfg["m"],
                "expand": self.cfg["expand"]}


@register
class BoW(LocalFeatureRetrieval):
    name = "bow"
    summary = "bag of visual words, tf-idf, inverted file (+ multiple assignment, burstiness)"
    cite = "Sivic & Zisserman, Video Google, ICCV 2003; Jégou, Douze & Schmid, On the burstiness of visual elements, CVPR 2009"
    params = VOCAB_PARAMS + (
        Param("ma", int, 1, "query-side multiple assignment: nearest words per query descriptor", low=1),
        Param("burst", bool, False, "burstiness handling: square-rooted term frequencies"),
        Param("idf", bool, True, "weight words by idf = log(N / n_w)"),
    )

    def index(self, x, ids, frames, n_db, voc, ctx):
        import scipy.sparse as sp
        words, _ = assign(x, voc, 1, "database descriptors")
        words = words[:, 0]
        df = np.bincount(np.unique(ids * voc.k + words) % voc.k, minlength=voc.k) if len(words) else np.zeros(voc.k)
        idf = idf_weights(df, n_db) if self.cfg["idf"] else None
        db = bow_vectors(words, ids, n_db, voc.k, idf, self.cfg["burst"])
        return {"M": sp.csr_matrix(db.T), "idf": idf, "voc": voc, "n_db": n_db}

    def score(self, state, q, q_frames, ctx):
        if len(q) == 0:
            return np.zeros(state["n_db"])
        w, _ = assign(q, state["voc"], self.cfg["ma"], "query descriptors")
        qv = bow_vectors(w.ravel(), np.zeros(w.size, np.int64), 1, state["voc"].k, state["idf"], self.cfg["burst"])
        cols = qv.indices
        if len(cols) == 0:
            return np.zeros(state["n_db"])
        return np.asarray(state["M"][cols].T @ qv.data).ravel()

    def index_bytes(self, state):
        M = state["M"]
        return M.data.nbytes + M.indices.nbytes + M.indptr.nbytes


class _HE(LocalFeatureRetrieval):
    wgc = False
    params = VOCAB_PARAMS + (
        Param("ht", int, 24, "Hamming threshold h_t", low=0, high=64),
        Param("sigma", float, 16.0, "Gaussian weighting exp(-h^2/sigma^2) of IJCV 2010", low=0, open_low=True),
        Param("weighting", bool, True, "Gaussian weighting of votes (false = all votes weigh 1)"),
        Param("ma", int, 1, "query-side multiple assignment", low=1),
        Param("burst", bool, False, "intra-image burstiness normalization (CVPR 2009)"),
        Param("angle_bins", int, 8, "WGC orientation bins over 2 pi", low=1),
        Param("scale_bins", int, 16, "WGC log2-scale bins over [-4, 4) octaves", low=1),
    )

    def index(self, x, ids, frames, n_db, voc, ctx):
        words, _ = assign(x, voc, 1, "database descriptors")
        words = words[:, 0]
        P = random_projection(x.shape[1], N_BITS, ctx.seed)
        thr = median_thresholds(x @ P.T, words, voc.k)
        sig = signatures(x, words, P, thr)
        ivf = InvertedFile(words, ids, voc.k, n_db)
        idf = idf_weights(ivf.df(), n_db)
        tf = np.bincount(ids * voc.k + words, minlength=n_db * voc.k).reshape(n_db, voc.k) if n_db * voc.k < 5e7 \
            else None
        if tf is not None:
            norms = np.sqrt(((tf * idf[None]) ** 2).sum(1))
        else:
            key, cnt = np.unique(ids * voc.k + words, return_counts=True)
            norms = np.sqrt(np.bincount(key // voc.k, (cnt * idf[key % voc.k]) ** 2, minlength=n_db))
        o = ivf.order
        return {"ivf": ivf, "sig": sig[o], "angle": frames[o, 3] if len(frames) else frames[:, 0],
                "logscale": np.log2(np.maximum(frames[o, 2], 1e-6)) if len(frames) else frames[:, 0],
                "P": P, "thr": thr, "idf": idf, "norms": norms, "voc": voc, "n_db": n_db}

    def score(self, s, q, q_frames, ctx):
        cfg = self.cfg
        n_db = s["n_db"]
        if len(q) == 0:
            return np.zeros(n_db)
        ma = cfg["ma"]
        qw, _ = assign(q, s["voc"], ma, "query descriptors")
        qrow = np.repeat(np.arange(len(q)), qw.shape[1])
        qw = qw.ravel()
        qsig = signatures(q[qrow], qw, s["P"], s["thr"])
        idf = s["idf"]
        # query tf-idf norm (multiple-assigned descriptors count once per word, as in the database)
        wcount = np.bincount(qw, minlength=s["voc"].k)
        qnorm = np.sqrt(((wcount * idf) ** 2).sum())
        owner, pos = s["ivf"].postings(qw)
        h = hamming(qsig[owner], s["sig"][pos])
        ok = h <= cfg["ht"]
        owner, pos, h = owner[ok], pos[ok], h[ok]
        w = idf[qw[owner]] ** 2
        if cfg["weighting"]:
            w = w * np.exp(-(h.astype(np.float64) ** 2) / cfg["sigma"] ** 2)
        img = s["ivf"].image[pos]
        if cfg["burst"] and len(w):
            key = qrow[owner] * n_db + img
            _uk, inv = np.unique(key, return_inverse=True)
            tot = np.bincount(inv, w)
            # sum over the group becomes sqrt(total); a group of zero weight (idf 0) stays 0, not 0/0 = NaN
            w = np.divide(w, np.sqrt(tot[inv]), out=np.zeros_like(w), where=tot[inv] > 0)
        if self.wgc and len(w):
            qf = q_frames[qrow[owner]]
            da = np.mod(s["angle"][pos] - qf[:, 3], 2 * np.pi)
            ab = np.minimum((da / (2 * np.pi) * cfg["angle_bins"]).astype(np.int64), cfg["angle_bins"] - 1)
            ds = s["logscale"][pos] - np.log2(np.maximum(qf[:, 2], 1e-6))
            sb = np.clip(((ds + 4.0) / 8.0 * cfg["scale_bins"]).astype(np.int64), 0, cfg["scale_bins"] - 1)
            ha = np.bincount(img * cfg["angle_bins"] + ab, w, minlength=n_db * cfg["angle_bins"])
            hs = np.bincount(img * cfg["scale_bins"] + sb, w, minlength=n_db * cfg["scale_bins"])
            sc = np.minimum(ha.reshape(n_db, -1).max(1), hs.reshape(n_db, -1).max(1))
        else:
            sc = np.bincount(img, w, minlength=n_db)
        denom = s["norms"] * qnorm
        return np.where(denom > 0, sc / np.maximum(denom, 1e-300), 0.0)

    def index_bytes(self, s):
        return s["ivf"].nbytes() + s["sig"].nbytes + (s["angle"].nbytes + s["logscale"].nbytes if self.wgc else 0)


@register
class HE(_HE):
    name = "he"
    summary = "Hamming embedding: 64-bit signatures, per-word median thresholds, h_t=24, Gaussian weights"
    cite = "Jégou, Douze & Schmid, Hamming embedding and weak geometric consistency for large scale image search, ECCV 2008"


@register
class HEWGC(_HE):
    name = "he-wgc"
    summary = "Hamming embedding + weak geometric consistency (orientation and log-scale histograms)"
    cite = "Jégou, Douze & Schmid, Hamming embedding and weak geometric consistency for large scale image search, ECCV 2008"
    wgc = True


@register
class VLAD(LocalFeatureRetrieval):
    name = "vlad"
    summary = "VLAD (k=64) with power (0.5) and intra-normalization, inner-product ranking"
    cite = "Jégou, Douze, Schmid & Pérez, Aggregating local descriptors into a compact image representation, CVPR 2010"
    params = tuple(p if p.name != "k" else type(p)("k", int, 64, "visual words (64 in the paper)", low=1)
                   for p in VOCAB_PARAMS) + (
        Param("power", float, 0.5, "power-law exponent beta (1 = off)", low=0, open_low=True, high=1),
        Param("intra", bool, True, "intra-normalization of each word's residual sum"),
    )

    def index(self, x, ids, frames, n_db, voc, ctx):
        words, _ = assign(x, voc, 1, "database descriptors")
        return {"db": vlad(x, words[:, 0], ids, n_db, voc.centroids, self.cfg["power"], self.cfg["intra"]), "voc": voc}

    def score(self, state, q, q_frames, ctx):
        if len(q) == 0:
            return np.zeros(state["db"].shape[0])
        w, _ = assign(q, state["voc"], 1, "query descriptors")
        v = vlad(q, w[:, 0], np.zeros(len(q), np.int64), 1, state["voc"].centroids, self.cfg["power"], self.cfg["intra"])
        return state["db"].astype(np.float64) @ v[0].astype(np.float64)

    def index_bytes(self, state):
        return state["db"].nbytes


SMK_PARAMS = VOCAB_PARAMS + (
    Param("alpha", float, 3.0, "selectivity exponent alpha", low=0),
    Param("tau", float, 0.0, "selectivity threshold tau", low=-1, high=1),
    Param("ma", int, 1, "query-side multiple assignment (the paper's MA uses 5)", low=1),
)


class _ASMK(LocalFeatureRetrieval):
    binary = False
    params = SMK_PARAMS

    def index(self, x, ids, frames, n_db, voc, ctx):
        words, _ = assign(x, voc, 1, "database descriptors")
        return ASMKIndex(x, words, ids, n_db, voc.centroids, self.binary), voc

    def score(self, state, q, q_frames, ctx):
        index, voc = state
        if len(q) == 0:
            return np.zeros(index.n_images)
        qw, _ = assign(q, voc, self.cfg["ma"], "query descriptors")
        return index.search_image(q, qw, self.cfg["alpha"], self.cfg["tau"])

    def index_bytes(self, state):
        return state[0].nbytes()


@register
class ASMK(_ASMK):
    name = "asmk"
    summary = "aggregated selective match kernel: per-word aggregated residuals, selectivity alpha=3"
    cite = "Tolias, Avrithis & Jégou, To aggregate or not to aggregate: selective match kernels for image search, ICCV 2013"


@register
class ASMKStar(_ASMK):
    name = "asmk-star"
    summary = "ASMK*: binarized aggregated residuals, Hamming similarity, selectivity alpha=3"
    cite = "Tolias, Avrithis & Jégou, To aggregate or not to aggregate: selective match kernels for image search, ICCV 2013"
    binary = True


@register
class SMK(LocalFeatureRetrieval):
    name = "smk"
    summary = "selective match kernel (no aggregation): sigma_alpha on normalized residual pairs per word"
    cite = "Tolias, Avrithis & Jégou, To aggregate or not to aggregate: selective match kernels for image search, ICCV 2013"
    params = SMK_PARAMS

    def index(self, x, ids, frames, n_db, voc, ctx):
        words, _ = assign(x, voc, 1, "database descriptors")
        return SMKIndex(x, words, ids, n_db, voc.centroids, self.cfg["alpha"], self.cfg["tau"]), voc

    def score(self, state, q, q_frames, ctx):
        index, voc = state
        if len(q) == 0:
            return np.zeros(index.n_images)
        qw, _ = assign(q, voc, self.cfg["ma"], "query descriptors")
        return index.search_image(q, qw)

    def index_bytes(self, state):
        return state[0].nbytes()
