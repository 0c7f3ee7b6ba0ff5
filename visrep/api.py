"""The plugin API: base classes for methods, datasets and protocols.

Data flows one way: ``Dataset.load`` -> ``Method.run`` -> outputs -> ``Protocol.evaluate``
-> metrics. A method never scores itself; a protocol never knows which method produced
its input. Tasks name the contract between them: the closed set of tasks, what a dataset
and a method of each task give, and the rule of which (method, dataset, protocol) triples run
together live in :mod:`visrep.tasks` (``visrep/tasks.py``).
"""
from __future__ import annotations

from dataclasses import dataclass

from .registry import Plugin


class Method(Plugin):
    """A technique of the talk. Subclasses set name, task, summary, cite, params; implement run()."""

    kind = "method"
    #: registered names of methods whose cached training this method loads when run with the same settings
    #: (``dlp`` starts from the network ``supervised`` trains): a parallel run starts those jobs first
    reuses: tuple[str, ...] = ()

    def run(self, data, ctx) -> dict:
        """Return the outputs dict for `data` (see the task table above).

        Optional keys for every task: ``timings`` (seconds, e.g. ``query`` per query),
        ``per_item_timings`` ({phase: (n,) seconds}: repeated timings, one per query / pair, kept in the
        record as ``per_item["timings.<phase>"]`` so speed claims get an interval) and
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
        return self.score(outputs, data)[0]

    def score(self, outputs: dict, data) -> tuple[dict, dict]:
        """(metrics, per_item): the metrics of :meth:`evaluate`, and for the metrics that are means
        over queries / episodes / images, the per-item values (``{"map": (n_q,) APs}``, NaN for an
        item that does not count) whose mean is the metric. Claims compare two methods item by item
        with these (a paired test). A protocol implements ``evaluate`` or ``score``."""
        return self.evaluate(outputs, data), {}

    def format(self, metrics: dict, data) -> str:
        """The human line printed after a run (defaults to ``name: value`` pairs)."""
        shown = ", ".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}" for k, v in metrics.items())
        return f">> {getattr(data, 'name', '?')}: {shown}"

