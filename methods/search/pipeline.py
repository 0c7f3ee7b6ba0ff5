"""Family base classes and run-context helpers of this chapter (talk: the baselines every chapter compares with).

They hold what the plugins of a family share (parameters, the run loop, cached intermediates);
the numerical work is in the kernel modules beside this file.
"""
from __future__ import annotations

import time

from .knn import search


def timed_search(db, q, ctx, **kw):
    """`search` timed under the context's "online" phase; returns (sims, ranks, seconds per query)."""
    t0 = time.perf_counter()
    with ctx.phase("online"):
        sims, ranks = search(db, q, **kw)
    return sims, ranks, (time.perf_counter() - t0) / max(q.shape[0], 1)
