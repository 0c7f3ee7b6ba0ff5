"""Tiny convolutional networks and a seeded training loop shared by the Part III methods.

Used by :mod:`visrep.methods.learning.label_propagation` (deep label propagation), and
:mod:`visrep.methods.learning.few_shot` (dense classification, implanting). :class:`ConvNet` is a
proxy of the papers' networks sized for CPU runs on MNIST and scikit-learn digits; the
semi-supervised plugins also build the papers' own C13 and ResNet-18 (:func:`make_classifier`,
``arch``), which the full-scale rows use; the algorithms around them are the papers'.

- :class:`ConvNet`: ``blocks`` x [conv 3x3 - batch norm - ReLU (- 2x2 max-pool except on the last
  block)], so the last block keeps a spatial map (what dense classification needs); then global
  average pooling -> (B, C) embedding, and an optional linear or cosine classifier head. Weights and
  activations live in channels-last memory: on one CPU thread a training step of these small networks
  is faster than in NCHW (torch's NCHW ReLU and max-pool backward dominate otherwise): 1.8x in a
  micro-benchmark (batch 100 of 28x28: 51 -> 29 ms), 1.45x on a whole run (supervised, Fashion-MNIST
  500 labels: 23.5 -> 16.2 s). Values are the same up to float rounding.
- :func:`images_to_tensor`: (n, H, W[, C]) uint8 -> (n, C, H, W) float32 in [0, 1] (torch).
- :func:`train_classifier`: minibatch SGD on a (weighted) cross-entropy, seeded: the same seed,
  data and thread count give the same weights on CPU.
- :func:`embed`: batched forward without gradients -> numpy (n, d) float32.

torch is imported inside functions only (registry listing stays light); classes that subclass
``torch.nn.Module`` are built by factory functions for the same reason.
"""
from __future__ import annotations

import numpy as np

from visrep.errors import UserError


def seed_torch(seed: int) -> None:
    """Seed torch's CPU generator (and Python/numpy through the caller's ctx)."""
    import torch
    torch.manual_seed(int(seed))


def images_to_tensor(x: np.ndarray):
    """(n, H, W) or (n, H, W, C) uint8 / float images -> torch (n, C, H, W) float32 in [0, 1]."""
    import torch
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        x = x.transpose(0, 3, 1, 2)
    else:
        raise UserError(f"expected images (n, H, W) or (n, H, W, C), got shape {x.shape}")
    scale = 255.0 if x.dtype == np.uint8 else max(float(np.abs(x).max()), 1.0) if x.size else 1.0
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32) / np.float32(scale))


