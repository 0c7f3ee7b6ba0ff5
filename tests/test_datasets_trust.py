"""No code from data: hostile pickles (ground truth, CIFAR batches, weights) never run, declared
checksums are checked before any unpickling, and archives are extracted all at once or not at all.

Every hostile file here carries a ``__reduce__`` that would create a marker file when unpickled
by :mod:`pickle`; each test asserts the marker never appears and the outcome is exit code 2 /
UserError with a clear message.
"""
from __future__ import annotations

import dataclasses
import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
from visrep.datasets import download
from visrep.datasets.download import (
    ChecksumMismatch,
    PublishedFile,
    check_known,
    marker_path,
)

from visrep.commands import main
from visrep.context import RunContext
from visrep.errors import UserError
from visrep.registry import datasets
from visrep.safe_pickle import UnsafePickleError


class _Evil:
    """Unpickling this with `pickle` runs exec(...), which creates `marker`."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def _hostile_gnd(marker: Path) -> bytes:
    return pickle.dumps({"imlist": ["a", "b"], "qimlist": ["q"], "gnd": [{"easy": [0], "hard": [], "junk": [],
                                                                          "x": _Evil(marker)}]})


def _hostile_batch(marker: Path) -> bytes:
    return pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1], b"x": _Evil(marker)},
                        protocol=2)


def test_evil_really_runs_with_plain_pickle(tmp_path):
    """The fixture is truly hostile: plain pickle.loads creates the marker (what the old loaders did)."""
    marker = tmp_path / "ran"
    pickle.loads(_hostile_gnd(marker))
    assert marker.exists()


# ------------------------------------------------------------------ item 1: ground truth
def _root_with_gnd(tmp_path, marker) -> Path:
    root = tmp_path / "root"
    (root / "roxford5k").mkdir(parents=True)
    (root / "roxford5k/gnd_roxford5k.pkl").write_bytes(_hostile_gnd(marker))
    return root


def test_hostile_gnd_never_runs_in_run_and_eval(tmp_path, capsys):
    marker = tmp_path / "ran"
    root = _root_with_gnd(tmp_path, marker)
    np.save(tmp_path / "r.npy", np.zeros((2, 1), np.int64))
    assert main(["run", "--method", "knn", "--dataset", "roxford5k", "--data-root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "gnd_roxford5k.pkl: sha256 mismatch" in err and "ba7967754bd2d7d2" in err
    assert main(["eval", str(tmp_path / "r.npy"), "--dataset", "roxford5k", "--data-root", str(root)]) == 2
    assert "sha256 mismatch" in capsys.readouterr().err
    assert not marker.exists()


def test_hostile_own_gnd_is_refused_by_the_restricted_unpickler(tmp_path, monkeypatch, capsys):
    """A ground-truth file visrep does not know (no declared digest) is still never executed."""
    from visrep.datasets.revisitop import ROxford5k, read_revisitop_pickle
    monkeypatch.setattr(ROxford5k, "files", ())
    marker = tmp_path / "ran"
    root = _root_with_gnd(tmp_path, marker)
    np.save(tmp_path / "r.npy", np.zeros((2, 1), np.int64))
    assert main(["eval", str(tmp_path / "r.npy"), "--dataset", "roxford5k", "--data-root", str(root)]) == 2
    assert "asks for builtins.exec" in capsys.readouterr().err
    assert main(["run", "--method", "knn", "--dataset", "roxford5k", "--data-root", str(root)]) == 2
    assert "nothing was run" in capsys.readouterr().err
    with pytest.raises(UnsafePickleError, match="gnd_roxford5k.pkl: the pickle asks for builtins.exec"):
        read_revisitop_pickle(root / "roxford5k/gnd_roxford5k.pkl")
    assert not marker.exists()


def test_checksum_mismatch_message(tmp_path):
    marker = tmp_path / "ran"
    root = _root_with_gnd(tmp_path, marker)
    path = root / "roxford5k/gnd_roxford5k.pkl"
    found = download.sha256_of(path)
    with pytest.raises(ChecksumMismatch) as e:
        datasets.create("roxford5k").load_ground_truth(RunContext(root, quiet=True))
    msg = str(e.value)
    assert str(path) in msg and "expected ba7967754bd2d7d2210a5799f9c45ad5835e269a80ef9d3eba44caa35816c471" in msg
    assert f"found {found}" in msg
    assert "Delete it and run `visrep data fetch roxford5k`, or pass the right file" in msg
    assert isinstance(e.value, UserError) and not marker.exists()
    # a file the dataset does not declare is 'unknown' (restricted unpickler only), never hashed
    assert check_known(datasets.get("roxford5k"), root, tmp_path / "elsewhere.pkl") == "unknown"


def test_real_gnd_passes_its_checksum(shared_data):
    root = shared_data / "retrieval"
    if not (root / "roxford5k/gnd_roxford5k.pkl").exists():
        pytest.skip("real roxford5k ground truth absent")
    assert check_known(datasets.get("roxford5k"), root, root / "roxford5k/gnd_roxford5k.pkl") == "ok"
    data = datasets.create("roxford5k").load_ground_truth(RunContext(root, quiet=True))
    assert data.n_db == 4993 and data.n_queries == 70


# ------------------------------------------------------------------ CIFAR: archive + batches
def _cifar_members(marker, hostile="test_batch") -> dict[str, bytes]:
    good = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, protocol=2)
    out = {f"cifar-10-batches-py/{n}": good for n in ("test_batch", *(f"data_batch_{i}" for i in range(1, 6)))}
    out[f"cifar-10-batches-py/{hostile}"] = _hostile_batch(marker)
    return out


def test_hostile_cifar_archive_never_runs(tmp_path, loopback_server, monkeypatch, capsys, make_tgz):
    url, folder, _ = loopback_server
    marker = tmp_path / "ran"
    (folder / "cifar-10-python.tar.gz").write_bytes(make_tgz(_cifar_members(marker)))
    root = tmp_path / "root"
    # 1. the declared md5 (torchvision's) refuses the well-formed but wrong archive: nothing extracted
    Cifar10 = datasets.get("cifar10")
    assert Cifar10.files[0].md5 == "c58f30108f718f92721af3b95e74349a"
    monkeypatch.setattr(Cifar10, "files", (dataclasses.replace(Cifar10.files[0], size=None),))  # small fake
    assert main(["--quiet", "data", "fetch", "cifar10", "--root", str(root), "--mirror", url]) == 2
    assert "md5 mismatch" in capsys.readouterr().err
    assert not (root / "cifar-10-batches-py").exists() and not (root / "cifar-10-python.tar.gz").exists()
    # 2. an archive without a digest is extracted, but each batch has its md5: run refuses test_batch
    monkeypatch.setattr(Cifar10, "files", (PublishedFile("cifar-10-python.tar.gz", url="unused"),))
    assert main(["--quiet", "data", "fetch", "cifar10", "--root", str(root), "--mirror", url]) == 0
    assert (root / "cifar-10-batches-py/test_batch").exists()
    assert main(["data", "verify", "cifar10", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "unchecked cifar-10-python.tar.gz" in out and "mismatch  cifar-10-batches-py/test_batch" in out
    assert "restricted unpickler" in out
    assert main(["run", "--method", "supervised", "--dataset", "cifar10", "--data-root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "test_batch: md5 mismatch: expected 40351d587109b95175f43aff81a1287e" in err
    # 3. no digest at all (a user's own batches): the restricted unpickler refuses the code
    monkeypatch.setattr(Cifar10, "members", ())
    assert main(["run", "--method", "supervised", "--dataset", "cifar10", "--data-root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "test_batch: the pickle asks for" in err and "exec" in err and "nothing was run" in err
    assert not marker.exists()


# ------------------------------------------------------------------ item 7: extraction all or nothing
def test_refused_archive_leaves_nothing_and_next_fetch_extracts(tmp_path, loopback_server, monkeypatch, capsys, make_tgz):
    url, folder, _ = loopback_server
    marker = tmp_path / "ran"
    Cifar10 = datasets.get("cifar10")
    monkeypatch.setattr(Cifar10, "files", (PublishedFile("cifar-10-python.tar.gz", url="unused"),))
    monkeypatch.setattr(Cifar10, "members", ())
    members = {"cifar-10-batches-py/batches.meta": b"x" * 10, "../escaped.txt": b"evil"}
    (folder / "cifar-10-python.tar.gz").write_bytes(make_tgz(members))
    root = tmp_path / "root"
    assert main(["--quiet", "data", "fetch", "cifar10", "--root", str(root), "--mirror", url]) == 2
    assert "refused" in capsys.readouterr().err
    assert sorted(p.name for p in root.iterdir()) == []          # no folder, no temp folder, no archive
    assert not (tmp_path / "escaped.txt").exists()
    # the mirror is fixed: the next fetch downloads and extracts (no 'present (unchecked)' dead end)
    good = pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [3]}, protocol=2)
    (folder / "cifar-10-python.tar.gz").write_bytes(make_tgz({"cifar-10-batches-py/test_batch": good}))
    assert main(["--quiet", "data", "fetch", "cifar10", "--root", str(root), "--mirror", url]) == 0
    assert (root / "cifar-10-batches-py/test_batch").read_bytes() == good
    assert marker_path(root / "cifar-10-python.tar.gz").exists()
    # an extraction that did not finish (no marker, a partial folder): the next fetch extracts again
    marker_path(root / "cifar-10-python.tar.gz").unlink()
    (root / "cifar-10-batches-py/test_batch").unlink()
    (root / "cifar-10-batches-py/leftover").write_text("half")
    assert main(["data", "fetch", "cifar10", "--root", str(root), "--mirror", url]) == 0
    err = capsys.readouterr().err
    assert "present (unchecked)" in err and "extracted into" in err
    assert (root / "cifar-10-batches-py/test_batch").read_bytes() == good
    assert not (root / "cifar-10-batches-py/leftover").exists()
    assert marker_path(root / "cifar-10-python.tar.gz").exists()
    assert datasets.create("cifar10").load(RunContext(root, quiet=True)).labels.tolist() == [3]
    assert not marker.exists()


def test_zip_with_dotdot_member_is_refused(tmp_path):
    import zipfile
    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("ok/a.txt", "a")
        zf.writestr("../b.txt", "b")
    with pytest.raises(UserError, match="refused member '../b.txt'"):
        download.extract(z, tmp_path / "out")
    assert not (tmp_path / "b.txt").exists() and list((tmp_path / "out").iterdir()) == []


# ------------------------------------------------------------------ weights
def _idx(arr: np.ndarray) -> bytes:
    head = bytes([0, 0, 8, arr.ndim]) + np.array(arr.shape, ">i4").tobytes()
    return gzip.compress(head + arr.astype(np.uint8).tobytes())


def _hostile_weights(tmp_path, marker) -> Path:
    import torch
    path = tmp_path / "evil.pt"
    torch.save({"conv1.weight": torch.zeros(1), "payload": _Evil(marker)}, path)
    return path


def test_hostile_mnist_weights_never_run(tmp_path, capsys):
    pytest.importorskip("torch")
    from visrep.methods.attacks.mnist_models import load_model
    marker = tmp_path / "ran"
    path = _hostile_weights(tmp_path, marker)
    with pytest.raises(UserError, match="evil.pt: refused by torch.load\\(weights_only=True\\), nothing was run"):
        load_model("clean", path)
    # through `visrep run` with a tiny real-layout MNIST test set
    root = tmp_path / "root"
    (root / "mnist").mkdir(parents=True)
    (root / "mnist/t10k-images-idx3-ubyte.gz").write_bytes(_idx(np.zeros((3, 28, 28))))
    (root / "mnist/t10k-labels-idx1-ubyte.gz").write_bytes(_idx(np.array([0, 1, 2])))
    assert main(["run", "--method", "mnist-model", "--dataset", "mnist", "--data-root", str(root),
                 "--set", f"weights={path}"]) == 2
    assert "nothing was run" in capsys.readouterr().err
    from visrep.methods.cnn.backbones import _read_state_dict
    with pytest.raises(UserError, match="cannot read weights file"):
        _read_state_dict(path)
    assert not marker.exists()


def test_default_weights_are_checked(shared_data, monkeypatch):
    pytest.importorskip("torch")
    from visrep.methods.attacks import mnist_models
    if not (shared_data / "models" / mnist_models.MODEL_FILES["clean"]).exists():
        pytest.skip("shared MNIST weights absent")
    monkeypatch.setitem(mnist_models.MODEL_SHA256, "clean", "0" * 64)
    with pytest.raises(UserError, match="sha256 mismatch: expected 0{64}, found 551a1126"):
        mnist_models.load_model("clean")
