"""Matlab ground-truth files of Oxford5k, Paris6k, Oxford105k, Paris106k and Holidays.

Layout (``gnd_oxford5k.mat`` and friends): ``feature_name`` (n, 1) cell of image names in
database order; ``query_list`` rows ``[query image name, 1-based database index, query
name]`` (Holidays: first two only); ``gnd`` (1, n_q) struct with ``ok``, ``junk`` (1-based)
and, for Oxford/Paris, ``bbx`` (x1, y1, x2, y2). Everything is returned 0-based.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from visrep.errors import UserError


def _cell_str(x) -> str:
    while isinstance(x, np.ndarray):
        if x.size == 0:
            return ""
        x = x.ravel()[0]
    return str(x)


def _cell_int(x) -> int:
    return int(np.asarray(x).ravel()[0])


def load_mat(path: str | Path) -> dict:
    """scipy.io.loadmat with a clear error for missing, truncated or non-Matlab files."""
    import scipy.io

    path = Path(path)
    if not path.exists():
        raise UserError(f"ground-truth file {path} does not exist")
    try:
        return scipy.io.loadmat(str(path))
    except Exception as e:  # scipy raises ValueError/TypeError/MatReadError for damaged files
        raise UserError(f"{path}: not a readable Matlab file ({type(e).__name__}: {e})") from None


def _gnd_entries(gnd_struct, n_queries: int, n_db: int, path: Path) -> list[dict]:
    """The Matlab ``gnd`` struct array -> per query {'ok', 'junk' (0-based int64), 'bbx' if present}.

    Missing ``junk`` fields give empty arrays (INSTRE); indices outside 1..n_db are an error.
    """
    gstruct = gnd_struct.ravel()
    if len(gstruct) != n_queries:
        raise UserError(f"{path}: {len(gstruct)} gnd entries for {n_queries} queries")
    fields = gstruct.dtype.names or ()
    if "ok" not in fields:
        raise UserError(f"{path}: gnd entries lack the 'ok' field (fields: {', '.join(fields)})")
    gnd = []
    for j, g in enumerate(gstruct):
        entry = {}
        for key in ("ok", "junk"):
            if key in fields:
                idx = np.asarray(g[key], dtype=np.int64).ravel() - 1
                if idx.size and (idx.min() < 0 or idx.max() >= n_db):
                    raise UserError(f"{path}: query {j} '{key}' index out of range 1..{n_db}")
                entry[key] = idx
            else:
                entry[key] = np.zeros(0, np.int64)
        if "bbx" in fields and np.asarray(g["bbx"]).size == 4:
            entry["bbx"] = np.asarray(g["bbx"], dtype=np.float64).ravel()
        gnd.append(entry)
    return gnd


def read_matlab_gnd(path: str | Path) -> dict:
    """Read an Oxford/Paris/Holidays-style .mat -> dict(imlist, qimlist, qidx, gnd) with 0-based indices."""
    path = Path(path)
    m = load_mat(path)
    for key in ("feature_name", "query_list", "gnd"):
        if key not in m:
            raise UserError(f"{path}: missing field '{key}' (expected feature_name, query_list, gnd)")
    imlist = [_cell_str(x) for x in m["feature_name"].ravel()]
    qlist = m["query_list"]
    if qlist.ndim != 2 or qlist.shape[1] < 2:
        raise UserError(f"{path}: query_list must have rows [image name, 1-based index, ...], got shape {qlist.shape}")
    qimlist = [_cell_str(r[0]) for r in qlist]
    qidx = np.array([_cell_int(r[1]) - 1 for r in qlist], dtype=np.int64)
    qnames = [_cell_str(r[2]) for r in qlist] if qlist.shape[1] > 2 else list(qimlist)
    n = len(imlist)
    gnd = _gnd_entries(m["gnd"], len(qimlist), n, path)
    if qidx.size and (qidx.min() < 0 or qidx.max() >= n):
        raise UserError(f"{path}: query_list index out of range 1..{n}")
    return {"imlist": imlist, "qimlist": qimlist, "qnames": qnames, "qidx": qidx, "gnd": gnd}


def read_instre_gnd(path: str | Path) -> dict:
    """Read ``gnd_instre.mat`` (Iscen et al. split) -> dict(imlist, qimlist, gnd), 0-based.

    Layout: ``imlist`` (1, 27293) and ``qimlist`` (1, 1250) cells of relative image paths
    (``INSTRE-S1/01a_canada_book/001.jpg``; queries are not in the database), ``gnd`` (1, 1250)
    struct with ``ok`` (1-based database indices) and ``bbx`` (x1, y1, x2, y2) query box.
    """
    path = Path(path)
    m = load_mat(path)
    for key in ("imlist", "qimlist", "gnd"):
        if key not in m:
            raise UserError(f"{path}: missing field '{key}' (expected imlist, qimlist, gnd)")
    imlist = [_cell_str(x) for x in m["imlist"].ravel()]
    qimlist = [_cell_str(x) for x in m["qimlist"].ravel()]
    gnd = _gnd_entries(m["gnd"], len(qimlist), len(imlist), path)
    return {"imlist": imlist, "qimlist": qimlist, "gnd": gnd}
