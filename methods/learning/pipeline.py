"""Family base classes and run-context helpers of this chapter (talk Part III).

They hold what the plugins of a family share (parameters, the run loop, cached intermediates);
the numerical work is in the kernel modules beside this file.
"""
from __future__ import annotations

import numpy as np

from visrep.api import Method
from visrep.errors import UserError
from visrep.params import Param, check_at_most

from .convnets import ARCHS, CHANNEL_STATS
from .few_shot import dense_loss, prototype_scores


# ---------------------------------------------------------------- methods
def trained_once(ctx, kind: str, models, arrays: dict, settings: dict, train):
    """``train()`` (trains `models` in place and returns a plain result: a loss history, a step count) through
    the cache: a run whose networks start from the same seed and train on the same arrays with the same
    settings loads the weights instead (`supervised` is DLP's step 1, `mean-teacher` MT+DLP's stage 1, one base
    network serves every k_shot of a few-shot table). models: a network or {name: network}. The key holds
    each array's sha256 (content, shape, dtype), `settings` and the room's code version; the value holds the
    state dicts (numpy), the result and torch's global RNG state after training, restored on a hit so that
    what follows draws the same numbers either way. Returns the result."""
    import hashlib

    import torch
    nets = models if isinstance(models, dict) else {"net": models}

    def digest(a):
        a = np.ascontiguousarray(a)
        return f"{hashlib.sha256(a.tobytes()).hexdigest()}:{a.shape}:{a.dtype}"

    def compute():
        result = train()
        return {"state": {name: {k: v.detach().cpu().numpy().copy() for k, v in m.state_dict().items()}
                          for name, m in nets.items()},
                "result": result, "rng": torch.get_rng_state().numpy().copy()}

    what = {**settings, "arrays": {k: digest(v) for k, v in arrays.items()}}
    out = ctx.cached(kind, what, (trained_once,), compute)
    for name, m in nets.items():
        m.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in out["state"][name].items()})
        m.eval()
    torch.set_rng_state(torch.from_numpy(np.asarray(out["rng"], np.uint8)))
    return out["result"]


def mt_stage(ctx, model, teacher, x, li, unl, y, cfg, epochs: int, progress=None) -> tuple[list, int]:
    """Mean-teacher training (:func:`semi_supervised.train_two_stream` with :func:`semi_supervised.mt_loss`) of
    `model` and its EMA `teacher` for `epochs`, through :func:`trained_once`: the `mean-teacher` row and stage 1
    of `mt-dlp` with the same settings are one training (the DLP code's train_stage1 with isMT, whose
    checkpoint its stage 2 resumes). x (n, C, H, W) torch; li, unl index arrays; y (n,) torch long, -1 where
    unlabelled. Returns (losses per epoch, steps)."""
    from .semi_supervised import mt_loss, train_two_stream
    keys = ("arch", "width", "blocks", "lr", "weight_decay", "batch", "labelled_per_batch", "max_shift", "sigma",
            "flip", "pad", "rotate", "input_norm", "consistency", "rampup_epochs", "ema_decay", "ema_decay_after")
    settings = {**{k: cfg[k] for k in keys}, "epochs": int(epochs), "seed": ctx.seed}

    def train():
        hist, steps = train_two_stream(model, x, li, unl, epochs, mt_loss(y, y >= 0, cfg["consistency"],
                                       cfg["rampup_epochs"]), seed=ctx.seed, teacher=teacher, progress=progress,
                                       **ssl_kwargs(cfg, x), **mt_kwargs(cfg))
        return [float(h) for h in hist], int(steps)

    hist, steps = trained_once(ctx, "mean-teacher-nets", {"student": model, "teacher": teacher},
                               {"x": x.numpy(), "labelled": np.asarray(li), "unlabelled": np.asarray(unl),
                                "y": y.numpy()}, settings, train)
    return list(hist), int(steps)


