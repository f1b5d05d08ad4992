"""SVHN "format 2" (cropped 32×32 digits) from ``{train,test,extra}_32x32.mat``.

Each file holds ``X`` (uint8, MATLAB dims 32×32×3×N: row, column, channel,
image) and ``y`` (N×1, labels 1..10 where 10 means the digit 0). Pixels are
streamed into the prepared cache as uint8 N×3×32×32, so even ``extra`` (531,131
images) is never inflated whole in memory.
"""

import numpy as np

from minids.data import mat5
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


def _count(path):
    """Number of images in a .mat file, read from the dims of ``X``."""
    for var in mat5.variables(path):
        if var.name == "X":
            if len(var.dims) != 4 or var.dims[:3] != (32, 32, 3):
                raise MinidsError(f"{path}: X has shape {var.dims}, expected 32×32×3×N")
            if var.dtype.itemsize != 1:
                raise MinidsError(f"{path}: X is not uint8 (stored as {var.dtype})")
            return var.dims[3]
    raise MinidsError(f"{path} has no variable X; is it an SVHN format-2 file?")


def _read_into(path, out):
    """Stream ``X`` of ``path`` into ``out`` (uint8 N×3×32×32); return labels int64 (N,)."""
    n, labels = len(out), None
    for var in mat5.variables(path):
        if var.name == "X":
            for lo in range(0, n, _CHUNK_IMAGES):
                k = min(_CHUNK_IMAGES, n - lo)
                # column-major 32×32×3×k is C-order k×3×32(column)×32(row)
                out[lo:lo + k] = var.read(k * 3072).reshape(k, 3, 32, 32).transpose(0, 1, 3, 2)
        elif var.name == "y":
            if sorted(var.dims) != [1, n]:
                raise MinidsError(f"{path}: y has shape {var.dims}, expected {n}×1")
            labels = var.read(n).astype(np.int64)
    if labels is None:
        raise MinidsError(f"{path} has no variable y; is it an SVHN format-2 file?")
    if labels.min() < 1 or labels.max() > 10:
        raise MinidsError(f"{path}: labels out of range {labels.min()}..{labels.max()}, expected 1..10")
    labels[labels == 10] = 0
    return labels


def convert(paths, images_path):
    """Write the images of all ``paths`` (in order) to ``images_path``; return their labels."""
    counts = [_count(p) for p in paths]
    out = np.lib.format.open_memmap(images_path, mode="w+", dtype=np.uint8,
                                    shape=(sum(counts), *INPUT_SHAPE))
    labels, start = [], 0
    for path, count in zip(paths, counts):
        labels.append(_read_into(path, out[start:start + count]))
        start += count
    out.flush()
    del out
    return np.concatenate(labels)
