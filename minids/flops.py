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

``factored`` counts what minids really computes: a fixed convolution that
runs through its Kronecker factors (:meth:`FixedConv2d.uses_factors`) at the
factored multiply-adds (channel DCT, vertical and horizontal 1-D banks),
every other layer as above.
"""

from minids.errors import MinidsError
from minids.layers import AvgPool2d, Conv2d, GlobalAvgPool, MaxPool2d
from minids.layers.im2col import output_size
from minids.layers.pooling import pool_output_size


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
    c, h, w = (int(s) for s in input_shape)
    layers, factored = {}, {}
    conv_total = pool_total = 0
    for name, layer in model.named_layers():
        if isinstance(layer, Conv2d):
            h_in, w_in = h, w
            if layer.c_in != c:
                raise MinidsError(f"layer {name} expects {layer.c_in} input channels, "
                                  f"got {c} (input shape {tuple(input_shape)})")
            h = output_size(h, layer.k, layer.stride, layer.padding)
            w = output_size(w, layer.k, layer.stride, layer.padding)
            if h < 1 or w < 1:
                raise MinidsError(f"input shape {tuple(input_shape)} is too small for layer {name}")
            c = layer.c_out
            flops = 2 * layer.c_in * layer.k * layer.k * c * h * w
            conv_total += flops
            if getattr(layer, "factors", None) is not None and layer.uses_factors(h_in, w_in):
                factored[name] = 2 * layer.factored_multiply_adds(h_in, w_in)
        elif isinstance(layer, (MaxPool2d, AvgPool2d)):
            try:
                h = pool_output_size(h, layer.k, layer.stride, layer.ceil_mode)
                w = pool_output_size(w, layer.k, layer.stride, layer.ceil_mode)
            except ValueError:
                raise MinidsError(f"input shape {tuple(input_shape)} is too small for layer {name}") from None
            flops = layer.k * layer.k * c * h * w
            pool_total += flops
        elif isinstance(layer, GlobalAvgPool):
            flops = c * h * w
            h = w = 1
            pool_total += flops
        else:
            continue
        layers[name] = flops
    factored_layers = {name: factored.get(name, flops) for name, flops in layers.items()}
    return {"layers": layers, "conv": conv_total, "pool": pool_total,
            "total": conv_total + pool_total, "factored_layers": factored_layers,
            "factored_total": sum(factored_layers.values())}
