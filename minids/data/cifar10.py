"""CIFAR-10 (python version) from ``cifar-10-python.tar.gz`` or ``cifar-10-batches-py/``.

Each batch is a pickle of a dict with ``data`` (uint8 N×3072: the 1024 red,
then green, then blue pixels of each image, rows first) and ``labels`` (0..9).
Training is ``data_batch_1..5`` (50,000 images), test is ``test_batch`` (10,000).
The pickles are read with an unpickler that only builds NumPy arrays.
"""

import io
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

from minids.data.dataset import DataSet
from minids.errors import MinidsError

BASE_URL = "https://www.cs.toronto.edu/~kriz/"
ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
FILES = {ARCHIVE: (170498071, "c58f30108f718f92721af3b95e74349a")}
INPUT_SHAPE = (3, 32, 32)
_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
BATCH_NAMES = _BATCHES["train"] + _BATCHES["test"]
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar")}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a CIFAR-10 batch")
        return super().find_class(module, name)


def _parse(raw, where):
    """(images uint8 N×3×32×32, labels int64) from one pickled batch."""
    try:
        batch = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
        batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
        data, labels = np.asarray(batch["data"]), np.asarray(batch["labels"])
    except (pickle.UnpicklingError, EOFError, KeyError, AttributeError, ValueError, TypeError) as err:
        raise MinidsError(f"{where} is not a valid CIFAR-10 batch ({err})") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise MinidsError(f"{where}: data has shape {data.shape} ({data.dtype}) and {len(labels)} labels, "
                          "expected uint8 N×3072 and N labels")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise MinidsError(f"{where}: labels out of range {labels.min()}..{labels.max()}, expected 0..9")
    return data.reshape(-1, *INPUT_SHAPE), labels.astype(np.int64)


def source(data_dir):
    """The archive or extracted folder under ``data_dir``, or None."""
    for name in (ARCHIVE, FOLDER):
        if (Path(data_dir) / name).exists():
            return Path(data_dir) / name
    return None


def read(path, split):
    """(images uint8 N×3×32×32, labels int64 (N,)) of ``split`` from the archive or folder."""
    path = Path(path)
    raws = []
    if path.is_dir():
        for name in _BATCHES[split]:
            member = path / name
            if not member.exists():
                raise MinidsError(f"{member} is missing; the CIFAR-10 folder is incomplete")
            raws.append((member.read_bytes(), str(member)))
    else:
        try:
            with tarfile.open(path, "r:gz") as tar:
                for name in _BATCHES[split]:
                    try:
                        member = tar.extractfile(f"{FOLDER}/{name}")
                    except KeyError:
                        raise MinidsError(f"{path} has no {FOLDER}/{name}; is it cifar-10-python.tar.gz?") from None
                    raws.append((member.read(), f"{path}:{name}"))
        except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
            raise MinidsError(f"{path} is truncated or corrupt ({err})") from None
    parts = [_parse(raw, where) for raw, where in raws]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


class CIFAR10(DataSet):
    """CIFAR-10 from its archive, or from the folder the archive unpacks to."""

    name = "cifar10"
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    input_shape = INPUT_SHAPE
    base_url = BASE_URL

    def files(self, split=None, extra=True):
        return dict(FILES)

    def sources(self, data_dir, split=None, extra=True):
        return [source(data_dir) or Path(data_dir) / ARCHIVE]

    def found_locally(self, data_dir, extra=True):
        return source(data_dir) is not None

    def check(self, path):
        if Path(path).is_dir():
            return None if all((Path(path) / name).exists() for name in BATCH_NAMES) else "incomplete folder"
        return super().check(path)

    def cache_sources(self, sources):
        return sorted(sources[0].glob("*_batch*")) if sources[0].is_dir() else sources

    def read(self, sources, split, images_path):
        images, labels = read(sources[0], split)
        np.save(images_path, images)
        return labels


DATASET = CIFAR10()
