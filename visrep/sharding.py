"""Run independent pieces of one job on the Dask cluster the job runs on, or locally.

``shard_map(fn, items, **shared)`` returns ``[fn(item, **shared) for item in items]``. When the
job runs on a Dask worker (``visrep run --executor dask``) or a Dask client is active in the
process, the pieces run as Dask tasks on the cluster, with the ``shared`` arguments scattered
once to every worker; the calling task leaves the worker's thread pool while it waits
(``secede``/``rejoin``), so a cluster of one-thread workers does not deadlock. Otherwise the
pieces run one after another here: the same code path and results either way.
"""
from __future__ import annotations

from typing import Callable, Sequence


def _dask_client():
    """(client, inside_a_worker) of the running Dask context, or (None, False)."""
    try:
        from distributed import get_client, get_worker
    except ImportError:
        return None, False
    try:
        get_worker()
        inside = True
    except ValueError:
        inside = False
    try:
        return get_client(), inside
    except ValueError:
        return None, False


def shard_map(fn: Callable, items: Sequence, **shared) -> list:
    """``[fn(item, **shared) for item in items]``, on the Dask cluster when there is one."""
    client, inside = _dask_client()
    if client is None or len(items) <= 1:
        return [fn(item, **shared) for item in items]
    from distributed import rejoin, secede
    scattered = {k: client.scatter(v, broadcast=True) for k, v in shared.items()}
    futures = client.map(fn, list(items), **scattered, pure=False)
    if inside:
        secede()
        try:
            return client.gather(futures)
        finally:
            rejoin()
    return client.gather(futures)
