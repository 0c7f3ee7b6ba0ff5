"""mAP protocols with ``ok``/``junk`` ground truth: Oxford5k/Paris6k (+100k), Holidays, INSTRE.

- ``oxford`` (Philbin et al. CVPR 2007; Oxford105k/Paris106k are the same with distractors
  appended to the database): positives ``ok`` (good + ok images), ``junk`` removed from the
  ranking, AP by the trapezoidal rule of ``compute_ap`` (see
  :mod:`visrep.protocols.ranking_metrics`), mean over queries with positives.
- ``holidays`` (Jégou, Douze & Schmid, Hamming embedding and weak geometric consistency,
  ECCV 2008; ``holidays_map.py`` of the INRIA evaluation package): the query image itself is
  removed from its own result list before scoring (here: added to ``junk``, which is the
  same thing), positives are the other images of its group. The rotated ("upright") image
  variant is a dataset option; the protocol is unchanged.
- ``instre`` (Wang & Jiang, INSTRE, ACM TOMM 2015; protocol of Iscen et al., Efficient
  diffusion on region manifolds, CVPR 2017: 1250 queries cropped by their box, 27,293 database
  images not containing the queries): positives ``ok``, no junk, mAP.

Outputs contract: ``outputs["ranks"]`` int (n_ranked <= n_db, n_queries), 0-based, best first.
Metrics: ``map`` (fraction), ``n_queries``.
"""
from __future__ import annotations

import numpy as np

from visrep.api import Protocol
from visrep.errors import UserError
from visrep.registry import register

from .ranking_metrics import check_ranks, positions, score_positions, sequential_mean


def positives_and_junk(gnd: list[dict], positive_keys=("ok",), junk_keys=("junk",), where="ground truth"):
    """Per query: concatenated positive and junk index arrays (0-based) from the named keys.

    A missing ``junk`` key means no junk; any other missing key is a UserError naming the query.
    """
    pos, junk = [], []
    for j, g in enumerate(gnd):
        if not isinstance(g, dict):
            raise UserError(f"{where}: query {j} ground truth is a {type(g).__name__}, expected a dict")
        for key in (*positive_keys, *junk_keys):
            if key not in g and key != "junk":
                raise UserError(f"{where}: query {j} has no '{key}' list (keys: {', '.join(sorted(map(str, g)))})")
        pos.append(np.concatenate([np.asarray(g[k], np.int64).ravel() for k in positive_keys]))
        junk.append(np.concatenate([np.asarray(g.get(k, ()), np.int64).ravel() for k in junk_keys])
                    if junk_keys else np.zeros(0, np.int64))
    return pos, junk


def map_from_lists(ranks, pos, junk, n_db: int, where: str, ranking: str = "ranking"):
    """(mAP, APs (n_q,) with NaN for queries without positives, number of scored queries)."""
    n_ranked, nq = ranks.shape
    p = positions(ranks, {"ok": pos, "junk": junk}, n_db=n_db, where=where, ranking=ranking)
    aps, _ = score_positions(nq, n_ranked, p["ok"][:2], p["junk"][:2], p["ok"][2], ())
    return float(sequential_mean(aps)), aps, int(np.count_nonzero(~np.isnan(aps)))


class _OkJunkMAP(Protocol):
    task = "retrieval"
    junk_keys: tuple = ("junk",)
    query_is_junk = False

    def ground_truth(self, data):
        pos, junk = positives_and_junk(data.gnd, ("ok",), self.junk_keys, where=f"{data.name} ground truth")
        if self.query_is_junk and data.query_db_index is not None:
            qidx = np.asarray(data.query_db_index, np.int64).ravel()
            if len(qidx) != len(junk):
                raise UserError(f"{data.name}: {len(qidx)} query database indices for {len(junk)} queries")
            junk = [np.union1d(j, [q]) for j, q in zip(junk, qidx)]
            pos = [p[p != q] for p, q in zip(pos, qidx)]
        return pos, junk

    def score(self, outputs: dict, data) -> tuple[dict, dict]:
        if "ranks" not in outputs:
            raise UserError(f"protocol '{self.name}' needs outputs['ranks'] (database x queries), "
                            f"got keys {sorted(outputs)}")
        where = f"ranking for {data.name}"
        ranks = check_ranks(outputs["ranks"], data.n_db, data.n_queries, where=where, check_duplicates=False)
        pos, junk = self.ground_truth(data)
        m, aps, n = map_from_lists(ranks, pos, junk, data.n_db, f"{data.name} ground truth", ranking=where)
        if n == 0:
            raise UserError(f"{data.name}: no query has a positive; mAP is undefined")
        return {"map": m, "n_queries": n}, {"map": np.asarray(aps, np.float64)}

    def format(self, metrics: dict, data) -> str:
        return f">> {data.name}: mAP {100 * metrics['map']:.2f}"


@register
class OxfordMAP(_OkJunkMAP):
    name = "oxford"
    summary = "mean average precision, positives 'ok', 'junk' ignored (Oxford5k/Paris6k/105k/106k)"
    cite = "Philbin et al., Object retrieval with large vocabularies and fast spatial matching, CVPR 2007"


@register
class HolidaysMAP(_OkJunkMAP):
    name = "holidays"
    summary = "INRIA Holidays mAP: the query is removed from its own result list"
    cite = "Jégou, Douze & Schmid, Hamming embedding and weak geometric consistency, ECCV 2008"
    query_is_junk = True


@register
class InstreMAP(_OkJunkMAP):
    name = "instre"
    summary = "INSTRE mAP over 1250 queries, positives 'ok', no junk (Iscen et al. protocol)"
    cite = ("Wang & Jiang, INSTRE: a new benchmark for instance-level object retrieval, ACM TOMM 2015; "
            "Iscen et al., Efficient diffusion on region manifolds, CVPR 2017")
    junk_keys = ()
