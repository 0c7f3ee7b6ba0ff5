"""Property-based fuzzing of every loader that reads a file: random bytes and truncated real
files give a parsed result or a UserError / MissingDataError naming the problem, never a
traceback of another kind (and never code run from the data)."""
from __future__ import annotations

import gzip
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from visrep.datasets.cifar import read_cifar_batch
from visrep.datasets.cub import read_cub
from visrep.datasets.matlab_gnd import read_instre_gnd, read_matlab_gnd
from visrep.datasets.miniimagenet import read_split_csv
from visrep.datasets.mnist import read_idx
from visrep.datasets.revisitop import read_revisitop_pickle
from visrep.datasets.ssl_splits import read_label_file

from visrep.context import shared_data_dir
from visrep.descriptor_files import read_descriptors, write_vecs
from visrep.errors import UserError

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
SHARED = shared_data_dir()


def _outcome(reader, name: str, data: bytes):
    """Write `data` as `name` in a fresh folder and read it: a value or a UserError, nothing else."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        try:
            return reader(path)
        except UserError:        # MissingDataError is a UserError
            return None


def _good_pickle() -> bytes:
    gnd = [{"easy": [0, 1], "hard": [2], "junk": [3], "bbx": [0.0, 0.0, 5.0, 5.0]}, {"easy": [4], "hard": [],
                                                                                   "junk": []}]
    return pickle.dumps({"imlist": [f"im{i}" for i in range(6)], "qimlist": ["q0", "q1"], "gnd": gnd})


def _good_cifar() -> bytes:
    return pickle.dumps({b"data": np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072), b"labels": [1, 2]},
                        protocol=2)


def _good_mat(kind: str) -> bytes:
    real = {"oxford": "retrieval/oxford5k/gnd_oxford5k.mat", "instre": "retrieval/instre/gnd_instre.mat",
            "holidays": "retrieval/holidays/gnd_holidays.mat"}[kind]
    if SHARED is not None and (SHARED / real).exists():
        return (SHARED / real).read_bytes()
    import io

    import scipy.io
    buf = io.BytesIO()
    gnd = np.zeros((1, 1), dtype=[("ok", "O"), ("junk", "O"), ("bbx", "O")])
    gnd[0, 0] = (np.array([[1, 2]]), np.array([[3]]), np.array([[0.0, 0.0, 4.0, 4.0]]))
    if kind == "instre":
        scipy.io.savemat(buf, {"imlist": np.array([["a", "b", "c"]], dtype=object),
                               "qimlist": np.array([["q"]], dtype=object), "gnd": gnd})
    else:
        scipy.io.savemat(buf, {"feature_name": np.array([["a"], ["b"], ["c"]], dtype=object),
                               "query_list": np.array([["a", 1.0]], dtype=object), "gnd": gnd})
    return buf.getvalue()


def _good_idx() -> bytes:
    x = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    return bytes([0, 0, 8, 3]) + np.array(x.shape, ">i4").tobytes() + x.tobytes()


def _good_fvecs() -> bytes:
    with tempfile.TemporaryDirectory() as d:
        write_vecs(Path(d) / "a.fvecs", np.arange(12, dtype=np.float32).reshape(3, 4))
        return (Path(d) / "a.fvecs").read_bytes()


def _good_npy() -> bytes:
    import io
    buf = io.BytesIO()
    np.save(buf, np.ones((3, 4), np.float32))
    return buf.getvalue()


def _good_bin() -> bytes:
    rows, cols = 3, 4
    out = np.array([rows, cols], "<f8").tobytes() + np.ones(cols, "<f4").tobytes()
    for _ in range(rows - 1):
        out += np.array([cols * 4], "<f8").tobytes() + np.ones(cols, "<f4").tobytes()
    return out


def _cub_reader(table: str):
    good = {"images.txt": "1 001.A/a.jpg\n2 002.B/b.jpg\n", "image_class_labels.txt": "1 1\n2 2\n",
            "train_test_split.txt": "1 1\n2 0\n", "classes.txt": "1 001.A\n2 002.B\n"}

    def read(path: Path):
        for name, text in good.items():
            if name != table:
                (path.parent / name).write_text(text)
        return read_cub(path.parent)
    return read


def _weights_reader(path: Path):
    pytest.importorskip("torch")
    from visrep.methods.attacks.mnist_models import load_model
    return load_model("clean", path)


# (reader, file name, a well-formed file's bytes)
LOADERS = {
    "fvecs": (read_descriptors, "a.fvecs", _good_fvecs),
    "ivecs": (read_descriptors, "a.ivecs", lambda: _good_fvecs()),
    "bvecs": (read_descriptors, "a.bvecs", lambda: np.array([4], "<i4").tobytes() + bytes(range(4))),
    "npy": (read_descriptors, "a.npy", _good_npy),
    "hesaff-bin": (read_descriptors, "q.hesaff.sift.bin", _good_bin),
    "revisitop-pkl": (read_revisitop_pickle, "gnd_roxford5k.pkl", _good_pickle),
    "oxford-mat": (read_matlab_gnd, "gnd_oxford5k.mat", lambda: _good_mat("oxford")),
    "holidays-mat": (read_matlab_gnd, "gnd_holidays.mat", lambda: _good_mat("holidays")),
    "instre-mat": (read_instre_gnd, "gnd_instre.mat", lambda: _good_mat("instre")),
    "mnist-idx": (read_idx, "t10k-images-idx3-ubyte", _good_idx),
    "mnist-idx-gz": (read_idx, "t10k-images-idx3-ubyte.gz", lambda: gzip.compress(_good_idx())),
    "cifar-batch": (read_cifar_batch, "test_batch", _good_cifar),
    "cub-images": (_cub_reader("images.txt"), "CUB_200_2011/images.txt", lambda: b"1 001.A/a.jpg\n2 002.B/b.jpg\n"),
    "cub-labels": (_cub_reader("image_class_labels.txt"), "CUB_200_2011/image_class_labels.txt", lambda: b"1 1\n2 2\n"),
    "cub-classes": (_cub_reader("classes.txt"), "CUB_200_2011/classes.txt", lambda: b"1 001.A\n2 002.B\n"),
    "miniimagenet-csv": (read_split_csv, "test.csv", lambda: b"filename,label\nn01_1.jpg,n01\nn02_1.jpg,n02\n"),
    "ssl-labels": (read_label_file, "00.txt", lambda: b"0_cat.png cat\n1_dog.png dog\n"),
    "mnist-weights": (_weights_reader, "w.pt", lambda: b"PK\x03\x04" + b"\x00" * 30),
}


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_well_formed_file_parses(kind):
    reader, name, good = LOADERS[kind]
    if kind == "mnist-weights":
        pytest.skip("no well-formed weights fixture here (tests/test_attacks_mnist_models.py has them)")
    assert _outcome(reader, name, good()) is not None


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_random_bytes(kind):
    reader, name, _ = LOADERS[kind]

    @FUZZ
    @given(st.binary(max_size=600))
    def check(data):
        _outcome(reader, name, data)
    check()


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_truncated_and_flipped(kind):
    reader, name, good = LOADERS[kind]
    raw = good()

    @FUZZ
    @given(st.integers(0, len(raw)), st.integers(0, max(len(raw) - 1, 0)), st.integers(0, 255))
    def check(cut, where, value):
        _outcome(reader, name, raw[:cut])
        flipped = bytearray(raw)
        if flipped:
            flipped[where] = value
        _outcome(reader, name, bytes(flipped))
    check()
