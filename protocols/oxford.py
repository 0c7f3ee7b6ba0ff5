"""Original Oxford5k / Paris6k protocol (Philbin et al. CVPR 2007): mAP with ``ok`` positives.

Positives are ``ok`` (good + ok images), ``junk`` images are removed from the ranking, AP by
the trapezoidal rule of ``compute_ap`` (see :mod:`visrep.protocols.ranking_metrics`). The
same protocol serves Oxford105k / Paris106k (distractors appended), Holidays and INSTRE,
whose ground truth uses the same ``ok``/``junk`` fields.
"""
from __future__ import annotations

import numpy as np

from visrep.api import Protocol
from visrep.errors import UserError
from visrep.registry import register

from .ranking_metrics import average_precision, check_ranks


def positives_and_junk(gnd: list[dict], positive_keys=("ok",), junk_keys=("junk",), where="ground truth"):
    """Per query: concatenated positive and junk index arrays (0-based) from the named keys."""
    pos, junk = [], []
    for j, g in enumerate(gnd):
        for key in (*positive_keys, *junk_keys):
            if key not in g and not (key == "junk" and key in junk_keys):
                raise UserError(f"{where}: query {j} has no '{key}' list (keys: {', '.join(sorted(g))})")
        pos.append(np.concatenate([np.asarray(g[k], np.int64).ravel() for k in positive_keys]))
        junk.append(np.concatenate([np.asarray(g.get(k, ()), np.int64).ravel() for k in junk_keys]))
    return pos, junk


@register
class OxfordMAP(Protocol):
    name = "oxford"
    task = "retrieval"
    summary = "mean average precision, positives 'ok', 'junk' ignored (Oxford5k/Paris6k/Holidays/INSTRE)"
    cite = "Philbin et al., Object retrieval with large vocabularies and fast spatial matching, CVPR 2007"

    def evaluate(self, outputs: dict, data) -> dict:
        ranks = check_ranks(outputs["ranks"], data.n_db, data.n_queries, where=f"ranking for {data.name}")
        pos, junk = positives_and_junk(data.gnd, where=f"{data.name} ground truth")
        ap = average_precision(ranks, pos, junk)
        valid = ~np.isnan(ap)
        if not valid.any():
            raise UserError(f"{data.name}: no query has a positive; mAP is undefined")
        return {"map": float(ap[valid].mean()), "n_queries": int(valid.sum())}

    def format(self, metrics: dict, data) -> str:
        return f">> {data.name}: mAP {100 * metrics['map']:.2f}"
