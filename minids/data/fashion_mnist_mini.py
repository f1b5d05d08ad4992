"""``fashion-mnist-mini``: 10,000 training and 2,000 test images of Fashion-MNIST embedded
in the package (``fashion_mnist_mini.npz``), so that a first run needs no download."""

import functools
import importlib.resources
from pathlib import Path

import numpy as np

from minids.data import fashion_mnist
from minids.data.dataset import DataSet

MINI_FILE = "fashion_mnist_mini.npz"


@functools.lru_cache(maxsize=1)
def _arrays():
    with importlib.resources.as_file(importlib.resources.files("minids.data") / MINI_FILE) as path:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
    for array in arrays.values():
        array.flags.writeable = False
    return arrays


class FashionMNISTMini(DataSet):
    """The embedded subset: nothing to download, locate or cache."""

    name = "fashion-mnist-mini"
    classes = fashion_mnist.FashionMNIST.classes
    input_shape = fashion_mnist.INPUT_SHAPE
    cached = False

    def files(self, split=None, extra=True):
        return {}

    def sources(self, data_dir, split=None, extra=True):
        return [Path(str(importlib.resources.files("minids.data") / MINI_FILE))]

    def found_locally(self, data_dir, extra=True):
        return True

    def check(self, path):
        return None

    def load(self, data_dir, split, sources, extra=True):
        arrays = _arrays()
        return arrays[f"{split}_images"], arrays[f"{split}_labels"].astype(np.int64)


DATASET = FashionMNISTMini()
