"""Laplacian smoothing of a perturbation on the graph of the attacked image, and the sC&W attack.

Zhang, Avrithis, Furon & Amsaleg, Smooth adversarial examples, EURASIP J. on Information Security
2020:15 (arXiv:1903.11862); the talk's slide "smooth adversarial examples": "force perturbation to
be 'smooth like' the input image".

The graph (paper §3, "graph Laplacian smoothing"; the authors' ``knn.py`` / ``matlabGenerate``):
one node per pixel, edges between 4-neighbours, weight w_ij = exp(-lam ||x_i - x_j||^2) on the clean
image x (values in [0, 1], ||.|| over the colour channels of an RGB image; lam = 10 in the authors'
MNIST graphs), the same graph smoothing each channel of the perturbation, degree
d_i = sum_j w_ij, normalised adjacency W_n = D^{-1/2} W D^{-1/2}, Laplacian L = I - W_n and its
regularised form L_alpha = I - alpha W_n (alpha in [0, 1); 0.95 for MNIST in the authors' graphs).
Laplacian smoothing of a signal r (Zhou et al., Learning with local and global consistency, NIPS
2004) is the minimiser of s^T L s + mu ||s - r||^2, alpha = 1 / (1 + mu):

    r_alpha = (1 - alpha) L_alpha^{-1} r                                       (paper eq. 3)

so that r_alpha is smooth where the image is flat and may change sharply across the image's edges.
The attack's smoothing operator is the normalised form the authors' MNIST code uses (each column of
(1 - alpha) L_alpha^{-1} divided by its sum; L_alpha is symmetric), which maps a constant signal to
itself:

    phi(z) = (L_alpha^{-1} z) / (L_alpha^{-1} 1)        (element-wise division; (1 - alpha) cancels)

L_alpha^{-1} v is computed by conjugate gradients on the 4-neighbour stencil (the authors' ``CG``,
50 iterations), in the forward pass and again for the gradient: since L_alpha is symmetric,
d phi / d z^T g = L_alpha^{-1} (g / (L_alpha^{-1} 1)) -- the "smoothed gradient" of the paper (§4).

sC&W (paper §4, the smooth version of Carlini & Wagner's L2 attack; the authors'
``SmoothCarliniWagnerL2``): the optimisation variable is z (pixel space, z_0 = 0); the adversarial
image is y = clip_[0,1](x + phi(z)) and Adam minimises

    ||phi(z)||_2 + c * max(Z(y)_t - max_{k != t} Z(y)_k + kappa, 0)

(the distance term is the L2 norm of the smooth perturbation, not its square, as in the authors'
code), keeping the adversarial y of least L2 seen, with the binary search over c of C&W.
With alpha = 0, phi is the identity and the attack is C&W with a clipped box (the authors' baseline).

Shapes: images (b, C, H, W) float32 in [0, 1]; edge weights (b, 1, H, W-1) horizontal and
(b, 1, H-1, W) vertical (shared by the C channels); signals like the images. torch is imported inside functions only.
"""
from __future__ import annotations

from .carlini_wagner import keep_best, next_const
from .common import logit_margin


def image_affinities(x, lam: float):
    """4-neighbour weights exp(-lam ||x_i - x_j||^2) of images x (b, C, H, W): (right (b,1,H,W-1), down (b,1,H-1,W)).

    One graph per image on its pixels: ||x_i - x_j||^2 is summed over the C channels (the colour
    distance of an RGB image, the grey-level difference squared when C = 1), and the same weights
    smooth every channel of the perturbation (paper §3: the image x in R^{n x d} has one node per
    pixel and d = 3 values per node for colour images).
    """
    wr = (-lam * ((x[..., :, 1:] - x[..., :, :-1]) ** 2).sum(-3, keepdim=True)).exp()
    wd = (-lam * ((x[..., 1:, :] - x[..., :-1, :]) ** 2).sum(-3, keepdim=True)).exp()
    return wr, wd


def adjacency_apply(v, wr, wd):
    """(W v) for the symmetric 4-neighbour adjacency given by its edge weights; v (b, C, H, W)."""
    import torch.nn.functional as F
    out = F.pad(wr * v[..., :, 1:], (0, 1)) + F.pad(wr * v[..., :, :-1], (1, 0))
    return out + F.pad(wd * v[..., 1:, :], (0, 0, 0, 1)) + F.pad(wd * v[..., :-1, :], (0, 0, 1, 0))


def degrees(wr, wd):
    """d = W 1 (b, C, H, W)."""
    import torch
    shape = wr.shape[:-1] + (wr.shape[-1] + 1,)
    return adjacency_apply(torch.ones(shape, dtype=wr.dtype, device=wr.device), wr, wd)


