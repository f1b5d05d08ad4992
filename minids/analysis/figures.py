"""The paper's figures from a weights file, as PNG (matplotlib, Agg backend).

=============  ==========================================================
name           figure
=============  ==========================================================
``history``    Figure 8: test (and training) error and sparsity per epoch
``atoms``      Figure 9: the first fixed layer's DCT atoms Φ₁ (DS-NiN)
``filters``    Figure 10: the learned first-layer filters D₁ = W₁ᵀ·Φ₁ (DS-NiN)
``histogram``  coefficient magnitudes per coefficient layer, log scale,
               with the exact zeros as a separate bar
=============  ==========================================================

Every function takes a :class:`~minids.analysis.weights.Weights` (or the
path of a weights file) and an output path, writes one PNG and returns the
path.
"""

from pathlib import Path

import numpy as np

from minids.analysis.filters import (first_layer_atoms, first_layer_filters, first_pair, mosaic,
                                     normalize_tiles)
from minids.analysis.summary import check_ds
from minids.analysis.weights import as_weights
from minids.dictionary import VOLUME_DICTIONARIES
from minids.errors import MinidsError

FIGURES = ("history", "atoms", "filters", "histogram")
DPI = 120
_GAP = 0.12  # grey level of the gaps between tiles


def figure_size(name, layers=1):
    """(width, height) in inches of figure ``name``; the PNG is DPI times that in pixels.

    ``layers`` is the number of rows of the histogram (:func:`histogram_layers`).
    """
    return {"history": (15.0, 4.5), "atoms": (7.0, 7.5), "filters": (7.0, 7.5),
            "histogram": (9.0, 1.2 + 2.1 * layers)}[name]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _title(weights):
    a = weights.attrs
    return f"{weights.path.name}: {a['model']} on {a.get('dataset', '?')}, ζ = {a.get('zeta', 0):g}"


def _save(fig, out):
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=DPI)
    except OSError as err:
        raise MinidsError(f"cannot write figure {out}: {err.strerror or err}") from None
    finally:
        _pyplot().close(fig)
    return out


def plot_history(weights, out):
    """Figure 8: (a) error per epoch, (b) exact-zero percentage per coefficient layer,
    (c) training loss and learning rate per epoch.

    (b) also shows the history's ``sparsity`` column: all coefficient layers
    pooled, or every learned layer of a NiN (which has no coefficients).
    """
    weights = as_weights(weights)
    history = weights.history
    if len(history.get("epoch", ())) == 0:
        raise MinidsError(f"{weights.path}: no training history (no completed epoch)")
    plt = _pyplot()
    epoch = history["epoch"]
    fig, (err, spa, loss) = plt.subplots(1, 3, figsize=figure_size("history"), layout="constrained")
    for column, label, style in (("test_error", "test", "o-"), ("val_error", "validation", "^-"),
                                 ("train_error", "train", "s--")):
        if column in history:
            err.plot(epoch, 100 * history[column], style, ms=3, label=label)
    err.set(xlabel="epoch", ylabel="error (%)", title="(a) classification error")
    err.legend()
    for name in weights.coefficient_layers:
        if f"sparsity_{name}" in history:
            spa.plot(epoch, 100 * history[f"sparsity_{name}"], "o-", ms=3, label=name)
    if "sparsity" in history:
        spa.plot(epoch, 100 * history["sparsity"], "kx--",
                 label="all coefficient layers" if weights.coefficient_layers
                 else "all layers (NiN)")
    spa.set(xlabel="epoch", ylabel="exact zeros (%)", ylim=(0, 100),
            title="(b) zero coefficients" if weights.coefficient_layers else "(b) zero weights")
    if spa.lines:
        spa.legend()
    if "train_loss" in history:
        loss.plot(epoch, history["train_loss"], "o-", ms=3, color="tab:blue", label="training loss")
    loss.set(xlabel="epoch", ylabel="training loss (NLL)", title="(c) loss and learning rate")
    if "lr" in history:
        rate = loss.twinx()
        rate.step(epoch, history["lr"], where="mid", color="tab:orange", label="learning rate ε")
        rate.set_yscale("log")
        rate.set_ylabel("learning rate ε", color="tab:orange")
    from matplotlib.ticker import MaxNLocator

    for ax in (err, spa, loss):
        ax.set_xlim(epoch.min() - 0.5, epoch.max() + 0.5)   # room around a single epoch
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(alpha=0.3)
    fig.suptitle(_title(weights))
    return _save(fig, out)


