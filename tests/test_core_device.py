"""``--device``: names checked before any job starts, 'auto' falls back to the CPU, the GPU code
paths (a moved copy of the network, faiss on a device) exercised on the CPU, the device recorded."""
import json
import warnings

import numpy as np
import pytest

from visrep.commands import main
from visrep.context import RunContext
from visrep.device import check_device_name, resolve_device
from visrep.errors import UserError

torch = pytest.importorskip("torch")
HAS_CUDA = torch.cuda.is_available()


@pytest.mark.parametrize("name, want", [("cpu", "cpu"), ("CPU", "cpu"), (None, "cpu"), ("auto", "auto"),
                                        ("cuda", "cuda"), ("cuda:1", "cuda:1")])
def test_device_names(name, want):
    assert check_device_name(name) == want


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "mps", ""])
def test_unknown_device_names_list_the_choices(bad):
    with pytest.raises(UserError, match="cpu, auto, cuda, cuda:N"):
        check_device_name(bad)


def test_auto_is_the_gpu_when_torch_sees_one_else_the_cpu():
    assert resolve_device("auto") == ("cuda" if HAS_CUDA else "cpu")
    assert resolve_device("cpu") == "cpu"


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA: the no-CUDA error cannot be provoked")
def test_cuda_without_cuda_is_an_error_before_any_job(capsys, tmp_path):
    with pytest.raises(UserError, match="sees no CUDA device.*--device cpu"):
        resolve_device("cuda")
    argv = ["run", "-m", "knn", "-d", "sample-views", "--set", "descriptor=histogram", "--device", "cuda", "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "sees no CUDA device" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").rglob("*.json"))


def test_bad_device_on_the_command_line_is_exit_2(capsys):
    assert main(["run", "-m", "knn", "-d", "sample-views", "--device", "gpu", "--dry-run"]) == 2
    assert "is not one of: cpu, auto, cuda, cuda:N" in capsys.readouterr().err


def test_the_record_says_where_torch_ran(tmp_path):
    assert main(["run", "-m", "mac", "-d", "sample-views", "--set", "imsize=64", "--device", "cpu", "--quiet"]) == 0
    [path] = list((tmp_path / "results" / "sample-views").rglob("*.json"))
    assert json.loads(path.read_text())["provenance"]["device"] == "cpu"
    # the device is how, not what: the same job on 'auto' is the same record (skipped as done)
    assert main(["run", "-m", "mac", "-d", "sample-views", "--set", "imsize=64", "--device", "auto", "--quiet"]) == 0
    assert len(list((tmp_path / "results" / "sample-views").rglob("*.json"))) == 1


def test_a_moved_backbone_gives_the_same_descriptors(small_views):
    """The non-CPU path (a deep copy of the network moved with .to(device)) run with torch's 'cpu:0'."""
    from visrep.methods.cnn.backbones import load_backbone
    from visrep.registry import methods
    cpu = load_backbone()
    moved = load_backbone(device="cpu:0")
    assert moved is not cpu and moved.device == "cpu:0" and cpu.device == "cpu"
    assert moved is load_backbone(device="cpu:0")                 # cached per device
    assert moved.trunk is not cpu.trunk
    m = methods.create("gem", imsize=96)
    data, _ = small_views
    imgs = [data.db_image(i) for i in range(2)]
    plain = m.describe(imgs, 2, RunContext(quiet=True))
    ctx = RunContext(quiet=True)
    ctx._torch_device = "cpu:0"
    other = m.describe(imgs, 2, ctx)
    assert ctx.device_used == "cpu:0"
    np.testing.assert_allclose(other, plain, atol=1e-6)


def test_faiss_on_a_gpu_without_faiss_gpu_warns_and_searches_on_the_cpu():
    from visrep.device import faiss_gpu_count
    from visrep.methods.manifolds.knn_graph import knn
    if faiss_gpu_count():
        pytest.skip("faiss has GPU support here")
    x = np.random.default_rng(0).standard_normal((200, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    with pytest.warns(RuntimeWarning, match="faiss has no GPU support"):
        s_gpu, i_gpu = knn(x, 5, device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s_cpu, i_cpu = knn(x, 5)
    np.testing.assert_array_equal(i_gpu, i_cpu)
    ctx = RunContext(device="auto")
    assert ctx.faiss_device() == "cpu"


def test_semi_supervised_training_follows_the_device_and_gives_the_same_network():
    """supervised / mean-teacher / dlp move their network to ctx.torch_device() and each batch to it (here torch's
    'cpu:0', the non-CPU code path): the same seed gives the same scores as on the plain CPU."""
    from visrep.context import shared_data_dir
    from visrep.registry import datasets, methods
    shared = shared_data_dir()
    if shared is None or not (shared / "classification" / "mnist" / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("real MNIST test set (../shared/data/classification/mnist) is absent")
    d = datasets.create("mnist", labelled=20, train_from_test=120).load(
        RunContext(shared / "classification", quiet=True))
    test = d.subset(np.arange(50))
    test.train = d.train
    for name, params in (("supervised", {"epochs": 2}), ("mean-teacher", {"epochs": 1, "flip": True}),
                         ("dlp", {"sup_epochs": 1, "rounds": 1, "k": 5})):
        outs = []
        for dev in ("cpu", "cpu:0"):
            ctx = RunContext(quiet=True)
            ctx._torch_device = dev
            outs.append(methods.create(name, width=4, blocks=2, **params).run(test, ctx)["scores"])
            assert ctx.device_used == dev
        np.testing.assert_allclose(outs[1], outs[0], atol=1e-5, err_msg=name)
