"""Reading each real file format: order, orientation, labels, splits, bad input."""

import os

import numpy as np
import pytest

from data_files import random_split, write_cifar, write_fashion, write_idx, write_svhn
from minids import data
from minids.data import fashion_mnist
from minids.errors import MinidsError


@pytest.fixture
def no_system_fashion(monkeypatch, tmp_path):
    """Hide Debian's Fashion-MNIST so only the test's files are found."""
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", tmp_path / "nowhere")


def svhn_dir(tmp_path, compress=True):
    splits = {name: random_split(n, (3, 32, 32), seed) for name, n, seed in
              (("train", 30, 1), ("test", 20, 2), ("extra", 25, 3))}
    for name, (x, y) in splits.items():
        write_svhn(tmp_path / f"{name}_32x32.mat", x, y, compress=compress)
    return splits


@pytest.mark.parametrize("compress", [True, False])
def test_svhn_order_orientation_labels(tmp_path, compress):
    splits = svhn_dir(tmp_path, compress)
    x, y = data.load("svhn", "test", tmp_path)
    assert x.shape == (20, 3, 32, 32) and x.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(x, splits["test"][0])
    np.testing.assert_array_equal(y, splits["test"][1])
    x, y = data.load("svhn", "train", tmp_path)  # train + extra, in that order
    assert len(y) == 55
    np.testing.assert_array_equal(x, np.concatenate([splits["train"][0], splits["extra"][0]]))
    np.testing.assert_array_equal(y, np.concatenate([splits["train"][1], splits["extra"][1]]))
    x, y = data.load("svhn", "train", tmp_path, extra=False)
    np.testing.assert_array_equal(x, splits["train"][0])


def test_svhn_pixel_positions_and_label_ten(tmp_path):
    images = np.zeros((2, 3, 32, 32), np.uint8)
    images[0, 0, 1, 30] = 11   # red, row 1, column 30
    images[1, 2, 31, 0] = 99   # blue, bottom-left
    X = images.transpose(2, 3, 1, 0)
    assert X[1, 30, 0, 0] == 11 and X[31, 0, 2, 1] == 99  # MATLAB: row, column, channel, image
    import scipy.io
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": X, "y": np.array([[10.0], [3.0]])})
    x, y = data.load("svhn", "test", tmp_path)
    assert x[0, 0, 1, 30] == 11 and x[1, 2, 31, 0] == 99 and x.sum() == 110
    assert y.tolist() == [0, 3]


def test_svhn_truncated(tmp_path):
    svhn_dir(tmp_path)
    path = tmp_path / "test_32x32.mat"
    path.write_bytes(path.read_bytes()[:-3000])
    with pytest.raises(MinidsError, match="test_32x32.mat is truncated"):
        data.load("svhn", "test", tmp_path)


def test_svhn_corrupt_compressed_stream(tmp_path):
    svhn_dir(tmp_path)
    path = tmp_path / "test_32x32.mat"
    raw = bytearray(path.read_bytes())
    raw[400:460] = bytes(60)
    path.write_bytes(bytes(raw))
    with pytest.raises(MinidsError, match="test_32x32.mat"):
        data.load("svhn", "test", tmp_path)


def test_svhn_not_a_mat_file(tmp_path):
    (tmp_path / "test_32x32.mat").write_bytes(b"<html>not found</html>")
    with pytest.raises(MinidsError, match="not a MATLAB .mat file"):
        data.load("svhn", "test", tmp_path)


def test_svhn_wrong_shape_and_labels(tmp_path):
    import scipy.io
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": np.zeros((28, 28, 1, 4), np.uint8),
                                                   "y": np.ones((4, 1))})
    with pytest.raises(MinidsError, match="expected 32×32×3×N"):
        data.load("svhn", "test", tmp_path)
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": np.zeros((32, 32, 3, 4), np.uint8),
                                                   "y": np.array([[1.0], [11.0], [2.0], [3.0]])})
    with pytest.raises(MinidsError, match="labels out of range"):
        data.load("svhn", "test", tmp_path)


def test_cifar_tarball_and_folder(tmp_path):
    train, test = random_split(50, (3, 32, 32), 4), random_split(12, (3, 32, 32), 5)
    write_cifar(tmp_path / "cifar-10-python.tar.gz", train, test)
    for split, (images, labels) in (("train", train), ("test", test)):
        x, y = data.load("cifar10", split, tmp_path)
        np.testing.assert_array_equal(x, images)
        np.testing.assert_array_equal(y, labels)
    # a row of 3072 bytes is R plane, G plane, B plane, each row-major
    raw = train[0][0].reshape(-1)
    assert x.shape[1:] == (3, 32, 32) and data.load("cifar10", "train", tmp_path)[0][0, 1, 2, 3] == raw[1024 + 2 * 32 + 3]
    extracted = tmp_path / "folder"
    extracted.mkdir()
    import tarfile
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz") as tar:
        tar.extractall(extracted, filter="data")
    x, y = data.load("cifar10", "test", extracted)
    np.testing.assert_array_equal(x, test[0])