def supervised_step(ctx, model, train, cfg, epochs: int) -> list:
    """Train `model` on the labelled subset of `train` (cross-entropy, :func:`convnets.train_classifier`) through
    :func:`trained_once`: the `supervised` row and step 1 of `dlp` share it. Returns the loss history."""
    from .convnets import images_to_tensor, train_classifier
    li = np.asarray(train.labelled_idx, dtype=np.int64)
    xl, yl = np.asarray(train.x)[li], np.asarray(train.labels)[li]
    batch = min(cfg["batch"], len(li))
    settings = {"epochs": int(epochs), "lr": cfg["lr"], "batch": batch, "arch": cfg["arch"], "width": cfg["width"],
                "blocks": cfg["blocks"], "weight_decay": cfg["weight_decay"], "max_shift": cfg["max_shift"],
                "flip": cfg["flip"], "pad": cfg["pad"], "rotate": cfg["rotate"],
                "input_norm": cfg["input_norm"], "seed": ctx.seed, "n_out": int(model.head.out_features)}
    return trained_once(ctx, "supervised-net", model, {"x": xl, "y": yl}, settings,
                        lambda: train_classifier(model, images_to_tensor(xl), yl, epochs, lr=cfg["lr"], batch=batch,
                                                 seed=ctx.seed, weight_decay=cfg["weight_decay"],
                                                 loss_fn=augmented_loss(cfg, ctx.seed)))


def _train_split(data):
    train = getattr(data, "train", None)
    if train is None or getattr(train, "labelled_idx", None) is None:
        raise UserError(f"{data.name}: semi-supervised methods need data.train with a labelled subset "
                        f"(dataset parameter labelled=N; for MNIST without its training files add train_from_test=M)")
    for part in (train, data):
        if part.x is None or np.asarray(part.x).ndim not in (3, 4):
            raise UserError(f"{data.name} ({part.split}): semi-supervised methods need images (n, H, W[, C]) in x")
    return train


PAD_PARAM = Param("pad", str, "zeros", "what a translation uncovers: 'zeros', or 'reflect' (the MT / DLP code's "
                  "RandomTranslateWithReflect on CIFAR)", choices=("zeros", "reflect"))

NORM_PARAM = Param("input_norm", str, "none", "standardize each input channel inside the network with the DLP "
                   "code's statistics: 'cifar' (its CIFAR-10 values, used for both CIFAR sets), 'miniimagenet', or "
                   "'none' (pixels in [0, 1])", choices=("none", *CHANNEL_STATS))
ROTATE_PARAM = Param("rotate", float, 0.0, "training images rotated at random by up to this many degrees (the "
                     "DLP code on miniImageNet: 10; 0 = none)", low=0, high=180)

#: the network of the semi-supervised and active-learning plugins (:func:`.convnets.make_classifier`)
ARCH_PARAM = Param("arch", str, "convnet", "network: 'convnet' (the proxy of convnets.py, width x blocks), 'cnn13' "
                   "(the MT / DLP 13-layer ConvNet of CIFAR), 'resnet18' (DLP's miniImageNet network)", choices=ARCHS)

NET_PARAMS = (
    ARCH_PARAM,
    Param("width", int, 16, "channels of the first conv block (x2 per block, at most x4)", low=1),
    Param("blocks", int, 3, "conv blocks of the proxy network", low=1, high=6),
    Param("lr", float, 0.05, "SGD learning rate (cosine-annealed)", low=0, open_low=True),
    Param("batch", int, 64, "minibatch size", low=2),
    Param("weight_decay", float, 5e-4, "SGD weight decay (the DLP code on CIFAR / miniImageNet: 2e-4)", low=0),
    Param("max_shift", int, 0, "training images translated at random by up to this many pixels (the DLP code: 4 on "
          "CIFAR, 8 on miniImageNet; 0 = none, the proxies)", low=0),
    Param("flip", bool, False, "training images flipped horizontally at random (the DLP code; off for digits)"),
    PAD_PARAM,
    ROTATE_PARAM,
    NORM_PARAM,
)


def augmented_loss(cfg, seed: int):
    """None (plain cross-entropy on the images as they are) or a ``loss_fn`` of :func:`.convnets.train_classifier`
    that perturbs each batch first (:func:`.semi_supervised.perturb`: ``rotate``, ``flip``, ``max_shift``, ``pad``;
    no noise), as the DLP code's training transform does for its supervised and propagation epochs."""
    if not cfg["max_shift"] and not cfg["flip"] and not cfg["rotate"]:
        return None
    import torch
    import torch.nn.functional as F

    from .semi_supervised import perturb
    g = torch.Generator().manual_seed(int(seed) + 7919)

    def loss(model, xb, yb):
        return F.cross_entropy(model(perturb(xb, cfg["max_shift"], 0.0, g, cfg["flip"], cfg["pad"], cfg["rotate"])),
                               yb, reduction="none")
    return loss


