"""Regenerate ``minids/data/fashion_mnist_mini.npz`` from the full Fashion-MNIST files.

The embedded ``fashion-mnist-mini`` data set is a stratified subset of the real
Fashion-MNIST (MIT licence, Zalando Research): 1000 training and 200 test images
per class, picked deterministically (``stratified_order`` with SEED) from the
official files, e.g. those of Debian's ``dataset-fashion-mnist``. The source
indices are stored with the images, and the result is checked against the full
files before it is written.

    python scripts/make_fashion_mnist_mini.py [--source DIR] [--check-only]
"""

import argparse
from pathlib import Path

import numpy as np

from minids.data import fashion_mnist
from minids.data.preprocess import stratified_order

SEED = 2015
PER_CLASS = {"train": 1000, "test": 200}
OUT = Path(__file__).resolve().parent.parent / "minids" / "data" / "fashion_mnist_mini.npz"


def build(source):
    """The arrays of the mini data set, picked from the full files in ``source``."""
    arrays = {}
    for split, per_class in PER_CLASS.items():
        images, labels = fashion_mnist.read(source, split)
        index = np.sort(stratified_order(labels, SEED)[:10 * per_class])
        arrays[f"{split}_images"] = images[index]
        arrays[f"{split}_labels"] = labels[index].astype(np.uint8)
        arrays[f"{split}_index"] = index.astype(np.int32)
    return arrays


def check(arrays, source):
    """Raise unless ``arrays`` equal the full files at their indices, balanced by class."""
    for split, per_class in PER_CLASS.items():
        images, labels = fashion_mnist.read(source, split)
        index = arrays[f"{split}_index"]
        assert np.array_equal(arrays[f"{split}_images"], images[index]), f"{split} images differ"
        assert np.array_equal(arrays[f"{split}_labels"], labels[index]), f"{split} labels differ"
        assert (np.bincount(arrays[f"{split}_labels"], minlength=10) == per_class).all(), "unbalanced"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=fashion_mnist.SYSTEM_DIR,
                        help="folder with the four official .gz files")
    parser.add_argument("--check-only", action="store_true", help="only check the existing file")
    args = parser.parse_args()
    if args.check_only:
        with np.load(OUT) as z:
            check({k: z[k] for k in z.files}, args.source)
        print(f"{OUT} matches {args.source}")
        return
    arrays = build(args.source)
    check(arrays, args.source)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
