"""Kernel vector quantization (KVQ): Tipping & Schölkopf, *A kernel approach for vector quantization with
guaranteed distortion bounds*, AISTATS 2001, as used for geo and visual clustering by Avrithis, Kalantidis,
Tolias & Spyrou, ACM-MM 2010 (Sec. 3).

KVQ picks codebook vectors among the data so that every point lies within a radius r of one (the
distortion bound), with as few codebook vectors as possible. With the 0/1 kernel
K_ij = [x_j lies within the radius of x_i] (K_ii = 1), the paper's problem is the linear program

    minimise  sum_i alpha_i   subject to   sum_i K_ij alpha_i >= 1 for every point j,   alpha >= 0,

the linear relaxation of the set cover "fewest centres covering every point"; the codebook is the
points with alpha_i > 0 (:func:`kvq_lp`). Every point j is then covered: its constraint cannot hold
unless some alpha_i > 0 with K_ij = 1. The codebook is optimal whenever the LP has an integral
optimum (interval graphs such as points on a line, disjoint cliques, stars); a fractional optimum
(an odd cycle: alpha = 1/3 on each of 5 points) keeps the cover guarantee but may take more centres
than the integer optimum. Measured: on the sample-views graph (n = 127, 525 covering pairs) the optimum
is integral (40 centres, 3 ms); on 5000 random geo points (radius 1 km in a 20 km square) it is
fractional on ~1800 points (value 137.9), so ~1800 centres where the greedy cover takes 210 (16 s).

:func:`kvq_greedy` is a simplification, not the paper's solver: the greedy set-cover approximation
(take the point covering most uncovered points, repeat), within a factor H(max degree) of the optimum.

Shapes: cover (n, n) bool, cover[i, j] when centre i covers point j (the diagonal holds);
affinity (n, n) float64, larger = closer; centres (c,) int64; labels (n,) int64 in [0, c).
"""
from __future__ import annotations

import numpy as np

from visrep.errors import UserError

#: solvers of KVQ's covering problem: "lp" (the paper's linear program), "greedy" (a simplification)
KVQ_SOLVERS = ("lp", "greedy")
#: an LP weight above this is a centre (HiGHS' primal feasibility tolerance is 1e-7)
LP_TOL = 1e-6


def _check_cover(cover, where: str) -> np.ndarray:
    C = np.asarray(cover)
    if C.ndim != 2 or C.shape[0] != C.shape[1]:
        raise UserError(f"{where}: cover must be a square (n, n) matrix, got shape {C.shape}")
    C = C.astype(bool)
    if not C[np.arange(len(C)), np.arange(len(C))].all():
        raise UserError(f"{where}: every image must cover itself (cover[i, i] True)")
    return C


def kvq_lp_weights(cover) -> tuple[np.ndarray, float]:
    """KVQ's linear program (Tipping & Schölkopf 2001, Sec. 2): min 1^T alpha s.t. K^T alpha >= 1, alpha >= 0.

    cover (n, n) bool, K_ij = cover[i, j] (i covers j; K need not be symmetric), as a sparse matrix with
    as many non-zeros as covering pairs. Solved by HiGHS (scipy.optimize.linprog, method="highs"), which
    returns a basic (vertex) solution. Returns (alpha (n,) float64 >= 0, the optimal value sum(alpha)).
    A failed solve raises UserError naming the greedy solver.
    """
    import scipy.sparse as sp
    from scipy.optimize import linprog

    C = _check_cover(cover, "kvq_lp")
    n = len(C)
    if n == 0:
        return np.zeros(0), 0.0
    i, j = np.nonzero(C)
    A = sp.csr_matrix((-np.ones(len(i)), (j, i)), shape=(n, n))          # row j: -sum_i K_ij alpha_i <= -1
    res = linprog(np.ones(n), A_ub=A, b_ub=-np.ones(n), bounds=(0, None), method="highs")
    if res.status != 0 or res.x is None:
        raise UserError(f"kvq_lp: the KVQ linear program on {n} points failed (HiGHS status {res.status}: "
                        f"{res.message}); use kvq=\"greedy\" (the greedy set-cover approximation) instead")
    alpha = np.maximum(np.asarray(res.x, np.float64), 0.0)
    return alpha, float(res.fun)