def test_cifar_truncated_and_bad_batch(tmp_path):
    train, test = random_split(50, (3, 32, 32), 4), random_split(12, (3, 32, 32), 5)
    path = tmp_path / "cifar-10-python.tar.gz"
    write_cifar(path, train, test)
    path.write_bytes(path.read_bytes()[: os.path.getsize(path) // 2])
    with pytest.raises(MinidsError, match="cifar-10-python.tar.gz is truncated or corrupt"):
        data.load("cifar10", "test", tmp_path)
    bad = random_split(12, (3, 32, 32), 6)
    write_cifar(path, train, (bad[0], bad[1] + 5))
    with pytest.raises(MinidsError, match="test_batch: labels out of range"):
        data.load("cifar10", "test", tmp_path)


def test_fashion_idx(tmp_path, no_system_fashion):
    train, test = random_split(40, (1, 28, 28), 7), random_split(10, (1, 28, 28), 8)
    write_fashion(tmp_path, train, test)
    x, y = data.load("fashion-mnist", "train", tmp_path)
    assert x.shape == (40, 1, 28, 28)
    np.testing.assert_array_equal(x, train[0])
    np.testing.assert_array_equal(y, train[1])
    assert len(data.load("fashion-mnist", "test", tmp_path)[1]) == 10


def test_fashion_truncated_and_bad_header(tmp_path, no_system_fashion):
    train, test = random_split(40, (1, 28, 28), 7), random_split(10, (1, 28, 28), 8)
    write_fashion(tmp_path, train, test)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(MinidsError, match="t10k-images-idx3-ubyte.gz is truncated or corrupt"):
        data.load("fashion-mnist", "test", tmp_path)
    write_idx(path, np.zeros((10, 28, 28, 1), np.uint8))
    with pytest.raises(MinidsError, match="bad header"):
        data.load("fashion-mnist", "test", tmp_path)


def test_missing_files_say_which_and_how(tmp_path, no_system_fashion):
    with pytest.raises(MinidsError, match=r"missing train_32x32.mat, test_32x32.mat, extra_32x32.mat in .*minids data download svhn"):
        data.load("svhn", "train", tmp_path)
    with pytest.raises(MinidsError, match="missing cifar-10-python.tar.gz"):
        data.load("cifar10", "train", tmp_path)
    with pytest.raises(MinidsError, match="missing train-images-idx3-ubyte.gz, .*t10k-images-idx3-ubyte.gz"):
        data.load("fashion-mnist", "test", tmp_path)


def test_unknown_name_and_split(tmp_path):
    with pytest.raises(MinidsError, match="unknown data set 'mnist'"):
        data.load("mnist", "train", tmp_path)
    with pytest.raises(MinidsError, match="unknown split 'valid'"):
        data.load("svhn", "valid", tmp_path)


def test_a_new_data_set_is_one_class_and_one_registration(tmp_path, monkeypatch):
    """docs/data.md's recipe: a DataSet subclass with files() and read(),
    registered; load, prepare, verify and info then work without any other change."""
    import hashlib

    from minids import data
    from minids.data import dataset

    rng = np.random.default_rng(3)
    arrays = {split: (rng.integers(0, 256, (n, 1, 4, 4), dtype=np.uint8), np.arange(n) % 10)
              for split, n in (("train", 30), ("test", 20))}
    for split, (images, labels) in arrays.items():
        np.savez(tmp_path / f"toy-{split}.npz", images=images, labels=labels)
    files = {p.name: (p.stat().st_size, hashlib.md5(p.read_bytes()).hexdigest())
             for p in sorted(tmp_path.glob("toy-*.npz"))}

    class Toy(data.DataSet):
        name, classes, input_shape, base_url = "toy", tuple("abcdefghij"), (1, 4, 4), "http://example.invalid/"

        def files(self, split=None, extra=True):
            return {k: v for k, v in files.items() if split is None or split in k}

        def read(self, sources, split, images_path):
            with np.load(sources[0]) as z:
                np.save(images_path, z["images"])
                return z["labels"]

    monkeypatch.setattr(dataset, "_REGISTRY", dict(dataset._REGISTRY))
    dataset.register(Toy())
    x, y = data.load("toy", "test", tmp_path)
    np.testing.assert_array_equal(x, arrays["test"][0])
    np.testing.assert_array_equal(y, arrays["test"][1])
    assert (tmp_path / "prepared" / "toy-test-images.npy").exists()  # through the prepared cache
    prepared = data.prepare("toy", tmp_path, train_size=20)
    assert prepared.input_shape == (1, 4, 4) and prepared.num_classes == 10 and len(prepared.train[1]) == 20
    assert [problem for _, problem in data.verify("toy", tmp_path)] == [None, None]
    assert data.info("toy", tmp_path)["splits"]["train"]["count"] == 30
    (tmp_path / "toy-train.npz").write_bytes(b"broken")
    assert [problem for _, problem in data.verify("toy", tmp_path)][1].startswith("6 bytes, expected")
    with pytest.raises(ValueError, match="registered twice"):
        dataset.register(Toy())
