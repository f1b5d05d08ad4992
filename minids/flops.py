"""Forward floating-point operations of a model, per image.

Convention (the usual one for CNNs): a convolution costs 2 FLOPs per
multiply-add, i.e. ``2 · c_in · k · k · c_out · H_out · W_out`` per image; its
bias additions and the ReLUs are not counted. A pruned layer is counted at its
actual (smaller) width, and a fixed dictionary convolution is counted as the
dense GEMM it runs, exactly like a learned one.

Pooling is counted too, as one operation per window element read (a max
comparison or an average addition): ``k · k · C · H_out · W_out`` for max and
average pooling, ``C · H · W`` for the global average. It is negligible: for
NiN on 3×32×32 it is about 0.3 MFLOPs of about 445 MFLOPs (< 0.1 %). Dropout
and the loss are not counted.

Each layer reports its own cost and output shape (``flops``,
``factored_flops``, ``output_shape`` and ``flops_kind`` of
:class:`minids.layers.base.Layer`); this module only adds them up.

``factored`` counts what minids really computes: a fixed convolution that
runs through its Kronecker factors (:meth:`FixedConv2d.path`) at the
multiply-adds of that path (fully factored: channel DCT, vertical and
horizontal 1-D banks; channel-factored: channel DCT, then a k×k kernel per
output on one channel frequency), every other layer as above. The path
depends on the layout the network asks the layer to write
(:meth:`Sequential.channels_last_outputs`): channels-last, the dense GEMM
replaces the channel-factored one.
"""

from minids.errors import MinidsError


def model_flops(model, input_shape):
    """Forward FLOPs per image of every convolution and pooling of ``model``.

    Args:
        model: a :class:`minids.layers.Sequential` (e.g. from ``build_model``).
        input_shape: (C, H, W) of one image, e.g. (3, 32, 32).
    Returns:
        dict with
          ``layers``: {layer name: FLOPs} for every convolution and pooling
          layer in forward order (ints);
          ``conv``: sum over the convolutions;
          ``pool``: sum over the pooling layers;
          ``total``: conv + pool;
          ``factored_layers``, ``factored_total``: the same with the fixed
          convolutions that take their factored path counted at its cost.
    Raises:
        MinidsError: if ``input_shape`` is not (C, H, W) matching the model,
        or the image is too small for a layer.
    """
    if len(input_shape) != 3 or any(int(s) < 1 for s in input_shape):
        raise MinidsError(f"input shape must be (C, H, W) with positive sizes, got {tuple(input_shape)}")
    shape = tuple(int(s) for s in input_shape)
    layers, factored, totals = {}, {}, {"conv": 0, "pool": 0}
    channels_last = model.channels_last_outputs()
    for name, layer in model.named_layers():
        try:
            flops, out = layer.flops(shape), layer.output_shape(shape)
            cheaper = layer.factored_flops(shape, channels_last=name in channels_last)
        except ValueError as err:
            raise MinidsError(f"input shape {tuple(input_shape)} does not fit layer {name}: {err}") from None
        if layer.flops_kind is not None:
            layers[name] = flops
            totals[layer.flops_kind] += flops
            if cheaper is not None:
                factored[name] = cheaper
        shape = out
    conv_total, pool_total = totals["conv"], totals["pool"]
    factored_layers = {name: factored.get(name, flops) for name, flops in layers.items()}
    return {"layers": layers, "conv": conv_total, "pool": pool_total,
            "total": conv_total + pool_total, "factored_layers": factored_layers,
            "factored_total": sum(factored_layers.values())}
