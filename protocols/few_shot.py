"""Few-shot classification protocol: N-way K-shot accuracy over episodes with a 95% interval.

Vinyals et al., Matching networks for one shot learning, NeurIPS 2016; Ravi & Larochelle,
ICLR 2017; reported as mean accuracy ± 1.96 · std / sqrt(n_episodes) over (usually 600)
seeded test episodes (e.g. Snell et al., Prototypical networks, NeurIPS 2017; std with
ddof = 0, as ``np.std`` in their code).

Outputs contract (task ``few-shot``): ``outputs["predictions"]`` int (E, N*Q): episode-local
predicted labels (0..N-1) of each episode's query items, in the order of
:class:`visrep.data.EpisodeData` ``query``; or ``outputs["scores"]`` float
(E, N*Q, N). Metrics: ``accuracy`` (fraction), ``ci95`` (fraction), ``n_episodes``.
"""
from __future__ import annotations

import numpy as np

from visrep.api import Protocol
from visrep.errors import UserError
from visrep.registry import register


def episode_accuracies(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(E,) fraction of correct query predictions per episode."""
    return (np.asarray(pred) == np.asarray(truth)).mean(axis=1)


def mean_ci95(acc: np.ndarray) -> tuple[float, float]:
    """(mean, 1.96 * std / sqrt(n)) with population std (ddof = 0)."""
    acc = np.asarray(acc, dtype=np.float64)
    return float(acc.mean()), float(1.96 * acc.std() / np.sqrt(len(acc)))


@register
class FewShot(Protocol):
    name = "few-shot"
    task = "few-shot"
    summary = "N-way K-shot accuracy over seeded episodes: mean and 95% confidence interval"
    cite = "Vinyals et al., Matching networks for one shot learning, NeurIPS 2016"

    def score(self, outputs: dict, data) -> tuple[dict, dict]:
        truth = np.asarray(data.query_labels)
        if "predictions" in outputs:
            pred = np.asarray(outputs["predictions"])
        elif "scores" in outputs:
            s = np.asarray(outputs["scores"])
            if s.shape != (*truth.shape, data.n_way):
                raise UserError(f"scores for {data.name}: expected shape {(*truth.shape, data.n_way)}, got {s.shape}")
            pred = s.argmax(-1)
        else:
            raise UserError(f"protocol 'few-shot' needs outputs['predictions'] (E, N*Q) or ['scores']; "
                            f"got keys {sorted(outputs)}")
        if pred.shape != truth.shape:
            raise UserError(f"predictions for {data.name}: expected shape {truth.shape} (episodes x queries), "
                            f"got {pred.shape}")
        if pred.dtype.kind not in "iu" or (pred.size and (pred.min() < 0 or pred.max() >= data.n_way)):
            raise UserError(f"predictions for {data.name}: expected episode-local labels in [0, {data.n_way})")
        per_episode = episode_accuracies(pred, truth)
        acc, ci = mean_ci95(per_episode)
        return {"accuracy": acc, "ci95": ci, "n_episodes": int(truth.shape[0])}, {"accuracy": per_episode}

    def format(self, metrics: dict, data) -> str:
        return (f">> {data.name} {data.n_way}-way {data.k_shot}-shot: {100 * metrics['accuracy']:.2f} "
                f"+- {100 * metrics['ci95']:.2f} % ({metrics['n_episodes']} episodes)")
