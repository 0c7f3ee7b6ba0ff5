"""The trained MNIST classifiers that the adversarial-attack experiments target.

Three real models (state_dicts under ``<shared data>/models``; see its README):

========  =====================================  ==================================================
name      file                                   architecture
========  =====================================  ==================================================
clean     ``mnist_lenet5_clntrained.pt``         :class:`LeNet5` (advertorch example), normal training
adv       ``mnist_lenet5_advtrained.pt``         :class:`LeNet5`, adversarially trained (PGD, Madry et al.)
walking   ``mnist_cnn_walking_on_the_edge.pth``  :class:`SmallCNN`, the MNIST model of the BP paper
========  =====================================  ==================================================

- :class:`LeNet5`: conv(1->32, 3x3, pad 1)-ReLU-maxpool(2) -> conv(32->64, 3x3, pad 1)-ReLU-maxpool(2)
  -> flatten (C, H, W order: 64*7*7 = 3136) -> fc(3136->200)-ReLU -> fc(200->10).
- :class:`SmallCNN` (Carlini & Wagner's MNIST network as used by Rony et al., CVPR 2019 and Zhang et
  al., TIFS 2021): conv(1->32)-ReLU-conv(32->32)-ReLU-maxpool(2) -> conv(32->64)-ReLU-conv(64->64)-ReLU
  -maxpool(2), all 3x3 unpadded (28->26->24->12->10->8->4, 64*4*4 = 1024) -> fc(1024->200)-ReLU
  -dropout -> fc(200->200)-ReLU -> fc(200->10).

Both take (n, 1, 28, 28) float32 in [0, 1] (no mean/std normalisation) and return (n, 10) logits.
The architectures are confirmed by the clean accuracy they reach on the real MNIST test set
(``tests/test_adversarial_models.py``): measured on all 10,000 test images, clean 98.89 %,
adv 98.64 %, walking 99.30 % (first 1000 images: 98.4 %, 98.2 %, 99.5 %).

torch is imported inside functions only (the registry lists plugins without importing torch).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from visrep.errors import MissingDataError, UserError

MODEL_FILES = {
    "clean": "mnist_lenet5_clntrained.pt",
    "adv": "mnist_lenet5_advtrained.pt",
    "walking": "mnist_cnn_walking_on_the_edge.pth",
}
MODEL_NAMES = tuple(MODEL_FILES)
#: sha256 of the shared data folder's weight files (computed from the real files, as listed in its
#: MANIFEST.tsv; sources: BorealisAI/advertorch and hanwei0912/walking-on-the-edge): checked before loading
MODEL_SHA256 = {
    "clean": "551a11267982991fb0c9f74e9094de19e54b51455eff9bd1c19c77a69d85156a",
    "adv": "b89abfcfe8b33235fe8f8e964188d82a97c56a12ffe25132eaba197e40ac7658",
    "walking": "5a367dfac791501284ed839c241bfd9ed1ce384ff3112cb8af0cbd1c354178fa",
}


def _lenet5():
    import torch
    from torch import nn

    class LeNet5(nn.Module):
        """advertorch's MNIST LeNet5 (names match its state_dict: conv1, conv2, linear1, linear2)."""

        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
            self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
            self.linear1 = nn.Linear(7 * 7 * 64, 200)
            self.linear2 = nn.Linear(200, 10)

        def forward(self, x):
            import torch.nn.functional as F
            x = x.contiguous(memory_format=torch.channels_last)
            x = F.max_pool2d(F.relu(self.conv1(x)), 2)
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
            x = F.relu(self.linear1(x.flatten(1)))
            return self.linear2(x)

    return LeNet5()


def _small_cnn():
    from collections import OrderedDict

    import torch
    from torch import nn

    class SmallCNN(nn.Module):
        """The BP paper's MNIST CNN (state_dict names feature_extractor.convK, classifier.fcK)."""

        def __init__(self, drop: float = 0.5):
            super().__init__()
            self.feature_extractor = nn.Sequential(OrderedDict([
                ("conv1", nn.Conv2d(1, 32, 3)), ("relu1", nn.ReLU()),
                ("conv2", nn.Conv2d(32, 32, 3)), ("relu2", nn.ReLU()),
                ("maxpool1", nn.MaxPool2d(2, 2)),
                ("conv3", nn.Conv2d(32, 64, 3)), ("relu3", nn.ReLU()),
                ("conv4", nn.Conv2d(64, 64, 3)), ("relu4", nn.ReLU()),
                ("maxpool2", nn.MaxPool2d(2, 2)),
            ]))
            self.classifier = nn.Sequential(OrderedDict([
                ("fc1", nn.Linear(64 * 4 * 4, 200)), ("relu1", nn.ReLU()),
                ("drop", nn.Dropout(drop)),
                ("fc2", nn.Linear(200, 200)), ("relu2", nn.ReLU()),
                ("fc3", nn.Linear(200, 10)),
            ]))

        def forward(self, x):
            x = x.contiguous(memory_format=torch.channels_last)
            return self.classifier(self.feature_extractor(x).flatten(1))

    return SmallCNN()


