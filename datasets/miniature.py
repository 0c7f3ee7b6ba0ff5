"""Miniature copies of the benchmarks' on-disk layouts, for rehearsing full-scale runs (``visrep rehearse``).

Each builder writes, under a data root, a dataset's *exact* layout -- the folder and file names its
loader reads, ground truth in the publisher's format -- with a handful of real photographs:

- the sample photographs of :mod:`visrep.datasets.sample_views` (scikit-image, scikit-learn,
  matplotlib), seen under its homography / crop / blur / illumination views, and
- the real Oxford "Graffiti" sequence from the workplace data (``localfeatures/graf``) when present:
  image 1 is a query, images 2.. are its positives (real viewpoint changes).

Images are saved under real file names: query and positive names are taken from the real ground
truth in ``../shared/data`` (``gnd_oxford5k.mat`` ..., ``gnd_roxford5k.pkl``, the miniImageNet CSVs,
the CIFAR labelled-subset files) when it is present, else from the names' published pattern.
Formats: Matlab ``.mat`` (``scipy.io.savemat``: ``feature_name`` (n, 1) cell, ``query_list`` rows
``[name, 1-based index, query name]``, ``gnd`` (1, n_q) struct ``ok``/``junk`` (1-based)/``bbx``;
INSTRE ``imlist``/``qimlist`` (1, n) cells), revisitop pickle (``imlist``, ``qimlist``, ``gnd`` list of
dicts ``easy``/``hard``/``junk``/``bbx``, 0-based), CUB-200-2011 text tables, CIFAR python batches
(``{b'data': (n, 3072) uint8, b'labels': [...]}``, pickle protocol 2), the labelled-subset files of
semi-supervised papers (``<N>_balanced_labels/00.txt``) and miniImageNet ``filename,label`` CSVs.

The miniatures are by construction not the publisher's files: a loader that verifies a declared
digest before reading (revisitop pickles, CIFAR batches) refuses them, as it must. ``visrep
rehearse`` suspends those digest checks for files under the miniature root only
(:func:`digest_checks_suspended`). Nothing here registers a plugin.
"""
from __future__ import annotations

import contextlib
import csv
import functools
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .sample_views import DISTRACTORS, OBJECTS, make_views, package_image_path, render

#: images of each dataset at full scale (database + queries not in the database; training + test for
#: labelled sets) -- what a linear estimate of full-scale time multiplies by
FULL_IMAGES = {
    "oxford5k": 5063, "paris6k": 6392, "oxford105k": 105134, "paris106k": 106392,
    "roxford5k": 4993 + 70, "rparis6k": 6322 + 70, "holidays": 1491, "instre": 27293 + 1250,
    "cub200": 11788, "cifar10": 60000, "cifar100": 60000, "miniimagenet": 60000,
    "miniimagenet-classification": 60000,
    "roxford5k-r1m": 4993 + 70 + 1001001, "rparis6k-r1m": 6322 + 70 + 1001001,
}

#: folder names of the first six CUB-200-2011 classes (classes.txt of the official archive)
CUB_CLASSES = ("001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross",
               "004.Groove_billed_Ani", "005.Crested_Auklet", "006.Least_Auklet")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass
class Miniature:
    """What a builder wrote: dataset name, data root, image count, files, and dataset-parameter values
    the miniature implies (e.g. ``labelled``: the size of its labelled subset)."""

    name: str
    root: Path
    n_images: int
    files: list = field(default_factory=list)
    implied: dict = field(default_factory=dict)
    names_from: str = ""
    n_scale: int = 0       # what size limits scale to: database images (retrieval), smallest split (labelled)

    def __post_init__(self):
        self.n_scale = self.n_scale or self.n_images


