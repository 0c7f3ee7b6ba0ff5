"""The method plugins of methods/compact/: `pq`, `ivfadc`, `lopq` (talk Part I: beyond vocabularies (product quantization)).

Each class is named after its registered name; its parameters are declared as
``params = FAMILY_PARAMS + (...)`` and its numbers come from the kernels beside this file.
"""
from __future__ import annotations

import time

import numpy as np

from visrep.api import Method
from visrep.features import DESCRIPTOR_PARAM, retrieval_features
from visrep.params import Param, check_at_most
from visrep.registry import register

from .lopq import LOPQIndex
from .product_quantization import IVFADCIndex, ProductQuantizer

PQ_PARAMS = (
    DESCRIPTOR_PARAM,
    Param("m", int, 8, "sub-quantizers (bytes per vector at nbits=8)", low=1),
    Param("nbits", int, 8, "bits per sub-quantizer code", low=1, high=16),
    Param("niter", int, 20, "k-means iterations", low=1),
)


@register
class PQ(Method):
    name = "pq"
    task = "retrieval"
    output_tasks = ("quantization",)  # ranks + codes + reconstruction: scored by the quantization protocol too
    summary = "product quantization, exhaustive asymmetric distance (ADC) search"
    cite = "Jégou, Douze & Schmid, Product quantization for nearest neighbor search, PAMI 2011"
    params = PQ_PARAMS

    def run(self, data, ctx) -> dict:
        db, q = retrieval_features(data, ctx, self.cfg["descriptor"])
        with ctx.phase("offline"):
            pq = ProductQuantizer(db.shape[1], self.cfg["m"], self.cfg["nbits"]).train(db, self.cfg["niter"], ctx.seed)
            codes = pq.encode(db)
        t0 = time.perf_counter()
        with ctx.phase("online"):
            ranks = np.argsort(pq.adc(q, codes), axis=1, kind="stable").T.copy()
        return {"ranks": ranks, "codes": codes, "bytes_per_vector": pq.bytes_per_vector,
                "reconstruction": pq.decode(codes), "db_vectors": db, "query_vectors": q,
                "timings": {"query": (time.perf_counter() - t0) / max(len(q), 1)}}


@register
class IVFADC(Method):
    name = "ivfadc"
    task = "retrieval"
    output_tasks = ("quantization",)
    summary = "IVFADC: coarse quantizer + inverted lists of residual PQ codes"
    cite = "Jégou, Douze & Schmid, Product quantization for nearest neighbor search, PAMI 2011"
    params = PQ_PARAMS + (
        Param("coarse_k", int, 64, "coarse quantizer cells (k' in the paper)", low=1),
        Param("nprobe", int, 8, "cells visited per query (w in the paper)", low=1),
    )

    def run(self, data, ctx) -> dict:
        db, q = retrieval_features(data, ctx, self.cfg["descriptor"])
        check_at_most(self.cfg["coarse_k"], len(db), "coarse_k", f"method '{self.name}'",
                      f"{data.name} has {len(db)} database vectors to train the coarse quantizer on")
        with ctx.phase("offline"):
            ivf = IVFADCIndex(db.shape[1], self.cfg["coarse_k"], self.cfg["m"], self.cfg["nbits"]).train(
                db, self.cfg["niter"], ctx.seed)
            ivf.add(db)
        t0 = time.perf_counter()
        with ctx.phase("online"):
            ranks, _ = ivf.search(q, self.cfg["nprobe"])
        codes = np.empty_like(ivf.codes)
        codes[ivf.order] = ivf.codes        # the inverted lists hold the codes in cell order
        return {"ranks": ranks, "bytes_per_vector": ivf.nbytes_per_vector(), "codes": codes,
                "reconstruction": ivf.coarse[ivf.cell] + ivf.pq.decode(codes), "db_vectors": db, "query_vectors": q,
                "timings": {"query": (time.perf_counter() - t0) / max(len(q), 1)}}


@register
class LOPQ(Method):
    name = "lopq"
    task = "retrieval"
    output_tasks = ("quantization",)
    summary = "locally optimized product quantization: per-cell rotation + local PQ, multi-index"
    cite = "Kalantidis & Avrithis, Locally optimized product quantization for approximate nearest neighbor search, CVPR 2014"
    params = (
        DESCRIPTOR_PARAM,
        Param("m", int, 8, "sub-quantizers in total (m/2 per half)", low=2),
        Param("nbits", int, 8, "bits per sub-quantizer code", low=1, high=16),
        Param("coarse_k", int, 16, "centroids per half of the multi-index (coarse_k^2 cells)", low=1),
        Param("nprobe", int, 16, "nearest centroids per half for the multi-sequence", low=1),
        Param("candidates", int, 1000, "vectors to collect before ranking by LOPQ distance", low=1),
        Param("niter", int, 20, "k-means iterations", low=1),
    )

    def run(self, data, ctx) -> dict:
        db, q = retrieval_features(data, ctx, self.cfg["descriptor"])
        check_at_most(self.cfg["coarse_k"], len(db), "coarse_k", f"method '{self.name}'",
                      f"{data.name} has {len(db)} database vectors to train the coarse quantizers on")
        with ctx.phase("offline"):
            idx = LOPQIndex(db.shape[1], self.cfg["coarse_k"], self.cfg["m"], self.cfg["nbits"]).train(
                db, self.cfg["niter"], ctx.seed)
            idx.add(db)
        t0 = time.perf_counter()
        with ctx.phase("online"):
            ranks = idx.search(q, self.cfg["nprobe"], self.cfg["candidates"])
        # `candidates` is "collect at least this many": above the database it means all of them (the
        # kernel's established meaning, kept); the record gets the effective value
        return {"ranks": ranks, "bytes_per_vector": idx.bytes_per_vector, "codes": idx.codes,
                "reconstruction": self.reconstruct(idx), "db_vectors": db, "query_vectors": q,
                "timings": {"query": (time.perf_counter() - t0) / max(len(q), 1)},
                "stats": {"candidates": min(self.cfg["candidates"], len(db))}}

    @staticmethod
    def reconstruct(idx) -> np.ndarray:
        """q(x) of every database vector: per half, cell centroid + local PQ decode rotated back (R orthogonal)."""
        out = np.zeros((idx.n, idx.d), np.float32)
        mh = idx.m // 2
        for hi in range(2):
            cells = idx.cells[:, hi]
            for i in np.unique(cells):
                sel = cells == i
                r = idx.pqs[hi][i].decode(idx.codes[sel, hi * mh:(hi + 1) * mh]) @ idx.R[hi][i]
                out[sel, hi * idx.h:(hi + 1) * idx.h] = idx.C[hi][i] + r
        return out
