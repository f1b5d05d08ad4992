"""The data directory and the prepared cache of uint8 ``.npy`` files.

The data directory holds downloaded source files; its ``prepared/`` folder holds
one ``<key>-images.npy`` (uint8, N×C×H×W), ``<key>-labels.npy`` (int64, N) and
``<key>.json`` per converted split. The JSON file is written last and records
the size and modification time of every source file, so a missing, stale or
half-written cache is rebuilt, and a valid one is memory-mapped
(``np.load(mmap_mode='r')``) instead of parsing the sources again.

A split is built under a lock (``prepared/.<key>.lock``): a second builder
waits and then reads the first one's result, and the builder that holds the
lock removes the temporaries a killed build of the same split left behind.
"""

import errno
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from minids.errors import MinidsError
from minids.lock import exclusive, remove_stale_temporaries

CACHE_VERSION = 1


def default_data_dir():
    """``$MINIDS_DATA``, else ``$XDG_CACHE_HOME/minids``, else ``~/.cache/minids``."""
    if os.environ.get("MINIDS_DATA"):
        return Path(os.environ["MINIDS_DATA"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "minids"


def resolve_data_dir(data_dir=None):
    """The data directory as a Path: ``data_dir`` if given, else the default."""
    return Path(data_dir).expanduser() if data_dir else default_data_dir()


def ensure_writable(directory):
    """Create ``directory`` if needed; MinidsError when it cannot be written."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".minids-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise MinidsError(f"data directory {directory} is not writable ({err.strerror or err}); "
                          "choose another with --data-dir or MINIDS_DATA") from None
    return directory


def reserve(path):
    """Allocate the disk blocks of the (sparse) file at ``path`` now.

    A memory-mapped file written on a full disk kills the process with SIGBUS;
    after this a full disk is an ``OSError`` (ENOSPC) here instead. A no-op
    where ``os.posix_fallocate`` is missing.
    """
    if hasattr(os, "posix_fallocate"):
        with open(path, "r+b") as f:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)


def _signature(sources):
    return [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in map(Path, sources)]


def cached_split(data_dir, key, sources, build):
    """Return (images, labels) of a split from the prepared cache, building it once.

    ``sources``: the files the split is made from (their sizes and mtimes key
    the cache). ``build(images_path)`` parses them, writes the uint8 N×C×H×W
    images as a ``.npy`` file at ``images_path`` and returns the int64 labels.
    Images come back memory-mapped read-only; labels in memory.
    """
    folder = Path(data_dir) / "prepared"
    meta_path = folder / f"{key}.json"
    images_path, labels_path = folder / f"{key}-images.npy", folder / f"{key}-labels.npy"
    meta = {"version": CACHE_VERSION, "sources": _signature(sources)}
    cached = _read_valid(meta_path, meta, images_path, labels_path)
    if cached is not None:
        return cached
    ensure_writable(folder)
    with exclusive(folder / f".{key}.lock") as locked:
        cached = _read_valid(meta_path, meta, images_path, labels_path)  # built while we waited
        if cached is not None:
            return cached
        if locked:
            for path in (images_path, labels_path, meta_path):
                remove_stale_temporaries(path, suffix=path.suffix)
        _build(folder, key, meta, (images_path, labels_path, meta_path), build)
    return np.load(images_path, mmap_mode="r"), np.load(labels_path)


def _read_valid(meta_path, meta, images_path, labels_path):
    """The cached (images, labels) when ``meta_path`` records ``meta``, else None."""
    try:
        if json.loads(meta_path.read_text()) == meta:
            return np.load(images_path, mmap_mode="r"), np.load(labels_path)
    except (OSError, ValueError):
        pass  # no cache yet, or a stale or broken one: rebuild it
    return None


def _build(folder, key, meta, final_paths, build):
    """Build one split into temporaries, then move them onto ``final_paths`` (JSON last)."""
    images_path, labels_path, meta_path = final_paths
    meta_path.unlink(missing_ok=True)
    # Names of this builder's own, so that two runs preparing the same split at
    # once never write into each other's files; each final file is replaced
    # atomically and the JSON file comes last.
    tmp_images, tmp_labels, tmp_meta = (_private_path(folder, name) for name in
                                        (images_path.name, labels_path.name, meta_path.name))
    try:
        try:
            labels = np.asarray(build(tmp_images), dtype=np.int64)
            images = np.load(tmp_images, mmap_mode="r")
            if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(labels):
                raise MinidsError(f"internal error: bad prepared arrays for {key}")
            del images
            np.save(tmp_labels, labels)
            tmp_meta.write_text(json.dumps(meta))
            os.replace(tmp_images, images_path)
            os.replace(tmp_labels, labels_path)
            os.replace(tmp_meta, meta_path)
        except OSError as err:
            full = err.errno in (errno.ENOSPC, errno.EDQUOT)
            hint = "; free some space or choose another data directory (--data-dir or MINIDS_DATA)" if full else ""
            raise MinidsError(f"cannot prepare {key} in {folder}: {err.strerror or err}{hint}") from None
    finally:
        for path in (tmp_images, tmp_labels, tmp_meta):
            path.unlink(missing_ok=True)


def _private_path(folder, name):
    """A new, empty file in ``folder`` whose name starts ``.<name>.`` and ends ``.tmp<suffix>``."""
    fd, path = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp" + Path(name).suffix)
    os.close(fd)
    return Path(path)
