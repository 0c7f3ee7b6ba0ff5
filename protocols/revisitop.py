"""Revisited Oxford and Paris (RevOP) protocol: Easy / Medium / Hard mAP and mean precision@k.

Radenović, Iscen, Tolias, Avrithis & Chum, "Revisiting Oxford and Paris: Large-Scale Image
Retrieval Benchmarking", CVPR 2018 (reference code: filipradenovic/revisitop,
``python/evaluate.py`` ``compute_map`` and ``python/example_evaluate.py``). Per query the
ground truth has ``easy``, ``hard`` and ``junk`` lists (0-based database indices); the three
setups are

========  =================  =====================
setup     positives          ignored (junk)
========  =================  =====================
Easy      easy               junk + hard
Medium    easy + hard        junk
Hard      hard               junk + easy
========  =================  =====================

Ignored images are removed from the ranking; AP is the trapezoidal rule and precision@k uses
revisitop's ``kq = min(max(pos), k)``; a query without positives in a setup is skipped in that
setup's means (see :mod:`visrep.protocols.ranking_metrics`). All three setups are scored from a
single inversion of the ranking, vectorized over queries.

Outputs contract: ``outputs["ranks"]`` int (n_ranked <= n_db, n_queries), 0-based, best first.
Metrics (fractions in [0, 1]): ``easy.map``, ``easy.mp@1``, ``easy.mp@5``, ``easy.mp@10``, the
same for ``medium`` and ``hard``, ``{setup}.n_queries``, and ``map`` = medium mAP (the number
leaderboards quote). R1M: a dataset loaded with ``distractors=FILE`` simply has a larger
database; the protocol is unchanged.
"""
from __future__ import annotations

import numpy as np

from visrep.api import Protocol
from visrep.errors import UserError
from visrep.registry import register

from .ranking_metrics import check_ranks, positions, score_positions, sequential_mean

SETUPS = ("easy", "medium", "hard")
KS = (1, 5, 10)
#: setup -> (positive groups, junk groups), as in revisitop's example_evaluate.py
SETUP_GROUPS = {
    "easy": (("easy",), ("junk", "hard")),
    "medium": (("easy", "hard"), ("junk",)),
    "hard": (("hard",), ("junk", "easy")),
}


def _gnd_lists(gnd: list[dict], where: str) -> dict[str, list]:
    out = {k: [] for k in ("easy", "hard", "junk")}
    for j, g in enumerate(gnd):
        if not isinstance(g, dict):
            raise UserError(f"{where}: query {j} ground truth is a {type(g).__name__}, expected a dict "
                            f"with 'easy', 'hard', 'junk'")
        for k in out:
            if k not in g:
                raise UserError(f"{where}: query {j} has no '{k}' list (keys: {', '.join(sorted(map(str, g)))}); "
                                f"the revisitop protocol needs 'easy', 'hard' and 'junk'")
            out[k].append(g[k])
    return out


def _union(*parts):
    """Concatenate (qid, pos) groups (repeats are dropped later by ``score_positions``)."""
    q = np.concatenate([p[0] for p in parts])
    p = np.concatenate([p[1] for p in parts])
    return q, p


