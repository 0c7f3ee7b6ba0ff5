"""The MNIST proxies of Part III (additive options of datasets/mnist.py) on the real t10k files."""
from __future__ import annotations

import numpy as np
import pytest

from visrep.context import RunContext, shared_data_dir
from visrep.errors import MissingDataError, UserError
from visrep.registry import datasets


@pytest.fixture(scope="module")
def ctx():
    shared = shared_data_dir()
    if shared is None or not (shared / "classification" / "mnist" / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("real MNIST test set (../shared/data/classification/mnist) is absent")
    return RunContext(shared / "classification", quiet=True)


def test_semi_supervised_split(ctx):
    d = datasets.create("mnist", labelled=100, train_from_test=5000, label_split=1).load(ctx)
    assert len(d) == 5000 and len(d.train) == 5000
    li = d.train.labelled_idx
    assert len(li) == 100 and np.bincount(d.train.labels[li]).tolist() == [10] * 10
    d0 = datasets.create("mnist", labelled=100, train_from_test=5000, label_split=0).load(ctx)
    assert not np.array_equal(d0.train.labelled_idx, li) and d0.manifest != d.manifest
    # train and test parts are a partition of the 10k images
    full = datasets.create("mnist").load(ctx)
    assert np.bincount(np.concatenate([d.labels, d.train.labels])).tolist() == np.bincount(full.labels).tolist()
    with pytest.raises(UserError, match="multiple"):
        datasets.create("mnist", labelled=105, train_from_test=5000).load(ctx)
    with pytest.raises(MissingDataError, match="train_from_test"):
        datasets.create("mnist", labelled=100).load(ctx)


def test_unseen_classes_and_few_shot_views(ctx):
    d = datasets.create("mnist-unseen").load(ctx)
    assert d.class_names == list("56789") and d.train.class_names == list("01234")
    assert len(d) + len(d.train) == 10000 and d.labels.max() == 4 and d.train.labels.max() == 4
    ep = datasets.create("mnist-fewshot", k_shot=5, n_episodes=10).load(ctx)
    assert ep.support.shape == (10, 25) and ep.base.n_classes == 5 and len(ep.base) == len(d.train)
    assert ep.pool.class_names == list("56789")


# ---------------------------------------------------------------- Fashion-MNIST (Debian package or data root)
FASHION_DEB = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(scope="module")
def fashion_dir():
    from pathlib import Path
    d = Path(FASHION_DEB)
    if not (d / "t10k-images-idx3-ubyte.gz").exists() or not (d / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"Fashion-MNIST is absent: install the Debian package dataset-fashion-mnist "
                    f"(apt-get install dataset-fashion-mnist puts it in {FASHION_DEB})")
    return d


def test_fashion_mnist_from_debian_package(fashion_dir, tmp_path):
    """With nothing under the data root the loader reads the Debian files, verified by checksum."""
    d = datasets.create("fashion-mnist").load(RunContext(tmp_path, quiet=True))
    assert d.x.shape == (10000, 28, 28) and d.x.dtype == np.uint8 and len(d.train) == 60000
    assert np.bincount(d.labels).tolist() == [1000] * 10 and np.bincount(d.train.labels).tolist() == [6000] * 10
    assert d.class_names[9] == "Ankle boot"
    s = datasets.create("fashion-mnist", labelled=500, train_size=10000, label_split=3).load(
        RunContext(tmp_path, quiet=True))
    assert len(s.train) == 10000 and np.bincount(s.train.labels[s.train.labelled_idx]).tolist() == [50] * 10


def test_fashion_mnist_from_data_root_and_checksums(fashion_dir, tmp_path):
    """IDX files under <root>/fashion-mnist are read (gzipped or not); a changed byte is refused."""
    import gzip
    import shutil

    from visrep.datasets.mnist import read_idx
    root = tmp_path / "root"
    (root / "fashion-mnist").mkdir(parents=True)
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(fashion_dir / f"{stem}.gz") as f:
            raw = f.read()
        (root / "fashion-mnist" / stem).write_bytes(raw)   # uncompressed IDX
    d = datasets.create("fashion-mnist").load(RunContext(root, quiet=True))
    assert d.train is None and len(d) == 10000          # the root's folder wins over the Debian one
    assert np.array_equal(d.x, read_idx(fashion_dir / "t10k-images-idx3-ubyte.gz"))
    lab = root / "fashion-mnist" / "t10k-labels-idx1-ubyte"
    raw = bytearray(lab.read_bytes())
    raw[-1] = (raw[-1] + 1) % 10                        # a different label: still a valid IDX file
    lab.write_bytes(bytes(raw))
    with pytest.raises(UserError, match="sha256"):
        datasets.create("fashion-mnist").load(RunContext(root, quiet=True))
    shutil.rmtree(root / "fashion-mnist")


def test_fashion_mnist_class_split_views(fashion_dir, tmp_path):
    ctx = RunContext(tmp_path, quiet=True)
    ep = datasets.create("fashion-mnist-fewshot", k_shot=5, n_episodes=20).load(ctx)
    assert ep.support.shape == (20, 25) and ep.query.shape == (20, 75)
    assert np.bincount(ep.base.labels).tolist() == [600] * 5 and ep.pool.n_classes == 5
    assert ep.pool.class_names == ["Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    assert len(ep.pool) == 5000                          # novel classes come from the test split
    u = datasets.create("fashion-mnist-unseen", train_per_class=100).load(ctx)
    assert len(u) == 5000 and np.bincount(u.train.labels).tolist() == [100] * 5
