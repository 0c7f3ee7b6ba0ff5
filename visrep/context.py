"""What a running job can reach: data root, cache, seed, progress bars and phase timers."""
from __future__ import annotations

import os
import random
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .cache import Cache, code_version
from .device import check_device_name, faiss_gpu_count, resolve_device
from .manifest import by_content


#: set in the worker processes of a parallel local run (visrep.runner.LocalExecutor): a queue that
#: takes (pid, desc, done, total) so that the parent draws one bar per worker
PROGRESS_RELAY = None


def _relayed(iterable, desc: str, total: int | None, every: float = 0.5):
    """Yield from `iterable`, sending (pid, desc, done, total) to PROGRESS_RELAY at most every `every` s."""
    if total is None:
        try:
            total = len(iterable)
        except TypeError:
            total = None
    pid, last, done = os.getpid(), 0.0, 0
    for item in iterable:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= every:
            last = now
            try:
                PROGRESS_RELAY.put_nowait((pid, desc, done, total))
            except Exception:  # noqa: BLE001 - progress is best effort, never the job's failure
                pass


def default_data_root() -> Path:
    """``$VISREP_DATA`` or ``~/.cache/visrep`` (the revisitop/cnnimageretrieval style root)."""
    env = os.environ.get("VISREP_DATA")
    return Path(env) if env else Path.home() / ".cache" / "visrep"


def shared_data_dir() -> Path | None:
    """The workplace's real-data folder ``../shared/data`` (or ``$VISREP_SHARED_DATA``), if present."""
    env = os.environ.get("VISREP_SHARED_DATA")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve().parent.parent
    candidates += [here.parent / "shared" / "data", Path.cwd().parent / "shared" / "data",
                   Path.cwd() / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c
    return None


class RunContext:
    """Handed to ``Dataset.load`` and ``Method.run``.

    ``timings`` collects wall seconds per phase (``with ctx.phase("offline"): ...``);
    ``progress(iterable, desc)`` wraps long loops in a tqdm bar unless quiet.
    """

    def __init__(self, data_root: str | Path | None = None, cache: Cache | None = None,
                 seed: int = 0, quiet: bool = False, device: str = "cpu"):
        self.data_root = Path(data_root) if data_root is not None else default_data_root()
        self.cache = cache if cache is not None else Cache()
        self.seed = seed
        self.quiet = quiet
        self.timings: dict[str, float] = {}
        self.manifest = ""
        self.loader_version = ""  # code version of the dataset loader, part of every cache key on its data
        self.device = check_device_name(device)   # what the user asked for (visrep.device)
        self.device_used = "cpu"                  # what torch ran on, once a method asked (record provenance)
        self._torch_device: str | None = None

    def torch_device(self) -> str:
        """The resolved torch device of this job ('cpu', 'cuda', 'cuda:N'), resolved on first use."""
        if self._torch_device is None:
            self._torch_device = resolve_device(self.device)
        self.device_used = self._torch_device
        return self._torch_device

    def faiss_device(self) -> str:
        """Where faiss searches: a GPU when one was asked for (or, under 'auto', when faiss has GPU
        support), else 'cpu'; 'auto' does not import torch for this."""
        if self.device == "cpu" or (self.device == "auto" and not faiss_gpu_count()):
            return "cpu"
        return self.torch_device()

    @contextmanager
    def phase(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0

    def progress(self, iterable, desc: str = "", total: int | None = None, unit: str = "it"):
        if PROGRESS_RELAY is not None:          # a worker process of a parallel local run: tell the parent
            return _relayed(iterable, desc, total)
        if self.quiet:
            return iterable
        from tqdm.auto import tqdm
        return tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, file=sys.stderr)

    def cached(self, kind: str, what: dict, code: tuple | list, compute, data=None):
        """``compute()`` through the cache: the one way visrep keys a cached intermediate.

        The key holds `what` (the producer's parameters; file paths replaced by their content,
        :func:`visrep.manifest.by_content`), the code version of the functions/classes in `code`
        (:func:`visrep.cache.code_version`: their whole chapter room) and, when the value is
        computed from a dataset `data`, its manifest hash and the loader's code version.
        """
        key = {"what": by_content(what), "code": code_version(*code)}
        if data is not None:
            key.update(manifest=getattr(data, "manifest", ""), loader=self.loader_version)
        return self.cache.get_or_compute(kind, key, compute)

    def per_split(self, data, kind: str, what: dict, code: tuple | list, compute) -> dict:
        """``{"db": compute("db"), "query": compute("query")}``, each cached by :meth:`cached`
        with the split in the key: features of a dataset's database and query images."""
        return {split: self.cached(kind, {**what, "split": split}, code, lambda s=split: compute(s), data=data)
                for split in ("db", "query")}

    def rng(self, offset: int = 0) -> np.random.Generator:
        return np.random.default_rng(self.seed + offset)

    def seed_everything(self) -> None:
        random.seed(self.seed)
        np.random.seed(self.seed % (2**32))
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.manual_seed(self.seed)
