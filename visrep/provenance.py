"""Where a result came from: git commit and dirty flag, library versions, CPU and GPU."""
from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

_LIBRARIES = ("numpy", "scipy", "torch", "torchvision", "faiss-cpu", "faiss-gpu",
              "opencv-python-headless", "opencv-python", "pandas", "scikit-learn")


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def git_state() -> dict:
    """Commit and dirty flag of the checkout visrep runs from (None outside a git checkout)."""
    here = Path(__file__).resolve().parent
    commit = _git(["rev-parse", "HEAD"], here)
    if commit is None:
        return {"commit": None, "dirty": None}
    status = _git(["status", "--porcelain", "--untracked-files=no"], here)
    return {"commit": commit, "dirty": bool(status)}


@functools.lru_cache(maxsize=1)
def library_versions() -> dict:
    versions = {"python": sys.version.split()[0]}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_model() -> str | None:
    """Name of the first CUDA device when torch is already imported and sees one, else None."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:
        return None


def provenance() -> dict:
    from . import __version__
    return {
        "visrep": __version__,
        **git_state(),
        "versions": library_versions(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu_model(),
        "platform": platform.platform(),
        "hostname": platform.node(),
    }
