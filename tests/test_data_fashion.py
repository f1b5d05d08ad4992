"""The real Fashion-MNIST (Debian's dataset-fashion-mnist) and the embedded mini subset."""

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from minids import data
from minids.data import fashion_mnist

SYSTEM = fashion_mnist.find_dir(fashion_mnist.SYSTEM_DIR) is not None
_OFFLINE = ("No matching distribution", "Could not find a version", "NewConnectionError",
            "Network is unreachable", "Temporary failure in name resolution")
needs_debian = pytest.mark.skipif(not SYSTEM, reason="Debian's dataset-fashion-mnist is not installed")


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache")
    return {split: data.load("fashion-mnist", split, folder) for split in data.SPLITS}


@needs_debian
def test_real_fashion_mnist(full):
    (x, y), (xt, yt) = full["train"], full["test"]
    assert x.shape == (60000, 1, 28, 28) and xt.shape == (10000, 1, 28, 28) and x.dtype == np.uint8
    assert (np.bincount(y) == 6000).all() and (np.bincount(yt) == 1000).all()
    assert y[:5].tolist() == [9, 0, 0, 3, 0]  # the well-known first training labels


@needs_debian
def test_debian_files_have_the_official_contents():
    assert all(problem is None for _, problem in data.verify("fashion-mnist"))


def test_mini_is_balanced():
    for split, per_class in (("train", 1000), ("test", 200)):
        x, y = data.load("fashion-mnist-mini", split)
        assert x.shape == (10 * per_class, 1, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int64
        assert (np.bincount(y, minlength=10) == per_class).all()


@needs_debian
def test_mini_is_byte_identical_to_the_full_set(full):
    from minids.data.fashion_mnist_mini import _arrays
    mini = _arrays()
    for split in data.SPLITS:
        index = mini[f"{split}_index"]
        assert len(np.unique(index)) == len(index)
        images, labels = data.load("fashion-mnist-mini", split)
        np.testing.assert_array_equal(images, full[split][0][index])
        np.testing.assert_array_equal(labels, full[split][1][index])


@pytest.mark.slow
def test_wheel_contains_the_mini_data(tmp_path):
    root = Path(__file__).resolve().parent.parent
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", str(root), "--no-deps", "-w", str(tmp_path)],
                         capture_output=True, text=True)
    if run.returncode and any(s in run.stdout + run.stderr for s in _OFFLINE):
        pytest.skip("pip cannot fetch the build backend (no access to PyPI)")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    (wheel,) = tmp_path.glob("minids-*.whl")
    with zipfile.ZipFile(wheel) as z:
        assert "minids/data/fashion_mnist_mini.npz" in z.namelist()
