"""Family base classes and run-context helpers of this chapter (talk Part II: CNN representations).

They hold what the plugins of a family share (parameters, the run loop, cached intermediates);
the numerical work is in the kernel modules beside this file.
"""
from __future__ import annotations

import hashlib

import numpy as np
from visrep.methods.search.pipeline import Descriptor

from visrep.errors import UserError
from visrep.features import l2_normalize
from visrep.params import Param

from .backbones import DEFAULT_ARCH, Backbone
from .regional import gmp_weights

BACKBONE_PARAMS = (
    Param("backbone", str, None, "network: a torchvision name (vgg16, resnet101, ...) or a timm name; None = the "
          "architecture in a cnnimageretrieval checkpoint's meta, else efficientnet_lite0"),
    Param("arch", str, None, "former spelling of 'backbone' (kept for older specs; both given must agree)"),
    Param("weights", str, None, "local weights file: a plain state dict of the backbone, or a cnnimageretrieval-"
          "pytorch checkpoint (retrievalSfM120k-*.pth); None = the packaged ImageNet EfficientNet-Lite0"),
    Param("whitening", str, "net", "'net': apply the checkpoint's learned whitening layer when it has one "
          "(cnnimageretrieval whiten.weight/bias), 'none': never; any other value names a whitening precomputed "
          "in the checkpoint's meta['Lw'] (e.g. 'retrieval-SfM-120k'), applied after the layer"),
    Param("imsize", int, 1024, "longer image side before scaling (never upscaled); 1024 as cnnimageretrieval",
          low=16),
    Param("scales", list, [1.0], "multi-scale factors, a list, e.g. [1, 0.707, 1.414] (--set scales=[1,0.707,1.414])",
          item=float, low=0, open_low=True),
)