def _net(train, cfg, n_classes, device="cpu"):
    """The plugin's network (``arch``) for `train`'s images with `n_classes` outputs, on `device`
    (ctx.torch_device())."""
    from .convnets import make_classifier
    x = np.asarray(train.x)
    net = make_classifier(cfg["arch"], 1 if x.ndim == 3 else x.shape[3], n_classes, cfg["width"], cfg["blocks"],
                          cfg["input_norm"])
    return net.to(device)


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
        settings = {k: c[k] for k in ("width", "blocks", "wide", "epochs", "lr", "batch")}
        with ctx.phase("base_training"):
            hist = trained_once(ctx, "few-shot-base-net", model, {"x": x, "y": np.asarray(base.labels)},
                                {**settings, "dense": self.dense, "seed": ctx.seed},
                                lambda: train_classifier(model, images_to_tensor(x), base.labels, c["epochs"],
                                                         lr=c["lr"], batch=c["batch"], seed=ctx.seed,
                                                         loss_fn=dense_loss if self.dense else None))
        return model, hist

    def run(self, data, ctx) -> dict:
        from .convnets import embed, images_to_tensor
        model, hist = self._backbone(data, ctx)
        with ctx.phase("episodes"):
            feats = embed(model.embed, images_to_tensor(data.pool.x))
            scores = np.stack([prototype_scores(feats[data.support[e]], data.support_labels[e], feats[data.query[e]],
                                                data.n_way) for e in range(data.n_episodes)])
        return {"scores": scores.astype(np.float32), "stats": {"base_final_loss": hist[-1]}}


# ---------------------------------------------------------------- semi-supervised (mean teacher, pseudo-label)
#: label propagation on a kNN graph of the network's features (Iscen et al. CVPR 2019, Eq. 9-10): DLP and MT+DLP
PROPAGATION_PARAMS = (
        Param("k", int, 50, "neighbours per item in the kNN graph (Eq. 9)", low=1),
        Param("gamma", float, 3.0, "similarity exponent of the affinity (Eq. 9)", low=0, open_low=True),
        Param("alpha", float, 0.99, "propagation alpha of (I - alpha W) Z = Y (Eq. 10)", low=0, high=1,
              open_low=True, open_high=True),
        Param("cg_iters", int, 20, "conjugate-gradient iterations (authors' code: 20, tol 1e-6)", low=1),
)

SSL_PARAMS = (
    ARCH_PARAM,
    Param("width", int, 16, "channels of the first conv block (x2 per block, at most x4)", low=1),
    Param("blocks", int, 3, "conv blocks of the proxy network", low=1, high=6),
    Param("lr", float, 0.05, "SGD learning rate (Nesterov momentum 0.9, cosine-annealed; MT / DLP code: 0.05)",
          low=0, open_low=True),
    Param("weight_decay", float, 2e-4, "weight decay (MT / DLP code on CIFAR: 2e-4)", low=0),
    Param("batch", int, 100, "minibatch size (MT / DLP code: 100)", low=2),
    Param("labelled_per_batch", int, 50, "labelled items in every minibatch (DLP code: 50)", low=1),
    Param("max_shift", int, 2, "input perturbation: random translation by up to this many pixels (MT: 2)", low=0),
    Param("sigma", float, 0.15, "input perturbation: Gaussian noise std, in units of the training images' pixel "
          "std (MT: 0.15 on ZCA-normalized, unit-variance inputs)", low=0),
    Param("flip", bool, False, "input perturbation: random horizontal flips (MT / DLP code on CIFAR and "
          "miniImageNet; off for digits)"),
    PAD_PARAM,
    ROTATE_PARAM,
    NORM_PARAM,
)

MT_PARAMS = (
    Param("consistency", float, 100.0, "maximum weight of the consistency cost (MT / DLP code on CIFAR: 100)",
          low=0),
    Param("rampup_epochs", float, 5.0, "epochs of the sigmoid ramp-up of the consistency weight (code: 5)", low=0),
    Param("ema_decay", float, 0.99, "EMA decay alpha of the teacher during the ramp-up (MT: 0.99)", low=0, high=1,
          open_high=True),
    Param("ema_decay_after", float, 0.999, "EMA decay after the ramp-up (MT: 0.999)", low=0, high=1,
          open_high=True),
    Param("predict_with", str, "teacher", "network whose predictions are scored (MT reports the EMA teacher)",
          choices=("teacher", "student")),
)


def ssl_setup(data, cfg, seed: int, device="cpu"):
    """(train split, student network on `device`, images (n, C, H, W) torch on the CPU, labelled idx,
    unlabelled idx)."""
    from .convnets import images_to_tensor, seed_torch
    train = _train_split(data)
    seed_torch(seed)
    model = _net(train, cfg, data.n_classes, device)
    li = np.asarray(train.labelled_idx, dtype=np.int64)
    unl = np.setdiff1d(np.arange(len(train)), li)
    return train, model, images_to_tensor(train.x), li, unl