def plot_atoms(weights, out):
    """Figure 9: the first fixed layer's atoms on one scale (mid-grey = 0).

    An ``odct3`` atom spans all input channels: one tile per output, in
    colour (RGB) for 3 input channels, grey for 1. An odct2-family atom
    belongs to one (output, input) pair: one grey tile per pair, o·C + i.
    """
    weights = as_weights(weights)
    atoms = first_layer_atoms(weights).astype(np.float64)
    name = first_pair(weights)[0]
    f1, c, k, _ = atoms.shape
    per_output = weights.attrs.get("dictionary") in VOLUME_DICTIONARIES and c in (1, 3)
    if per_output:
        tiles = atoms.transpose(0, 2, 3, 1) if c == 3 else atoms[:, 0]
        what = (f"{f1} DCT atoms of {k}×{k}×{c}, one per output"
                + (" (RGB: the input channels)" if c == 3 else ""))
    else:
        tiles = atoms.reshape(-1, k, k)
        what = (f"{f1}×{c} = {len(tiles)} DCT atoms of {k}×{k}"
                + (f" (output o, input i at position o·{c} + i)" if c > 1 else ""))
    image = mosaic(tiles / (2 * np.abs(tiles).max()) + 0.5, fill=_GAP)
    columns = int(np.ceil(np.sqrt(len(tiles))))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=figure_size("atoms"), layout="constrained")
    colour = per_output and c == 3
    ax.imshow(image, cmap=None if colour else "gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(f"{name} atoms Φ₁: {what}, {columns} per row\n(one scale, mid-grey = 0)",
                 fontsize=10)
    ax.set_axis_off()
    fig.suptitle(_title(weights), fontsize=10)
    return _save(fig, out)


def plot_filters(weights, out):
    """Figure 10: D₁ = W₁ᵀ·Φ₁ as (F2) tiles, RGB for 3 input channels, grey for 1.

    Each tile is scaled on its own by :func:`normalize_tiles` (mid-grey = 0,
    ±max|D₁[f]| = white/black). Entirely-zero filters (prunable) are framed red.
    """
    weights = as_weights(weights)
    filters = first_layer_filters(weights)
    fixed, coefficient = first_pair(weights)
    f2, c, k, _ = filters.shape
    if c not in (1, 3):
        raise MinidsError(f"{weights.path}: can draw 1- or 3-channel filters, these have {c} channels")
    tiles = normalize_tiles(filters.transpose(0, 2, 3, 1) if c == 3 else filters[:, 0])
    image = mosaic(tiles, fill=_GAP)
    columns = int(np.ceil(np.sqrt(f2)))
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    fig, ax = plt.subplots(figsize=figure_size("filters"), layout="constrained")
    ax.imshow(image, cmap="gray" if c == 1 else None, vmin=0, vmax=1, interpolation="nearest")
    zero = np.flatnonzero(~np.any(filters.reshape(f2, -1) != 0, axis=1))
    for f in zero:
        r, col = divmod(int(f), columns)
        ax.add_patch(Rectangle((col * (k + 1) + 0.5, r * (k + 1) + 0.5), k, k,
                               fill=False, edgecolor="red", linewidth=1.2))
    ax.set_title(f"learned filters D₁ = W₁ᵀ·Φ₁ ({coefficient} · {fixed}): {f2} filters of "
                 f"{k}×{k}×{c}, {len(zero)} entirely zero (red)\n"
                 "each tile scaled on its own: mid-grey = 0, white/black = ±max", fontsize=10)
    ax.set_axis_off()
    fig.suptitle(_title(weights), fontsize=10)
    return _save(fig, out)


def histogram_layers(weights):
    """Layers the histogram shows: the coefficient layers, or every learned conv of a NiN."""
    if weights.coefficient_layers:
        return weights.coefficient_layers
    return [name for name, layer in weights.layers.items() if not layer["fixed"]]


