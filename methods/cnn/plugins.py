"""The method plugins of methods/cnn/: `mac`, `spoc`, `gem`, `rmac`, `crow`, `whiten` (talk Part II: CNN representations).

Each class is named after its registered name; its parameters are declared as
``params = FAMILY_PARAMS + (...)`` and its numbers come from the kernels beside this file.
"""
from __future__ import annotations

import time

import numpy as np

from visrep.api import Method
from visrep.errors import UserError
from visrep.features import DESCRIPTOR_PARAM, l2_normalize, retrieval_features
from visrep.params import Param
from visrep.registry import register

from .pipeline import BACKBONE_PARAMS, CNNDescriptor
from .pooling import crow, gem, mac, regional_vectors, rmac, spoc
from .whitening import _read_pairs, learned_whitening, pca_whitening


@register
class MAC(CNNDescriptor):
    name = "mac"
    summary = "MAC: max-pooled last conv activations of a CNN (default ImageNet EfficientNet-Lite0)"
    cite = "Tolias, Sicre & Jégou, Particular object retrieval with integral max-pooling of CNN activations, ICLR 2016"
    params = BACKBONE_PARAMS

    def pool(self, x):
        return mac(x)


@register
class SPoC(CNNDescriptor):
    name = "spoc"
    summary = "SPoC: sum (average) pooled last conv activations of a CNN"
    cite = "Babenko & Lempitsky, Aggregating local deep features for image retrieval, ICCV 2015"
    params = BACKBONE_PARAMS

    def pool(self, x):
        return spoc(x)


@register
class GeM(CNNDescriptor):
    name = "gem"
    summary = "GeM: generalized-mean pooled conv activations (p = 3, or a checkpoint's learned p)"
    cite = "Radenović, Tolias & Chum, Fine-tuning CNN image retrieval with no human annotation, TPAMI 2019"
    params = BACKBONE_PARAMS + (Param("p", float, None, "GeM exponent; None = the learned 'pool.p' of a "
                                      "cnnimageretrieval checkpoint, else 3", low=1.0),)

    def p_for(self, net=None) -> float:
        """cfg p, else the network's learned p (TPAMI 2019 Eq. 2, p learned), else 3."""
        if self.cfg["p"] is not None:
            return float(self.cfg["p"])
        learned = getattr(net, "gem_p", None)
        return float(learned) if learned is not None else 3.0

    @property
    def ms_power(self):
        return self.p_for(None)

    def ms_power_for(self, net) -> float:
        return 1.0 if self._layer_whitening(net) is not None else self.p_for(net)

    def pool(self, x):
        return gem(x, self.p_for(None))

    def pool_net(self, x, net):
        return gem(x, self.p_for(net))


@register
class RMAC(CNNDescriptor):
    name = "rmac"
    summary = "R-MAC: sum of L2-normalized regional MACs over a multi-scale region grid (L = 3)"
    cite = "Tolias, Sicre & Jégou, Particular object retrieval with integral max-pooling of CNN activations, ICLR 2016"
    params = BACKBONE_PARAMS + (Param("L", int, 3, "number of region scales", low=1, high=8),)

    def pool(self, x):
        return rmac(x, self.cfg["L"])

    def regions_one(self, image, net=None, pool=mac) -> np.ndarray:
        """Regional vectors (m, C) of one image at the first scale (whole map + R-MAC regions)."""
        fm = next(iter(self.feature_maps(image, net)))
        return regional_vectors(fm, self.cfg["L"], pool)


@register
class CroW(CNNDescriptor):
    name = "crow"
    summary = "CroW: spatially and channel-weighted sum pooling (feature saliency)"
    cite = "Kalantidis, Mellina & Osindero, Cross-dimensional weighting for aggregated deep convolutional features, ECCVW 2016"
    params = BACKBONE_PARAMS + (Param("a", float, 2.0, "spatial normalization power", low=0.0, open_low=True),
                                Param("b", float, 2.0, "spatial root", low=0.0, open_low=True))

    def pool(self, x):
        return crow(x, self.cfg["a"], self.cfg["b"])


@register
class Whiten(Method):
    name = "whiten"
    task = "retrieval"
    summary = "PCA-whitening (unsupervised) or learned whitening (matching pairs) of a descriptor, then NN"
    cite = ("Jégou & Chum, Negative evidences and co-occurrences in image retrieval, ECCV 2012; Radenović, "
            "Tolias & Chum, Fine-tuning CNN image retrieval with no human annotation, TPAMI 2019")
    params = (
        DESCRIPTOR_PARAM,
        Param("mode", str, "pca", "'pca' (unsupervised) or 'learned' (needs pairs)", choices=("pca", "learned")),
        Param("dim", int, None, "output dimension D (None = the descriptor's)", low=1),
        Param("learn_features", str, None, "vectors to learn on (.fvecs/.npy...); None = the database itself"),
        Param("pairs", str, None, "(m, 2) matching pairs, row indices into the learning set (mode=learned)"),
        Param("eps", float, 1e-6, "added to eigenvalues / covariance diagonal", low=0.0),
    )

    def run(self, data, ctx) -> dict:
        from visrep.methods.search.knn import search
        db, q = retrieval_features(data, ctx, self.cfg["descriptor"])
        if self.cfg["learn_features"]:
            from visrep.descriptor_files import read_descriptors
            learn = l2_normalize(read_descriptors(self.cfg["learn_features"]))
            if learn.shape[1] != db.shape[1]:
                raise UserError(f"{self.cfg['learn_features']}: dimension {learn.shape[1]} differs from the "
                                f"descriptors' {db.shape[1]}")
        else:
            learn = db
        with ctx.phase("offline"):
            if self.cfg["mode"] == "learned":
                if not self.cfg["pairs"]:
                    raise UserError("whiten mode=learned needs --set pairs=FILE (matching pairs of the learning set)")
                w = learned_whitening(learn, _read_pairs(self.cfg["pairs"]), self.cfg["dim"], self.cfg["eps"])
            else:
                w = pca_whitening(learn, self.cfg["dim"], self.cfg["eps"])
            dbw = w.apply(db)
        t0 = time.perf_counter()
        with ctx.phase("online"):
            _, ranks = search(dbw, w.apply(q))
        return {"ranks": ranks, "timings": {"query": (time.perf_counter() - t0) / max(len(q), 1)}}
