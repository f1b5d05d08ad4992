"""Exact structured pruning of a trained DS-NiN: drop what the L1 shrink zeroed.

A DS-NiN block is fixed conv → ReLU → coefficient conv (1×1) → ReLU → next
1×1 conv. Two things in it compute nothing that reaches the output:

* **Dead fixed channels.** Output channel ``o`` of the fixed conv feeds only
  column ``o`` of the coefficient layer. If that column is zero in every
  filter, the channel (its atoms and its bias) can be removed: whatever it
  computes is multiplied by zero.
* **Zero coefficient filters.** A coefficient filter that is entirely zero
  outputs its bias everywhere, so after the ReLU its channel is the constant
  ``relu(b)``. The next layer is a 1×1 convolution, which maps a constant
  channel to a constant: ``W_next[:, f] · relu(b_f)`` is folded into the next
  layer's bias and the filter, its bias and the next layer's input column
  ``f`` are removed. (This needs only ReLUs between the coefficient layer and
  a pointwise next layer; otherwise zero filters are kept.)

Both are exact up to float rounding (the sums just lose zero terms). At
least one channel of every layer is kept, so the network keeps its shape. A
pruned fixed convolution is a :class:`~minids.layers.FixedConv2d` whose
weight is the subset of the dictionary atoms it kept (with an ``odct3``
dictionary its factors keep only the channel frequencies and 1-D atoms those
atoms use, so the factored path computes less); the pruned network is a
normal :class:`~minids.models.Network` with smaller ``widths``, so it is saved
and loaded with the weights-file schema v1 unchanged.
"""

import numpy as np

from minids.backend import get_array_module, to_host
from minids.dictionary import DEFAULT_DICTIONARY
from minids.errors import MinidsError
from minids.layers import Dropout, ReLU
from minids.models import build_model


def _host_layers(model):
    """{conv name: [weight, bias]} as host copies, in network order."""
    return {name: [np.array(to_host(conv.weight)), np.array(to_host(conv.bias))]
            for name, conv in model.conv_layers()}


def _foldable(model, coef, nxt):
    """True when only ReLUs lie between conv ``coef`` and the pointwise conv ``nxt``."""
    names = model.names
    between = model.layers[names.index(coef) + 1:names.index(nxt)]
    return model[nxt].is_pointwise and all(isinstance(layer, ReLU) for layer in between)


def _nonempty(indices, size):
    """``indices``, or [0] when it is empty (a layer keeps at least one channel)."""
    return indices if indices.size else np.arange(min(size, 1))


def prune_plan(model):
    """What :func:`prune_model` removes, without changing anything.

    Returns {coefficient layer name: {'fixed': fixed conv name,
    'zero_filters': int array of removed coefficient filters,
    'dead_channels': int array of removed fixed-conv output channels,
    'next': name of the layer a constant was folded into, or None}}.
    Raises MinidsError for a model without coefficient layers (NiN).
    """
    coefficient = model.coefficient_layers()
    if not coefficient:
        raise MinidsError(f"model {getattr(model, 'name', '?')!r} has no coefficient layers "
                          "(1x1 after a fixed conv) to prune; only DS-NiN can be pruned")
    convs = [name for name, _ in model.conv_layers()]
    plan = {}
    for coef in coefficient:
        i = convs.index(coef)
        nxt = convs[i + 1] if i + 1 < len(convs) else None
        w = to_host(model[coef].weight).reshape(model[coef].c_out, -1)
        zero = np.flatnonzero(~w.any(axis=1))
        if nxt is None or not _foldable(model, coef, nxt):
            zero = zero[:0]
        kept_filters = _nonempty(np.setdiff1d(np.arange(w.shape[0]), zero), w.shape[0])
        zero = np.setdiff1d(np.arange(w.shape[0]), kept_filters)
        live = _nonempty(np.flatnonzero(w[kept_filters].any(axis=0)), w.shape[1])
        plan[coef] = {"fixed": convs[i - 1], "zero_filters": zero,
                      "dead_channels": np.setdiff1d(np.arange(w.shape[1]), live),
                      "next": nxt if zero.size else None}
    return plan


