"""Family base classes and run-context helpers of this chapter (talk Part II: CNN representations).

They hold what the plugins of a family share (parameters, the run loop, cached intermediates);
the numerical work is in the kernel modules beside this file.
"""
from __future__ import annotations

import numpy as np
from visrep.methods.search.pipeline import Descriptor

from visrep.errors import UserError
from visrep.features import l2_normalize
from visrep.params import Param

from .regional import gmp_weights

BACKBONE_PARAMS = (
    Param("arch", str, "efficientnet_lite0", "backbone: a timm or torchvision model name"),
    Param("weights", str, None, "local weights file (state dict); None = the packaged ImageNet EfficientNet-Lite0"),
    Param("imsize", int, 1024, "longer image side before scaling (never upscaled); 1024 as cnnimageretrieval",
          low=16),
    Param("scales", list, [1.0], "multi-scale factors, a list, e.g. [1, 0.707, 1.414] (--set scales=[1,0.707,1.414])",
          item=float, low=0, open_low=True),
)


class CNNDescriptor(Descriptor):
    """Pool a backbone's last conv map; subclasses define ``pool(x) -> (C,)`` and ``ms_power``."""

    output_tasks = ("retrieval",)

    def __init__(self, **given):
        super().__init__(**given)
        self.scales = tuple(self.cfg["scales"])

    ms_power = 1.0

    def pool(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backbone(self):
        from .backbones import load_backbone
        return load_backbone(self.cfg["arch"], self.cfg["weights"])

    def feature_maps(self, image, net=None):
        net = net or self.backbone()
        for s in self.scales:
            yield net.features(net.preprocess(image, self.cfg["imsize"], s))[0].numpy()

    def describe_one(self, image, net=None) -> np.ndarray:
        m = self.ms_power
        vs = [l2_normalize(self.pool(fm)).astype(np.float64) for fm in self.feature_maps(image, net)]
        if len(vs) == 1:
            return l2_normalize(vs[0])
        v = (np.mean([np.maximum(x, 0) ** m for x in vs], axis=0)) ** (1.0 / m)
        return l2_normalize(v)

    def describe(self, images, n: int, ctx, desc: str = "describe"):
        net = self.backbone()
        out = [self.describe_one(img, net) for img in ctx.progress(images, desc=desc, total=n, unit="img")]
        return np.stack(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)


def _pool_for(method):
    from visrep.methods.cnn import pooling as cp
    if method.name == "gem":
        return lambda x: cp.gem(x, method.cfg["p"])
    if method.name == "spoc":
        return cp.spoc
    return cp.mac


def describe_regions(method, images, n, ctx, desc) -> tuple[np.ndarray, np.ndarray]:
    """Regional vectors of `n` images -> (vectors (N, d) float32, image_of (N,) int64)."""
    from .pooling import regional_vectors
    net = method.backbone()
    pool = _pool_for(method)
    L = method.cfg.get("L", 3)
    vecs, owner = [], []
    for i in ctx.progress(range(n), desc=desc, total=n, unit="img"):
        fm = next(iter(method.feature_maps(images(i), net)))
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
