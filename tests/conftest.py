"""Shared fixtures; tests marked ``gpu`` skip cleanly where CuPy sees no device."""

import numpy as np
import pytest

from minids.backend import gpu_available, threads


def pytest_collection_modifyitems(config, items):
    if gpu_available():
        return
    skip = pytest.mark.skip(reason="needs CuPy and a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def split_everything(monkeypatch):
    """Split every GEMM and every block loop, however small, over 3 threads."""
    monkeypatch.setattr(threads, "THREADS", 3)
    monkeypatch.setattr(threads, "MIN_GEMM_SPLIT", 1)
    monkeypatch.setattr(threads, "MIN_BLOCK_ELEMENTS", 1)
