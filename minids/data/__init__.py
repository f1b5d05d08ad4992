"""Data sets: loading, the prepared cache, downloads, preprocessing and batches.

``load(name, split)`` returns ``(images, labels)``: uint8 images (N, C, H, W)
(a read-only memory map of the prepared cache for the large sets) and int64
labels (N,) in 0..9. ``prepare`` adds the deterministic subsets, the validation
hold-out and the preprocessing statistics fitted on the training split;
``BatchIterator`` turns a split into normalised float32 batches.
"""

import functools
import importlib.resources
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minids.data import cifar10, fashion_mnist, svhn
from minids.data.batches import BatchIterator
from minids.data.cache import cached_split, default_data_dir, resolve_data_dir
from minids.data.download import check_file, download_files
from minids.data.preprocess import PREPROCESSING, fit_stats, normalize, stratified_order, subset
from minids.errors import MinidsError

__all__ = ["DATASETS", "SPLITS", "PREPROCESSING", "PreparedData", "BatchIterator", "load", "prepare",
           "normalize", "fit_stats", "download", "info", "verify", "source_files", "default_data_dir"]

DATASETS = ("svhn", "cifar10", "fashion-mnist", "fashion-mnist-mini")
SPLITS = ("train", "test")
NUM_CLASSES = 10
_FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
            "Bag", "Ankle boot")
#: the name of each class number, per data set (SVHN's label 10 is digit 0, stored as class 0)
CLASS_NAMES = {"svhn": tuple(str(d) for d in range(10)),
               "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                           "ship", "truck"),
               "fashion-mnist": _FASHION, "fashion-mnist-mini": _FASHION}
MINI_FILE = "fashion_mnist_mini.npz"
_MODULES = {"svhn": svhn, "cifar10": cifar10, "fashion-mnist": fashion_mnist}


def _check(name, split=None):
    if name not in DATASETS:
        raise MinidsError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    if split is not None and split not in SPLITS:
        raise MinidsError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")


def _wanted(name, split=None, extra=True):
    """{file name: (size, md5)} of the source files ``name`` needs (for ``split``, or all)."""
    files = _MODULES[name].FILES
    if name == "svhn":
        keep = set(svhn.split_files("train", extra) + svhn.split_files("test")) if split is None \
            else set(svhn.split_files(split, extra))
        return {k: v for k, v in files.items() if k in keep}
    if name == "fashion-mnist" and split is not None:
        return {k: files[k] for k in fashion_mnist.split_files(split)}
    return dict(files)


def source_files(name, data_dir=None, split=None, extra=True):
    """The source files of ``name`` as a list of Paths where they are (or would be put)."""
    _check(name, split)
    if name == "fashion-mnist-mini":
        return [Path(str(importlib.resources.files("minids.data") / MINI_FILE))]
    folder = resolve_data_dir(data_dir)
    if name == "cifar10":
        return [cifar10.source(folder) or folder / cifar10.ARCHIVE]
    if name == "fashion-mnist":
        folder = fashion_mnist.find_dir(folder) or folder
    return [folder / f for f in _wanted(name, split, extra)]


def download(name, data_dir=None, *, mirror=None, extra=True, progress=True):
    """Download and verify the source files of ``name`` not yet present; return their paths.

    Fashion-MNIST found in Debian's folder and the embedded ``fashion-mnist-mini``
    need nothing. ``mirror`` (or ``$MINIDS_MIRROR``) replaces the base URL.
    """
    _check(name)
    if name == "fashion-mnist-mini":
        return source_files(name)
    if name == "fashion-mnist" and fashion_mnist.find_dir(resolve_data_dir(data_dir)):
        return source_files(name, data_dir)
    if name == "cifar10" and cifar10.source(resolve_data_dir(data_dir)):
        return source_files(name, data_dir)
    return download_files(_wanted(name, None, extra), _MODULES[name].BASE_URL,
                          resolve_data_dir(data_dir), mirror=mirror, progress=progress)


_download = download  # load() has a parameter of the same name


def _missing_error(name, missing, folder):
    files = ", ".join(p.name for p in missing)
    url = _MODULES[name].BASE_URL
    raise MinidsError(f"{name}: missing {files} in {folder}; run `minids data download {name}` "
                      f"(or --download), or fetch them from {url} into that folder")


@functools.lru_cache(maxsize=1)
def _mini():
    with importlib.resources.as_file(importlib.resources.files("minids.data") / MINI_FILE) as path:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
    for array in arrays.values():
        array.flags.writeable = False
    return arrays


