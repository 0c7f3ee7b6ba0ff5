"""Family base classes and run-context helpers of this chapter (talk Part III).

They hold what the plugins of a family share (parameters, the run loop, cached intermediates);
the numerical work is in the kernel modules beside this file.
"""
from __future__ import annotations

import numpy as np

from visrep.api import Method
from visrep.errors import UserError
from visrep.params import Param

from .few_shot import dense_loss, prototype_scores


# ---------------------------------------------------------------- methods
def _train_split(data):
    train = getattr(data, "train", None)
    if train is None or getattr(train, "labelled_idx", None) is None:
        raise UserError(f"{data.name}: semi-supervised methods need data.train with a labelled subset "
                        f"(dataset parameter labelled=N; for MNIST without its training files add train_from_test=M)")
    for part in (train, data):
        if part.x is None or np.asarray(part.x).ndim not in (3, 4):
            raise UserError(f"{data.name} ({part.split}): semi-supervised methods need images (n, H, W[, C]) in x")
    return train


NET_PARAMS = (
    Param("width", int, 16, "channels of the first conv block (x2 per block, at most x4)", low=1),
    Param("blocks", int, 3, "conv blocks of the proxy network", low=1, high=6),
    Param("lr", float, 0.05, "SGD learning rate (cosine-annealed)", low=0, open_low=True),
    Param("batch", int, 64, "minibatch size", low=2),
)


def _net(train, cfg, n_classes):
    from .convnets import make_convnet
    x = np.asarray(train.x)
    return make_convnet(in_ch=1 if x.ndim == 3 else x.shape[3], width=cfg["width"], blocks=cfg["blocks"],
                        n_classes=n_classes)


def _scores(model, data):
    from .convnets import embed, images_to_tensor
    return embed(model, images_to_tensor(data.x)).astype(np.float32)


FEATURE_PARAMS = (
    Param("features", str, "auto", "pre-trained descriptors: 'given' (data.x vectors of both splits), "
          "'pixels-pca' (proxy: PCA of pixels fitted on the training split), 'auto' (given if vectors)",
          choices=("auto", "given", "pixels-pca")),
    Param("pca_dim", int, 32, "dimension of the pixels-pca descriptors", low=1),
)


def pretrained_features(data, cfg) -> tuple[np.ndarray, np.ndarray]:
    """(train (n_tr, d), test (n_te, d)) float32 unit-norm pre-trained descriptors (see module doc)."""
    train = getattr(data, "train", None)
    if train is None:
        raise UserError(f"{data.name}: metric learning needs the training split (data.train) of unseen-class data")
    mode = cfg["features"]
    xs = [None if d.x is None else np.asarray(d.x) for d in (train, data)]
    if mode == "auto":
        mode = "given" if all(x is not None and x.ndim == 2 for x in xs) else "pixels-pca"
    if mode == "given":
        if not all(x is not None and x.ndim == 2 for x in xs):
            raise UserError(f"{data.name}: features='given' needs (n, d) descriptors of both the training and the "
                            f"test split in x (e.g. a descriptor file per split)")
        tr, te = xs
    else:
        if not all(x is not None and x.ndim in (3, 4) for x in xs):
            raise UserError(f"{data.name}: features='pixels-pca' needs images (n, H, W[, C]) of both splits in x")
        tr = xs[0].reshape(len(xs[0]), -1).astype(np.float64) / 255.0
        te = xs[1].reshape(len(xs[1]), -1).astype(np.float64) / 255.0
        mean = tr.mean(0)
        dim = min(cfg["pca_dim"], tr.shape[1], len(tr))
        _, _, vt = np.linalg.svd(tr - mean, full_matrices=False)
        tr, te = (tr - mean) @ vt[:dim].T, (te - mean) @ vt[:dim].T
    out = []
    for x in (tr, te):
        x = np.asarray(x, dtype=np.float32)
        out.append(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12))
    return out[0], out[1]


def _check(data):
    from visrep.data import EpisodeData
    if not isinstance(data, EpisodeData):
        raise UserError(f"few-shot methods need episodes (EpisodeData), got {type(data).__name__}")
    base = getattr(data, "base", None)
    if base is None:
        raise UserError(f"{data.name}: few-shot methods train on base classes: the dataset must attach its base "
                        f"split as data.base (mnist-fewshot does; miniimagenet needs its training images)")
    for part, what in ((base, "base"), (data.pool, "novel pool")):
        if part.x is None or np.asarray(part.x).ndim not in (3, 4):
            raise UserError(f"{data.name} ({what}): needs images (n, H, W[, C]) in x")
    return base


FEW_SHOT_PARAMS = (
    Param("width", int, 16, "channels of the first conv block (x2 per block, at most x4)", low=1),
    Param("blocks", int, 3, "conv blocks of the proxy backbone", low=2, high=6),
    Param("wide", bool, False, "double the width (the paper's 'DC + Wide' row)"),
    Param("epochs", int, 5, "base-class training epochs", low=1),
    Param("lr", float, 0.05, "SGD learning rate (cosine-annealed)", low=0, open_low=True),
    Param("batch", int, 64, "minibatch size", low=2),
)


class FewShotMethod(Method):
    task = "few-shot"
    dense = False
    params = FEW_SHOT_PARAMS

    def _backbone(self, data, ctx):
        from .convnets import (
            images_to_tensor,
            make_convnet,
            seed_torch,
            train_classifier,
        )
        base = _check(data)
        c = self.cfg
        seed_torch(ctx.seed)
        x = np.asarray(base.x)
        model = make_convnet(in_ch=1 if x.ndim == 3 else x.shape[3], width=c["width"] * (2 if c["wide"] else 1),
                             blocks=c["blocks"], n_classes=base.n_classes, cosine=True)
        with ctx.phase("base_training"):
            hist = train_classifier(model, images_to_tensor(x), base.labels, c["epochs"], lr=c["lr"], batch=c["batch"],
                                    seed=ctx.seed, loss_fn=dense_loss if self.dense else None)
        return model, hist

    def run(self, data, ctx) -> dict:
        from .convnets import embed, images_to_tensor
        model, hist = self._backbone(data, ctx)
        with ctx.phase("episodes"):
            feats = embed(model.embed, images_to_tensor(data.pool.x))
            scores = np.stack([prototype_scores(feats[data.support[e]], data.support_labels[e], feats[data.query[e]],
                                                data.n_way) for e in range(data.n_episodes)])
        return {"scores": scores.astype(np.float32), "stats": {"base_final_loss": hist[-1]}}