class LaplacianSmoother:
    """The operator L_alpha = I - alpha D^{-1/2} W D^{-1/2} of a batch of images and its CG inverse.

    x (b, C, H, W) in [0, 1]; lam, alpha as in the module docstring; ``solve(v)`` returns
    L_alpha^{-1} v (b, C, H, W) by batched conjugate gradients (``maxiter`` iterations at most, stop
    when every item's residual is below ``tol`` times its right-hand side's norm).
    """

    def __init__(self, x, lam: float = 10.0, alpha: float = 0.95, maxiter: int = 50, tol: float = 1e-6):
        x = x.detach()
        self.alpha, self.maxiter, self.tol = float(alpha), int(maxiter), float(tol)
        self.wr, self.wd = image_affinities(x, lam)
        self.dinv_sqrt = degrees(self.wr, self.wd).clamp_min(1e-30).rsqrt()
        s = self.dinv_sqrt[:, :1]
        # alpha * W_n's edge weights alpha d_i^-1/2 w_ij d_j^-1/2, once: each CG step is 4 in-place stencil updates
        self.ar = self.alpha * s[..., :, 1:] * self.wr * s[..., :, :-1]
        self.ad = self.alpha * s[..., 1:, :] * self.wd * s[..., :-1, :]
        self.iterations = 0

    def apply(self, v):
        """L_alpha v = v - alpha W_n v, v (b, C, H, W) (not differentiable: used inside the CG solves)."""
        q = v.clone()
        q[..., :, :-1].addcmul_(self.ar, v[..., :, 1:], value=-1.0)
        q[..., :, 1:].addcmul_(self.ar, v[..., :, :-1], value=-1.0)
        q[..., :-1, :].addcmul_(self.ad, v[..., 1:, :], value=-1.0)
        q[..., 1:, :].addcmul_(self.ad, v[..., :-1, :], value=-1.0)
        return q

    def quadratic_form(self, v):
        """(b,) v^T L v with L = I - W_n (alpha = 1), summed over channels: the graph smoothness energy."""
        s = self.dinv_sqrt
        return (v * (v - s * adjacency_apply(s * v, self.wr, self.wd))).flatten(1).sum(1)

    def solve(self, rhs):
        """L_alpha^{-1} rhs by conjugate gradients, per (item, channel); rhs (b, C, H, W)."""
        import torch
        if self.alpha == 0.0:
            return rhs.clone()
        dims = (-2, -1)
        x = torch.zeros_like(rhs)
        r = rhs.clone()
        p = r.clone()
        rs = (r * r).sum(dims, keepdim=True)
        stop = (self.tol ** 2) * rs.clamp_min(1e-30)
        self.iterations = 0
        for _ in range(self.maxiter):
            if bool((rs <= stop).all()):
                break
            q = self.apply(p)
            a = rs / (p * q).sum(dims, keepdim=True).clamp_min(1e-30)
            x.addcmul_(a, p)
            r.addcmul_(a, q, value=-1.0)
            rs_new = (r * r).sum(dims, keepdim=True)
            p.mul_(rs_new / rs.clamp_min(1e-30)).add_(r)
            rs = rs_new
            self.iterations += 1
        return x


def _solve_function():
    import torch

    class _Solve(torch.autograd.Function):
        """y = L_alpha^{-1} v with gradient L_alpha^{-1} g (L_alpha symmetric)."""

        @staticmethod
        def forward(saved, v, smoother):  # `saved`: torch's autograd context object
            saved.smoother = smoother
            return smoother.solve(v)

        @staticmethod
        def backward(saved, g):
            return saved.smoother.solve(g), None

    return _Solve


def smooth(z, smoother: LaplacianSmoother, normaliser=None):
    """phi(z) = L_alpha^{-1} z / L_alpha^{-1} 1 (b, C, H, W), differentiable in z (gradient smoothed by CG too).

    `normaliser` (b, C, H, W) = L_alpha^{-1} 1 may be passed to avoid recomputing it.
    """
    import torch
    if normaliser is None:
        normaliser = smoother.solve(torch.ones_like(z))
    return _solve_function().apply(z, smoother) / normaliser


def smooth_carlini_wagner(model, x, y, binary_steps: int = 5, iterations: int = 20, initial_const: float = 1.0,
                          lr: float = 0.1, kappa: float = 0.0, alpha: float = 0.95, lam: float = 10.0,
                          cg_iterations: int = 50):
    """Batched sC&W (Zhang et al. 2020, §4). x (b, C, H, W) in [0, 1], y (b,) int64.

    Returns (x_adv (b, C, H, W) in [0, 1], its L2 (b,) (inf where no success), success (b,) bool).
    """
    import torch
    x = x.detach()
    b = len(x)
    smoother = LaplacianSmoother(x, lam, alpha, cg_iterations)
    norm1 = smoother.solve(torch.ones_like(x))
    c = torch.full((b,), float(initial_const))
    lo = torch.zeros(b)
    hi = torch.full((b,), float("inf"))
    best = x.clone()
    best_l2 = torch.full((b,), float("inf"))
    for _ in range(binary_steps):
        z = torch.zeros_like(x, requires_grad=True)
        opt = torch.optim.Adam([z], lr=lr)
        succeeded = torch.zeros(b, dtype=torch.bool)
        for _ in range(iterations):
            r = smooth(z, smoother, norm1)
            adv = (x + r).clamp(0, 1)
            logits = model(adv)
            dist = (r * r).flatten(1).sum(1).clamp_min(1e-24).sqrt()
            f = (logit_margin(logits, y) + kappa).clamp(min=0)
            loss = (dist + c * f).sum()
            opt.zero_grad()
            loss.backward()
            with torch.no_grad():
                is_adv = logits.argmax(1) != y
                best_l2 = keep_best(best, best_l2, adv, (adv - x).flatten(1).norm(dim=1), is_adv)
                succeeded |= is_adv
            opt.step()
        c, lo, hi = next_const(c, lo, hi, succeeded)
    return best, best_l2, torch.isfinite(best_l2)
