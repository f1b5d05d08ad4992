"""Device selection and host/device moves."""

import os

import numpy as np
import pytest

from minids import backend
from minids.errors import MinidsError
from minids.layers import AvgPool2d, Conv2d, MaxPool2d, ReLU, Sequential


def test_cpu_and_auto_without_gpu(monkeypatch):
    assert backend.get_module("cpu") is np
    monkeypatch.setattr(backend, "gpu_available", lambda: False)
    assert backend.get_module("auto") is np
    with pytest.raises(MinidsError, match="--device gpu"):
        backend.get_module("gpu")
    with pytest.raises(MinidsError, match="unknown device 'tpu'"):
        backend.get_module("tpu")


def test_numpy_arrays_stay_on_host():
    x = np.arange(3.0)
    assert backend.get_array_module(x) is np
    assert backend.to_host(backend.to_device(x, np)) is x


@pytest.mark.gpu
def test_gpu_forward_backward_match_cpu(rng):
    xp = backend.get_module("gpu")
    net = Sequential([Conv2d(3, 4, 3, padding=1, rng=rng), ReLU(), Conv2d(4, 2, 1, rng=rng)])
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    y_cpu = net.forward(x)
    dx_cpu = net.backward(np.ones_like(y_cpu))
    grads_cpu = {k: v.copy() for k, v in net.grads.items()}
    net.to(xp)
    y_gpu = net.forward(xp.asarray(x))
    assert backend.get_array_module(y_gpu) is xp
    dx_gpu = net.backward(xp.ones_like(y_gpu))
    np.testing.assert_allclose(backend.to_host(y_gpu), y_cpu, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(backend.to_host(dx_gpu), dx_cpu, rtol=1e-5, atol=1e-5)
    for name, grad in grads_cpu.items():
        np.testing.assert_allclose(backend.to_host(net.grads[name]), grad, rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
def test_gpu_evaluation_forward_matches_cpu(rng):
    """The evaluation paths (ReLU without a mask, pooling in 1-D passes) on CuPy."""
    xp = backend.get_module("gpu")
    net = Sequential([Conv2d(3, 4, 3, padding=1, rng=rng), ReLU(), Conv2d(4, 5, 1, rng=rng), ReLU(),
                      MaxPool2d(3, 2, ceil_mode=True), AvgPool2d(2, 1)])
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    y_cpu = net.forward(x, train=False)
    net.to(xp)
    y_gpu = net.forward(xp.asarray(x), train=False)
    np.testing.assert_allclose(backend.to_host(y_gpu), y_cpu, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="train=True"):
        net.backward(xp.ones_like(y_gpu))


def test_tf32_switch_sets_cupys_variable_and_leaves_numpy_exact(monkeypatch):
    monkeypatch.delenv("CUPY_TF32", raising=False)
    a = np.full((64, 64), 1.0001, np.float32)
    exact = a @ a
    backend.set_tf32(True)
    assert os.environ["CUPY_TF32"] == "1"
    np.testing.assert_array_equal(a @ a, exact)  # NumPy has no TF32
    backend.set_tf32(False)
    assert os.environ["CUPY_TF32"] == "0"


@pytest.mark.gpu
def test_tf32_rounds_gpu_products_only_when_on(monkeypatch):
    """1.0001 rounds to 1 in TF32 (10-bit mantissa): with TF32 the product of
    two 1.0001-filled 512x512 matrices is 512, without it 512 * 1.0001**2."""
    xp = backend.get_module("gpu")
    a = xp.full((512, 512), 1.0001, xp.float32)
    try:
        backend.set_tf32(False)
        full = float((a @ a)[0, 0])
        backend.set_tf32(True)
        rounded = float((a @ a)[0, 0])
    finally:
        backend.set_tf32(False)
    assert abs(full - 512 * 1.0001 ** 2) < 1e-3
    if int(xp.cuda.Device().compute_capability) >= 80:
        assert abs(rounded - 512) < 1e-3