def kvq_lp(cover, tol: float = LP_TOL) -> np.ndarray:
    """Centres of KVQ by its linear program (Tipping & Schölkopf 2001): the points with alpha_i > tol.

    cover (n, n) bool as in :func:`kvq_lp_weights`. Returns centres (c,) int64, ascending. Raises
    UserError (naming kvq="greedy") if the solve fails or, numerically, a point is left uncovered.
    """
    C = _check_cover(cover, "kvq_lp")
    alpha, _ = kvq_lp_weights(C)
    centres = np.flatnonzero(alpha > tol).astype(np.int64)
    if len(C) and not C[centres].any(0).all():
        raise UserError(f"kvq_lp: the LP weights above {tol:g} leave {int((~C[centres].any(0)).sum())} points "
                        "uncovered (numerical failure); use kvq=\"greedy\" instead")
    return centres


def kvq_greedy(cover, affinity) -> np.ndarray:
    """Greedy set cover of KVQ's covering problem -- a simplification of the paper's linear program.

    cover (n, n) bool, affinity (n, n) float. Repeatedly take as centre the point covering most uncovered
    points (ties: larger summed affinity to them, then the lower index). Returns centres (c,) int64 in
    the order taken.
    """
    C = _check_cover(cover, "kvq_greedy")
    A = np.asarray(affinity, np.float64)
    n = len(C)
    if A.shape != (n, n):
        raise UserError(f"kvq_greedy: cover and affinity must be (n, n), got {C.shape} and {A.shape}")
    uncovered = np.ones(n, bool)
    centres: list[int] = []
    while uncovered.any():
        gain = C[:, uncovered].sum(1)
        weight = np.where(C[:, uncovered], A[:, uncovered], 0.0).sum(1)
        c = int(np.lexsort((np.arange(n), -weight, -gain))[0])
        centres.append(c)
        uncovered &= ~C[c]
    return np.asarray(centres, np.int64)


def kvq_assign(cover, affinity, centres) -> np.ndarray:
    """Each point joins the covering centre of largest affinity (a centre keeps itself).

    cover (n, n) bool, affinity (n, n) float, centres (c,) int64 covering every point.
    Returns labels (n,) int64 in [0, c), labels[centres[k]] == k.
    """
    C = np.asarray(cover, bool)
    centres = np.asarray(centres, np.int64)
    n = len(C)
    if n == 0:
        return np.zeros(0, np.int64)
    if not C[centres].any(0).all():
        raise UserError("kvq_assign: the centres do not cover every point")
    aff = np.where(C[centres], np.asarray(affinity, np.float64)[centres], -np.inf)     # (c, n)
    aff[np.arange(len(centres)), centres] = np.inf
    return aff.argmax(0).astype(np.int64)


def kvq_solve(cover, affinity, solver: str = "lp") -> tuple[np.ndarray, np.ndarray]:
    """KVQ clusters: centres by `solver` ("lp": :func:`kvq_lp`, the paper's; "greedy": :func:`kvq_greedy`),
    then :func:`kvq_assign`. cover, affinity (n, n). Returns (labels (n,) int64, centres (c,) int64)."""
    if solver not in KVQ_SOLVERS:
        raise UserError(f"kvq: solver must be one of {KVQ_SOLVERS}, got {solver!r}")
    C = _check_cover(cover, f"kvq ({solver})")
    A = np.asarray(affinity, np.float64)
    if A.shape != C.shape:
        raise UserError(f"kvq: cover and affinity must be (n, n), got {C.shape} and {A.shape}")
    if len(C) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    centres = kvq_lp(C) if solver == "lp" else kvq_greedy(C, A)
    return kvq_assign(C, A, centres), centres