def plot_histogram(weights, out, bins=60):
    """Histogram of |w| per layer on a log axis, the exact zeros as a red bar on the left.

    One row per layer, all on the same bins (log-spaced over the smallest to
    the largest non-zero magnitude of all shown layers); a dotted line marks
    the shrink threshold ζ where it falls in that range. Heights are
    percentages of the layer's weights, on a log scale so that a large zero
    bar does not flatten the rest.
    """
    weights = as_weights(weights)
    names = histogram_layers(weights)
    zeta = float(weights.attrs.get("zeta") or 0.0)
    magnitudes = [np.abs(weights.layers[n]["weight"].astype(np.float64)).ravel() for n in names]
    nonzero = np.concatenate([m[m > 0] for m in magnitudes])
    edges = (np.logspace(np.log10(nonzero.min()), np.log10(nonzero.max()), bins + 1)
             if nonzero.size else None)
    plt = _pyplot()
    from matplotlib.ticker import NullLocator

    fig, axes = plt.subplots(len(names), 2, figsize=figure_size("histogram", len(names)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 9]}, sharey="row",
                             layout="constrained")
    fig.get_layout_engine().set(wspace=0.0, hspace=0.05)
    for (zero_ax, ax), name, w in zip(axes, names, magnitudes):
        zeros = int(w.size - np.count_nonzero(w))
        share = 100 * zeros / w.size
        if zeros:
            zero_ax.bar([0], [share], width=0.8, color="tab:red")
        else:
            zero_ax.text(0, 0.5, "none", ha="center", transform=zero_ax.get_xaxis_transform())
        zero_ax.set(xticks=[0], xticklabels=["= 0"], xlim=(-0.6, 0.6), ylabel="% of weights")
        if edges is not None:
            counts, _ = np.histogram(w[w > 0], edges)
            ax.stairs(100 * counts / w.size, edges, fill=True, color="tab:blue")
            ax.set_xlim(edges[0], edges[-1])
        if edges is not None and edges[0] <= zeta <= edges[-1]:
            ax.axvline(zeta, color="black", linestyle=":", linewidth=1)
            ax.text(zeta, 0.97, " ζ", transform=ax.get_xaxis_transform(), va="top")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):   # minor log ticks: clutter, and slow to lay out
            axis.set_minor_locator(NullLocator())
        ax.tick_params(labelleft=False)
        ax.set_title(f"{name}: {share:.2f}% exact zeros ({zeros:,} of {w.size:,} weights)",
                     fontsize=10)
        ax.grid(alpha=0.3)
    axes[-1, 1].set_xlabel("|w| (non-zero weights, log scale)")
    kind = "coefficient" if weights.coefficient_layers else "learned"
    fig.suptitle(f"{_title(weights)}\nmagnitudes of the {kind} weights", fontsize=10)
    return _save(fig, out)


_PLOTS = {"history": plot_history, "atoms": plot_atoms, "filters": plot_filters,
          "histogram": plot_histogram}


def applicable(weights):
    """Figure names that apply to ``weights``: atoms/filters need a DS-NiN, history an epoch."""
    names = [name for name in FIGURES if weights.is_ds or name not in ("atoms", "filters")]
    return [name for name in names
            if name != "history" or len(weights.history.get("epoch", ())) > 0]


def check_figures(weights, names):
    """Raise MinidsError unless every figure in ``names`` can be drawn from ``weights``."""
    unknown = [n for n in names if n not in _PLOTS]
    if unknown:
        raise MinidsError(f"unknown figure {unknown[0]!r}; choose from {', '.join(FIGURES)}")
    if any(n in ("atoms", "filters") for n in names):
        check_ds(weights, "Figures 9 and 10 (atoms, filters)")
    if "history" in names and len(weights.history.get("epoch", ())) == 0:
        raise MinidsError(f"{weights.path}: no training history (no completed epoch)")


def write_figures(weights, directory, names=None, stem=None):
    """Write figures of ``weights`` to ``directory/<stem>_<name>.png``; return the paths.

    ``names`` (subset of :data:`FIGURES`) defaults to :func:`applicable`; asking
    for atoms or filters of a NiN raises MinidsError. ``stem`` defaults to the
    weights file's stem.
    """
    weights = as_weights(weights)
    names = applicable(weights) if names is None else list(names)
    check_figures(weights, names)
    stem = stem or weights.path.stem
    return [_PLOTS[n](weights, Path(directory) / f"{stem}_{n}.png") for n in names]
