"""Array-module selection: the only module in minids that imports CuPy.

Layers never import cupy. They call :func:`get_array_module` on their input
(the Chainer pattern) and use whatever module it returns, so one code path
serves NumPy on the CPU and CuPy on the GPU.
"""

import os

import numpy as np

from minids.errors import MinidsError

try:  # CuPy is an optional extra (minids[cuda12] / minids[cuda13]).
    import cupy as _cupy
except Exception:  # ImportError, or a CUDA library that fails to load
    _cupy = None

DEVICES = ("auto", "cpu", "gpu")


def gpu_available():
    """True when CuPy imports and sees at least one CUDA device."""
    if _cupy is None:
        return False
    try:
        return _cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def gpu_count():
    """The number of CUDA devices CuPy sees (0 without CuPy or a device)."""
    if not gpu_available():
        return 0
    return int(_cupy.cuda.runtime.getDeviceCount())


def get_module(device):
    """Return the array module (numpy or cupy) for ``device`` in auto|cpu|gpu.

    ``auto`` picks CuPy when a GPU is usable, else NumPy. ``gpu`` without a
    usable GPU raises :class:`MinidsError`.
    """
    if device not in DEVICES:
        raise MinidsError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "cpu":
        return np
    if gpu_available():
        return _cupy
    if device == "gpu":
        reason = ("CuPy is not installed (in the minids checkout: pip install '.[cuda12]' "
                  "or '.[cuda13]')" if _cupy is None else "CuPy sees no CUDA device")
        raise MinidsError(f"--device gpu asked for, but {reason}")
    return np


#: CuPy's cuBLAS compute type "to be decided": the next float32 GEMM reads ``CUPY_TF32``
_COMPUTE_TYPE_TBD = 0


def set_tf32(enabled):
    """Let (``True``) or forbid cuBLAS to use TF32 tensor cores for float32 GEMMs.

    Sets ``CUPY_TF32`` and resets CuPy's float32 compute type so the next
    product reads it (CuPy otherwise reads it once). TF32 rounds the GEMM
    inputs to a 10-bit mantissa (about 1e-3 relative) and keeps float32
    accumulation; it needs compute capability 8.0 or newer and changes
    nothing on NumPy. See docs/performance.md.
    """
    os.environ["CUPY_TF32"] = "1" if enabled else "0"
    if _cupy is None:
        return
    try:
        from cupy._core import _routines_linalg
        _routines_linalg.set_compute_type(np.float32, _COMPUTE_TYPE_TBD)
    except (ImportError, AttributeError):  # another CuPy layout: CUPY_TF32 alone, read at first use
        pass


def get_array_module(*arrays):
    """Return cupy if any of ``arrays`` is a CuPy array, else numpy."""
    if _cupy is not None:
        return _cupy.get_array_module(*arrays)
    return np


def free_device_bytes(xp):
    """Bytes free on the current GPU (CuPy's pool counted as free), or None for NumPy."""
    if xp is np:
        return None
    free, _ = xp.cuda.runtime.memGetInfo()
    pool = xp.get_default_memory_pool()
    return int(free) + int(pool.free_bytes())


def to_device(array, xp):
    """Copy a host or device array onto the device of module ``xp``."""
    if xp is np:
        return to_host(array)
    return xp.asarray(array)


def to_host(array):
    """Return ``array`` as a NumPy array (a copy from the GPU when needed)."""
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return _cupy.asnumpy(array)
    return np.asarray(array)


def device_name(xp):
    """A short human description of the device behind ``xp``."""
    if xp is np:
        return "cpu (numpy)"
    props = xp.cuda.runtime.getDeviceProperties(xp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    return f"gpu ({name}, cupy)"


def random_uniform(rng, shape, xp, dtype):
    """Uniform [0, 1) samples of ``shape`` and float ``dtype`` on the device of ``xp``:
    the ``legacy`` dropout-mask stream, kept for files written before the
    splitmix64 stream (:mod:`minids.layers.dropout`), so they resume exactly.

    They come from the host ``numpy.random.Generator`` ``rng``, so the stream is
    reproducible from its state alone. Float32 samples for the GPU are drawn on
    the device from a seed taken from ``rng`` (fast); float64 samples, used only
    for gradient checks, are drawn on the host, so the CPU and the GPU see the
    same values for the same ``rng`` state.
    """
    dtype = np.float64 if np.dtype(dtype) == np.float64 else np.float32
    if xp is np or dtype == np.float64:
        return to_device(rng.random(shape, dtype=dtype), xp)
    return xp.random.default_rng(int(rng.integers(2**63))).random(shape, dtype=dtype)
