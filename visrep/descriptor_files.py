"""Readers and writers for the field's descriptor files.

- ``.fvecs`` / ``.ivecs`` / ``.bvecs`` (INRIA TEXMEX format of Jégou et al.): per vector an
  int32 dimension ``d`` then ``d`` float32 / int32 / uint8 values.
- ``.npy``: a 2-D array.
- ``.bin`` arrays of the Oxford query Hessian-affine SIFT (iavr/drvq): float64 rows, float64
  cols, then ``rows`` records of ``cols`` float32 values, each record but the first preceded
  by a float64 record length.

Every reader returns a C-contiguous (n, d) array and raises UserError naming the file when
the file is truncated, has inconsistent dimensions, or holds NaN/inf values.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from visrep.errors import UserError

_VECS = {".fvecs": np.float32, ".ivecs": np.int32, ".bvecs": np.uint8}


def read_vecs(path: str | Path) -> np.ndarray:
    """Read an fvecs/ivecs/bvecs file into an (n, d) array of float32/int32/uint8."""
    path = Path(path)
    dtype = _VECS.get(path.suffix)
    if dtype is None:
        raise UserError(f"{path}: unknown vecs extension (expected .fvecs, .ivecs or .bvecs)")
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise UserError(f"{path}: file is empty or truncated (no dimension header)")
    d = int(np.frombuffer(raw[:4], dtype="<i4")[0])
    item = np.dtype(dtype).itemsize
    rec = 4 + d * item
    if d <= 0 or len(raw) % rec:
        raise UserError(f"{path}: size {len(raw)} bytes is not a whole number of records of dimension {d} "
                        f"({rec} bytes each): truncated or not a {path.suffix} file")
    n = len(raw) // rec
    arr = np.frombuffer(raw, dtype=np.uint8).reshape(n, rec)
    dims = arr[:, :4].copy().view("<i4").ravel()
    if not np.all(dims == d):
        bad = int(np.flatnonzero(dims != d)[0])
        raise UserError(f"{path}: vector {bad} has dimension {dims[bad]}, expected {d} like vector 0")
    out = np.ascontiguousarray(arr[:, 4:]).view(np.dtype(dtype).newbyteorder("<")).astype(dtype, copy=False)
    out = out.reshape(n, d)
    _check_finite(out, path)
    return out


def write_vecs(path: str | Path, x: np.ndarray) -> None:
    """Write (n, d) `x` as fvecs/ivecs/bvecs according to the extension of `path`."""
    path = Path(path)
    dtype = _VECS[path.suffix]
    x = np.asarray(x, dtype=dtype)
    n, d = x.shape
    rec = np.empty((n, 4 + d * x.itemsize), dtype=np.uint8)
    rec[:, :4] = np.full((n, 1), d, dtype="<i4").view(np.uint8)
    rec[:, 4:] = x.astype(np.dtype(dtype).newbyteorder("<")).view(np.uint8).reshape(n, -1)
    path.write_bytes(rec.tobytes())


def read_hesaff_bin(path: str | Path) -> np.ndarray:
    """Read an iavr/drvq ``.hesaff.sift.bin`` descriptor file into (rows, cols) float32."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 16:
        raise UserError(f"{path}: truncated header (need 16 bytes, have {len(raw)})")
    rows, cols = np.frombuffer(raw[:16], dtype="<f8")
    if rows < 0 or cols <= 0 or rows != int(rows) or cols != int(cols):
        raise UserError(f"{path}: bad header rows={rows} cols={cols}")
    rows, cols = int(rows), int(cols)
    if rows == 0:
        return np.zeros((0, cols), np.float32)
    expected = 16 + rows * cols * 4 + (rows - 1) * 8
    if len(raw) != expected:
        raise UserError(f"{path}: {len(raw)} bytes, expected {expected} for {rows} x {cols} descriptors")
    body = np.frombuffer(raw, dtype=np.uint8, offset=16)
    first = body[: cols * 4].view("<f4")
    rest = body[cols * 4:].reshape(rows - 1, 8 + cols * 4)[:, 8:]
    out = np.vstack([first[None], np.ascontiguousarray(rest).view("<f4").reshape(rows - 1, cols)]).astype(np.float32)
    _check_finite(out, path)
    return out


def read_descriptors(path: str | Path) -> np.ndarray:
    """Read any supported descriptor file (by extension) into a 2-D array."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"descriptor file {path} does not exist")
    if path.suffix in _VECS:
        return read_vecs(path)
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)   # never unpickles (object arrays are refused)
        except Exception as e:  # noqa: BLE001 - a damaged header fails in many ways (ValueError, SyntaxError...)
            raise UserError(f"{path}: not a readable .npy array ({type(e).__name__}: {e})") from None
        if arr.ndim != 2:
            raise UserError(f"{path}: expected a 2-D (n, d) array, got shape {arr.shape}")
        if arr.dtype.kind == "f":
            _check_finite(arr, path)
        return np.ascontiguousarray(arr)
    if path.name.endswith(".bin"):
        return read_hesaff_bin(path)
    raise UserError(f"{path}: unsupported descriptor format (use .fvecs, .ivecs, .bvecs, .npy or .bin)")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read descriptor file {path}: {e.strerror}") from None


def _check_finite(x: np.ndarray, path: Path) -> None:
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        raise UserError(f"{path}: descriptor {bad} contains NaN or infinite values")
