"""The first layer's DCT atoms (Figure 9) and learned filters D₁ (Figure 10).

In DS-NiN the first fixed convolution (conv1) holds the atoms
Φ₁ (F1, C, k, k) and the coefficient layer after it (cccp1) holds
W₁ (F2, F1, 1, 1). Ignoring the ReLU and the bias between them, as the paper
does, the composite k×k filters are

    D₁[f] = Σ_o W₁[f, o] · Φ₁[o]        → (F2, C, k, k)

that is ``D₁ = W₁ᵀ · Φ₁`` in the paper's notation. Filter ``f`` is entirely
zero exactly when row ``f`` of W₁ is zero (a pruned filter). The functions
take a :class:`~minids.analysis.weights.Weights` or the path of a weights file.
"""

import math

import numpy as np

from minids.analysis.summary import check_ds
from minids.analysis.weights import as_weights


def first_pair(weights):
    """(fixed layer, coefficient layer) names of the first DS-NiN block, e.g. ('conv1', 'cccp1')."""
    check_ds(weights, "the first layer's atoms and filters")
    names = list(weights.layers)
    first = next(n for n in names if weights.layers[n]["fixed"])
    return first, names[names.index(first) + 1]


def first_layer_atoms(weights):
    """Φ₁: the first fixed layer's (F1, C, k, k) atoms as stored in the file."""
    weights = as_weights(weights)
    return weights.layers[first_pair(weights)[0]]["weight"]


def first_layer_filters(weights):
    """D₁ = W₁ᵀ·Φ₁: the learned (F2, C, k, k) first-layer filters, float64."""
    weights = as_weights(weights)
    fixed, coefficient = first_pair(weights)
    phi = weights.layers[fixed]["weight"].astype(np.float64)
    w = weights.layers[coefficient]["weight"].astype(np.float64)
    return np.einsum("fo,ochw->fchw", w[:, :, 0, 0], phi)


def normalize_tiles(tiles):
    """Scale each tile to [0, 1] with 0 at mid-grey: t / (2·max|t|) + 1/2.

    ``tiles`` is (n, h, w) or (n, h, w, 3). The scale is per tile (over all of
    its colour channels, so the colour balance stays), symmetric about zero
    (the sign of every weight stays readable), and an all-zero tile stays
    uniform grey.
    """
    tiles = np.asarray(tiles, dtype=np.float64)
    peak = np.abs(tiles).reshape(len(tiles), -1).max(axis=1)
    peak = np.where(peak > 0, peak, 1.0).reshape(-1, *([1] * (tiles.ndim - 1)))
    return tiles / (2 * peak) + 0.5


def mosaic(tiles, columns=None, gap=1, fill=np.nan):
    """Tile (n, h, w) or (n, h, w, 3) images row-major into one image.

    ``columns`` defaults to ceil(sqrt(n)); ``gap`` pixels of ``fill``
    separate the tiles and frame the mosaic.
    """
    n, h, w = tiles.shape[:3]
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    image = np.full((gap + rows * (h + gap), gap + columns * (w + gap), *tiles.shape[3:]), fill)
    for index, tile in enumerate(tiles):
        r, c = divmod(index, columns)
        top, left = gap + r * (h + gap), gap + c * (w + gap)
        image[top:top + h, left:left + w] = tile
    return image