def load(name, split, data_dir=None, extra=True, download=False):
    """(images uint8 (N, C, H, W), labels int64 (N,)) of ``split`` ('train' or 'test').

    SVHN's training split is train + extra unless ``extra=False``. Sources are
    read from ``data_dir`` (default: :func:`default_data_dir`), converted once
    into its ``prepared/`` cache and memory-mapped from there; with
    ``download=True`` missing sources are downloaded first.
    """
    _check(name, split)
    if name == "fashion-mnist-mini":
        mini = _mini()
        return mini[f"{split}_images"], mini[f"{split}_labels"].astype(np.int64)
    folder = resolve_data_dir(data_dir)
    sources = source_files(name, folder, split, extra)
    missing = [p for p in sources if not p.exists()]
    if missing and download:
        _download(name, folder, extra=extra)
        sources = source_files(name, folder, split, extra)
    elif missing:  # name every missing file of the data set, not only this split's
        _missing_error(name, [p for p in source_files(name, folder, extra=extra) if not p.exists()], folder)
    key = f"{name}-{split}" + ("+extra" if name == "svhn" and split == "train" and extra else "")
    if name == "svhn":
        return cached_split(folder, key, sources, lambda out: svhn.convert(sources, out))
    if name == "cifar10" and sources[0].is_dir():
        cache_sources = sorted(sources[0].glob("*_batch*"))
    else:
        cache_sources = sources

    def build(out):
        module = cifar10 if name == "cifar10" else fashion_mnist
        images, labels = module.read(sources[0] if name == "cifar10" else sources[0].parent, split)
        np.save(out, images)
        return labels

    return cached_split(folder, key, cache_sources, build)


@dataclass
class PreparedData:
    """A data set ready for training: splits as (images uint8 (N,C,H,W), labels int64 (N,)).

    ``stats`` describes the preprocessing (see :mod:`minids.data.preprocess`);
    ``val`` is None without a validation hold-out.
    """

    name: str
    train: tuple
    test: tuple
    val: tuple | None
    stats: dict
    input_shape: tuple
    num_classes: int = NUM_CLASSES


def _size_error(option, size, available):
    raise MinidsError(f"{option} {size} is more than the {available} images available")


def prepare(name, data_dir=None, *, train_size=None, test_size=None, val_size=0, seed=0,
            preprocess="standard", extra=True, download=False):
    """Load ``name`` and make it ready for training (see :class:`PreparedData`).

    ``val_size`` images are held out of the training split (stratified, seeded);
    ``train_size`` / ``test_size`` keep a deterministic stratified subset (the
    first N of a seeded class-interleaved order). Statistics of ``preprocess``
    ('standard' or 'gcn-zca') are fitted on the resulting training split.
    """
    if preprocess not in PREPROCESSING:
        raise MinidsError(f"unknown preprocessing {preprocess!r}; choose one of {', '.join(PREPROCESSING)}")
    train = load(name, "train", data_dir, extra=extra, download=download)
    test = load(name, "test", data_dir, extra=extra, download=download)
    val = None
    if val_size or train_size:
        order = stratified_order(train[1], seed)
        if val_size + (train_size or 0) > len(order) or val_size >= len(order):
            asked = ("--val-size + --train-size" if val_size and train_size
                     else "--train-size" if train_size else "--val-size")
            _size_error(asked, val_size + (train_size or 0), len(order))
        if val_size:
            val = subset(*train, order[:val_size])
        rest = order[val_size:]
        train = subset(*train, rest[:train_size] if train_size else rest)
    if test_size:
        if test_size > len(test[1]):
            _size_error("--test-size", test_size, len(test[1]))
        test = subset(*test, stratified_order(test[1], seed)[:test_size])
    stats = fit_stats(train[0], preprocess)
    return PreparedData(name, train, test, val, stats, tuple(train[0].shape[1:]))


def info(name, data_dir=None, extra=True):
    """A dict describing ``name``: where its files are and, per split, the count,
    image shape and class histogram (loading, and so preparing, the data)."""
    _check(name)
    missing = [p for p in source_files(name, data_dir, extra=extra) if not p.exists()]
    if missing:
        _missing_error(name, missing, resolve_data_dir(data_dir))
    splits = {}
    for split in SPLITS:
        images, labels = load(name, split, data_dir, extra=extra)
        splits[split] = {"count": len(labels), "shape": tuple(images.shape[1:]),
                         "histogram": np.bincount(labels, minlength=NUM_CLASSES).tolist()}
    cache = None if name == "fashion-mnist-mini" else resolve_data_dir(data_dir) / "prepared"
    return {"name": name, "files": [str(p) for p in source_files(name, data_dir, extra=extra)],
            "cache": str(cache) if cache else None, "splits": splits}


def verify(name, data_dir=None, extra=True):
    """[(path, problem or None)] for each source file of ``name``, checked against its known
    size and MD5 (for Fashion-MNIST, the MD5 of the decompressed contents, which Debian's
    re-compressed files share with the official ones)."""
    _check(name)
    if name == "fashion-mnist-mini":
        return [(p, None) for p in source_files(name)]
    results = []
    for path in source_files(name, data_dir, extra=extra):
        if not path.exists():
            results.append((path, "missing"))
        elif path.is_dir():
            results.append((path, None if all((path / b).exists() for b in cifar10.BATCH_NAMES)
                            else "incomplete folder"))
        elif name == "fashion-mnist":
            results.append((path, fashion_mnist.check_contents(path)))
        else:
            results.append((path, check_file(path, *_MODULES[name].FILES[path.name])))
    return results

