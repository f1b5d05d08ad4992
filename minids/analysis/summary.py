"""The paper's tables from a weights file: summary, Figure 4, Figures 6/7, FLOPs.

:func:`analyze` turns one :class:`~minids.analysis.weights.Weights` into a
report, a nested dict of plain Python values (JSON-ready):

``file``
    path of the weights file.
``summary``
    model, dataset, input_shape (C, H, W), num_classes, epoch (completed),
    epochs (asked for), test_accuracy and test_error (fractions in [0, 1]),
    dictionary (``None`` for NiN), zeta, lr, seed; ``None`` where the file
    has no value (metrics are NaN in a file saved before the first epoch).
``layers``
    one dict per convolution, in order: name, kind, fixed, coefficient,
    trainable and fixed parameter counts (weights + biases), and for learned
    weights the exact-zero statistics of the weight tensor (biases excluded):
    weights, zeros, zero_fraction, filters (output channels), zero_filters
    (output channels entirely zero), inputs, zero_inputs (input channels no
    output uses). A fixed layer has ``None`` for these.
``parameters``
    trainable, fixed, nin_trainable (NiN of the same input channels, classes
    and widths) and ratio_to_nin (Figure 4).
``sparsity``
    layers: the layers whose zeros are counted, as ``minids train`` counts
    them: the coefficient layers (Figure 7), or every learned convolution of
    a NiN; overall: the zero fraction of their weights pooled together.
``flops``
    FLOPs per image (forward) of the model as stored, its fixed layers
    counted as dense convolutions (``dense``) and as minids computes them
    through their factors (``factored``); after :func:`minids.prune.prune_model`
    removes what the zeros allow (``pruned`` dense, ``pruned_factored``), and
    ``pruned_ratio`` = pruned / dense.
"""

import math

from minids.analysis.weights import as_weights
from minids.errors import MinidsError
from minids.models import build_model, count_parameters
from minids.sparsity import zero_filters, zero_inputs


def _value(attrs, key):
    """A root attribute, or None where it is missing or NaN (no completed epoch)."""
    value = attrs.get(key)
    return None if isinstance(value, float) and math.isnan(value) else value


def _layer_row(name, layer, coefficient):
    weight, bias, fixed = layer["weight"], layer["bias"], bool(layer["fixed"])
    o, i, k, _ = weight.shape
    row = {"name": name,
           "kind": f"{'fixed ' if fixed else ''}conv {k}x{k} {i}->{o}",
           "fixed": fixed, "coefficient": coefficient,
           "trainable": int(bias.size) + (0 if fixed else int(weight.size)),
           "fixed_parameters": int(weight.size) if fixed else 0}
    if fixed:
        row.update(dict.fromkeys(("weights", "zeros", "zero_fraction", "filters",
                                  "zero_filters", "inputs", "zero_inputs")))
    else:
        zeros = int(weight.size) - int((weight != 0).sum())
        row.update(weights=int(weight.size), zeros=zeros, zero_fraction=zeros / int(weight.size),
                   filters=o, zero_filters=zero_filters(weight),
                   inputs=i, zero_inputs=zero_inputs(weight))
    return row


def nin_parameters(in_channels, num_classes, widths):
    """Trainable parameters of NiN with these input channels, classes and widths."""
    model = build_model("nin", in_channels, num_classes, widths=tuple(widths))
    return sum(row[2] for row in count_parameters(model))


def analyze(weights, flops=True):
    """The report (see the module docstring) of one :class:`Weights` or weights file path.

    ``flops=False`` leaves the FLOP counts out (``report['flops']`` is None).
    """
    weights = as_weights(weights)
    attrs = weights.attrs
    coefficient = set(weights.coefficient_layers)
    layers = [_layer_row(name, layer, name in coefficient) for name, layer in weights.layers.items()]
    c = weights.input_shape[0]
    trainable = sum(row["trainable"] for row in layers)
    nin = nin_parameters(c, attrs["num_classes"], attrs["widths"])
    counted = [row for row in layers if row["coefficient"]] or [row for row in layers
                                                                 if not row["fixed"]]
    summary = {"model": attrs["model"], "dataset": _value(attrs, "dataset"),
               "input_shape": list(weights.input_shape), "num_classes": attrs["num_classes"],
               **{key: _value(attrs, key) for key in ("epoch", "epochs", "test_accuracy",
                                                      "test_error")},
               "dictionary": attrs.get("dictionary") or None,
               **{key: _value(attrs, key) for key in ("zeta", "lr", "seed")}}
    return {
        "file": str(weights.path),
        "summary": summary,
        "layers": layers,
        "parameters": {"trainable": trainable,
                       "fixed": sum(row["fixed_parameters"] for row in layers),
                       "nin_trainable": nin, "ratio_to_nin": trainable / nin},
        "sparsity": {"layers": [row["name"] for row in counted],
                     "overall": (sum(row["zeros"] for row in counted)
                                 / sum(row["weights"] for row in counted))},
        "flops": model_flops(weights) if flops else None,
    }


def model_flops(weights):
    """Forward FLOPs per image (:func:`minids.flops.model_flops` totals).

    Returns dict ``dense`` and ``factored`` (the model as stored), ``pruned``
    and ``pruned_factored`` (after :func:`minids.prune.prune_model`; ``None``
    for a NiN, which has no coefficient layers to prune) and
    ``pruned_ratio`` = pruned / dense.
    """
    from minids.flops import model_flops as count
    from minids.io import model_from_weights
    from minids.prune import prune_model

    model = model_from_weights(weights.contents)
    stored = count(model, weights.input_shape)
    dense, factored = stored["total"], stored["factored_total"]
    if not weights.is_ds:
        return {"dense": dense, "factored": factored, "pruned": None, "pruned_factored": None,
                "pruned_ratio": None}
    pruned = count(prune_model(model), weights.input_shape)
    return {"dense": dense, "factored": factored, "pruned": pruned["total"],
            "pruned_factored": pruned["factored_total"], "pruned_ratio": pruned["total"] / dense}


def check_ds(weights, what):
    """Raise MinidsError unless ``weights`` is a DS-NiN (``what`` names the figure)."""
    if not weights.is_ds:
        raise MinidsError(f"{weights.path} is a {weights.model} model; {what} need a DS-NiN "
                          "(fixed DCT layers)")
