"""Where torch and faiss compute: ``--device cpu | auto | cuda | cuda:N``.

The device is *how* a job runs, not *what* it computes: it is not part of a job's identity (a
record made on a GPU answers the same job on a CPU; ``--force`` re-runs), and each record says
where it ran (``provenance.device``). ``auto`` takes the first CUDA device when torch sees one,
else the CPU. An explicit ``cuda`` that torch cannot see is an error before any job starts.

Kernels take a resolved device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``) and default to the
CPU; the run context resolves the user's choice once (:meth:`visrep.context.RunContext.torch_device`),
importing torch only when a method asks for it.
"""
from __future__ import annotations

import re
import warnings

from .errors import UserError

CHOICES = ("cpu", "auto", "cuda", "cuda:N")


def check_device_name(name: str | None) -> str:
    """The device name, lower-cased, or a UserError naming the choices (no torch import)."""
    name = "cpu" if name is None else str(name).strip().lower()
    if name in ("cpu", "auto") or re.fullmatch(r"cuda(:\d+)?", name):
        return name
    raise UserError(f"device {name!r} is not one of: {', '.join(CHOICES)}")


def resolve_device(name: str | None) -> str:
    """'cpu' | 'auto' | 'cuda[:N]' -> the torch device string to use; UserError when CUDA is asked
    for and torch sees none (or not that many)."""
    name = check_device_name(name)
    if name == "cpu":
        return "cpu"
    import torch
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if name == "auto":
        return "cuda" if n else "cpu"
    index = int(name.split(":", 1)[1]) if ":" in name else 0
    if index >= n:
        built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        seen = f"{n} CUDA device(s)" if n else "no CUDA device"
        raise UserError(f"device {name!r}: torch {torch.__version__} ({built}) sees {seen}; "
                        f"run with --device cpu or --device auto")
    return name


def faiss_gpu_count() -> int:
    """GPUs faiss can use (0 with faiss-cpu)."""
    try:
        import faiss
        return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0
    except ImportError:
        return 0


def faiss_on_device(index, device: str):
    """`index` moved to the GPU of `device` when that is CUDA and faiss has GPU support (the `gpu`
    extra), else `index` itself (with a warning once when a GPU was asked for and faiss-cpu is installed)."""
    if not str(device).startswith("cuda"):
        return index
    if faiss_gpu_count() == 0:
        warnings.warn("faiss has no GPU support here (faiss-cpu): kNN search runs on the CPU; "
                      "install the `gpu` extra (faiss-gpu) for GPU search", RuntimeWarning, stacklevel=2)
        return index
    import faiss
    res = faiss.StandardGpuResources()
    gpu = faiss.index_cpu_to_gpu(res, int(device.split(":", 1)[1]) if ":" in device else 0, index)
    gpu.visrep_resources = res       # keep the resources alive as long as the index
    return gpu