def make_convnet(in_ch: int = 1, width: int = 32, blocks: int = 3, n_classes: int = 0, cosine: bool = False,
                 scale: float = 10.0):
    """A :class:`ConvNet` (see the module docstring). ``n_classes = 0``: no classifier head."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class ConvNet(nn.Module):
        """Conv blocks -> feature map (B, C, h, w) -> GAP (B, C) -> head (B, n_classes)."""

        def __init__(self):
            super().__init__()
            layers, c = [], in_ch
            for b in range(blocks):
                out = width * (2 ** min(b, 2))
                layers += [nn.Conv2d(c, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
                if b < blocks - 1:
                    layers.append(nn.MaxPool2d(2))
                c = out
            self.trunk = nn.Sequential(*layers)
            self.dim = c
            self.cosine = cosine
            self.scale = nn.Parameter(torch.tensor(float(scale))) if cosine else None
            self.head = nn.Linear(c, n_classes, bias=not cosine) if n_classes else None
            self.to(memory_format=torch.channels_last)

        def feature_map(self, x):
            return self.trunk(x.contiguous(memory_format=torch.channels_last))

        def embed(self, x):
            return self.feature_map(x).mean(dim=(2, 3))

        def classify(self, feats):
            """Class scores of (B, C) features or of every position of (B, C, h, w) maps (-> (B, K, h, w))."""
            if self.head is None:
                raise UserError("this network has no classifier head (n_classes = 0)")
            w = self.head.weight
            if feats.dim() == 4:
                f = feats.permute(0, 2, 3, 1)
                s = self.classify(f.reshape(-1, f.shape[-1])).reshape(*f.shape[:3], -1)
                return s.permute(0, 3, 1, 2)
            if self.cosine:
                return self.scale * F.normalize(feats, dim=1) @ F.normalize(w, dim=1).T
            return self.head(feats)

        def forward(self, x):
            return self.classify(self.embed(x))

    return ConvNet()


#: networks of the semi-supervised tables: the proxy ConvNet, and the papers' own (Iscen et al. CVPR 2019, Sec. 5)
ARCHS = ("convnet", "cnn13", "resnet18")


def make_cnn13(n_classes: int, in_ch: int = 3):
    """The 13-layer ConvNet of the mean teacher / DLP on CIFAR (Laine & Aila ICLR 2017, Table 5; Tarvainen &
    Valpola NIPS 2017; LP-DeepSSL ``architectures.CNN``): 3 x [conv 3x3 128] - max-pool 2 - dropout 0.5 -
    3 x [conv 3x3 256] - max-pool 2 - dropout 0.5 - conv 3x3 512 (no padding) - conv 1x1 256 - conv 1x1 128 -
    global average pooling; weight-normalized convolutions and classifier, batch norm, leaky ReLU 0.1. The
    128-d feature is L2-normalized before the classifier (the DLP code's ``isL2``). At 32 x 32 inputs the
    code's 6 x 6 average pooling is this global pooling. ``embed`` (B, 3, H, W) -> (B, 128) unit vectors."""
    import torch.nn.functional as F
    from torch import nn
    from torch.nn.utils.parametrizations import weight_norm

    def block(ci, co, k, pad):
        return [weight_norm(nn.Conv2d(ci, co, k, padding=pad)), nn.BatchNorm2d(co), nn.LeakyReLU(0.1)]

    class CNN13(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = nn.Sequential(
                *block(in_ch, 128, 3, 1), *block(128, 128, 3, 1), *block(128, 128, 3, 1),
                nn.MaxPool2d(2, 2), nn.Dropout(0.5),
                *block(128, 256, 3, 1), *block(256, 256, 3, 1), *block(256, 256, 3, 1),
                nn.MaxPool2d(2, 2), nn.Dropout(0.5),
                *block(256, 512, 3, 0), *block(512, 256, 1, 0), *block(256, 128, 1, 0))
            self.dim = 128
            self.head = weight_norm(nn.Linear(128, n_classes))

        def embed(self, x):
            return F.normalize(self.trunk(x).mean(dim=(2, 3)), dim=1)

        def forward(self, x):
            return self.head(self.embed(x))

    return CNN13()


def make_resnet18(n_classes: int, in_ch: int = 3):
    """ResNet-18 (He et al. CVPR 2016; torchvision's layout and initialization, randomly initialized) as the DLP
    code trains it on 84 x 84 miniImageNet (LP-DeepSSL ``architectures.resnet18``): the 512-d globally pooled
    feature is L2-normalized before the linear classifier (``isL2``). ``embed`` (B, 3, H, W) -> (B, 512)."""
    import torch.nn.functional as F
    import torchvision
    from torch import nn

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            net = torchvision.models.resnet18(weights=None)
            if in_ch != 3:
                net.conv1 = nn.Conv2d(in_ch, 64, 7, 2, 3, bias=False)
            net.fc = nn.Identity()
            self.trunk = net
            self.dim = 512
            self.head = nn.Linear(512, n_classes)

        def embed(self, x):
            return F.normalize(self.trunk(x), dim=1)

        def forward(self, x):
            return self.head(self.embed(x))

    return ResNet18()


#: per-channel (mean, std) of [0, 1] pixels the DLP code normalizes its inputs with (LP-DeepSSL
#: mean_teacher/datasets.py: the CIFAR-10 values for both CIFAR sets; miniImageNet's mean_pix / std_pix / 255)
CHANNEL_STATS = {
    "cifar": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "miniimagenet": ((120.39586422 / 255, 115.59361427 / 255, 104.54012653 / 255),
                     (70.68188272 / 255, 68.27635443 / 255, 72.54505529 / 255)),
}


def make_classifier(arch: str, in_ch: int, n_classes: int, width: int = 16, blocks: int = 3,
                    input_norm: str = "none"):
    """The network named by `arch` (:data:`ARCHS`) with a classifier head of `n_classes`; ``input_norm`` (a key
    of :data:`CHANNEL_STATS`) standardizes each input channel first, inside the network."""
    if arch == "convnet":
        net = make_convnet(in_ch=in_ch, width=width, blocks=blocks, n_classes=n_classes)
    elif arch == "cnn13":
        net = make_cnn13(n_classes, in_ch)
    elif arch == "resnet18":
        net = make_resnet18(n_classes, in_ch)
    else:
        raise UserError(f"unknown network {arch!r}; choose one of {', '.join(ARCHS)}")
    if input_norm == "none":
        return net
    if input_norm not in CHANNEL_STATS:
        raise UserError(f"unknown input normalization {input_norm!r}; choose one of none, {', '.join(CHANNEL_STATS)}")
    mean, std = CHANNEL_STATS[input_norm]
    if in_ch != len(mean):
        raise UserError(f"input_norm={input_norm!r} has {len(mean)} channels, the images {in_ch}")
    return _normalized(net, mean, std)


def _normalized(net, mean, std):
    """`net` behind a fixed per-channel standardization ``(x - mean) / std`` (buffers; no parameters)."""
    import torch
    from torch import nn

    class Normalized(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net
            self.dim = net.dim
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

        @property
        def head(self):
            return self.net.head

        def embed(self, x):
            return self.net.embed((x - self.mean) / self.std)

        def forward(self, x):
            return self.net((x - self.mean) / self.std)

    return Normalized()


def train_classifier(model, x, y, epochs: int, lr: float = 0.05, batch: int = 64, seed: int = 0,
                     sample_weight=None, loss_fn=None, weight_decay: float = 5e-4, progress=None,
                     batch_sampler=None):
    """Train `model` on images `x` (torch (n, C, H, W)) and labels `y` (n,) int by SGD (momentum 0.9).

    Loss per batch: ``sum_i w_i CE(model(x_i), y_i) / batch`` with ``w = sample_weight`` (n,)
    (ones by default) -- the weighted loss of DLP (Iscen et al. CVPR 2019, Eq. 12). ``loss_fn(model,
    xb, yb) -> (B,) per-item losses`` replaces the cross-entropy (dense classification). Learning
    rate decays by cosine annealing to 0 over all steps. Batches move to the model's device (``x`` stays where
    it is: the CPU). ``batch_sampler(generator) -> list of
    index tensors`` replaces the random permutation of each epoch (e.g. DLP's batches mixing
    labelled and unlabelled items). Deterministic for a fixed seed on CPU.
    Returns the list of mean losses per epoch.
    """
    import torch
    import torch.nn.functional as F

    n = len(y)
    if n == 0:
        raise UserError("cannot train on an empty set")
    dev = module_device(model)
    y = torch.as_tensor(np.asarray(y), dtype=torch.long)
    w = torch.ones(n) if sample_weight is None else torch.as_tensor(np.asarray(sample_weight), dtype=torch.float32)
    g = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True)
    g_probe = torch.Generator().manual_seed(int(seed))
    per_epoch = len(batch_sampler(g_probe)) if batch_sampler else -(-n // batch)
    steps = max(1, epochs * per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + np.cos(np.pi * min(s, steps) / steps)))
    history = []
    model.train()
    it = range(epochs) if progress is None else progress(range(epochs), desc="train", total=epochs, unit="epoch")
    for _ in it:
        if batch_sampler is None:
            perm = torch.randperm(n, generator=g)
            batches = [perm[s:s + batch] for s in range(0, n, batch)]
        else:
            batches = batch_sampler(g)
        tot, seen = 0.0, 0
        for idx in batches:
            if len(idx) < 2 and n >= 2:  # batch norm needs 2 items
                continue
            xb, yb, wb = x[idx].to(dev), y[idx].to(dev), w[idx].to(dev)
            per = loss_fn(model, xb, yb) if loss_fn else F.cross_entropy(model(xb), yb, reduction="none")
            loss = (wb * per).sum() / len(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
            seen += len(idx)
        history.append(tot / max(seen, 1))
    model.eval()
    return history


def module_device(module):
    """The device of a network's parameters (cpu for a network without any)."""
    import torch
    p = next(iter(module.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def embed(fn, x, batch: int = 512) -> np.ndarray:
    """``fn`` (a network, or a method of one, e.g. ``model.embed``) over `x` (torch (n, ...), on the CPU) in
    batches, each moved to the network's device -> (n, d) float32 numpy."""
    import torch
    owner = getattr(fn, "__self__", fn)
    dev = module_device(owner) if isinstance(owner, torch.nn.Module) else torch.device("cpu")
    out = []
    with torch.no_grad():
        for s in range(0, len(x), batch):
            out.append(fn(x[s:s + batch].to(dev)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
