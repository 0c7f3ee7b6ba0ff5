"""Labelled-data loaders: real MNIST / miniImageNet CSVs / SSL split files, and fixtures in the
exact real layouts (IDX, CIFAR pickles, CUB tree, miniImageNet CSV + folder)."""
from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest
from visrep.datasets.episodes import sample_episodes
from visrep.datasets.mnist import read_idx
from visrep.datasets.ssl_splits import class_counts, labelled_indices

from visrep.context import RunContext, shared_data_dir
from visrep.data import LabelledData
from visrep.errors import UserError
from visrep.registry import datasets

SHARED = shared_data_dir()


def _need(path):
    if SHARED is None or not (SHARED / path).exists():
        pytest.skip(f"real data {path} not found under ../shared/data")
    return SHARED / path


def test_mnist_real_test_split():
    data = datasets.create("mnist").load(RunContext(_need("classification"), quiet=True))
    assert data.x.shape == (10000, 28, 28) and data.x.dtype == np.uint8 and len(data) == 10000
    assert data.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]   # the well-known first test digits
    assert np.bincount(data.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _idx(arr, magic_type=0x08):
    head = bytes([0, 0, magic_type, arr.ndim]) + np.array(arr.shape, ">i4").tobytes()
    return head + arr.astype(np.uint8).tobytes()


def test_idx_fixture_gz_and_raw_and_bad(tmp_path, monkeypatch):
    x = np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256
    y = np.array([3, 9])
    f = tmp_path / "fashion-mnist"
    f.mkdir()
    (f / "t10k-images-idx3-ubyte").write_bytes(_idx(x))
    with gzip.open(f / "t10k-labels-idx1-ubyte.gz", "wb") as g:
        g.write(_idx(y))
    # fixture files are not the published ones: the declared payload digests refuse them ...
    with pytest.raises(UserError, match="not the published file"):
        datasets.create("fashion-mnist").load(RunContext(tmp_path, quiet=True))
    # ... and without digests the IDX parsing itself is what is tested
    monkeypatch.setattr(datasets.get("fashion-mnist"), "payload_sha256", {})
    data = datasets.create("fashion-mnist").load(RunContext(tmp_path, quiet=True))
    assert np.array_equal(data.x, x) and data.labels.tolist() == [3, 9] and data.class_names[9] == "Ankle boot"
    (tmp_path / "t.idx").write_bytes(_idx(x)[:-5])
    with pytest.raises(UserError, match="t.idx: .*truncated"):
        read_idx(tmp_path / "t.idx")
    (tmp_path / "f.idx").write_bytes(_idx(x, 0x0D))
    with pytest.raises(UserError, match="not unsigned byte"):
        read_idx(tmp_path / "f.idx")
    (tmp_path / "b.gz").write_bytes(gzip.compress(_idx(x))[:50])
    with pytest.raises(UserError, match="b.gz"):
        read_idx(tmp_path / "b.gz")


def test_cifar_fixture(tmp_path, monkeypatch):
    # fixture batches are not the published ones: cifar10 declares no member digests here
    monkeypatch.setattr(datasets.get("cifar10"), "members", ())
    rng = np.random.default_rng(0)
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    imgs = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    flat = imgs.transpose(0, 3, 1, 2).reshape(3, -1)    # the official layout: R plane, G plane, B plane
    pickle.dump({b"data": flat, b"labels": [1, 0, 9]}, open(base / "test_batch", "wb"))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    pickle.dump({b"label_names": names}, open(base / "batches.meta", "wb"))
    for i in range(1, 6):
        pickle.dump({b"data": flat[:2], b"labels": [i % 10, 2]}, open(base / f"data_batch_{i}", "wb"))
    data = datasets.create("cifar10").load(RunContext(tmp_path, quiet=True))
    assert np.array_equal(data.x, imgs) and data.labels.tolist() == [1, 0, 9] and data.class_names[9] == "truck"
    assert len(data.train) == 10 and data.train.labels[:2].tolist() == [1, 2]
    # semi-supervised split file in the LP-DeepSSL layout, checked against the training labels
    sdir = tmp_path / "ssl_labels/cifar10/2_balanced_labels"
    sdir.mkdir(parents=True)
    (sdir / "00.txt").write_text("0_automobile.png automobile\n3_bird.png bird\n")
    d2 = datasets.create("cifar10", labelled=2).load(RunContext(tmp_path, quiet=True))
    assert d2.train.labelled_idx.tolist() == [0, 3]
    (sdir / "01.txt").write_text("0_bird.png bird\n")
    with pytest.raises(UserError, match="01.txt: 0_bird.png is labelled bird but training image 0 is automobile"):
        datasets.create("cifar10", labelled=2, label_split=1).load(RunContext(tmp_path, quiet=True))
    (base / "test_batch").write_bytes((base / "test_batch").read_bytes()[:100])
    with pytest.raises(UserError, match="test_batch: not a readable CIFAR pickle"):
        datasets.create("cifar10").load(RunContext(tmp_path, quiet=True))


def test_ssl_split_files_real():
    root = _need("splits/ssl_labels")
    for ds, n, ncls in (("cifar10", 4000, 10), ("cifar100", 10000, 100), ("miniimagenet", 4000, 100)):
        for s in ("00", "01"):
            c = class_counts(root / ds / f"{n}_balanced_labels" / f"{s}.txt")
            assert len(c) == ncls and set(c.values()) == {n // ncls}
    # index/label consistency against a training set whose labels follow the file
    from visrep.datasets.ssl_splits import file_indices, read_label_file
    names, labels = read_label_file(root / "cifar10/4000_balanced_labels/00.txt")
    idx = file_indices(names)
    assert len(set(idx.tolist())) == 4000 and idx.max() < 50000
    cls = sorted(set(labels))
    y = np.zeros(50000, np.int64)
    y[idx] = [cls.index(c) for c in labels]
    assert labelled_indices(root / "cifar10/4000_balanced_labels/00.txt",
                            LabelledData("c", y, cls, "train")).tolist() == idx.tolist()


def _cub_tree(tmp_path, n_classes=4, per=3):
    base = tmp_path / "CUB_200_2011"
    (base / "images").mkdir(parents=True)
    imgs, labs, split, classes = [], [], [], []
    i = 1
    for c in range(1, n_classes + 1):
        folder = f"{c:03d}.Bird_{c}"
        classes.append(f"{c} {folder}")
        (base / "images" / folder).mkdir()
        for k in range(per):
            imgs.append(f"{i} {folder}/Bird_{c}_{k}.jpg")
            labs.append(f"{i} {c}")
            split.append(f"{i} {k % 2}")
            i += 1
    for f, rows in (("images.txt", imgs), ("image_class_labels.txt", labs), ("train_test_split.txt", split),
                    ("classes.txt", classes)):
        (base / f).write_text("\n".join(rows) + "\n")
    return base


def test_cub_fixture_splits(tmp_path):
    _cub_tree(tmp_path)
    ctx = RunContext(tmp_path, quiet=True)
    test = datasets.create("cub200").load(ctx)
    assert len(test) == 6 and test.class_names == ["003.Bird_3", "004.Bird_4"]
    assert test.labels.tolist() == [0, 0, 0, 1, 1, 1] and test.paths[0] == "003.Bird_3/Bird_3_0.jpg"
    assert len(test.train) == 6 and test.train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    cls = datasets.create("cub200", split_mode="classification").load(ctx)
    assert len(cls) == 8 and cls.n_classes == 4   # k % 2 == 0 -> test: 2 of 3 per class
    (tmp_path / "CUB_200_2011/train_test_split.txt").write_text("1 0\n")
    with pytest.raises(UserError, match="image id 2 .* missing from train_test_split.txt"):
        datasets.create("cub200").load(ctx)


def test_miniimagenet_fixture_and_real_csv(tmp_path):
    import cv2
    base = tmp_path / "miniimagenet"
    (base / "images").mkdir(parents=True)
    rows = ["filename,label"]
    for c in range(6):
        for k in range(20):
            name = f"n0{c}{k:08d}.jpg"
            rows.append(f"{name},n0{c}")
            cv2.imwrite(str(base / "images" / name), np.full((84 + 8 * (c == 1), 84, 3), 7 + c, np.uint8))
    (base / "test.csv").write_text("\n".join(rows) + "\n")
    ep = datasets.create("miniimagenet", n_episodes=50, k_shot=5).load(RunContext(tmp_path, quiet=True))
    assert ep.support.shape == (50, 25) and ep.query.shape == (50, 75) and ep.pool.n_classes == 6
    assert ep.pool.get(0).shape == (84, 84, 3) and ep.base is None        # no train.csv: no base split
    assert ep.pool.x.shape == (120, 84, 84, 3) and ep.pool.x[25, 0, 0, 0] == 8   # 92 x 84 files resized to 84 x 84
    (base / "train.csv").write_text("\n".join(rows[:41]) + "\n")          # base: the first 2 classes
    ep = datasets.create("miniimagenet", n_episodes=5).load(RunContext(tmp_path, quiet=True))
    assert ep.base.split == "train" and ep.base.x.shape == (40, 84, 84, 3) and ep.base.n_classes == 2
    (base / "val.csv").write_text("name,label\n")
    with pytest.raises(UserError, match="val.csv: expected the header"):
        datasets.create("miniimagenet", split="val").load(RunContext(tmp_path, quiet=True))
    real = _need("splits/miniimagenet_ravi")
    for split, ncls in (("train", 64), ("val", 16), ("test", 20)):
        ep = datasets.create("miniimagenet", split=split, csv_dir=str(real), n_episodes=5).load(
            RunContext(tmp_path / "no-images"))
        assert ep.pool.n_classes == ncls and len(ep.pool) == 600 * ncls
        assert np.bincount(ep.pool.labels).tolist() == [600] * ncls


def test_episode_sampler_properties():
    labels = np.repeat(np.arange(10), 30)
    pool = LabelledData("toy", labels, [str(i) for i in range(10)], "test")
    a = sample_episodes(pool, 5, 2, 4, n_episodes=200, seed=3)
    b = sample_episodes(pool, 5, 2, 4, n_episodes=200, seed=3)
    c = sample_episodes(pool, 5, 2, 4, n_episodes=200, seed=4)
    assert np.array_equal(a.support, b.support) and not np.array_equal(a.support, c.support)
    for e in range(a.n_episodes):
        items = np.concatenate([a.support[e], a.query[e]])
        assert len(set(items.tolist())) == len(items)                          # distinct items
        assert len(set(a.classes[e].tolist())) == 5                            # distinct classes
        assert np.array_equal(labels[a.support[e]], a.classes[e][a.support_labels[e]])
        assert np.array_equal(labels[a.query[e]], a.classes[e][a.query_labels[e]])
    # roughly uniform over classes
    assert np.bincount(a.classes.ravel(), minlength=10).min() > 60
    with pytest.raises(UserError, match="needs 5 classes with >= 31 items"):
        sample_episodes(pool, 5, 1, 30)


def _ssl_mini_tree(root, classes=("n01532829", "n01558993"), per=(3, 2), size=(84, 84)):
    import cv2
    rng = np.random.default_rng(0)
    for split, m in zip(("train", "test"), per):
        for c, w in enumerate(classes):
            (root / "miniimagenet-ssl" / split / w).mkdir(parents=True)
            for k in range(m):
                img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                name = f"image_{600 * c + 10 * k + (split == 'test'):05d}.JPEG"
                cv2.imwrite(str(root / "miniimagenet-ssl" / split / w / name), img)


def test_miniimagenet_classification_fixture(tmp_path):
    """LP-DeepSSL's ImageFolder layout: classes sorted, files sorted; labelled subset matched by folder and name."""
    _ssl_mini_tree(tmp_path, size=(90, 84))                  # a file of another size is resized to 84 x 84
    d = datasets.create("miniimagenet-classification").load(RunContext(tmp_path, quiet=True))
    assert d.class_names == ["n01532829", "n01558993"] and d.train.x.shape == (6, 84, 84, 3)
    assert d.x.shape == (4, 84, 84, 3) and d.labels.tolist() == [0, 0, 1, 1]
    assert d.train.paths[:2] == ["n01532829/image_00000.JPEG", "n01532829/image_00010.JPEG"]
    assert d.train.labels.tolist() == [0, 0, 0, 1, 1, 1] and d.train.labelled_idx is None
    sdir = tmp_path / "ssl_labels/miniimagenet/2_balanced_labels"
    sdir.mkdir(parents=True)
    (sdir / "00.txt").write_text("image_00610.JPEG n01558993\nimage_00020.JPEG n01532829\n")
    d2 = datasets.create("miniimagenet-classification", labelled=2).load(RunContext(tmp_path, quiet=True))
    assert d2.train.labelled_idx.tolist() == [4, 2]
    assert d2.train.labels[d2.train.labelled_idx].tolist() == [1, 0]
    assert d2.manifest != d.manifest
    (sdir / "01.txt").write_text("image_00001.JPEG n01532829\n")    # a test image: not in the training split
    with pytest.raises(UserError, match="not in the training split"):
        datasets.create("miniimagenet-classification", labelled=2, label_split=1).load(RunContext(tmp_path, quiet=True))
    (tmp_path / "miniimagenet-ssl/train/n01532829/image_00000.JPEG").write_bytes(b"not an image")
    from visrep.errors import MissingDataError
    with pytest.raises(MissingDataError, match="labelled-subset file"):   # the split file before any pixel
        datasets.create("miniimagenet-classification", labelled=7).load(RunContext(tmp_path, quiet=True))
    import shutil
    shutil.rmtree(tmp_path / "miniimagenet-ssl/test/n01558993")
    with pytest.raises(UserError, match="different class folders"):
        datasets.create("miniimagenet-classification").load(RunContext(tmp_path, quiet=True))
    with pytest.raises(MissingDataError, match="miniimagenet-ssl/train"):
        datasets.create("miniimagenet-classification").load(RunContext(tmp_path / "none", quiet=True))


def test_miniimagenet_classification_real_split_names():
    """The real labelled subsets name 100 wnid classes of 600 numbered images each (N // 600 = the class's block)."""
    from visrep.datasets.ssl_splits import read_label_file
    root = _need("splits/ssl_labels/miniimagenet")
    names, labels = read_label_file(root / "4000_balanced_labels/00.txt")
    block = {}
    for n, w in zip(names, labels):
        block.setdefault(w, set()).add(int(n.removeprefix("image_").removesuffix(".JPEG")) // 600)
    assert len(block) == 100 and all(len(b) == 1 for b in block.values())
    assert sorted(next(iter(b)) for b in block.values()) == list(range(100))


def test_published_label_files_match_the_real_ones_and_are_checked_before_reading(tmp_path):
    """The declared LP-DeepSSL digests equal the real split files of ../shared/data; a declared file that differs
    is refused (ChecksumMismatch) before it is parsed."""
    import hashlib

    from visrep.datasets.download import ChecksumMismatch
    from visrep.datasets.ssl_splits import published_label_files
    root = _need("splits")
    compared = 0
    for ds in ("cifar10", "cifar100", "miniimagenet"):
        files = published_label_files(ds)
        assert files and all(f.url.startswith("https://raw.githubusercontent.com/ahmetius/LP-DeepSSL/dd3b4aa")
                             for f in files)
        for f in files:
            real = root / f.path
            if real.exists():
                data = real.read_bytes()
                assert (hashlib.sha256(data).hexdigest(), len(data)) == (f.sha256, f.size), f.path
                compared += 1
    assert compared >= 12
    _ssl_mini_tree(tmp_path)
    bad = tmp_path / "ssl_labels/miniimagenet/4000_balanced_labels/00.txt"
    bad.parent.mkdir(parents=True)
    bad.write_text("image_00000.JPEG n01532829\n")
    with pytest.raises(ChecksumMismatch):
        datasets.create("miniimagenet-classification", labelled=4000).load(RunContext(tmp_path, quiet=True))