def predict_with(student, teacher, data, which: str) -> np.ndarray:
    """Logits (n_test, c) of the teacher (``which = 'teacher'``, MT's reported model) or of the student."""
    return _scores(teacher if which == "teacher" and teacher is not None else student, data)


def ssl_kwargs(cfg, x) -> dict:
    """Keyword arguments of :func:`.semi_supervised.train_two_stream` from a plugin's configuration.

    ``sigma`` is given in units of the pixel std of the training images ``x`` (MT adds its noise
    to unit-variance inputs), so the noise has the paper's relative strength on [0, 1] images.
    """
    kw = {k: cfg[k] for k in ("lr", "weight_decay", "batch", "labelled_per_batch", "max_shift", "flip", "pad",
                              "rotate")}
    kw["sigma"] = float(cfg["sigma"]) * float(x.std()) if cfg["sigma"] else 0.0
    return kw


def mt_kwargs(cfg) -> dict:
    return {"ema_decay": cfg["ema_decay"], "ema_decay_after": cfg["ema_decay_after"],
            "rampup_epochs": cfg["rampup_epochs"]}


# ---------------------------------------------------------------- episodic metric learners (ProtoNet, matching nets)
EPISODIC_PARAMS = (
    Param("width", int, 16, "channels of the first conv block (x2 per block, at most x4)", low=1),
    Param("blocks", int, 3, "conv blocks of the proxy backbone", low=1, high=6),
    Param("episodes", int, 20000, "training episodes on the base classes", low=1),
    Param("train_way", int, None, "classes per training episode (None: min(number of base classes, 30 for 1-shot "
          "/ 20 otherwise), the ProtoNet paper's miniImageNet setting)", low=2),
    Param("train_shot", int, None, "support items per class in training episodes (None: the test shot)", low=1),
    Param("train_query", int, 15, "query items per class in training episodes (paper: 15)", low=1),
    Param("lr", float, 1e-3, "Adam learning rate (ProtoNet: 1e-3)", low=0, open_low=True),
    Param("halve_every", int, 2000, "halve the learning rate every this many episodes (ProtoNet: 2000)", low=1),
)


class EpisodicMethod(Method):
    """Metric few-shot learners (ProtoNet, matching nets): episodic training on data.base, then the test episodes.

    Outputs ``scores`` (E, N*Q, N) float32: log p(y | x, S) of every query (kernels in :mod:`.metric_few_shot`).
    """

    task = "few-shot"
    episode_loss = "protonet"  # or "matching"
    params = EPISODIC_PARAMS

    def run(self, data, ctx) -> dict:
        import torch

        from .convnets import embed, images_to_tensor, make_convnet, seed_torch
        from .metric_few_shot import episode_log_probs, train_episodic
        base = _check(data)
        c = self.cfg
        n_base = base.n_classes
        way = c["train_way"] or min(n_base, 30 if data.k_shot == 1 else 20)
        check_at_most(way, n_base, "train_way", f"method '{self.name}'", f"{data.name} has {n_base} base classes")
        shot = c["train_shot"] or data.k_shot
        seed_torch(ctx.seed)
        xb = np.asarray(base.x)
        net = make_convnet(in_ch=1 if xb.ndim == 3 else xb.shape[3], width=c["width"], blocks=c["blocks"])
        net.train()
        with ctx.phase("base_training"):
            losses = train_episodic(net.embed, list(net.parameters()), images_to_tensor(xb), base.labels, self.episode_loss,
                                    c["episodes"], way, shot, c["train_query"], lr=c["lr"],
                                    halve_every=c["halve_every"], seed=ctx.seed, progress=ctx.progress)
        net.eval()
        with ctx.phase("episodes"), torch.no_grad():
            f = torch.from_numpy(embed(net.embed, images_to_tensor(data.pool.x)))
            scores = np.stack([episode_log_probs(self.episode_loss, f[data.support[e]], data.support_labels[e],
                                                 f[data.query[e]], data.n_way).numpy()
                               for e in range(data.n_episodes)])
        tail = losses[-min(100, len(losses)):]
        return {"scores": scores.astype(np.float32),
                "stats": {"train_way": int(way), "train_shot": int(shot), "base_final_loss": float(np.mean(tail))}}


