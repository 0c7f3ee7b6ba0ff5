"""asv benchmarks of the retrieval protocols: visrep's vectorized RevOP scoring vs a per-query loop.

Input: the real ROxford5k ground truth (70 queries x 4993 images) when ``../shared/data`` is
present, else a synthetic ground truth of the same sizes; a seeded random ranking. The loop
baseline is revisitop's ``compute_map`` algorithm (np.in1d per query, junk shift loop,
trapezoid loop), timed in the same process so the ratio is meaningful.
"""
from __future__ import annotations


import numpy as np


def _gnd(n_db=4993, nq=70, seed=0):
    from visrep.context import shared_data_dir
    root = shared_data_dir()
    path = root / "retrieval/roxford5k/gnd_roxford5k.pkl" if root else None
    if path is not None and path.exists():
        from visrep.datasets.revisitop import read_revisitop_pickle
        d = read_revisitop_pickle(path)          # restricted unpickler: the benchmark runs no code from data
        return len(d["imlist"]), d["gnd"]
    rng = np.random.default_rng(seed)
    gnd = []
    for _ in range(nq):
        ids = rng.choice(n_db, 140, replace=False)
        gnd.append({"easy": ids[:65], "hard": ids[65:105], "junk": ids[105:]})
    return n_db, gnd


def loop_compute_map(ranks, gnd, ks=(1, 5, 10)):
    nq = len(gnd)
    total, pr, nempty = 0.0, np.zeros(len(ks)), 0
    for i in range(nq):
        ok = gnd[i]["ok"]
        if ok.shape[0] == 0:
            nempty += 1
            continue
        pos = np.arange(ranks.shape[0])[np.isin(ranks[:, i], ok)]
        junk = np.arange(ranks.shape[0])[np.isin(ranks[:, i], gnd[i]["junk"])]
        k = ij = 0
        for ip in range(len(pos)):
            while ij < len(junk) and pos[ip] > junk[ij]:
                k += 1
                ij += 1
            pos[ip] -= k
        ap, step = 0.0, 1.0 / len(ok)
        for j, r in enumerate(pos):
            ap += ((1.0 if r == 0 else j / r) + (j + 1) / (r + 1)) * step / 2.0
        total += ap
        pos = pos + 1
        pr += [(pos <= min(max(pos), kk)).sum() / min(max(pos), kk) for kk in ks]
    return total / (nq - nempty), pr / (nq - nempty)


def loop_revisitop(ranks, gnd):
    out = {}
    for setup, (pk, jk) in {"easy": (["easy"], ["junk", "hard"]), "medium": (["easy", "hard"], ["junk"]),
                            "hard": (["hard"], ["junk", "easy"])}.items():
        g = [{"ok": np.concatenate([x[k] for k in pk]), "junk": np.concatenate([x[k] for k in jk])} for x in gnd]
        out[setup] = loop_compute_map(ranks, g)
    return out


class RevisitopMAP:
    """E/M/H mAP + mP@1,5,10 for 70 queries x 4993 images (the issue's reference workload)."""

    def setup(self):
        from visrep.protocols.revisitop import RevisitOP

        from visrep.data import RetrievalData
        self.n_db, self.gnd = _gnd()
        rng = np.random.default_rng(0)
        self.ranks = np.stack([rng.permutation(self.n_db) for _ in self.gnd], 1)
        self.data = RetrievalData("roxford5k", [str(i) for i in range(self.n_db)],
                                  [str(j) for j in range(len(self.gnd))], self.gnd)
        self.protocol = RevisitOP()

    def time_revisitop_map(self):
        """visrep: validation (shape, range, duplicates) + all three setups, vectorized."""
        self.protocol.evaluate({"ranks": self.ranks}, self.data)

    def time_per_query_loop(self):
        """Baseline: revisitop's compute_map per-query loop, three setups, no validation."""
        loop_revisitop(self.ranks, self.gnd)


if __name__ == "__main__":  # quick ratio without asv: python benchmarks/bench_protocols.py
    import timeit
    b = RevisitopMAP()
    b.setup()
    t_v = min(timeit.repeat(b.time_revisitop_map, number=20, repeat=5)) / 20
    t_l = min(timeit.repeat(b.time_per_query_loop, number=3, repeat=5)) / 3
    print(f"visrep revisitop: {1e3 * t_v:.2f} ms, per-query loop: {1e3 * t_l:.2f} ms, ratio {t_l / t_v:.1f}x")