def make_mnist_net(name: str):
    """An untrained torch module of the architecture of model `name` (clean, adv or walking)."""
    if name not in MODEL_FILES:
        raise UserError(f"unknown MNIST model '{name}'; choose one of {', '.join(MODEL_NAMES)}")
    import torch
    net = _small_cnn() if name == "walking" else _lenet5()
    # channels-last weights and activations: 1.1-1.4x faster forward + input gradient on one CPU thread
    # (batch 100: walking 109 -> 77 ms, LeNet 57 -> 52 ms); same values up to float rounding
    return net.to(memory_format=torch.channels_last)


def default_weights_path(name: str) -> Path:
    """``<shared data>/models/<file of name>``; MissingDataError when the shared folder is absent."""
    from visrep.context import shared_data_dir
    if name not in MODEL_FILES:
        raise UserError(f"unknown MNIST model '{name}'; choose one of {', '.join(MODEL_NAMES)}")
    shared = shared_data_dir()
    if shared is None:
        raise MissingDataError(f"MNIST model '{name}' needs {MODEL_FILES[name]}: the shared data folder "
                               f"(../shared/data or $VISREP_SHARED_DATA) is absent; pass weights=PATH")
    return shared / "models" / MODEL_FILES[name]


def _check_sha256(path: Path, expected: str) -> None:
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    if h.hexdigest() != expected:
        raise UserError(f"{path}: sha256 mismatch: expected {expected}, found {h.hexdigest()}. This is not the "
                        f"published weights file, so it was not read. Delete it and restore the original, "
                        f"or pass the right file with weights=PATH.")


def load_state_dict_checked(module, state: dict, where: str) -> None:
    """Load `state` into `module`, or raise UserError naming the first tensor that does not match."""
    import torch
    if not isinstance(state, dict):
        raise UserError(f"{where}: expected a state_dict (mapping of tensor names), got {type(state).__name__}")
    expected = module.state_dict()
    for key, ref in expected.items():
        if key not in state:
            raise UserError(f"{where}: tensor '{key}' {tuple(ref.shape)} is missing from the weights file")
        got = state[key]
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(ref.shape):
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise UserError(f"{where}: tensor '{key}' has shape {shape}, expected {tuple(ref.shape)}")
    extra = [k for k in state if k not in expected]
    if extra:
        raise UserError(f"{where}: unexpected tensor '{extra[0]}' in the weights file (not in the architecture)")
    module.load_state_dict({k: v.float() for k, v in state.items()})


def load_model(name: str, weights: str | Path | None = None):
    """The trained MNIST model `name` in eval mode, float32 on CPU, parameters frozen.

    `weights`: a state_dict file (default: the shared data folder's file for `name`, checked
    against its sha256 first). Any file is read with ``torch.load(weights_only=True)``: tensors
    and containers only, a pickle asking for other code is refused and nothing runs.
    """
    import pickle

    import torch
    model = make_mnist_net(name)
    path = Path(weights) if weights else default_weights_path(name)
    if not path.exists():
        raise MissingDataError(f"MNIST model '{name}': weights file {path} does not exist")
    if not weights:
        _check_sha256(path, MODEL_SHA256[name])
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refused a global: the file asks to run code
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"MNIST model '{name}': cannot read weights file {path}: refused by "
                        f"torch.load(weights_only=True), nothing was run ({first})") from None
    except Exception as e:  # noqa: BLE001 -- not a torch file, truncated: its unpickler can raise anything (fuzzed)
        raise UserError(f"MNIST model '{name}': cannot read weights file {path}: {e}") from None
    load_state_dict_checked(model, state, f"MNIST model '{name}' ({path})")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def mnist_to_tensor(x: np.ndarray):
    """(n, 28, 28) uint8 (or float in [0, 1]) -> (n, 1, 28, 28) float32 torch tensor in [0, 1]."""
    import torch
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise UserError(f"MNIST models take (n, 28, 28) images, got shape {x.shape}")
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    return torch.from_numpy(x).unsqueeze(1)


def predict(model, x, batch_size: int = 1000):
    """(n, 10) float32 logits of `model` on images `x` ((n,1,28,28) tensor or (n,28,28) array)."""
    import torch
    if not isinstance(x, torch.Tensor):
        x = mnist_to_tensor(x)
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]) if len(x) else \
            torch.zeros((0, 10))


