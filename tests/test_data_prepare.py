"""Preprocessing statistics, normalisation, subsets, validation hold-out and batches."""

import numpy as np
import pytest

from minids import data
from minids.data.preprocess import fit_stats, stratified_order
from minids.errors import MinidsError


@pytest.fixture(scope="module")
def mini():
    return data.load("fashion-mnist-mini", "train")


def test_standard_stats_and_normalize(rng):
    images = rng.integers(0, 256, size=(100, 3, 4, 5), dtype=np.uint8)
    stats = fit_stats(images, "standard")
    assert stats["kind"] == "standard" and stats["mean"].dtype == np.float32 and stats["mean"].shape == (3,)
    as_float = images.astype(np.float64)
    np.testing.assert_allclose(stats["mean"], as_float.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(stats["std"], as_float.std(axis=(0, 2, 3)), rtol=1e-5)
    x = data.normalize(images, stats, np)
    assert x.dtype == np.float32 and x.shape == images.shape
    np.testing.assert_allclose(x.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=(0, 2, 3)), 1, atol=1e-4)


def test_gcn_zca_whitens_training_data(rng):
    base = rng.normal(size=(600, 1, 4, 4)) @ rng.normal(size=(4, 4))  # correlated pixels
    images = np.clip(base * 30 + 128, 0, 255).astype(np.uint8)
    stats = fit_stats(images, "gcn-zca")
    assert stats["kind"] == "gcn-zca" and stats["zca_matrix"].shape == (16, 16)
    assert stats["zca_matrix"].dtype == np.float32
    np.testing.assert_allclose(stats["zca_matrix"], stats["zca_matrix"].T, atol=1e-5)
    # reference: pylearn2's GCN (scale 1, sqrt_bias 10, std with ddof=1), then ZCA
    g = images.reshape(600, 16).astype(np.float64)
    g -= g.mean(axis=1, keepdims=True)
    g /= np.sqrt(10 + g.var(axis=1, ddof=1, keepdims=True))
    lam = np.linalg.eigvalsh(np.cov(g, rowvar=False, bias=True))
    x = data.normalize(images, stats, np).reshape(600, 16).astype(np.float64)
    np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-4)
    # whitened covariance has eigenvalues λ / (λ + zca_bias): ~1 where λ >> 0.1
    out = np.linalg.eigvalsh(np.cov(x, rowvar=False, bias=True))
    np.testing.assert_allclose(np.sort(out), np.sort(np.maximum(lam, 0) / (np.maximum(lam, 0) + 0.1)), atol=2e-4)


def test_unknown_preprocessing():
    with pytest.raises(MinidsError, match="unknown preprocessing 'pca'"):
        data.prepare("fashion-mnist-mini", preprocess="pca")


def test_stratified_order_prefixes_are_balanced():
    labels = np.repeat(np.arange(10), [50, 60, 70, 80, 90, 100, 110, 120, 130, 140])
    order = stratified_order(labels, seed=3)
    assert sorted(order) == list(range(len(labels)))
    assert (np.bincount(labels[order[:300]], minlength=10) == 30).all()
    np.testing.assert_array_equal(order, stratified_order(labels, seed=3))
    assert not np.array_equal(order, stratified_order(labels, seed=4))


def test_prepare_subsets_and_validation(mini):
    prep = data.prepare("fashion-mnist-mini", train_size=500, test_size=100, val_size=200, seed=1)
    (xt, yt), (xv, yv), (_, ys) = prep.train, prep.val, prep.test
    assert (len(yt), len(yv), len(ys)) == (500, 200, 100)
    assert (np.bincount(yt) == 50).all() and (np.bincount(yv) == 20).all() and (np.bincount(ys) == 10).all()
    assert xt.dtype == np.uint8 and yt.dtype == np.int64
    assert prep.input_shape == (1, 28, 28) and prep.num_classes == 10
    # validation and training images are distinct samples of the training split
    rows = {bytes(r) for r in mini[0].reshape(len(mini[0]), -1)}
    train_rows = {bytes(r) for r in xt.reshape(500, -1)}
    assert train_rows <= rows and not train_rows & {bytes(r) for r in xv.reshape(200, -1)}
    again = data.prepare("fashion-mnist-mini", train_size=500, test_size=100, val_size=200, seed=1)
    np.testing.assert_array_equal(again.train[0], xt)
    np.testing.assert_array_equal(again.val[1], yv)
    np.testing.assert_array_equal(again.stats["mean"], prep.stats["mean"])
    full = data.prepare("fashion-mnist-mini")
    assert full.val is None and len(full.train[1]) == 10000 and len(full.test[1]) == 2000