class CNNDescriptor(Descriptor):
    """Pool a backbone's last conv map; subclasses define ``pool(x) -> (C,)`` and ``ms_power``.

    Per scale, as cnnimageretrieval's ``ImageRetrievalNet.forward``: ``v = l2n(pool(X))``, then,
    when the checkpoint has a learned whitening layer, ``v = l2n(W v + b)``; scales combine as
    ``l2n((mean_s v_s^m)^{1/m})`` (``extract_ms``; m = 1 for a whitened network, as its test
    script); a whitening named from ``meta['Lw']`` then gives ``l2n(P (v - m))`` (``whitenapply``).
    """

    output_tasks = ("retrieval",)

    def __init__(self, **given):
        super().__init__(**given)
        self.scales = tuple(self.cfg["scales"])
        b, a = self.cfg["backbone"], self.cfg["arch"]
        if b and a and b != a:
            raise UserError(f"method '{self.name}': backbone = '{b}' and arch = '{a}' disagree (arch is the old "
                            f"spelling of backbone: give one)")

    ms_power = 1.0

    @property
    def network(self) -> str | None:
        """The backbone name asked for (None: a checkpoint's meta, or the default network)."""
        name = self.cfg["backbone"] or self.cfg["arch"]
        return name if name or self.cfg["weights"] else DEFAULT_ARCH

    def pool(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def pool_net(self, x: np.ndarray, net) -> np.ndarray:
        """Pool with what the network holds (GeM: its learned p); default :meth:`pool`."""
        return self.pool(x)

    def ms_power_for(self, net) -> float:
        return 1.0 if self._layer_whitening(net) is not None else self.ms_power

    def backbone(self, device: str = "cpu"):
        from .backbones import load_backbone
        return load_backbone(self.network, self.cfg["weights"], device)

    def feature_maps(self, image, net=None, ctx=None):
        """(C, h, w) maps of one image at each scale (through the job's cache when `ctx` is given: image_features)."""
        net = net or self.backbone()
        for s in self.scales:
            yield image_features(net, image, self.cfg["imsize"], s, ctx)

    def _layer_whitening(self, net):
        return None if self.cfg["whitening"] == "none" else getattr(net, "whiten", None)

    def _lw(self, net):
        name = self.cfg["whitening"]
        if name in ("net", "none"):
            return None
        lw = getattr(net, "lw", {}) or {}
        mode = "ms" if len(self.scales) > 1 else "ss"
        if name not in lw or mode not in lw[name]:
            have = [f"{k}/{m}" for k, v in lw.items() for m in v] or ["none"]
            raise UserError(f"method '{self.name}': whitening '{name}' ({mode}) is not in the weights file's "
                            f"meta['Lw'] (it has: {', '.join(have)})")
        return lw[name][mode]

    def scale_vector(self, fm: np.ndarray, net) -> np.ndarray:
        """One scale: l2n(pool(X)), then l2n(W v + b) with the checkpoint's whitening layer. (D,) float64."""
        v = l2_normalize(self.pool_net(fm, net)).astype(np.float64)
        wb = self._layer_whitening(net)
        if wb is not None:
            W, b = wb
            if W.shape[1] != len(v):
                raise UserError(f"method '{self.name}': whitening layer {W.shape} does not apply to {len(v)}-d "
                                f"pooled vectors")
            v = l2_normalize(W @ v + b)
        return v

    def describe_one(self, image, net=None, ctx=None) -> np.ndarray:
        net = net or self.backbone()
        vs = [self.scale_vector(fm, net) for fm in self.feature_maps(image, net, ctx)]
        if len(vs) == 1:
            v = l2_normalize(vs[0])
        else:
            m = self.ms_power_for(net)
            v = np.mean(vs, axis=0) if m == 1 else np.mean([np.maximum(x, 0) ** m for x in vs], axis=0) ** (1.0 / m)
            v = l2_normalize(v)
        lw = self._lw(net)
        if lw is not None:
            mu, P = lw
            v = l2_normalize(P @ (v - mu))
        return v

    def describe(self, images, n: int, ctx, desc: str = "describe"):
        net = self.backbone(ctx.torch_device())
        out = [self.describe_one(img, net, ctx) for img in ctx.progress(images, desc=desc, total=n, unit="img")]
        return np.stack(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)


def image_features(net, image: np.ndarray, imsize: int | None, scale: float = 1.0, ctx=None) -> np.ndarray:
    """(C, h, w) float32 last convolutional activations of one HxWx3 image, resized as
    :meth:`Backbone.preprocess` does; through the job's cache when `ctx` (a RunContext) is given
    (``ctx.cached``: one entry per network identity -- architecture + weights file digest --, device,
    size and image content, sha256 of its bytes), so the methods that read the same network on the
    same images at the same size (GeM, R-MAC, R-Match, DSM, OS-/FS-EGM, an AML teacher) compute each
    map once across jobs."""
    def compute():
        return net.features(net.preprocess(image, imsize, scale))[0].numpy()

    if ctx is None or not net.identity:
        return compute()
    img = np.ascontiguousarray(image)
    what = {"net": net.identity, "device": net.device, "imsize": imsize, "scale": float(scale),
            "image": f"{hashlib.sha256(img.tobytes()).hexdigest()}:{img.shape}:{img.dtype}"}
    return ctx.cached("cnn-map", what, (Backbone,), compute)


def _pool_for(method, net=None):
    from visrep.methods.cnn import pooling as cp
    if method.name == "gem":
        p = method.p_for(net)
        return lambda x: cp.gem(x, p)
    if method.name == "spoc":
        return cp.spoc
    return cp.mac


def describe_regions(method, images, n, ctx, desc) -> tuple[np.ndarray, np.ndarray]:
    """Regional vectors of `n` images -> (vectors (N, d) float32, image_of (N,) int64)."""
    from .pooling import regional_vectors
    net = method.backbone(ctx.torch_device())
    pool = _pool_for(method, net)
    L = method.cfg.get("L", 3)
    vecs, owner = [], []
    for i in ctx.progress(range(n), desc=desc, total=n, unit="img"):
        fm = next(iter(method.feature_maps(images(i), net, ctx)))
        r = regional_vectors(fm, L, pool)
        vecs.append(r)
        owner.append(np.full(len(r), i, np.int64))
    return np.concatenate(vecs).astype(np.float32), np.concatenate(owner)


def regional_features(data, ctx, name: str):
    """(db regions, query regions, image_of, query_of, GMP coefficients) for descriptor `name`, cached."""
    from visrep.registry import methods

    from .pipeline import CNNDescriptor
    method = methods.create(name)
    if not isinstance(method, CNNDescriptor):
        raise UserError(f"parameter 'regional' must name a CNN descriptor (mac, spoc, gem, rmac, crow), got '{name}'")
    if not data.has_images:
        raise UserError(f"regional descriptor '{name}' needs images, but {data.name} was loaded without images")
    feats = ctx.per_split(data, "regional_features", {"regional": name, "params": method.cfg}, [type(method)],
                          lambda split: describe_regions(
                              method, data.db_image if split == "db" else data.query_image,
                              data.n_db if split == "db" else data.n_queries, ctx,
                              f"{name} regions {'database' if split == 'db' else 'queries'}"))
    (db, image_of), (q, query_of) = feats["db"], feats["query"]
    coeff = gmp_weights(db, image_of)
    return db, q, image_of, query_of, coeff