# ---------------------------------------------------------------- metric learning on pre-trained descriptors (MoM and its supervised baselines)
#: the head and optimizer shared by `mom-head`, `contrastive`, `triplet-head` (defaults as `mom-head` has always had)
HEAD_TRAIN_PARAMS = (
    Param("epochs", int, 20, "training epochs", low=1),
    Param("lr", float, 1e-3, "Adam learning rate", low=0, open_low=True),
    Param("hidden", int, 128, "hidden units of the residual branch of the head", low=1),
)


def train_head(x: np.ndarray, cfg, ctx, epoch_batches, batch_loss, desc: str):
    """The training loop of `mom-head` and of its supervised baselines: head ``g(x) = normalize(L x + B relu(A x))``
    (:func:`.mining.make_head`, identity at start) on frozen descriptors x (n, d) float32, Adam.

    ``epoch_batches(epoch) -> list of index arrays`` gives one epoch's minibatches;
    ``batch_loss(head, xt, idx) -> scalar tensor`` the loss of one (xt: x as a tensor).
    Returns (head, per-step losses).
    """
    import torch

    from .mining import make_head
    torch.manual_seed(ctx.seed)
    head = make_head(x.shape[1], cfg["hidden"])
    opt = torch.optim.Adam(head.parameters(), lr=cfg["lr"])
    xt = torch.from_numpy(x)
    losses = []
    for ep in ctx.progress(range(cfg["epochs"]), desc=desc, total=cfg["epochs"], unit="epoch"):
        for b in epoch_batches(ep):
            loss = batch_loss(head, xt, torch.from_numpy(b))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    return head, losses


SUPERVISED_METRIC_PARAMS = FEATURE_PARAMS + HEAD_TRAIN_PARAMS + (
    Param("per_class", int, 40, "items of each class in a minibatch (FaceNet: about 40 per identity)", low=2),
    Param("classes_per_batch", int, 5, "classes in a minibatch (minibatch = per_class x classes_per_batch)", low=2),
)


def training_labels(data, n: int | None) -> np.ndarray:
    """(n,) labels of the training split (data.train.labels) for supervised metric learning, checked (their
    number against n unless n is None)."""
    labels = getattr(getattr(data, "train", None), "labels", None)
    if labels is None or (n is not None and len(labels) != n):
        raise UserError(f"{data.name}: supervised metric learning needs the labels of the training split "
                        f"(data.train.labels, one per training item)")
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        raise UserError(f"{data.name}: supervised metric learning needs at least 2 training classes")
    return labels


class SupervisedMetricMethod(Method):
    """Supervised metric learning with the training loop of `mom-head` (:func:`train_head`) on frozen descriptors:
    labels of the training split (data.train.labels) define positives and negatives; class-balanced minibatches;
    a plugin gives ``batch_loss(emb (b, d) torch, labels (b,) numpy, rng) -> scalar``. Outputs ``embeddings`` of
    the test split. (The end-to-end supervised baseline is `triplet`: the network of `mom`, :func:`finetune`.)
    """

    task = "metric-learning"
    params = SUPERVISED_METRIC_PARAMS

    def batch_loss(self, emb, labels, rng):
        raise NotImplementedError

    def run(self, data, ctx) -> dict:
        import torch

        from .metric_losses import class_balanced_batches
        c = self.cfg
        with ctx.phase("features"):
            tr, te = pretrained_features(data, c)
        labels = training_labels(data, len(tr))
        rng = ctx.rng(17)

        def loss(head, xt, idx):
            return self.batch_loss(head(xt[idx]), labels[idx.numpy()], rng)

        with ctx.phase("train"):
            head, hist = train_head(tr, c, ctx, lambda ep: class_balanced_batches(labels, c["per_class"],
                                                                                   c["classes_per_batch"], rng),
                                    loss, f"{self.name} epochs")
        with torch.no_grad():
            emb = head(torch.from_numpy(te)).numpy().astype(np.float32)
        tail = hist[-min(20, len(hist)):]
        return {"embeddings": emb, "stats": {"steps": len(hist), "final_loss": float(np.mean(tail))}}