# ------------------------------------------------------------------ photographs
@functools.lru_cache(maxsize=8)
def photographs(max_side: int = 256, shared: Path | None = None) -> tuple[tuple[str, np.ndarray], ...]:
    """Real photographs (name, (H, W, 3) uint8 RGB), longest side <= `max_side`: Graffiti image 1 first
    when the workplace data has it, then the sample-views objects and distractors."""
    from .sample_views import _read_source
    out = []
    graf = _graffiti(shared, max_side)
    if graf:
        out.append(("graffiti", graf[0]))
    for pkg, fname in (*OBJECTS, *DISTRACTORS):
        out.append((Path(fname).stem, _read_source(package_image_path(pkg, fname), max_side)))
    return tuple(out)


@functools.lru_cache(maxsize=8)
def _graffiti(shared: Path | None, max_side: int) -> tuple[np.ndarray, ...] | None:
    if shared is None or not (Path(shared) / "localfeatures" / "graf" / "img1.png").exists():
        return None
    from .sample_views import _read_source
    return tuple(_read_source(Path(shared) / "localfeatures" / "graf" / f"img{i}.png", max_side) for i in range(1, 7))


def _views(img: np.ndarray, n: int, rng: np.random.Generator, name: str = "v") -> list[tuple[np.ndarray, str]]:
    """`n` transformed views (image, 'easy' | 'hard') of one photograph."""
    h, w = img.shape[:2]
    return [(render(img, v), v.difficulty) for v in make_views(0, name, w, h, rng, n)]


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def _save(path: Path, img: np.ndarray) -> Path:
    import cv2
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}")
    return path


def _box(img: np.ndarray) -> np.ndarray:
    """A query box (x1, y1, x2, y2) covering the central 80% of the image."""
    h, w = img.shape[:2]
    return np.array([0.1 * w, 0.1 * h, 0.9 * w, 0.9 * h])


@dataclass
class _RetrievalSet:
    queries: list          # (H, W, 3) photographs
    boxes: list            # (4,) boxes
    positives: list        # per query: [(image, difficulty)]
    distractors: list      # images


