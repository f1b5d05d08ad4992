"""Data sets: loading, the prepared cache, downloads, preprocessing and batches.

``load(name, split)`` returns ``(images, labels)``: uint8 images (N, C, H, W)
(a read-only memory map of the prepared cache for the large sets) and int64
labels (N,) in 0..9. ``prepare`` adds the deterministic subsets, the validation
hold-out and the preprocessing statistics fitted on the training split;
``BatchIterator`` turns a split into normalised float32 batches.
"""

from dataclasses import dataclass

import numpy as np

from minids.data import cifar10, dataset, fashion_mnist, fashion_mnist_mini, svhn
from minids.data.batches import BatchIterator
from minids.data.cache import default_data_dir, resolve_data_dir
from minids.data.dataset import SPLITS, DataSet
from minids.data.download import download_files
from minids.data.preprocess import PREPROCESSING, fit_stats, normalize, stratified_order, subset
from minids.errors import MinidsError

__all__ = ["DATASETS", "SPLITS", "PREPROCESSING", "DataSet", "PreparedData", "BatchIterator", "load",
           "prepare", "normalize", "fit_stats", "download", "info", "verify", "source_files",
           "default_data_dir", "get"]

# The registry: one line per data set (docs/data.md, "Adding a data set").
dataset.register(svhn.DATASET)
dataset.register(cifar10.DATASET)
dataset.register(fashion_mnist.DATASET)
dataset.register(fashion_mnist_mini.DATASET)

get = dataset.get
DATASETS = dataset.names()
MINI_FILE = fashion_mnist_mini.MINI_FILE


def source_files(name, data_dir=None, split=None, extra=True):
    """The source files of ``name`` as a list of Paths where they are (or would be put)."""
    return get(name, split).sources(resolve_data_dir(data_dir), split, extra)


def download(name, data_dir=None, *, mirror=None, extra=True, progress=True):
    """Download and verify the source files of ``name`` not yet present; return their paths.

    Files found where no download is needed (Debian's Fashion-MNIST, an
    unpacked CIFAR-10 folder, the embedded ``fashion-mnist-mini``) are
    returned as they are. ``mirror`` (or ``$MINIDS_MIRROR``) replaces the base URL.
    """
    ds, folder = get(name), resolve_data_dir(data_dir)
    if ds.found_locally(folder, extra):
        return ds.sources(folder, extra=extra)
    return download_files(ds.files(None, extra), ds.base_url, folder, mirror=mirror, progress=progress)


_download = download  # load() has a parameter of the same name


def _missing_error(ds, missing, folder):
    files = ", ".join(p.name for p in missing)
    raise MinidsError(f"{ds.name}: missing {files} in {folder}; run `minids data download {ds.name}` "
                      f"(or --download), or fetch them from {ds.base_url} into that folder")


def load(name, split, data_dir=None, extra=True, download=False):
    """(images uint8 (N, C, H, W), labels int64 (N,)) of ``split`` ('train' or 'test').

    SVHN's training split is train + extra unless ``extra=False``. Sources are
    read from ``data_dir`` (default: :func:`default_data_dir`), converted once
    into its ``prepared/`` cache and memory-mapped from there; with
    ``download=True`` missing sources are downloaded first.
    """
    ds, folder = get(name, split), resolve_data_dir(data_dir)
    sources = ds.sources(folder, split, extra)
    missing = [p for p in sources if not p.exists()]
    if missing and download:
        _download(name, folder, extra=extra)
        sources = ds.sources(folder, split, extra)
    elif missing:  # name every missing file of the data set, not only this split's
        _missing_error(ds, [p for p in ds.sources(folder, extra=extra) if not p.exists()], folder)
    return ds.load(folder, split, sources, extra)


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
    num_classes: int


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
    return PreparedData(name, train, test, val, stats, tuple(train[0].shape[1:]), len(get(name).classes))


def info(name, data_dir=None, extra=True):
    """A dict describing ``name``: where its files are and, per split, the count,
    image shape and class histogram (loading, and so preparing, the data)."""
    ds = get(name)
    missing = [p for p in source_files(name, data_dir, extra=extra) if not p.exists()]
    if missing:
        _missing_error(ds, missing, resolve_data_dir(data_dir))
    splits = {}
    for split in SPLITS:
        images, labels = load(name, split, data_dir, extra=extra)
        splits[split] = {"count": len(labels), "shape": tuple(images.shape[1:]),
                         "histogram": np.bincount(labels, minlength=len(ds.classes)).tolist()}
    cache = resolve_data_dir(data_dir) / "prepared" if ds.cached else None
    return {"name": name, "files": [str(p) for p in source_files(name, data_dir, extra=extra)],
            "cache": str(cache) if cache else None, "splits": splits}


def verify(name, data_dir=None, extra=True):
    """[(path, problem or None)] for each source file of ``name``, checked against its known
    size and MD5 (for Fashion-MNIST, the MD5 of the decompressed contents, which Debian's
    re-compressed files share with the official ones)."""
    ds = get(name)
    return [(path, ds.check(path) if path.exists() else "missing")
            for path in ds.sources(resolve_data_dir(data_dir), extra=extra)]
