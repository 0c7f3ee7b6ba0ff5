"""asv benchmarks of spatial matching: HPM vs FSM, Lowe's Hough voting (and RANSAC) time per image pair on fixed
correspondences.

Input (fixed seed): m tentative correspondences between two 640 x 480 images, half of them
consistent with one similarity transformation (inliers, with 1 px noise), half random, with
SIFT-like frames (x, y, scale, orientation). FSM is quadratic in m (one hypothesis per
correspondence, each scored on all), HPM linear (Tolias & Avrithis ICCV 2011: "more than 10
times faster"), Lowe's Hough voting + affine verification O(clusters x m). Run as a script to print the
times and ratios once (best of 5); ``--graffiti`` also compares FSM, Lowe and HPM on the real Graffiti pairs
(../shared/data/localfeatures/graf, ground-truth homographies): time, corner error, correct inliers.
"""
from __future__ import annotations

import time

import numpy as np


def correspondences(m: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    fa = np.column_stack([rng.uniform(0, 640, m), rng.uniform(0, 480, m), rng.uniform(2, 20, m),
                          rng.uniform(0, 2 * np.pi, m)])
    s, a, t = 0.8, 0.3, np.array([60.0, -20.0])
    R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    fb = fa.copy()
    fb[:, :2] = s * fa[:, :2] @ R.T + t + rng.normal(0, 1, (m, 2))
    fb[:, 2] *= s
    fb[:, 3] = np.mod(fa[:, 3] + a, 2 * np.pi)
    out = rng.random(m) < 0.5
    fb[out, :2] = rng.uniform(0, 640, (int(out.sum()), 2))
    fb[out, 3] = rng.uniform(0, 2 * np.pi, int(out.sum()))
    pairs = np.column_stack([np.arange(m), np.arange(m)])
    return fa, fb, pairs


class SpatialMatchingSuite:
    """Time of one image pair for m correspondences."""

    params = ([100, 500, 2000],)
    param_names = ("m",)
    timeout = 300

    def setup(self, m):
        self.fa, self.fb, self.pairs = correspondences(m)
        self.pa, self.pb = self.fa[:, :2], self.fb[:, :2]
        compile_kernels()                                     # numba compiles on first call: not timed

    def time_hpm(self, m):
        from visrep.methods.spatial.hough_pyramid import hough_pyramid_matching
        hough_pyramid_matching(self.fa, self.fb, self.pairs, image_size=640)

    def time_fsm(self, m):
        from visrep.methods.spatial.geometry import fast_spatial_matching
        fast_spatial_matching(self.fa, self.fb, self.pairs, 8.0, "affine")

    def time_lowe_hough(self, m):
        from visrep.methods.spatial.lowe_hough import lowe_hough_matching
        lowe_hough_matching(self.fa, self.fb, self.pairs, image_size=640)

    def time_ransac(self, m):
        from visrep.methods.spatial.geometry import ransac_homography
        ransac_homography(self.pa, self.pb, 4.0, 1000, rng=np.random.default_rng(0))


def compile_kernels():
    """One call of each matcher on 8 correspondences, so that numba's compilation is done."""
    from visrep.methods.spatial.geometry import fast_spatial_matching
    from visrep.methods.spatial.hough_pyramid import hough_pyramid_matching
    from visrep.methods.spatial.lowe_hough import lowe_hough_matching
    fa, fb, pairs = correspondences(8)
    hough_pyramid_matching(fa, fb, pairs, image_size=640)
    lowe_hough_matching(fa, fb, pairs, image_size=640)
    fast_spatial_matching(fa, fb, pairs, 8.0, "affine")


def _best(fn, reps=5):
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def graffiti_comparison(reps: int = 5):
    """FSM (affine and homography refinement), Lowe's Hough voting and HPM on Graffiti img1 -> imgk (k = 2..6):
    RootSIFT (all features), mutual NN + ratio 0.8; best-of-`reps` time per pair; corner error of the
    estimated transform against the ground truth; inliers correct under the ground truth (< 3 px)."""
    import cv2
    from visrep.methods.local.features import extract_sift
    from visrep.methods.spatial import geometry as G
    from visrep.methods.spatial.hough_pyramid import hough_pyramid_matching
    from visrep.methods.spatial.lowe_hough import lowe_hough_matching

    from visrep.context import shared_data_dir
    folder = shared_data_dir() / "localfeatures" / "graf"
    imgs = {k: cv2.cvtColor(cv2.imread(str(folder / f"img{k}.png")), cv2.COLOR_BGR2RGB) for k in range(1, 7)}
    feats = {k: extract_sift(im, "rootsift", None) for k, im in imgs.items()}
    h, w = imgs[1].shape[:2]
    D = max(h, w)
    (d1, f1) = feats[1]
    f1 = f1.astype(float)
    for k in range(2, 7):
        Ht = np.loadtxt(folder / f"H1to{k}p")
        dk, fk = feats[k][0], feats[k][1].astype(float)
        pairs = G.nn_correspondences(d1, dk, 0.8)
        gt = G.transfer_errors(Ht, f1[pairs[:, 0], :2], fk[pairs[:, 1], :2]) < 3
        runs = {"fsm-affine": lambda fk=fk, p=pairs: G.fast_spatial_matching(f1, fk, p, 8.0, "affine"),
                "fsm-homography": lambda fk=fk, p=pairs: G.fast_spatial_matching(f1, fk, p, 8.0, "homography"),
                "lowe-hough": lambda fk=fk, p=pairs: lowe_hough_matching(f1, fk, p, image_size=D),
                "hpm": lambda fk=fk, p=pairs: hough_pyramid_matching(f1, fk, p, image_size=D)}
        line = [f"img1->img{k}: m={len(pairs)} true={int(gt.sum())}"]
        for name, fn in runs.items():
            r, t = fn(), _best(fn, reps)
            if name == "hpm":
                alive = (r["strengths"] > 0)
                line.append(f"{name} {t * 1e3:.1f} ms, {int((alive & gt).sum())}/{int(alive.sum())} grouped true")
            else:
                ce = G.corner_error(r["T"], Ht, w, h) if r["T"] is not None else float("nan")
                line.append(f"{name} {t * 1e3:.1f} ms, corner {ce:.2f} px, {int((r['inliers'] & gt).sum())}/"
                            f"{int(r['inliers'].sum())} inliers true")
        print(" | ".join(line))


if __name__ == "__main__":
    import sys
    s = SpatialMatchingSuite()
    for m in SpatialMatchingSuite.params[0]:
        s.setup(m)
        th, tf = _best(lambda m=m: s.time_hpm(m)), _best(lambda m=m: s.time_fsm(m))
        tl, tr = _best(lambda m=m: s.time_lowe_hough(m)), _best(lambda m=m: s.time_ransac(m))
        print(f"m={m:5d}  hpm {th * 1e3:8.2f} ms  fsm {tf * 1e3:8.2f} ms  lowe-hough {tl * 1e3:8.2f} ms  "
              f"ransac {tr * 1e3:8.2f} ms  fsm/hpm {tf / th:6.1f}x  lowe/hpm {tl / th:6.1f}x")
    if "--graffiti" in sys.argv:
        graffiti_comparison()