def _retrieval_set(n_queries: int, n_pos: int, n_distractors: int, shared, seed: int, max_side: int) -> _RetrievalSet:
    rng = np.random.default_rng(seed)
    photos = photographs(max_side, shared)
    graf = _graffiti(shared, max_side)
    queries, boxes, positives = [], [], []
    for j in range(n_queries):
        img = photos[j][1]
        queries.append(img)
        boxes.append(_box(img))
        if j == 0 and graf:   # real viewpoint changes: Graffiti images 2.. (2-3 easy, 4-6 hard)
            positives.append([(g, "easy" if k <= 3 else "hard") for k, g in enumerate(graf[1:1 + n_pos], start=2)])
        else:
            positives.append(_views(img, n_pos, rng))
    distractors = []
    for i in range(n_distractors):
        src = photos[n_queries + i % (len(photos) - n_queries)][1]
        distractors.append(_views(src, 1 + i // (len(photos) - n_queries), rng)[-1][0])
    return _RetrievalSet(queries, boxes, positives, distractors)


# ------------------------------------------------------------------ Matlab ground truth (Oxford/Paris/Holidays/INSTRE)
def _cell(names, shape) -> np.ndarray:
    c = np.empty(shape, dtype=object)
    for i, n in enumerate(names):
        c.flat[i] = str(n)
    return c


def write_matlab_gnd(path: Path, imlist: list[str], query_list: list[tuple], gnd: list[dict]) -> Path:
    """An Oxford-style .mat: ``feature_name`` (n, 1), ``query_list`` (n_q, 3 or 2) rows
    ``[name, 1-based index(, query name)]``, ``gnd`` (1, n_q) struct with ``ok``/``junk`` (k, 1) 1-based
    and, when given, ``bbx`` (1, 4) -- `gnd` holds 0-based index arrays."""
    import scipy.io
    ncol = len(query_list[0])
    ql = np.empty((len(query_list), ncol), dtype=object)
    for r, row in enumerate(query_list):
        ql[r, 0] = str(row[0])
        ql[r, 1] = np.array([[int(row[1]) + 1]], dtype=np.uint16)
        if ncol > 2:
            ql[r, 2] = str(row[2])
    fields = [f for f in ("ok", "junk", "bbx") if f in gnd[0]]
    g = np.zeros((1, len(gnd)), dtype=[(f, "O") for f in fields])
    for j, e in enumerate(gnd):
        for f in fields:
            g[0, j][f] = (np.asarray(e[f], np.float64).reshape(1, 4) if f == "bbx"
                          else (np.asarray(e[f], np.int64) + 1).astype(np.uint16).reshape(-1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {"feature_name": _cell(imlist, (len(imlist), 1)), "query_list": ql, "gnd": g})
    return path


def write_instre_gnd(path: Path, imlist: list[str], qimlist: list[str], gnd: list[dict]) -> Path:
    """``gnd_instre.mat``: ``imlist`` (1, n), ``qimlist`` (1, n_q) cells, ``gnd`` (1, n_q) struct with
    ``ok`` (1, k) 1-based and ``bbx`` (1, 4) -- `gnd` holds 0-based arrays."""
    import scipy.io
    g = np.zeros((1, len(gnd)), dtype=[("ok", "O"), ("bbx", "O")])
    for j, e in enumerate(gnd):
        g[0, j]["ok"] = (np.asarray(e["ok"], np.int64) + 1).astype(np.uint16).reshape(1, -1)
        g[0, j]["bbx"] = np.round(np.asarray(e["bbx"])).astype(np.uint16).reshape(1, 4)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {"imlist": _cell(imlist, (1, len(imlist))), "qimlist": _cell(qimlist, (1, len(qimlist))),
                                 "gnd": g})
    return path


def _real(shared, rel: str) -> Path | None:
    if shared is None:
        return None
    p = Path(shared) / "retrieval" / rel
    return p if p.exists() else None


def _pick_names(real: dict | None, qsel, n_pos: int, n_dis: int, fallback: str, key_pos=("ok",)):
    """Real names for (queries, per-query positives, per-query junk, distractors) from a real
    ground truth dict(imlist, qimlist, gnd) (0-based), or names following `fallback` % i."""
    if real is None:
        q = [fallback % (1000 * (j + 1)) for j in range(len(qsel))]
        pos = [[fallback % (1000 * (j + 1) + 1 + i) for i in range(n_pos)] for j in range(len(qsel))]
        junk = [[fallback % (1000 * (j + 1) + 100)] for j in range(len(qsel))]
        return q, pos, junk, [fallback % (90000 + i) for i in range(n_dis)], "pattern"
    im, g = real["imlist"], real["gnd"]
    q = [real["qimlist"][j] for j in qsel]
    used = set(q)
    pos, junk = [], []
    for j in qsel:
        cand = [im[i] for k in key_pos for i in g[j].get(k, ()) if im[i] not in used]
        pos.append(cand[:n_pos])
        used |= set(cand[:n_pos])
        jk = [im[i] for i in g[j].get("junk", ()) if im[i] not in used][:1]
        junk.append(jk)
        used |= set(jk)
    relevant = {im[i] for e in g for k in ("ok", "easy", "hard", "junk") for i in e.get(k, ())}
    dis = [n for n in im if n not in relevant and n not in used][:n_dis]
    if len(dis) < n_dis:    # Holidays, INSTRE: every image is some query's positive; take other queries' images
        mine = {im[i] for j in qsel for k in ("ok", "easy", "hard", "junk") for i in g[j].get(k, ())}
        mine |= set(real["qimlist"])
        dis += [n for n in im if n not in mine and n not in used and n not in dis][:n_dis - len(dis)]
    return q, pos, junk, dis, "real ground truth"


def _retrieval_layout(kind: str, root: Path, shared, n_queries=3, n_pos=4, n_dis=6, seed=0, max_side=256):
    """Images + ground-truth names of one retrieval miniature; returns (db names, db images, query names,
    query images, per-query dict(pos, easy, hard, junk indices, bbx), names_from)."""
    from .matlab_gnd import read_instre_gnd, read_matlab_gnd
    from .revisitop import read_revisitop_pickle
    real_file = {"oxford5k": "oxford5k/gnd_oxford5k.mat", "paris6k": "paris6k/gnd_paris6k.mat",
                 "oxford105k": "oxford105k/gnd_Oxford105k.mat", "paris106k": "paris106k/gnd_Paris106k.mat",
                 "holidays": "holidays/gnd_holidays.mat", "instre": "instre/gnd_instre.mat",
                 "roxford5k": "roxford5k/gnd_roxford5k.pkl", "rparis6k": "rparis6k/gnd_rparis6k.pkl"}[kind]
    path = _real(shared, real_file)
    real = None
    if path is not None:
        real = (read_instre_gnd(path) if kind == "instre" else read_revisitop_pickle(path) if path.suffix == ".pkl"
                else read_matlab_gnd(path))
    # queries of different objects: Oxford/Paris 5 queries per landmark, RevOP 5 per landmark, INSTRE 5 per object
    step = {"holidays": 1}.get(kind, 5)
    qsel = [j * step for j in range(n_queries)]
    keys = ("easy", "hard") if kind in ("roxford5k", "rparis6k") else ("ok",)
    fallback = {"holidays": "%06d", "instre": "INSTRE-S1/%06d.jpg"}.get(kind, f"{kind}_%06d")
    qn, posn, junkn, disn, names_from = _pick_names(real, qsel, n_pos, n_dis, fallback, keys)
    rs = _retrieval_set(n_queries, n_pos, n_dis, shared, seed, max_side)
    return qn, posn, junkn, disn, rs, names_from, (real["qnames"] if real and "qnames" in real else None), qsel


def build_retrieval(kind: str, root: str | Path, shared=None, n_queries: int = 3, n_pos: int = 4, n_dis: int = 6,
                    seed: int = 0, max_side: int = 256) -> Miniature:
    """A miniature of `kind` (oxford5k, paris6k, oxford105k, paris106k, holidays, instre, roxford5k,
    rparis6k) under `root`: ``n_queries`` queries, ``n_pos`` positives each (the last one of the first
    query also listed as junk where the format has junk), ``n_dis`` distractors."""
    root = Path(root)
    qn, posn, junkn, disn, rs, names_from, qnames, qsel = _retrieval_layout(kind, root, shared, n_queries, n_pos,
                                                                          n_dis, seed, max_side)
    files: list[Path] = []
    entries: dict[str, np.ndarray] = {}          # database name -> image
    for j in range(n_queries):
        for name, (img, _) in zip(posn[j], rs.positives[j]):
            entries[name] = img
        for name in junkn[j]:                    # junk: a strongly changed view of the query object
            entries[name] = _views(rs.queries[j], 7, np.random.default_rng(seed + j))[-1][0]
    for name, img in zip(disn, rs.distractors):
        entries[name] = img
    query_in_db = kind in ("oxford5k", "paris6k", "oxford105k", "paris106k", "holidays")
    if query_in_db:
        for j in range(n_queries):
            entries[qn[j]] = rs.queries[j]
    imlist = sorted(entries) if kind != "instre" else list(entries)
    pos_idx = {n: i for i, n in enumerate(imlist)}
    diff = [{posn[j][i]: rs.positives[j][i][1] for i in range(len(posn[j]))} for j in range(n_queries)]
    gnd = []
    for j in range(n_queries):
        ok = [pos_idx[n] for n in posn[j]]
        junk = [pos_idx[n] for n in junkn[j]]
        if kind == "holidays":                       # the query is its own junk (the Holidays .mat)
            gnd.append({"ok": np.array(ok), "junk": np.array([pos_idx[qn[j]]])})
        elif kind in ("roxford5k", "rparis6k"):
            gnd.append({"easy": [pos_idx[n] for n in posn[j] if diff[j][n] == "easy"],
                        "hard": [pos_idx[n] for n in posn[j] if diff[j][n] == "hard"],
                        "junk": junk, "bbx": [float(v) for v in rs.boxes[j]]})
        elif kind == "instre":
            gnd.append({"ok": np.array(ok), "bbx": rs.boxes[j]})
        else:                                        # Oxford/Paris: the query image is one of its positives
            gnd.append({"ok": np.array(sorted(ok + [pos_idx[qn[j]]])), "junk": np.array(junk, np.int64),
                        "bbx": rs.boxes[j]})
    folder = root / kind
    if kind == "instre":
        for n in imlist:
            files.append(_save(folder / n, entries[n]))
        for j in range(n_queries):
            files.append(_save(folder / qn[j], rs.queries[j]))
        files.append(write_instre_gnd(folder / "gnd_instre.mat", imlist, qn, gnd))
    else:
        for n in imlist:
            files.append(_save(folder / "jpg" / f"{n}.jpg", entries[n]))
        if kind in ("roxford5k", "rparis6k"):
            for j in range(n_queries):
                files.append(_save(folder / "jpg" / f"{qn[j]}.jpg", rs.queries[j]))
            p = folder / f"gnd_{kind}.pkl"
            with open(p, "wb") as f:
                pickle.dump({"gnd": gnd, "imlist": imlist, "qimlist": qn}, f, protocol=2)
            files.append(p)
        else:
            gname = {"oxford105k": "gnd_Oxford105k.mat", "paris106k": "gnd_Paris106k.mat"}.get(kind, f"gnd_{kind}.mat")
            rows = [(qn[j], pos_idx[qn[j]]) if kind == "holidays"
                    else (qn[j], pos_idx[qn[j]], qnames[qsel[j]] if qnames else f"{qn[j]}_q")
                    for j in range(n_queries)]
            files.append(write_matlab_gnd(folder / gname, imlist, rows, gnd))
    n_img = len(imlist) + (0 if query_in_db else n_queries)
    return Miniature(kind, root, n_img, files, names_from=names_from, n_scale=len(imlist))


# ------------------------------------------------------------------ labelled sets
def _class_images(n_classes: int, per_class: int, size: tuple[int, int], shared, seed: int) -> list[list[np.ndarray]]:
    """Per class (one real photograph each) `per_class` views resized to `size` (W, H)."""
    rng = np.random.default_rng(seed)
    photos = photographs(max(size) * 3, shared)
    out = []
    for c in range(n_classes):
        img = photos[c % len(photos)][1]
        vs = [img] + [v for v, _ in _views(img, per_class - 1, rng)] if per_class > 1 else [img]
        out.append([_resize(v, size) for v in vs[:per_class]])
    return out


def build_cub(root: str | Path, shared=None, per_class: int = 4, seed: int = 0) -> Miniature:
    """``CUB_200_2011/`` with images.txt, image_class_labels.txt, train_test_split.txt, classes.txt and
    images/<class folder>/<file>.jpg: six classes (1-3 train, 4-6 test in the metric-learning split)."""
    base = Path(root) / "CUB_200_2011"
    imgs = _class_images(len(CUB_CLASSES), per_class, (96, 96), shared, seed)
    lines_im, lines_lab, lines_split, files = [], [], [], []
    iid = 0
    for c, folder in enumerate(CUB_CLASSES, 1):
        species = folder.split(".", 1)[1]
        for k, img in enumerate(imgs[c - 1]):
            iid += 1
            rel = f"{folder}/{species}_{k + 1:04d}_{iid}.jpg"
            files.append(_save(base / "images" / rel, img))
            lines_im.append(f"{iid} {rel}")
            lines_lab.append(f"{iid} {c}")
            lines_split.append(f"{iid} {int(k % 2 == 0)}")
    for name, lines in (("images.txt", lines_im), ("image_class_labels.txt", lines_lab),
                        ("train_test_split.txt", lines_split),
                        ("classes.txt", [f"{c} {f}" for c, f in enumerate(CUB_CLASSES, 1)])):
        (base / name).write_text("\n".join(lines) + "\n")
        files.append(base / name)
    return Miniature("cub200", Path(root), iid, files, names_from="CUB class folders 001-006", n_scale=iid // 2)


def _cifar_names(dataset: str, shared) -> tuple[list[str], str]:
    """Class names in label order: the sorted class names of the real labelled-subset files (CIFAR's
    label order is alphabetical), else the published CIFAR-10 list / placeholders."""
    if shared is not None:
        base = Path(shared) / "splits" / "ssl_labels" / dataset
        files = sorted(base.glob("*_balanced_labels/00.txt"))
        if files:
            names = sorted({ln.split()[1] for ln in files[0].read_text().splitlines() if ln.strip()})
            return names, f"{files[0]}"
    if dataset == "cifar10":
        return list(CIFAR10_CLASSES), "published CIFAR-10 class list"
    return [f"class_{i:02d}" for i in range(100)], "placeholder names"


def build_cifar(dataset: str, root: str | Path, shared=None, n_present: int = 10, train_per_class: int = 4,
                test_per_class: int = 2, labelled_per_class: int = 2, seed: int = 0) -> Miniature:
    """``cifar-10-batches-py/`` (data_batch_1..5, test_batch, batches.meta) or ``cifar-100-python/``
    (train, test, meta) as python pickles, + ``ssl_labels/<dataset>/<N>_balanced_labels/00.txt``.
    `n_present` classes (spread over the label range) have images."""
    root = Path(root)
    names, names_from = _cifar_names(dataset, shared)
    c10 = dataset == "cifar10"
    folder = root / ("cifar-10-batches-py" if c10 else "cifar-100-python")
    folder.mkdir(parents=True, exist_ok=True)
    present = np.linspace(0, len(names) - 1, n_present).round().astype(int)
    imgs = _class_images(n_present, train_per_class + test_per_class, (32, 32), shared, seed)
    tr_x, tr_y, te_x, te_y = [], [], [], []
    for c, cls in enumerate(present):
        for k, img in enumerate(imgs[c]):
            row = img.transpose(2, 0, 1).reshape(-1)       # 1024 R, 1024 G, 1024 B (row-major)
            (tr_x if k < train_per_class else te_x).append(row)
            (tr_y if k < train_per_class else te_y).append(int(cls))
    order = np.random.default_rng(seed).permutation(len(tr_y))
    tr_x, tr_y = np.stack(tr_x)[order], np.array(tr_y)[order]
    te_x, te_y = np.stack(te_x), np.array(te_y)
    label_key = b"labels" if c10 else b"fine_labels"
    files = []

    def dump(name, x, y, batch_label):
        d = {b"batch_label": batch_label.encode(), label_key: [int(v) for v in y], b"data": np.ascontiguousarray(x),
             b"filenames": [f"{i}_{names[v]}.png".encode() for i, v in enumerate(y)]}
        if not c10:
            d[b"coarse_labels"] = [int(v) // 5 for v in y]
        with open(folder / name, "wb") as f:
            pickle.dump(d, f, protocol=2)
        files.append(folder / name)

    if c10:
        parts = np.array_split(np.arange(len(tr_y)), 5)
        for i, p in enumerate(parts, 1):
            dump(f"data_batch_{i}", tr_x[p], tr_y[p], f"training batch {i} of 5")
        dump("test_batch", te_x, te_y, "testing batch 1 of 1")
        meta = {b"label_names": [n.encode() for n in names], b"num_cases_per_batch": len(parts[0]), b"num_vis": 3072}
        meta_name = "batches.meta"
    else:
        dump("train", tr_x, tr_y, "training batch 1 of 1")
        dump("test", te_x, te_y, "testing batch 1 of 1")
        meta = {b"fine_label_names": [n.encode() for n in names],
                b"coarse_label_names": [f"superclass_{i}".encode() for i in range(20)]}
        meta_name = "meta"
    with open(folder / meta_name, "wb") as f:
        pickle.dump(meta, f, protocol=2)
    files.append(folder / meta_name)
    lab = []
    for cls in present:
        idx = np.flatnonzero(tr_y == cls)[:labelled_per_class]
        lab += [f"{i}_{names[cls]}.png {names[cls]}" for i in idx]
    n_lab = len(lab)
    p = root / "ssl_labels" / dataset / f"{n_lab}_balanced_labels" / "00.txt"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("\n".join(lab) + "\n")
    files.append(p)
    return Miniature(dataset, root, len(tr_y) + len(te_y), files, implied={"labelled": n_lab, "label_split": 0},
                     names_from=names_from, n_scale=len(te_y))


def build_miniimagenet(root: str | Path, shared=None, n_classes: int = 5,
                       per_split: dict | None = None, seed: int = 0) -> Miniature:
    """``miniimagenet/{train,val,test}.csv`` (``filename,label``) + ``images/<filename>`` (84x84 JPEG):
    `n_classes` classes per split, rows taken from the real Ravi split CSVs when present."""
    per_split = per_split or {"train": 4, "val": 2, "test": 12}
    base = Path(root) / "miniimagenet"
    base.mkdir(parents=True, exist_ok=True)
    files, n, names_from = [], 0, "pattern n<wnid><index>.jpg"
    for s_i, (split, m) in enumerate(per_split.items()):
        real = Path(shared) / "splits" / "miniimagenet_ravi" / f"{split}.csv" if shared is not None else None
        rows: list[tuple[str, str]] = []
        if real is not None and real.exists():
            from .miniimagenet import read_split_csv
            fn, lab = read_split_csv(real)
            for w in list(dict.fromkeys(lab))[:n_classes]:
                rows += [(f, lab_) for f, lab_ in zip(fn, lab) if lab_ == w][:m]
            names_from = "real Ravi split CSVs"
        else:
            for c in range(n_classes):
                w = f"n{1000000 * (s_i + 1) + c:08d}"
                rows += [(f"{w}{k + 1:08d}.jpg", w) for k in range(m)]
        imgs = _class_images(n_classes, m, (84, 84), shared, seed + s_i)
        wnids = list(dict.fromkeys(r[1] for r in rows))
        count: dict[str, int] = {}
        for f, w in rows:
            c = wnids.index(w)
            k = count.get(w, 0)
            count[w] = k + 1
            files.append(_save(base / "images" / f, imgs[(c + 5 * s_i) % len(imgs)][k]))
        with open(base / f"{split}.csv", "w", newline="") as fh:
            wr = csv.writer(fh)
            wr.writerow(["filename", "label"])
            wr.writerows(rows)
        files.append(base / f"{split}.csv")
        n += len(rows)
    return Miniature("miniimagenet", Path(root), n, files, names_from=names_from,
                     n_scale=n_classes * min(per_split.values()))


def build_miniimagenet_ssl(root: str | Path, shared=None, n_classes: int = 5, train_per_class: int = 4,
                           test_per_class: int = 2, labelled_per_class: int = 2, seed: int = 0) -> Miniature:
    """``miniimagenet-ssl/{train,test}/<wnid>/image_<N>.JPEG`` (84x84, LP-DeepSSL's archives) +
    ``ssl_labels/miniimagenet/<N>_balanced_labels/00.txt``: `n_classes` classes, with wnids and the
    labelled images' names taken from the real labelled-subset file when present."""
    base = Path(root) / "miniimagenet-ssl"
    real = sorted((Path(shared) / "splits" / "ssl_labels" / "miniimagenet").glob("*_balanced_labels/00.txt")) \
        if shared is not None else []
    wanted: dict[str, list[str]] = {}
    names_from = "pattern n<wnid>/image_<N>.JPEG"
    if real:
        for line in real[0].read_text().splitlines():
            if line.strip():
                f, w = line.split()
                wanted.setdefault(w, []).append(f)
        names_from = f"{real[0]}"
    wnids = list(wanted)[:n_classes] or [f"n{1000000 + c:08d}" for c in range(n_classes)]
    imgs = _class_images(n_classes, train_per_class + test_per_class, (84, 84), shared, seed)
    files, lab = [], []
    for c, w in enumerate(wnids):
        real_names = wanted.get(w, [])
        block = int(real_names[0].split("_")[1].split(".")[0]) // 600 if real_names else c
        start = 600 * block + 550                          # names not in the real file: its class's last numbers
        for k, img in enumerate(imgs[c]):
            train = k < train_per_class
            name = real_names[k] if train and k < len(real_names) else f"image_{start + k:05d}.JPEG"
            files.append(_save(base / ("train" if train else "test") / w / name, img))
            if train and k < labelled_per_class:
                lab.append(f"{name} {w}")
    p = Path(root) / "ssl_labels" / "miniimagenet" / f"{len(lab)}_balanced_labels" / "00.txt"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("\n".join(lab) + "\n")
    files.append(p)
    return Miniature("miniimagenet-classification", Path(root), n_classes * (train_per_class + test_per_class),
                     files, implied={"labelled": len(lab), "label_split": 0}, names_from=names_from,
                     n_scale=n_classes * test_per_class)


def build_r1m(kind: str, root: str | Path, shared=None, n_distractors: int = 6, seed: int = 0) -> Miniature:
    """A revisited miniature (`kind` = roxford5k / rparis6k, :func:`build_retrieval`) + ``revisitop1m/``:
    `n_distractors` views of real photographs under R1M-style names (``ab/cd/abcd...``, as in
    revisitop1m.txt) in ``jpg/`` and the list file; for the tables' ``<kind>-r1m`` datasets."""
    import hashlib
    mini = build_retrieval(kind, root, shared, seed=seed)
    base = Path(root) / "revisitop1m"
    photos = photographs(256, shared)
    rng = np.random.default_rng(seed + 101)
    names, files = [], list(mini.files)
    for i in range(n_distractors):
        h = hashlib.sha1(f"r1m-{i}".encode()).hexdigest()[:31]
        names.append(f"{h[:2]}/{h[2:4]}/{h}")
        img = photos[-1 - i % len(photos)][1]
        files.append(_save(base / "jpg" / f"{names[-1]}.jpg", _views(img, 1, rng)[0][0]))
    (base / "revisitop1m.txt").write_text("".join(n + "\n" for n in names))
    files.append(base / "revisitop1m.txt")
    return Miniature(f"{kind}-r1m", Path(root), mini.n_images + n_distractors, files,
                     names_from=mini.names_from + "; R1M names in the revisitop1m.txt style",
                     n_scale=mini.n_scale + n_distractors)


RETRIEVAL = ("oxford5k", "paris6k", "oxford105k", "paris106k", "holidays", "instre", "roxford5k", "rparis6k")
BUILDERS = {**{k: functools.partial(build_retrieval, k) for k in RETRIEVAL},
            **{f"{k}-r1m": functools.partial(build_r1m, k) for k in ("roxford5k", "rparis6k")},
            "cub200": build_cub,
            "cifar10": lambda root, shared=None: build_cifar("cifar10", root, shared),
            "cifar100": lambda root, shared=None: build_cifar("cifar100", root, shared),
            "miniimagenet": build_miniimagenet,
            "miniimagenet-classification": build_miniimagenet_ssl}


def build(name: str, root: str | Path, shared=None) -> Miniature:
    """The miniature of dataset `name` under the data root `root` (KeyError: no builder)."""
    return BUILDERS[name](root, shared)


@contextlib.contextmanager
def digest_checks_suspended(root: str | Path):
    """While active, :func:`visrep.datasets.download.read_pickle` skips the declared-digest check for
    files under `root` (a miniature is not the publisher's file); every other file is still checked,
    and every pickle is still read with the restricted unpickler."""
    from . import download
    original = download.check_known
    root = Path(root).resolve()

    def check_known(dataset, data_root, path):
        try:
            if Path(path).resolve().is_relative_to(root):
                return "miniature"
        except OSError:
            pass
        return original(dataset, data_root, path)

    download.check_known = check_known
    try:
        yield
    finally:
        download.check_known = original