def revisitop_scores(ranks: np.ndarray, gnd: list[dict], ks=KS, n_db: int | None = None,
                     where: str = "ground truth", ranking: str = "ranking") -> dict[str, dict]:
    """Score a ranking under Easy, Medium and Hard at once.

    `ranks` int (n_ranked, n_q), 0-based (already validated, see ``check_ranks``); `gnd` list of
    n_q dicts with ``easy``/``hard``/``junk`` 0-based index lists. Returns setup -> dict with
    ``map`` (float), ``aps`` (n_q,) float64 (NaN = no positives), ``mpr`` (len(ks),) float64,
    ``prs`` (n_q, len(ks)), ``n_queries`` (int) -- revisitop ``compute_map``'s four outputs.
    """
    ranks = np.asarray(ranks)
    n_ranked, nq = ranks.shape
    if len(gnd) != nq:
        raise UserError(f"{where}: {len(gnd)} queries in the ground truth but the ranking has {nq} columns")
    lists = _gnd_lists(gnd, where)
    pos = positions(ranks, lists, n_db=n_db, where=where, ranking=ranking)
    out = {}
    for setup, (pkeys, jkeys) in SETUP_GROUPS.items():
        ppos = _union(*[pos[k][:2] for k in pkeys])
        jpos = _union(*[pos[k][:2] for k in jkeys])
        npos = sum(pos[k][2] for k in pkeys)
        aps, prs = score_positions(nq, n_ranked, ppos, jpos, npos, ks)
        out[setup] = {
            "map": float(sequential_mean(aps)),
            "aps": aps,
            "mpr": sequential_mean(prs),
            "prs": prs,
            "n_queries": int(np.count_nonzero(~np.isnan(aps))),
        }
    return out


def flat_metrics(scores: dict, ks=KS) -> dict:
    """Flatten :func:`revisitop_scores` into the record's metrics: ``easy.map``, ``easy.mp@1``, ..."""
    m = {}
    for setup in SETUPS:
        s = scores[setup]
        m[f"{setup}.map"] = s["map"]
        for k, v in zip(ks, s["mpr"]):
            m[f"{setup}.mp@{k}"] = float(v)
        m[f"{setup}.n_queries"] = s["n_queries"]
    m["map"] = scores["medium"]["map"]
    return m


def format_lines(name: str, metrics: dict, ks=KS) -> str:
    """The two lines revisitop / cnnimageretrieval-pytorch print (numbers in %, ``np.around(x, 2)``)::

        >> roxford5k: mAP E: 85.88, M: 69.9, H: 47.91
        >> roxford5k: mP@k[1, 5, 10] E: [94.12 92.45 88.8 ], M: [...], H: [...]
    """
    def pct(x):
        return np.around(np.asarray(x, dtype=np.float64) * 100, decimals=2)
    maps = [pct(metrics[f"{s}.map"]) for s in SETUPS]
    mprs = [pct([metrics[f"{s}.mp@{k}"] for k in ks]) for s in SETUPS]
    return (">> {}: mAP E: {}, M: {}, H: {}".format(name, *maps) + "\n"
            + ">> {}: mP@k{} E: {}, M: {}, H: {}".format(name, list(ks), *mprs))


@register
class RevisitOP(Protocol):
    name = "revisitop"
    task = "retrieval"
    summary = "RevOP Easy/Medium/Hard mAP and mP@1,5,10 (revisitop compute_map), for ROxford/RParis (+R1M)"
    cite = ("Radenović, Iscen, Tolias, Avrithis & Chum, Revisiting Oxford and Paris: "
            "Large-Scale Image Retrieval Benchmarking, CVPR 2018")

    def score(self, outputs: dict, data) -> tuple[dict, dict]:
        if "ranks" not in outputs:
            raise UserError(f"protocol 'revisitop' needs outputs['ranks'] (database x queries), got keys "
                            f"{sorted(outputs)}")
        where = f"ranking for {data.name}"
        ranks = check_ranks(outputs["ranks"], data.n_db, data.n_queries, where=where, check_duplicates=False)
        scores = revisitop_scores(ranks, data.gnd, KS, n_db=data.n_db, where=f"{data.name} ground truth",
                                  ranking=where)
        if scores["medium"]["n_queries"] == 0:
            raise UserError(f"{data.name}: no query has a positive; mAP is undefined")
        per_item = {f"{setup}.map": scores[setup]["aps"] for setup in SETUPS}
        per_item["map"] = scores["medium"]["aps"]
        return flat_metrics(scores, KS), per_item

    def format(self, metrics: dict, data) -> str:
        return format_lines(getattr(data, "name", "?"), metrics, KS)
