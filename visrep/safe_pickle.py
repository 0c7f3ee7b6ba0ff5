"""Unpickling that runs no code: only containers, numbers, strings and numpy/scipy arrays.

A pickle can name any importable callable and call it while loading (``os.system`` included).
Every pickle visrep reads -- ground truth (revisitop ``gnd_*.pkl``), dataset batches (CIFAR,
miniImageNet), its own cache entries -- goes through :func:`load`, whose unpickler resolves only
the globals in :data:`ALLOWED` (builtins containers and scalars, numpy arrays/dtypes/scalars,
scipy.sparse matrices, and visrep's own plain dataclasses listed there). Anything else is a
:class:`UnsafePickleError` naming the file and the global it asked for; nothing is called.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

from .errors import UserError


class UnsafePickleError(UserError):
    """A pickle asked for a global that is not on the allowlist (it could run code)."""


#: (module, name) pairs a pickle may refer to.
ALLOWED: frozenset[tuple[str, str]] = frozenset({
    ("builtins", n) for n in ("dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "str",
                              "bytes", "bytearray", "bool", "slice", "range", "NoneType", "object")
} | {
    ("collections", "OrderedDict"), ("collections", "defaultdict"), ("_codecs", "encode"),
    ("copyreg", "_reconstructor"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.multiarray", "scalar"), ("numpy", "core"), ("numpy.dtypes", "Float32DType"),
    ("numpy.dtypes", "Float64DType"), ("numpy.dtypes", "Int64DType"), ("numpy.dtypes", "Int32DType"),
    ("numpy.dtypes", "UInt8DType"), ("numpy.dtypes", "UInt64DType"), ("numpy.dtypes", "BoolDType"),
    ("numpy.dtypes", "Int8DType"), ("numpy.dtypes", "Int16DType"), ("numpy.dtypes", "UInt16DType"),
    ("numpy.dtypes", "UInt32DType"), ("numpy.dtypes", "Float16DType"), ("numpy.dtypes", "StrDType"),
    ("numpy.dtypes", "BytesDType"), ("numpy.dtypes", "ObjectDType"),
    ("scipy.sparse._csr", "csr_matrix"), ("scipy.sparse._csc", "csc_matrix"), ("scipy.sparse._coo", "coo_matrix"),
    ("scipy.sparse._csr", "csr_array"), ("scipy.sparse._csc", "csc_array"), ("scipy.sparse._coo", "coo_array"),
    ("scipy.sparse.csr", "csr_matrix"), ("scipy.sparse.csc", "csc_matrix"), ("scipy.sparse.coo", "coo_matrix"),
    # visrep's own cached values: plain dataclasses of arrays (no __reduce__ of their own)
    ("visrep.methods.local.vocabularies", "Vocabulary"),
    ("visrep.methods.manifolds.knn_graph", "Graph"),
})


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, f, where: str, encoding: str = "ASCII"):
        super().__init__(f, encoding=encoding)
        self.where = where

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED:
            raise UnsafePickleError(f"{self.where}: the pickle asks for {module}.{name}, which visrep does not "
                                    f"load (only containers, numbers, strings and arrays); the file is not "
                                    f"what it claims to be or was made by other software: nothing was run")
        return super().find_class(module, name)


def loads(data: bytes, where: str = "pickle", encoding: str = "ASCII"):
    """Unpickle `data` with the allowlist (``encoding='latin1'`` for Python 2 pickles such as CIFAR)."""
    u = _RestrictedUnpickler(io.BytesIO(data), where, encoding)
    try:
        return u.load()
    except UnsafePickleError:
        raise
    except Exception as e:
        raise UserError(f"{where}: not a readable pickle ({type(e).__name__}: {e})") from None


def load(path: str | Path, encoding: str = "ASCII"):
    """Unpickle the file at `path` with the allowlist (see :func:`loads`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {path}: {e}") from None
    return loads(data, str(path), encoding)