def test_prepare_sizes_too_large():
    with pytest.raises(MinidsError, match="--test-size 3000 is more than the 2000"):
        data.prepare("fashion-mnist-mini", test_size=3000)
    with pytest.raises(MinidsError, match="--val-size 10000 is more than the 10000"):
        data.prepare("fashion-mnist-mini", val_size=10000)


def batches_of(iterator, epoch):
    return [(x.copy(), y.copy()) for x, y in iterator.epoch(epoch)]


def test_batch_iterator_order_sizes_and_resume(mini):
    images, labels = mini[0][:103], mini[1][:103]
    stats = fit_stats(images)
    it = data.BatchIterator(images, labels, 25, stats, np, seed=7)
    assert len(it) == 5
    epoch0 = batches_of(it, 0)
    assert [len(y) for _, y in epoch0] == [25, 25, 25, 25, 3]
    x, y = epoch0[0]
    assert x.dtype == np.float32 and x.shape == (25, 1, 28, 28) and y.dtype == np.int64
    seen = np.concatenate([y for _, y in epoch0])
    assert sorted(seen.tolist()) == sorted(labels.tolist())
    # a fresh iterator (a resumed run) gives the same batches for the same epoch
    resumed = data.BatchIterator(images, labels, 25, stats, np, seed=7, prefetch=False)
    for (xa, ya), (xb, yb) in zip(epoch0, batches_of(resumed, 0)):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(it.order(0), it.order(1))
    np.testing.assert_array_equal(it.order(3), resumed.order(3))
    # each batch is normalise(images of its indices)
    index = np.sort(it.order(0)[:25])
    np.testing.assert_array_equal(epoch0[0][0], data.normalize(images[index], stats, np))
    np.testing.assert_array_equal(epoch0[0][1], labels[index])
    # a run resumed inside an epoch starts at a later batch: the same tail, both iterators
    for start_at in (1, 4):
        for iterator in (it, resumed):
            tail = [(x.copy(), y.copy()) for x, y in iterator.epoch(0, start=start_at)]
            assert len(tail) == 5 - start_at
            for (xa, ya), (xb, yb) in zip(epoch0[start_at:], tail):
                np.testing.assert_array_equal(xa, xb)
                np.testing.assert_array_equal(ya, yb)


@pytest.mark.parametrize("device", ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def test_device_resident_batches_equal_the_streamed_ones(mini, device):
    """The training set on the device, batches gathered there: the same
    arrays, bit for bit, as reading each batch on the host (all of an epoch
    and the tail of a resumed one)."""
    from minids.backend import get_module, to_host
    xp = get_module(device)
    images, labels = mini[0][:103], mini[1][:103]
    stats = fit_stats(images)
    streamed = data.BatchIterator(images, labels, 25, stats, xp, seed=7, prefetch=False, resident=False)
    resident = data.BatchIterator(images, labels, 25, stats, xp, seed=7, resident=True)
    assert resident.resident and len(resident) == len(streamed) == 5
    for start in (0, 3):
        pairs = list(zip(streamed.epoch(2, start), resident.epoch(2, start)))
        assert len(pairs) == 5 - start
        for (xa, ya), (xb, yb) in pairs:
            np.testing.assert_array_equal(to_host(xa), to_host(xb))
            np.testing.assert_array_equal(to_host(ya), to_host(yb))
    # by hand: the first batch of epoch 2 is the sorted first 25 of its permutation
    index = np.sort(np.random.default_rng([7, 2]).permutation(103)[:25])
    x, y = next(iter(resident.epoch(2)))
    np.testing.assert_array_equal(to_host(y), labels[index])
    np.testing.assert_allclose(to_host(x), (images[index] - stats["mean"].reshape(1, -1, 1, 1))
                               / stats["std"].reshape(1, -1, 1, 1), rtol=1e-6)


def test_batch_iterator_without_shuffle_and_early_stop(mini):
    images, labels = mini[0][:50], mini[1][:50]
    it = data.BatchIterator(images, labels, 20, fit_stats(images), np, shuffle=False)
    np.testing.assert_array_equal(np.concatenate([y for _, y in it.epoch(0)]), labels)
    for _ in it.epoch(1):  # breaking out stops the prefetch thread
        break
    assert len(list(it.epoch(2))) == 3


def test_batch_iterator_passes_errors_on():
    class Broken:
        shape = (10, 1, 2, 2)

        def __len__(self):
            return 10

        def __getitem__(self, index):
            raise OSError("disk gone")

    it = data.BatchIterator(Broken(), np.zeros(10, np.int64), 4, {"kind": "standard", "mean": np.zeros(1),
                                                                  "std": np.ones(1)}, np)
    with pytest.raises(OSError, match="disk gone"):
        list(it.epoch(0))
