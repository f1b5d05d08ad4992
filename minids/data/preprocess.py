"""Preprocessing statistics, normalisation and deterministic sub-selection.

Statistics are fitted on the training split only and returned as a dict of
plain NumPy arrays and strings, so training can store them with the weights
and evaluation applies exactly the same numbers:

- ``standard``: ``{'kind': 'standard', 'mean': float32 (C,), 'std': float32 (C,)}``,
  per-channel mean and standard deviation in pixel units (0..255);
  ``x = (pixel - mean[c]) / std[c]``.
- ``gcn-zca`` (NiN's CIFAR-10 preprocessing, after pylearn2): global contrast
  normalisation of each image (subtract its mean, divide by
  ``sqrt(gcn_bias + var)``, ``gcn_bias = 10``), then ZCA whitening fitted on the
  training split: ``x = (g - zca_mean) @ zca_matrix`` with
  ``zca_matrix = V diag(1/sqrt(λ + zca_bias)) Vᵀ``, ``zca_bias = 0.1``.
  Stored as ``{'kind', 'gcn_bias', 'zca_bias', 'zca_mean' float32 (D,),
  'zca_matrix' float32 (D, D)}`` with D = C·H·W.
"""

import numpy as np

from minids.backend import to_device
from minids.errors import MinidsError

PREPROCESSING = ("standard", "gcn-zca")
GCN_BIAS = 10.0
ZCA_BIAS = 0.1
_CHUNK = 8192


def _chunks(images):
    for lo in range(0, len(images), _CHUNK):
        yield np.asarray(images[lo:lo + _CHUNK])


def _gcn(x, xp):
    """Global contrast normalisation of float rows ``x`` (N, D), in place."""
    x -= x.mean(axis=1, keepdims=True)
    x /= xp.sqrt(GCN_BIAS + x.var(axis=1, ddof=1, keepdims=True))
    return x


def fit_stats(images, kind="standard"):
    """Statistics of ``kind`` from uint8 ``images`` (N, C, H, W), read in chunks."""
    if kind not in PREPROCESSING:
        raise MinidsError(f"unknown preprocessing {kind!r}; choose one of {', '.join(PREPROCESSING)}")
    if len(images) == 0:
        raise MinidsError("cannot fit preprocessing statistics on an empty training set")
    n = len(images)
    if kind == "standard":
        total = np.zeros(images.shape[1]); squares = np.zeros(images.shape[1])
        for chunk in _chunks(images):
            c = chunk.astype(np.float64)
            total += c.sum(axis=(0, 2, 3)); squares += (c * c).sum(axis=(0, 2, 3))
        count = n * images.shape[2] * images.shape[3]
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
        return {"kind": "standard", "mean": mean.astype(np.float32),
                "std": np.maximum(std, 1e-3).astype(np.float32)}
    dim = int(np.prod(images.shape[1:]))
    total, gram = np.zeros(dim), np.zeros((dim, dim))
    for chunk in _chunks(images):
        g = _gcn(chunk.reshape(len(chunk), dim).astype(np.float64), np)
        total += g.sum(axis=0); gram += g.T @ g
    mean = total / n
    eigval, eigvec = np.linalg.eigh(gram / n - np.outer(mean, mean))
    matrix = (eigvec / np.sqrt(np.maximum(eigval, 0.0) + ZCA_BIAS)) @ eigvec.T
    return {"kind": "gcn-zca", "gcn_bias": np.float32(GCN_BIAS), "zca_bias": np.float32(ZCA_BIAS),
            "zca_mean": mean.astype(np.float32), "zca_matrix": matrix.astype(np.float32)}


def stats_to_device(stats, xp):
    """``stats`` with its arrays on the device of ``xp`` (copy once, reuse per batch)."""
    return {k: v if isinstance(v, str) else to_device(np.asarray(v), xp) for k, v in stats.items()}


def normalize(images, stats, xp):
    """float32 xp array (N, C, H, W) of uint8 ``images`` (N, C, H, W) after ``stats``.

    ``images`` may be on the host or already on the device of ``xp``; host
    pixels are copied to the device as uint8 (4× less traffic than float32)
    and converted there.
    """
    kind = stats["kind"]
    kind = kind.decode() if isinstance(kind, bytes) else str(kind)  # also as read back from HDF5
    x = to_device(images, xp).astype(xp.float32)
    if kind == "standard":
        mean = xp.asarray(stats["mean"], dtype=xp.float32).reshape(1, -1, 1, 1)
        std = xp.asarray(stats["std"], dtype=xp.float32).reshape(1, -1, 1, 1)
        return (x - mean) / std
    if kind == "gcn-zca":
        flat = _gcn(x.reshape(len(x), -1), xp)
        flat -= xp.asarray(stats["zca_mean"], dtype=xp.float32)
        return (flat @ xp.asarray(stats["zca_matrix"], dtype=xp.float32)).reshape(x.shape)
    raise MinidsError(f"unknown preprocessing {kind!r} in the stored statistics")


def stratified_order(labels, seed):
    """A seeded order of all indices that interleaves the classes.

    Indices are shuffled within each class, then ranked by their position inside
    their class: every prefix of the order is as balanced as the classes allow,
    and a prefix of length n is a deterministic stratified pick of n samples.
    """
    labels = np.asarray(labels)
    perm = np.random.default_rng(seed).permutation(len(labels))
    rank = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        members = perm[labels[perm] == c]
        rank[members] = np.arange(len(members))
    return perm[np.lexsort((labels[perm], rank[perm]))]


def subset(images, labels, index):
    """(images, labels) at ``index`` (sorted first, so a memory map is read in order)."""
    index = np.sort(index)
    return np.asarray(images[index]), np.asarray(labels)[index]
