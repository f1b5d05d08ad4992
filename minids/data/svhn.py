"""SVHN "format 2" (cropped 32×32 digits) from ``{train,test,extra}_32x32.mat``.

Each file holds ``X`` (uint8, MATLAB dims 32×32×3×N: row, column, channel,
image) and ``y`` (N×1, labels 1..10 where 10 means the digit 0). They are
read with ``scipy.io`` one variable at a time and written into the prepared
cache as uint8 N×3×32×32 in chunks, so converting ``extra`` (531,131 images)
holds its 1.6 GB of uint8 pixels once, and never as float.
"""

import zlib

import numpy as np
import scipy.io

from minids.data.cache import reserve
from minids.data.dataset import DataSet
from minids.errors import MinidsError

BASE_URL = "http://ufldl.stanford.edu/housenumbers/"
# file name -> (size in bytes, md5)
FILES = {
    "train_32x32.mat": (182040794, "e26dedcc434d2e4c54c9b2d4a06d8373"),
    "test_32x32.mat": (64275384, "eb5a983be6a315427106f1b164d9cef3"),
    "extra_32x32.mat": (1329278602, "a93ce644f1a588dc4d68dda5feec44a7"),
}
INPUT_SHAPE = (3, 32, 32)
_CHUNK_IMAGES = 4096


def split_files(split, extra=True):
    """Source file names of ``split``; training adds ``extra`` unless ``extra=False``."""
    if split == "test":
        return ["test_32x32.mat"]
    return ["train_32x32.mat", "extra_32x32.mat"] if extra else ["train_32x32.mat"]


def _read_error(path, err):
    """A one-line error for a .mat file scipy.io could not read."""
    message = str(err).lower()
    if isinstance(err, (EOFError, zlib.error)) or any(
            hint in message for hint in ("truncated", "not enough", "could not read")):
        return MinidsError(f"{path} is truncated or corrupt ({err}); download it again")
    return MinidsError(f"{path} is not a MATLAB .mat file that scipy.io can read ({err})")


def _load(path, name):
    """Load one variable of a .mat file with scipy.io; MinidsError when unreadable."""
    try:
        return scipy.io.loadmat(path, variable_names=[name]).get(name)
    except Exception as err:  # scipy raises ValueError, TypeError, zlib.error, EOFError...
        raise _read_error(path, err) from None


def _count(path):
    """Number of images in a .mat file, read from the header of ``X`` (no pixels loaded)."""
    try:
        shapes = {name: (shape, cls) for name, shape, cls in scipy.io.whosmat(path)}
    except Exception as err:
        raise _read_error(path, err) from None
    if "X" not in shapes:
        raise MinidsError(f"{path} has no variable X; is it an SVHN format-2 file?")
    shape, cls = shapes["X"]
    if len(shape) != 4 or tuple(shape[:3]) != (32, 32, 3):
        raise MinidsError(f"{path}: X has shape {tuple(shape)}, expected 32×32×3×N")
    if cls != "uint8":
        raise MinidsError(f"{path}: X is not uint8 (stored as {cls})")
    return shape[3]


def _read_into(path, out):
    """Copy ``X`` of ``path`` into ``out`` (uint8 N×3×32×32); return labels int64 (N,)."""
    n = len(out)
    pixels = _load(path, "X")  # 32×32×3×N: row, column, channel, image; fails if truncated
    y = _load(path, "y")
    if y is None:
        raise MinidsError(f"{path} has no variable y; is it an SVHN format-2 file?")
    if sorted(y.shape) != [1, n]:
        raise MinidsError(f"{path}: y has shape {y.shape}, expected {n}×1")
    labels = y.reshape(-1).astype(np.int64)
    if labels.min() < 1 or labels.max() > 10:
        raise MinidsError(f"{path}: labels out of range {labels.min()}..{labels.max()}, expected 1..10")
    labels[labels == 10] = 0
    for lo in range(0, n, _CHUNK_IMAGES):
        out[lo:lo + _CHUNK_IMAGES] = pixels[:, :, :, lo:lo + _CHUNK_IMAGES].transpose(3, 2, 0, 1)
    return labels


def convert(paths, images_path):
    """Write the images of all ``paths`` (in order) to ``images_path``; return their labels."""
    counts = [_count(p) for p in paths]
    out = np.lib.format.open_memmap(images_path, mode="w+", dtype=np.uint8,
                                    shape=(sum(counts), *INPUT_SHAPE))
    reserve(images_path)
    labels, start = [], 0
    for path, count in zip(paths, counts):
        labels.append(_read_into(path, out[start:start + count]))
        start += count
    out.flush()
    del out
    return np.concatenate(labels)


class SVHN(DataSet):
    """SVHN format 2; the training split is train + extra unless ``extra=False``."""

    name = "svhn"
    classes = tuple(str(d) for d in range(10))  # label 10 (the digit 0) is stored as class 0
    input_shape = INPUT_SHAPE
    base_url = BASE_URL

    def files(self, split=None, extra=True):
        names = split_files("train", extra) + split_files("test") if split is None else split_files(split, extra)
        return {name: FILES[name] for name in FILES if name in names}

    def cache_key(self, split, extra=True):
        return f"svhn-{split}" + ("+extra" if split == "train" and extra else "")

    def read(self, sources, split, images_path):
        return convert(sources, images_path)


DATASET = SVHN()