# ---------------------------------------------------------------- end-to-end MoM: the pre-trained network, images, fine-tuning
MOM_NET_PARAMS = (
    Param("backbone", str, "convnet", "network fine-tuned end to end: 'convnet' (the proxy CNN of convnets.py, "
          "pre-trained on pretrain_data) or a torchvision/timm name with weights ('googlenet' as the paper on CUB; "
          "'efficientnet_lite0' for photographs: its packaged ImageNet weights when weights is None)"),
    Param("weights", str, None, "state dict of the backbone (None: convnet -> pre-trained here on pretrain_data)"),
    Param("pretrain_data", str, None, "convnet: folder holding an MNIST-layout training split "
          "(train-images/labels-idx*-ubyte[.gz]) of ANOTHER domain, on which the network is pre-trained with its "
          "labels; it stands for the paper's ImageNet pre-training (proxy: Fashion-MNIST for digits)"),
    Param("pretrain_size", int, 6000, "convnet: images of pretrain_data used (seeded subset)", low=10),
    Param("pretrain_epochs", int, 2, "convnet: epochs of supervised pre-training on pretrain_data", low=1),
    Param("width", int, 16, "convnet: channels of the first conv block (x2 per block, at most x4)", low=1),
    Param("blocks", int, 3, "convnet: conv blocks", low=1, high=6),
    Param("imsize", int, 224, "photographs: side of the square network input (GoogLeNet: 224)", low=16),
)

_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _photo_trunk(arch: str, weights):
    """(trunk: images (B, 3, S, S) -> maps (B, C, h, w), C) of a torchvision/timm network with its weights."""
    import torch
    from torch import nn
    from visrep.methods.cnn.backbones import (
        _read_state_dict,
        load_backbone,
        make_architecture,
        match_state_dict,
        retrieval_trunk,
    )
    if arch == "googlenet":                          # torchvision GoogLeNet: no `features`; cut before avgpool
        if weights is None:
            raise UserError("backbone 'googlenet' needs a weights file (torchvision's googlenet-1378be20.pth)")
        model = make_architecture("googlenet")
        sd = match_state_dict(model.state_dict(), _read_state_dict(__import__("pathlib").Path(weights)),
                              f"weights {weights} for 'googlenet'")
        model.load_state_dict(sd, strict=True)

        class ToInception(nn.Module):
            """ImageNet-normalized input -> the (x - 0.5) / 0.5 input of torchvision's ported GoogLeNet weights
            (what its ``transform_input = True`` does)."""

            def forward(self, x):
                m = torch.tensor(_IMAGENET[0], device=x.device).view(1, 3, 1, 1)
                s = torch.tensor(_IMAGENET[1], device=x.device).view(1, 3, 1, 1)
                return (x * s + m - 0.5) / 0.5

        trunk = nn.Sequential(ToInception(), *[m for name, m in model.named_children()
                                               if name not in ("aux1", "aux2", "avgpool", "dropout", "fc")])
    else:
        import copy
        model = copy.deepcopy(load_backbone(arch, weights).model)      # fine-tuning must not touch the cached one
        trunk = retrieval_trunk(model, arch)
        if not isinstance(trunk, nn.Module):                          # timm: the bound forward_features

            class Features(nn.Module):
                def __init__(self, net):
                    super().__init__()
                    self.net = net

                def forward(self, x):
                    return self.net.forward_features(x)

            trunk = Features(model)
    trunk.eval()                                     # (a probe in train mode would move the BN statistics)
    with torch.no_grad():
        c = trunk(torch.zeros(2, 3, 64, 64)).shape[1]
    return trunk, int(c)


def mom_images(part, cfg):
    """Images of a split as a torch tensor (n, C, S, S) (uint8, or float32 in [0, 1] for float arrays) and
    ``to_input(batch) -> float network input``.

    Grey/colour arrays in ``part.x`` (n, H, W[, C]) are used as they are for the convnet; photographs
    (``part.image(i)`` or 4-d x with a photo backbone) are resized to imsize x imsize and normalized
    with the ImageNet mean/std at batch time.
    """
    import torch
    import torch.nn.functional as F
    x = None if part.x is None else np.asarray(part.x)
    if cfg["backbone"] == "convnet":
        if x is None or x.ndim not in (3, 4):
            raise UserError(f"{part.name}: backbone 'convnet' needs images (n, H, W[, C]) in x")
        if x.dtype != np.uint8:                      # float images: scaled as images_to_tensor does
            from .convnets import images_to_tensor
            return images_to_tensor(x), lambda b: b
        u8 = torch.from_numpy(np.ascontiguousarray(x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)))
        return u8, lambda b: b.float() / 255.0
    s = cfg["imsize"]
    out = torch.empty((len(part), 3, s, s), dtype=torch.uint8)
    for i in range(len(part)):
        img = np.asarray(x[i] if x is not None and x.ndim in (3, 4) else part.image(i))
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        t = torch.from_numpy(np.ascontiguousarray(img[..., :3])).permute(2, 0, 1)[None].float()
        out[i] = F.interpolate(t, size=(s, s), mode="bilinear", align_corners=False)[0].round().clamp(0, 255).byte()
    mean = torch.tensor(_IMAGENET[0]).view(1, 3, 1, 1)
    std = torch.tensor(_IMAGENET[1]).view(1, 3, 1, 1)
    return out, lambda b: (b.float() / 255.0 - mean.to(b.device)) / std.to(b.device)


