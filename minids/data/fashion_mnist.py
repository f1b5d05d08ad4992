"""Fashion-MNIST from its four IDX ``.gz`` files (60,000 train / 10,000 test, 1×28×28).

The files are looked for in the data directory, then in
``/usr/share/datasets/fashion-mnist/`` (Debian's ``dataset-fashion-mnist``).
Debian's ``.gz`` files carry no file name in their gzip header, so their MD5s
differ from the official ones; their decompressed contents have the official
MD5s (``RAW_MD5``), which is what ``verify`` checks for local files.
"""

import gzip
import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np

from minids.data.dataset import DataSet
from minids.errors import MinidsError

BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
INPUT_SHAPE = (1, 28, 28)
# official .gz files: name -> (size in bytes, md5)
FILES = {
    "train-images-idx3-ubyte.gz": (26421880, "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    "train-labels-idx1-ubyte.gz": (29515, "25c81989df183df01b3e8a0aad5dffbe"),
    "t10k-images-idx3-ubyte.gz": (4422102, "bef4ecab320f06d8554ea6380940ec79"),
    "t10k-labels-idx1-ubyte.gz": (5148, "bb300cfdad3c16e7a12a480ee83cd310"),
}
# md5 of the decompressed contents (the same for the official and Debian files)
RAW_MD5 = {
    "train-images-idx3-ubyte.gz": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte.gz": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte.gz": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte.gz": "15d484375f8d13e6eb1aabb0c3f46965",
}
_PREFIX = {"train": "train", "test": "t10k"}


def split_files(split):
    """(images file, labels file) names of ``split``."""
    return [f"{_PREFIX[split]}-images-idx3-ubyte.gz", f"{_PREFIX[split]}-labels-idx1-ubyte.gz"]


def find_dir(data_dir):
    """``data_dir`` when it holds all four files, else Debian's folder when that does, else None."""
    for folder in (Path(data_dir), SYSTEM_DIR):
        if all((folder / name).exists() for name in FILES):
            return folder
    return None


def read_idx(path, ndim):
    """The uint8 array of an IDX ``.gz`` file with ``ndim`` dimensions (big-endian header)."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise MinidsError(f"{path} is truncated or corrupt ({err})") from None
    if len(raw) < 4 + 4 * ndim or raw[:4] != bytes([0, 0, 8, ndim]):
        raise MinidsError(f"{path} is not an IDX file of {ndim}-D unsigned bytes (bad header)")
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise MinidsError(f"{path} holds {data.size} bytes of data, its header says {dims}")
    return data.reshape(dims)


def read(folder, split):
    """(images uint8 N×1×28×28, labels int64 (N,)) of ``split`` from ``folder``."""
    image_file, label_file = (Path(folder) / name for name in split_files(split))
    images, labels = read_idx(image_file, 3), read_idx(label_file, 1)
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise MinidsError(f"{image_file} has shape {images.shape} for {len(labels)} labels, expected N×28×28")
    if labels.max(initial=0) > 9:
        raise MinidsError(f"{label_file}: labels out of range (max {labels.max()}), expected 0..9")
    return images[:, None], labels.astype(np.int64)


def check_contents(path):
    """None when the decompressed contents of ``path`` have the official MD5, else the reason."""
    digest = hashlib.md5()
    try:
        with gzip.open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except (OSError, EOFError, zlib.error) as err:
        return f"corrupt ({err})"
    want = RAW_MD5[Path(path).name]
    return None if digest.hexdigest() == want else f"contents md5 {digest.hexdigest()}, expected {want}"


class FashionMNIST(DataSet):
    """Fashion-MNIST, from the data directory or Debian's folder."""

    name = "fashion-mnist"
    classes = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
               "Bag", "Ankle boot")
    input_shape = INPUT_SHAPE
    base_url = BASE_URL

    def files(self, split=None, extra=True):
        names = list(FILES) if split is None else split_files(split)
        return {name: FILES[name] for name in names}

    def locate(self, data_dir):
        return find_dir(data_dir) or Path(data_dir)

    def found_locally(self, data_dir, extra=True):
        return find_dir(data_dir) is not None

    def check(self, path):
        return check_contents(path)

    def read(self, sources, split, images_path):
        images, labels = read(sources[0].parent, split)
        np.save(images_path, images)
        return labels


DATASET = FashionMNIST()