def prune_model(model):
    """A new, smaller network computing the same function as DS-NiN ``model``.

    Args:
        model: a :class:`minids.models.Network` with coefficient layers
            (DS-NiN), on NumPy or CuPy; it is not modified.
    Returns:
        the pruned Network, on the same device and dtype, same layer names.
    Raises:
        MinidsError: for a model without coefficient layers (NiN).
    """
    plan = prune_plan(model)
    arrays = _host_layers(model)
    for coef, step in plan.items():
        w_coef, b_coef = arrays[coef]
        zero, dead = step["zero_filters"], step["dead_channels"]
        if zero.size:
            w_next, b_next = arrays[step["next"]]
            b_next += w_next[:, zero, 0, 0] @ np.maximum(b_coef[zero], 0)
            arrays[step["next"]][0] = np.delete(w_next, zero, axis=1)
        w_coef = np.delete(np.delete(w_coef, zero, axis=0), dead, axis=1)
        arrays[coef] = [w_coef, np.delete(b_coef, zero)]
        w_fixed, b_fixed = arrays[step["fixed"]]
        arrays[step["fixed"]] = [np.delete(w_fixed, dead, axis=0), np.delete(b_fixed, dead)]

    convs = model.conv_layers()
    widths = tuple(arrays[name][0].shape[0] for name, _ in convs[:-1])
    dtype = arrays[convs[0][0]][0].dtype
    pruned = build_model(model.name, in_channels=model.in_channels, num_classes=model.num_classes,
                         dtype=dtype, dictionary=model.dictionary or DEFAULT_DICTIONARY, widths=widths,
                         rng=np.random.default_rng(0),
                         mask_stream=getattr(model, "mask_stream", "splitmix64"))
    for name, conv in pruned.conv_layers():
        weight, bias = arrays[name]
        store = conv.buffers if conv.fixed else conv.params
        store["weight"] = weight
        conv.params["bias"] = bias
    for step in plan.values():
        factors = model[step["fixed"]].factors
        if factors is not None:
            kept = np.setdiff1d(np.arange(factors.c_out), step["dead_channels"])
            pruned[step["fixed"]].factors = factors.subset(kept)
    pruned.rng = getattr(model, "rng", pruned.rng)
    for layer in pruned.layers:
        if isinstance(layer, Dropout):
            layer.rng = pruned.rng
    xp = get_array_module(convs[0][1].weight)
    if xp is not np:
        pruned.to(xp)
    return pruned


def pruned_counts(model):
    """{layer name: (channels before, channels after)} of the convolutions that shrink."""
    plan = prune_plan(model)
    counts = {}
    for coef, step in plan.items():
        fixed = model[step["fixed"]]
        counts[step["fixed"]] = (fixed.c_out, fixed.c_out - step["dead_channels"].size)
        counts[coef] = (model[coef].c_out, model[coef].c_out - step["zero_filters"].size)
    return counts


#: logits of the pruned network may differ from the original's by at most this
#: much (times max(1, largest |logit|)) on the check's random inputs
TOLERANCE = 1e-4


def check_same_function(model, pruned, input_shape, count=16, seed=0):
    """Largest |logit difference| of ``model`` and ``pruned`` on ``count`` N(0, 1) images.

    Returns (difference, largest |logit| of ``model``), both floats, in eval mode.
    """
    xp = get_array_module(model.conv_layers()[0][1].weight)
    dtype = model.conv_layers()[0][1].weight.dtype
    x = np.random.default_rng(seed).standard_normal((count, *input_shape)).astype(dtype)
    x = xp.asarray(x)
    a = to_host(model.forward(x, train=False))
    b = to_host(pruned.forward(x, train=False))
    return float(np.abs(a - b).max()), float(np.abs(a).max())


def prune_weights_file(source, target, force=False):
    """Prune the DS-NiN in weights file ``source`` and write it to ``target``.

    The result is a schema-v1 weights file with smaller ``widths``, the same
    preprocessing, attributes and history, ``pruned_from`` set to ``source``,
    an updated ``sparsity``, and no optimizer or generator state (training
    cannot resume from a pruned file; evaluation and analysis work as usual).
    The pruned network is checked against the original on random inputs
    before anything is written.

    Returns a dict: 'counts' (see :func:`pruned_counts`), 'flops_before',
    'flops_after' (per image, :func:`minids.flops.model_flops` totals, fixed
    layers dense), 'factored_flops_before', 'factored_flops_after' (the same
    as computed, factored layers at their cost),
    'params_before', 'params_after' (trainable), 'max_logit_diff', 'max_logit'.
    Raises MinidsError for a bad source, a NiN, ``target`` = ``source``, an
    existing ``target`` without ``force``, or a failed check.
    """
    from pathlib import Path

    from minids.flops import model_flops
    from minids.io import WeightsFile, layer_arrays, model_from_weights, read_weights, write_weights
    from minids.sparsity import overall_sparsity

    source, target = Path(source), Path(target)
    if target.resolve() == source.resolve():
        raise MinidsError(f"--out {target} is the input file; write the pruned model to a new file")
    if target.exists() and not force:
        raise MinidsError(f"{target} exists; pass --force to replace it")
    contents = read_weights(source)
    model = model_from_weights(contents)
    counts = pruned_counts(model)
    pruned = prune_model(model)
    shape = tuple(int(v) for v in contents.attrs["input_shape"])
    diff, scale = check_same_function(model, pruned, shape)
    if diff > TOLERANCE * max(1.0, scale):
        raise MinidsError(f"pruned model differs from the original by {diff:.3g} in the logits "
                          f"(limit {TOLERANCE * max(1.0, scale):.3g}); nothing written")
    attrs = dict(contents.attrs, widths=[int(w) for w in pruned.widths], pruned_from=str(source))
    coefficient = {name: pruned[name].weight for name in pruned.coefficient_layers()}
    attrs["sparsity"] = float(overall_sparsity(coefficient))
    write_weights(target, WeightsFile(attrs, layer_arrays(pruned), contents.preprocessing,
                                      history=contents.history))

    def trainable(net):
        return sum(int(p.size) for p in net.params.values())

    before, after = model_flops(model, shape), model_flops(pruned, shape)
    return {"counts": counts,
            "flops_before": before["total"], "flops_after": after["total"],
            "factored_flops_before": before["factored_total"],
            "factored_flops_after": after["factored_total"],
            "params_before": trainable(model), "params_after": trainable(pruned),
            "max_logit_diff": diff, "max_logit": scale}