def mom_network(data, cfg, ctx):
    """(trunk, channels): the pre-trained network MoM starts from (Iscen et al. CVPR 2018: ImageNet
    GoogLeNet on CUB). ``convnet``: the proxy CNN pre-trained with labels on `pretrain_data`, another
    domain (cached: the same parameters and seed give the same weights)."""
    import torch

    from .convnets import images_to_tensor, make_convnet, seed_torch, train_classifier
    if cfg["backbone"] != "convnet":
        return _photo_trunk(cfg["backbone"], cfg["weights"])
    x = np.asarray(data.train.x) if data.train is not None and data.train.x is not None else None
    in_ch = 1 if x is None or x.ndim == 3 else x.shape[3]
    net = make_convnet(in_ch=in_ch, width=cfg["width"], blocks=cfg["blocks"], n_classes=0)
    if cfg["weights"]:
        sd = torch.load(cfg["weights"], map_location="cpu", weights_only=True)
        net.trunk.load_state_dict({k.removeprefix("trunk."): v for k, v in sd.items() if not k.startswith("head.")})
        return net.trunk, net.dim
    if not cfg["pretrain_data"]:
        raise UserError("backbone 'convnet' (methods 'mom', 'triplet', 'pretrained-net') needs weights=FILE or pretrain_data=FOLDER (a labelled "
                        "training split of another domain, e.g. /usr/share/datasets/fashion-mnist)")

    def compute():
        from visrep.datasets.mnist import read_mnist_split
        src = read_mnist_split(cfg["pretrain_data"], "train", "pretrain")
        keep = np.sort(np.random.default_rng(ctx.seed).permutation(len(src))[:cfg["pretrain_size"]])
        xs = np.asarray(src.x)[keep]
        ys = np.asarray(src.labels)[keep]
        seed_torch(ctx.seed)
        m = make_convnet(in_ch=in_ch, width=cfg["width"], blocks=cfg["blocks"], n_classes=int(ys.max()) + 1)
        train_classifier(m, images_to_tensor(xs), ys, cfg["pretrain_epochs"], seed=ctx.seed)
        return {k: v.detach().numpy().copy() for k, v in m.trunk.state_dict().items()}

    what = {k: cfg[k] for k in ("pretrain_data", "pretrain_size", "pretrain_epochs", "width", "blocks")}
    sd = ctx.cached("mom-pretrained-convnet", {**what, "seed": ctx.seed, "in_ch": in_ch}, (mom_network,), compute)
    net.trunk.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()})
    return net.trunk, net.dim


def embed_images(net, u8, to_input, device: str = "cpu", batch: int = 256) -> np.ndarray:
    """net (eval mode) over uint8 images (n, C, S, S) -> (n, d) float32."""
    import torch
    net.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(u8), batch):
            out.append(net(to_input(u8[s:s + batch].to(device))).float().cpu().numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)


#: the fine-tuning schedule shared by `mom` and the end-to-end `triplet` (:func:`finetune`)
MOM_FINETUNE_PARAMS = (
    Param("emb_dim", int, 64, "linear embedding on the pooled features (authors' code: 64; 0 = none)", low=0),
    Param("epochs", int, 100, "epochs (authors' code: 100)", low=0),
    Param("lr", float, 0.01, "SGD learning rate (authors' code: 0.01, momentum 0.9, dampening 0.9, weight "
          "decay 5e-4)", low=0, open_low=True),
    Param("step_size", int, 50, "learning rate x 0.1 every step_size epochs (authors' code: 50)", low=1),
)


def mom_inputs(data, cfg, ctx):
    """What `mom` and the end-to-end `triplet` start from: (training split, trunk, channels, training images,
    to_input, test images, device): the pre-trained network (:func:`mom_network`) and both splits' images
    (:func:`mom_images`)."""
    train = getattr(data, "train", None)
    if train is None:
        raise UserError(f"{data.name}: metric learning needs the training split (data.train) of unseen-class data")
    trunk, dim = mom_network(data, cfg, ctx)
    xtr, to_in = mom_images(train, cfg)
    xte, _ = mom_images(data, cfg)
    return train, trunk, dim, xtr, to_in, xte, ctx.torch_device()


