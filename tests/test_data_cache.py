"""The prepared cache: converted once, memory-mapped afterwards, rebuilt when stale;
bounded memory while converting and iterating."""

import errno
import os
import threading
import time
import tracemalloc

import numpy as np
import pytest

from data_files import random_split, write_svhn
from minids import data
from minids.data import svhn
from minids.data.cache import reserve
from minids.data.preprocess import fit_stats
from minids.errors import MinidsError


@pytest.fixture
def svhn_test(tmp_path):
    images, labels = random_split(600, (3, 32, 32), 11)
    write_svhn(tmp_path / "test_32x32.mat", images, labels)
    return images, labels


def test_cache_is_memory_mapped_and_reused(tmp_path, svhn_test, monkeypatch):
    x, y = data.load("svhn", "test", tmp_path)
    assert isinstance(x, np.memmap) and not x.flags.writeable
    assert (tmp_path / "prepared" / "svhn-test-images.npy").exists()

    def fail(*args):
        raise AssertionError("parsed the .mat file again")

    monkeypatch.setattr(svhn, "convert", fail)
    x2, y2 = data.load("svhn", "test", tmp_path)
    assert isinstance(x2, np.memmap)
    np.testing.assert_array_equal(x2, svhn_test[0])
    np.testing.assert_array_equal(y2, svhn_test[1])


def test_cache_rebuilt_when_source_changes_or_cache_breaks(tmp_path, svhn_test):
    data.load("svhn", "test", tmp_path)
    images, labels = random_split(300, (3, 32, 32), 12)
    write_svhn(tmp_path / "test_32x32.mat", images, labels)
    x, y = data.load("svhn", "test", tmp_path)
    np.testing.assert_array_equal(x, images)
    (tmp_path / "prepared" / "svhn-test.json").unlink()
    (tmp_path / "prepared" / "svhn-test-images.npy").write_bytes(b"half-written")
    np.testing.assert_array_equal(data.load("svhn", "test", tmp_path)[1], labels)


def test_cache_dir_not_writable(tmp_path, svhn_test):
    (tmp_path / "prepared").write_text("a file where the cache folder should be")
    with pytest.raises(MinidsError, match="is not writable.*--data-dir or MINIDS_DATA"):
        data.load("svhn", "test", tmp_path)


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("MINIDS_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert data.default_data_dir() == tmp_path / "minids"
    monkeypatch.setenv("MINIDS_DATA", str(tmp_path / "elsewhere"))
    assert data.default_data_dir() == tmp_path / "elsewhere"


def test_conversion_holds_the_uint8_pixels_once(tmp_path, monkeypatch):
    images, labels = random_split(2000, (3, 32, 32), 13)
    write_svhn(tmp_path / "test_32x32.mat", images, labels)
    monkeypatch.setattr(svhn, "_CHUNK_IMAGES", 64)
    tracemalloc.start()
    try:
        data.load("svhn", "test", tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # scipy.io reads X whole, once, as uint8; never a second copy, never float32 (4x)
    assert peak < 1.5 * images.nbytes


def test_iterating_keeps_memory_bounded(tmp_path, svhn_test):
    images, labels = data.load("svhn", "test", tmp_path)
    stats = fit_stats(images)
    batch = 32 * 3 * 32 * 32 * 4  # bytes of one float32 batch; the set is ~19 batches
    tracemalloc.start()
    try:
        iterator = data.BatchIterator(images, labels, 32, stats, np, seed=0)
        for epoch in range(3):
            for x, y in iterator.epoch(epoch):
                pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(iterator) == 19
    assert peak < 8 * batch < images.size * 4 / 2


def test_two_runs_preparing_the_same_split_at_once(tmp_path, svhn_test, monkeypatch):
    """Two `minids train` started together: the second waits while the first
    builds the split, then reads it; the split is converted once."""
    convert = svhn.convert
    conversions, other_run = [], []

    def convert_while_another_run_starts(sources, out):
        conversions.append(out)
        if len(conversions) == 1:
            other = threading.Thread(target=lambda: other_run.append(data.load("svhn", "test", tmp_path)))
            other.start()
            other_run.append(other)
            time.sleep(0.3)  # the other run reaches the lock and waits
        return convert(sources, out)

    monkeypatch.setattr(svhn, "convert", convert_while_another_run_starts)
    x, y = data.load("svhn", "test", tmp_path)
    other_run[0].join(timeout=30)
    assert len(conversions) == 1 and len(other_run) == 2
    for images, labels in (other_run[1], (x, y)):
        np.testing.assert_array_equal(images, svhn_test[0])
        np.testing.assert_array_equal(labels, svhn_test[1])
    prepared = sorted(p.name for p in (tmp_path / "prepared").iterdir())
    assert prepared == [".svhn-test.lock", "svhn-test-images.npy", "svhn-test-labels.npy", "svhn-test.json"]


def test_temporaries_of_a_killed_build_are_removed_at_the_next_build(tmp_path, svhn_test):
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    stale = [prepared / ".svhn-test-images.npy.k1ll3d.tmp.npy", prepared / ".svhn-test-labels.npy.k1ll3d.tmp.npy",
             prepared / ".svhn-test.json.k1ll3d.tmp.json"]
    other_split = prepared / ".svhn-test-extra-images.npy.busy.tmp.npy"  # another split's build: kept
    for path in stale + [other_split]:
        path.write_bytes(b"\0" * 1000)
    x, _ = data.load("svhn", "test", tmp_path)
    np.testing.assert_array_equal(x, svhn_test[0])
    assert not any(path.exists() for path in stale) and other_split.exists()


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["reserving the images", "saving the labels"])
def test_full_disk_while_preparing_is_one_error_and_leaves_nothing(tmp_path, svhn_test, monkeypatch, where):
    """A full disk: SVHN's images are allocated before they are written through
    the memory map (a write into an unallocated page would be SIGBUS), and any
    failing write is a MinidsError; no temporary is left in prepared/."""
    if where == "reserving the images":
        monkeypatch.setattr(os, "posix_fallocate", _no_space)
    else:
        monkeypatch.setattr(np, "save", _no_space)
    with pytest.raises(MinidsError, match=r"cannot prepare svhn-test in .*prepared: No space left on device; "
                                          r"free some space or choose another data directory"):
        data.load("svhn", "test", tmp_path)
    assert sorted(p.name for p in (tmp_path / "prepared").iterdir()) == [".svhn-test.lock"]
    monkeypatch.undo()
    np.testing.assert_array_equal(data.load("svhn", "test", tmp_path)[0], svhn_test[0])


def test_reserve_allocates_the_blocks_of_a_sparse_file(tmp_path):
    path = tmp_path / "sparse.bin"
    with open(path, "wb") as f:
        f.truncate(1 << 20)  # no blocks yet on file systems with sparse files (ext4, tmpfs, xfs)
    reserve(path)
    assert path.stat().st_blocks * 512 >= 1 << 20 and path.stat().st_size == 1 << 20
