"""The interface every data set implements, and the registry of them.

A data set is one module that defines a :class:`DataSet` subclass and
registers one instance of it in :mod:`minids.data` (docs/data.md, "Adding a
data set"). Everything else (``load``, ``prepare``, ``download``, ``verify``,
``info``, the CLI's choices, the class names of ``minids evaluate``) asks
the registry, never the data set's name.
"""

from pathlib import Path

from minids.data.cache import cached_split
from minids.data.download import check_file
from minids.errors import MinidsError

SPLITS = ("train", "test")


class DataSet:
    """One data set: its files and where they come from, how to read and check them.

    Class attributes: ``name`` (the ``--data`` value), ``classes`` (the
    name of each class number), ``input_shape`` (C, H, W), ``base_url``
    (where its files are downloaded from; None when nothing is downloaded),
    ``cached`` (whether :meth:`load` goes through the prepared cache).
    Subclasses implement :meth:`files` and :meth:`read`; the other methods
    have defaults that fit a set of plain files in the data directory.
    """

    name = None
    classes = ()
    input_shape = None
    base_url = None
    cached = True

    def files(self, split=None, extra=True):
        """{file name: (bytes, md5)} of the source files of ``split`` (None: every split)."""
        raise NotImplementedError

    def read(self, sources, split, images_path):
        """Parse ``sources`` (the Paths of :meth:`sources`) of ``split``; write the uint8
        images (N, C, H, W) as a ``.npy`` file at ``images_path``; return the int64 labels."""
        raise NotImplementedError

    def locate(self, data_dir):
        """The folder that holds (or will hold) the files, under or instead of ``data_dir``."""
        return Path(data_dir)

    def sources(self, data_dir, split=None, extra=True):
        """The source files (Paths, present or not) of ``split`` (None: every split)."""
        folder = self.locate(data_dir)
        return [folder / name for name in self.files(split, extra)]

    def found_locally(self, data_dir, extra=True):
        """True when the files are somewhere that needs no download (e.g. a system folder);
        False sends ``download`` through :func:`minids.data.download.download_files`,
        which verifies the files present and fetches the others."""
        return False

    def check(self, path):
        """None when the source file ``path`` is intact, else a one-line reason."""
        return check_file(path, *self.files()[Path(path).name])

    def cache_key(self, split, extra=True):
        """The name of ``split`` in the prepared cache."""
        return f"{self.name}-{split}"

    def cache_sources(self, sources):
        """The files whose sizes and times key the prepared cache (default: ``sources``)."""
        return sources

    def load(self, data_dir, split, sources, extra=True):
        """(images uint8 (N, C, H, W) memory map, labels int64 (N,)) of ``split``, through the cache."""
        return cached_split(data_dir, self.cache_key(split, extra), self.cache_sources(sources),
                            lambda out: self.read(sources, split, out))


_REGISTRY = {}


def register(dataset):
    """Add ``dataset`` (a :class:`DataSet` instance) to the registry; returns it."""
    if dataset.name in _REGISTRY:
        raise ValueError(f"data set {dataset.name!r} is registered twice")
    _REGISTRY[dataset.name] = dataset
    return dataset


def names():
    """The registered data set names, in registration order."""
    return tuple(_REGISTRY)


def get(name, split=None):
    """The registered data set ``name``; MinidsError for an unknown name or split."""
    if name not in _REGISTRY:
        raise MinidsError(f"unknown data set {name!r}; choose one of {', '.join(_REGISTRY)}")
    if split is not None and split not in SPLITS:
        raise MinidsError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    return _REGISTRY[name]
