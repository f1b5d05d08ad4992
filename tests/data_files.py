"""Writers of small data files in each real format, for the data tests."""

import gzip
import io
import pickle
import struct
import tarfile

import numpy as np
import scipy.io


def random_split(n, shape, seed):
    """(images uint8 (n, *shape), labels int64 (n,)) with every class present when n >= 10."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8), labels.astype(np.int64)


def write_svhn(path, images, labels, compress=True):
    """An SVHN format-2 .mat file: X is H×W×C×N, y is N×1 with 10 for the digit 0."""
    y = np.where(labels == 0, 10, labels).astype(np.float64).reshape(-1, 1)
    scipy.io.savemat(path, {"X": images.transpose(2, 3, 1, 0), "y": y}, do_compression=compress)


def _pickle(images, labels):
    return pickle.dumps({"batch_label": "test", "data": images.reshape(len(images), -1),
                         "labels": [int(v) for v in labels]})


def write_cifar(path, train, test):
    """A cifar-10-python.tar.gz with five training batches and a test batch."""
    members = {f"data_batch_{i + 1}": _pickle(x, y) for i, (x, y) in
               enumerate(zip(np.array_split(train[0], 5), np.array_split(train[1], 5)))}
    members["test_batch"] = _pickle(*test)
    with tarfile.open(path, "w:gz") as tar:
        for name, raw in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))


def write_idx(path, array):
    """An IDX .gz file of unsigned bytes."""
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_fashion(folder, train, test):
    """The four Fashion-MNIST IDX files in ``folder``; images given as (N, 1, 28, 28)."""
    for prefix, (images, labels) in (("train", train), ("t10k", test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images[:, 0])
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels.astype(np.uint8))
