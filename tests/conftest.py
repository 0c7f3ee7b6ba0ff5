"""Shared fixtures: the workplace's real data (skip when absent), isolated results and cache."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from visrep.context import shared_data_dir

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def shared_data():
    """Path of ../shared/data; tests that need it skip with the reason when it is absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("real data folder ../shared/data (or $VISREP_SHARED_DATA) is absent")
    return path


@pytest.fixture(scope="session")
def oxford5k_features(shared_data):
    path = shared_data / "retrieval" / "oxford5k" / "oxford_features_caffenet_pca128.fvecs"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="module")
def small_views(tmp_path_factory):
    """(data, ctx): a small sample-views (3 views per object, 1 distractor view, 256 px) and a run context
    with its own cache, for the re-ranking and photo-collection tests."""
    from visrep.cache import Cache, code_version
    from visrep.context import RunContext
    from visrep.registry import datasets
    ctx = RunContext(cache=Cache(tmp_path_factory.mktemp("small-views-cache")), quiet=True)
    ds = datasets.create("sample-views", views=3, distractor_views=1, graffiti=False, max_side=256)
    data = ds.load(ctx)
    ctx.loader_version = code_version(type(ds))
    return data, ctx


@pytest.fixture(scope="session")
def real_mnist_walking(shared_data):
    """take(n) -> (model, x, y): the BP paper's real MNIST model and those of the first n real MNIST test
    images it classifies correctly (skips when the test set or the model is absent)."""
    import torch

    from visrep.datasets.mnist import read_mnist_split
    from visrep.methods.attacks.mnist_models import MODEL_FILES, load_model, mnist_to_tensor
    folder = shared_data / "classification" / "mnist"
    if not folder.is_dir() or not (shared_data / "models" / MODEL_FILES["walking"]).exists():
        pytest.skip("real MNIST test set or the BP paper's model absent from the shared data folder")
    torch.set_num_threads(1)
    d = read_mnist_split(folder, "test")
    model = load_model("walking")

    def take(n: int):
        x = mnist_to_tensor(d.x[:n])
        y = torch.as_tensor(d.labels[:n])
        correct = model(x).argmax(1) == y
        return model, x[correct], y[correct]
    return take


@pytest.fixture(autouse=True)
def isolated_store(tmp_path, monkeypatch):
    """Every test writes results and cache under its own tmp folder."""
    monkeypatch.setenv("VISREP_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("VISREP_CACHE", str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture
def toy_plugin_env(tmp_path):
    """Environment for a `python -m visrep` child that sees tests/plugins/visrep_testplugin.py as an
    installed distribution's entry point (group ``visrep.plugins``): the toy dataset and slow method."""
    plugin_dir = Path(__file__).parent / "plugins"
    dist = tmp_path / "ep" / "visrep_testplugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: visrep-testplugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[visrep.plugins]\ntoy = visrep_testplugin\n")
    return {**os.environ, "PYTHONPATH": f"{tmp_path / 'ep'}:{plugin_dir}"}


@pytest.fixture(scope="session")
def digit_classes():
    """(base, novel) LabelledData of scikit-learn's real 8x8 digits: digits 0-4 base, 5-9 novel (renumbered 0-4),
    uint8 images, for the few-shot tests."""
    from sklearn.datasets import load_digits

    from visrep.data import LabelledData
    d = load_digits()
    x, y = (d.images * (255 / 16)).astype(np.uint8), d.target
    names = [str(i) for i in range(10)]
    base = LabelledData("digits", y[y < 5], names[:5], "base", x=x[y < 5])
    novel = LabelledData("digits", y[y >= 5] - 5, names[5:], "novel", x=x[y >= 5])
    return base, novel


@pytest.fixture(scope="module")
def digits_unseen():
    """scikit-learn's real 8x8 digits as an unseen-class metric-learning split: test = digits 5-9 (renumbered
    0-4, uint8 images) whose ``train`` is digits 0-4 (split names 'train' / 'test')."""
    from sklearn.datasets import load_digits

    from visrep.data import LabelledData
    d = load_digits()
    x = (d.images * (255 / 16)).astype(np.uint8)
    y = d.target
    names = [str(i) for i in range(10)]
    train = LabelledData("digits", y[y < 5], names[:5], "train", x=x[y < 5])
    test = LabelledData("digits", y[y >= 5] - 5, names[5:], "test", x=x[y >= 5])
    test.train = train
    return test


@pytest.fixture()
def loopback_server(tmp_path):
    """(base URL, served folder tmp_path/'served', list of requested paths) of an HTTP server on 127.0.0.1:
    a mirror for `visrep data fetch --mirror` and the download tests."""
    import functools
    import http.server
    import threading
    folder = tmp_path / "served"
    folder.mkdir()
    seen: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def send_head(self):
            seen.append(self.path)
            return super().send_head()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", folder, seen
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")
def make_tgz():
    """members {name: bytes} -> the bytes of a .tar.gz holding them (regular files)."""
    import io
    import tarfile

    def build(members: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()
    return build
