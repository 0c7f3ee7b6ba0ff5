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
