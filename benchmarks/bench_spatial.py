"""asv benchmarks of spatial matching: HPM vs FSM (and RANSAC) time per image pair on fixed correspondences.

Input (fixed seed): m tentative correspondences between two 640 x 480 images, half of them
consistent with one similarity transformation (inliers, with 1 px noise), half random, with
SIFT-like frames (x, y, scale, orientation). FSM is quadratic in m (one hypothesis per
correspondence, each scored on all), HPM linear (Tolias & Avrithis ICCV 2011: "more than 10
times faster"). Run as a script to print the times and ratios once (best of 5).
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
    param_names = ["m"]
    timeout = 300

    def setup(self, m):
        self.fa, self.fb, self.pairs = correspondences(m)
        self.pa, self.pb = self.fa[:, :2], self.fb[:, :2]

    def time_hpm(self, m):
        from visrep.methods.spatial.hough_pyramid import hough_pyramid_matching
        hough_pyramid_matching(self.fa, self.fb, self.pairs, image_size=640)

    def time_fsm(self, m):
        from visrep.methods.spatial.geometry import fast_spatial_matching
        fast_spatial_matching(self.fa, self.fb, self.pairs, 8.0, "affine")

    def time_ransac(self, m):
        from visrep.methods.spatial.geometry import ransac_homography
        ransac_homography(self.pa, self.pb, 4.0, 1000, rng=np.random.default_rng(0))


def _best(fn, reps=5):
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


if __name__ == "__main__":
    s = SpatialMatchingSuite()
    for m in SpatialMatchingSuite.params[0]:
        s.setup(m)
        th, tf, tr = _best(lambda: s.time_hpm(m)), _best(lambda: s.time_fsm(m)), _best(lambda: s.time_ransac(m))
        print(f"m={m:5d}  hpm {th * 1e3:8.2f} ms  fsm {tf * 1e3:8.2f} ms  ransac {tr * 1e3:8.2f} ms  "
              f"fsm/hpm {tf / th:6.1f}x")