def finetune(net, cfg, ctx, epoch_batches, batch_loss, desc: str) -> list[float]:
    """The end-to-end training loop of `mom` (Iscen et al. CVPR 2018, the authors' CUB code), shared with the
    supervised `triplet`: SGD (lr, momentum 0.9, dampening 0.9, weight decay 5e-4) on every parameter of `net`
    (trunk and embedding), learning rate x 0.1 every `step_size` epochs, `epochs` epochs.

    ``epoch_batches(epoch) -> list`` gives one epoch's minibatches (called with `net` as it stands before the
    epoch, so it may embed with it); ``batch_loss(batch) -> scalar tensor`` the loss of one, with `net` in
    train mode. Returns the mean loss of each epoch.
    """
    import torch
    opt = torch.optim.SGD(net.parameters(), lr=cfg["lr"], momentum=0.9, dampening=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg["step_size"], gamma=0.1)
    losses = []
    for ep in ctx.progress(range(cfg["epochs"]), desc=desc, total=cfg["epochs"], unit="epoch"):
        batches = epoch_batches(ep)
        net.train()
        tot = []
        for b in batches:
            loss = batch_loss(b)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot.append(float(loss.detach()))
        sched.step()
        losses.append(float(np.mean(tot)) if tot else 0.0)
    return losses


SUPERVISED_FINETUNE_PARAMS = MOM_NET_PARAMS + MOM_FINETUNE_PARAMS + (
    Param("per_class", int, 40, "images of each class in a minibatch (FaceNet: about 40 per identity)", low=2),
    Param("classes_per_batch", int, 5, "classes in a minibatch (minibatch = per_class x classes_per_batch)",
          low=2),
    Param("images_per_epoch", int, None, "images per epoch, in whole minibatches (None = the training images)",
          low=1),
)


class SupervisedFinetuneMethod(Method):
    """Supervised metric learning end to end, the baselines of the MoM tables: the pre-trained network of `mom`
    (:func:`mom_network`, :func:`.mining.make_embedder`: unit (n, emb_dim) rows) fine-tuned with `mom`'s SGD and
    schedule (:func:`finetune`) on class-balanced minibatches (``per_class`` images of ``classes_per_batch``
    classes of the labelled training split, FaceNet Sec. 3.2). A plugin gives
    ``batch_loss(emb (b, d) torch, labels (b,) numpy, rng) -> (scalar, tuples mined)``. Outputs ``embeddings``
    (n_test, emb_dim) float32; stats ``tuple_stat`` = mean tuples mined per minibatch.
    """

    task = "metric-learning"
    params = SUPERVISED_FINETUNE_PARAMS
    tuple_stat = "mean_tuples"

    def batch_loss(self, emb, labels, rng):
        raise NotImplementedError

    def run(self, data, ctx) -> dict:
        import torch

        from .convnets import seed_torch
        from .metric_losses import class_balanced_batches
        from .mining import make_embedder
        c = self.cfg
        if getattr(data, "train", None) is not None:
            training_labels(data, None)                                   # checked before the pre-training
        with ctx.phase("features"):
            _, trunk, dim, xtr, to_in, xte, dev = mom_inputs(data, c, ctx)
        labels = training_labels(data, len(xtr))
        seed_torch(ctx.seed)
        net = make_embedder(trunk, dim, c["emb_dim"]).to(dev)
        rng = ctx.rng(17)
        size = c["per_class"] * min(c["classes_per_batch"], len(np.unique(labels)))
        n_b = -(-(c["images_per_epoch"] or len(labels)) // size)
        found = []

        def loss_of(b):
            loss, n_tuples = self.batch_loss(net(to_in(xtr[torch.from_numpy(b)].to(dev))), labels[b], rng)
            found.append(n_tuples)
            return loss

        with ctx.phase("train"):
            losses = finetune(net, c, ctx, lambda ep: class_balanced_batches(labels, c["per_class"],
                                                                              c["classes_per_batch"], rng, n_b),
                              loss_of, f"{self.name} epochs")
        with ctx.phase("embed"):
            out = embed_images(net, xte, to_in, dev)
        return {"embeddings": out, "stats": {"steps": len(found), "batch_size": int(size),
                                             self.tuple_stat: float(np.mean(found)) if found else 0.0,
                                             "epoch_losses": losses, "final_loss": losses[-1] if losses else 0.0}}
