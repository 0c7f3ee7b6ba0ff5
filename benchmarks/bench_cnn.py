"""asv benchmarks for Part II CNN descriptors: the talk's networks (VGG16, ResNet-101) with MAC / GeM /
R-MAC heads, and the pooling kernels alone.

Networks: randomly initialized torchvision VGG16 / ResNet-101 saved in the cnnimageretrieval
checkpoint layout (``retrievalSfM120k-*``: features.*, pool.p, whiten.*, meta) by ``setup_cache``,
loaded through :func:`visrep.methods.cnn.backbones.load_backbone` exactly as a user's file is;
the time of a forward pass does not depend on the values of the weights. Input: one real
photograph (scikit-image ``chelsea``, 300 x 451) at ``imsize`` (longer side) 224 and 512; the
talk's setting is 1024 (cnnimageretrieval), which costs about (1024 / 512)^2 = 4 times the 512 time.

Pooling: a (2048, 32, 32) non-negative map (ResNet-101 at 1024 pixels), MAC, GeM (p = 3), R-MAC (L = 3).

Run as a script (``python benchmarks/bench_cnn.py``) to print the per-image time of each network
and head, and the linear estimate for Oxford5k (5,063 images + 55 queries) at imsize 1024 on this CPU.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

NETS = ("vgg16", "resnet101")
IMSIZES = (224, 512)
OXFORD5K_IMAGES = 5063 + 55


def _checkpoint(arch: str, folder: Path) -> str:
    import torch
    import torchvision
    torch.manual_seed(0)
    with torch.device("meta"):
        net = torchvision.models.get_model(arch, weights=None)
    from visrep.methods.cnn.backbones import retrieval_trunk
    trunk = retrieval_trunk(net, arch).to_empty(device="cpu")
    for m in trunk.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
        if hasattr(m, "reset_running_stats"):
            m.reset_running_stats()
    dim = 512 if arch == "vgg16" else 2048
    sd = {f"features.{k}": v for k, v in trunk.state_dict().items()}
    sd["pool.p"] = torch.tensor([3.0])
    sd["whiten.weight"] = torch.eye(dim)
    sd["whiten.bias"] = torch.zeros(dim)
    meta = {"architecture": arch, "local_whitening": False, "pooling": "gem", "regional": False,
            "whitening": True, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "outputdim": dim}
    path = folder / f"retrievalSfM120k-{arch}-gem.pth"
    torch.save({"state_dict": sd, "meta": meta}, path)
    return str(path)


def _image():
    import skimage.data
    return skimage.data.chelsea()


class Descriptors:
    params = (NETS, ("mac", "gem", "rmac"), IMSIZES)
    param_names = ("network", "head", "imsize")
    timeout = 600

    def setup_cache(self):
        folder = Path(tempfile.mkdtemp(prefix="bench_cnn_"))
        return {arch: _checkpoint(arch, folder) for arch in NETS}

    def setup(self, paths, network, head, imsize):
        from visrep.registry import methods
        self.m = methods.create(head, weights=paths[network], imsize=imsize)
        self.net = self.m.backbone()
        self.img = _image()
        self.m.describe_one(self.img, self.net)      # warm-up

    def time_describe_one(self, paths, network, head, imsize):
        self.m.describe_one(self.img, self.net)


class Pooling:
    params = (("mac", "gem", "rmac"),)
    param_names = ("pooling",)

    def setup(self, pooling):
        from visrep.methods.cnn import pooling as P
        self.x = np.random.default_rng(0).random((2048, 32, 32)).astype(np.float32)
        self.fn = {"mac": P.mac, "gem": lambda x: P.gem(x, 3.0), "rmac": P.rmac}[pooling]

    def time_pool(self, pooling):
        self.fn(self.x)


def main() -> None:
    from visrep.registry import methods
    folder = Path(tempfile.mkdtemp(prefix="bench_cnn_"))
    img = _image()
    for arch in NETS:
        path = _checkpoint(arch, folder)
        for imsize in IMSIZES:
            for head in ("mac", "gem", "rmac"):
                m = methods.create(head, weights=path, imsize=imsize)
                net = m.backbone()
                m.describe_one(img, net)
                t0 = time.perf_counter()
                for _ in range(3):
                    m.describe_one(img, net)
                dt = (time.perf_counter() - t0) / 3
                full = dt * (1024 / imsize) ** 2 * OXFORD5K_IMAGES     # pixels grow as imsize^2
                print(f"{arch:10s} {head:5s} imsize {imsize:4d}: {dt * 1e3:8.1f} ms/img; Oxford5k at 1024: "
                      f"~{full / 3600:.2f} h on this CPU (linear in pixels)")
    x = np.random.default_rng(0).random((2048, 32, 32)).astype(np.float32)
    from visrep.methods.cnn import pooling as P
    for name, fn in (("mac", P.mac), ("gem", lambda a: P.gem(a, 3.0)), ("rmac", P.rmac)):
        t0 = time.perf_counter()
        for _ in range(5):
            fn(x)
        print(f"pool {name:5s} (2048, 32, 32): {(time.perf_counter() - t0) / 5 * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
