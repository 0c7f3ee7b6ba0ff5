"""The plugin API: base classes for methods, datasets and protocols.

Data flows one way: ``Dataset.load`` -> ``Method.run`` -> outputs -> ``Protocol.evaluate``
-> metrics. A method never scores itself; a protocol never knows which method produced
its input. Tasks name the contract between them:

=================  ===========================================  ===============================
task               dataset gives                                method outputs
=================  ===========================================  ===============================
``retrieval``      :class:`visrep.data.RetrievalData`           ``ranks`` (n_db, n_q) int, 0-based
``descriptor``     images                                       (n, d) float32 vectors
``quantization``   :class:`visrep.data.RetrievalData`           ``ranks`` + ``codes``/``bytes_per_vector``
others             declared by the plugins of that task
=================  ===========================================  ===============================
"""
from __future__ import annotations

from dataclasses import dataclass

from .registry import Plugin


class Method(Plugin):
    """A technique of the talk. Subclasses set name, task, summary, cite, params; implement run()."""

    kind = "method"

    def run(self, data, ctx) -> dict:
        """Return the outputs dict for `data` (see the task table above).

        Optional keys for every task: ``timings`` (seconds, e.g. ``query`` per query) and
        ``stats`` (other numbers the method measures about itself: memory, iterations).
        """
        raise NotImplementedError


@dataclass(frozen=True)
class DataFile:
    """A file of a dataset: path relative to the data root, sha256, and where to download it."""

    path: str
    sha256: str | None = None
    url: str | None = None
    size: int | None = None
    required: bool = True


class Dataset(Plugin):
    """A dataset loader for one standard on-disk layout under the data root."""

    kind = "dataset"
    default_protocol: str = ""
    files: tuple[DataFile, ...] = ()

    def load(self, ctx):
        """Read the dataset under ``ctx.data_root`` and return its data object."""
        raise NotImplementedError


class Protocol(Plugin):
    """An evaluation protocol: a pure function of (method outputs, dataset ground truth)."""

    kind = "protocol"

    def evaluate(self, outputs: dict, data) -> dict:
        """Return metrics as a flat dict of floats (fractions in [0, 1] where they are rates)."""
        raise NotImplementedError

    def format(self, metrics: dict, data) -> str:
        """The human line printed after a run (defaults to ``name: value`` pairs)."""
        shown = ", ".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}" for k, v in metrics.items())
        return f">> {getattr(data, 'name', '?')}: {shown}"


class Descriptor(Method):
    """A method that turns images into vectors (task ``descriptor``).

    Implement ``describe_one(image) -> (d,) vector`` or, for batched extraction (CNNs),
    override ``describe(images, n, ctx, desc)`` -> (n, d) float32. Retrieval methods call it
    through :func:`visrep.features.retrieval_features`, which caches the result.
    """

    task = "descriptor"
    output_tasks = ("retrieval",)  # run() ranks the dataset by nearest neighbours on these vectors

    def describe_one(self, image):
        raise NotImplementedError

    def describe(self, images, n: int, ctx, desc: str = "describe"):
        import numpy as np
        vecs = [np.asarray(self.describe_one(img), dtype=np.float32)
                for img in ctx.progress(images, desc=desc, total=n, unit="img")]
        return np.stack(vecs) if vecs else np.zeros((0, 0), np.float32)

    def run(self, data, ctx) -> dict:
        from visrep.methods.search.knn import search

        from .features import retrieval_features
        db, q = retrieval_features(data, ctx, self)
        with ctx.phase("online"):
            _, ranks = search(db, q)
        return {"ranks": ranks, "timings": {"query": ctx.timings["online"] / max(len(q), 1)}}
