"""The paper's models: Network-in-Network (NiN) and double-sparsity NiN (DS-NiN).

NiN, every convolution followed by ReLU (docs/models.md):

    conv1 5×5 C→192 pad 2 · cccp1 1×1 192→160 · cccp2 1×1 160→96 · pool1 max 3/2 ceil · drop1 p
    conv2 5×5 96→192 pad 2 · cccp3 1×1 192→192 · cccp4 1×1 192→192 · pool2 avg 3/2 ceil · drop2 p
    conv3 3×3 192→192 pad 1 · cccp5 1×1 192→192 · cccp6 1×1 192→K · gap (global average)

DS-NiN replaces the weights of conv1-3 with fixed DCT dictionaries
(:mod:`minids.dictionary`); their biases stay trainable. The 1×1 convolutions
right after them (cccp1, cccp3, cccp5) are the coefficient layers. The
dropout probability p is 0.5 unless asked otherwise (training picks 0 for DS-NiN,
docs/training.md).

Initialisation (docs/models.md): learned convolutions are He-normal,
std = sqrt(2 / fan_in), biases zero. A DS-NiN fixed convolution has unit-norm
atoms; its weight is the dictionary times one gain per layer
(:func:`minids.dictionary.he_gain`) with which the block keeps He's second
moment, for the zero-mean image at conv1 and the rectified inputs of conv2
and conv3: activations and the coefficient layers' gradients then keep NiN's
scale.
The classifier (cccp6) starts with weights 0.1 × He and bias 1, so the final
ReLU starts active and the first loss is ln K instead of a saturated softmax
that kills that ReLU in the first steps.
"""

import numpy as np

from minids.dictionary import (DEFAULT_DICTIONARY, VOLUME_DICTIONARIES, get_dictionary, he_gain,
                               odct3_factors, odct3_frequencies)
from minids.errors import MinidsError
from minids.layers import (AvgPool2d, Conv2d, Dropout, FixedConv2d, GlobalAvgPool, MaxPool2d,
                           ReLU, Sequential)
from minids.layers.base import as_dtype
from minids.layers.separable import KroneckerFactors

MODELS = ("nin", "ds-nin")

# output channels of conv1, cccp1, cccp2, conv2, cccp3, cccp4, conv3, cccp5
NIN_WIDTHS = (192, 160, 96, 192, 192, 192, 192, 192)

# dropout probability after pool1 and pool2 (NiN's; --dropout changes it)
DEFAULT_DROPOUT = 0.5

# classifier initialisation: weights scaled down from He, bias keeps the last ReLU alive
CLASSIFIER_WEIGHT_SCALE = 0.1
CLASSIFIER_BIAS = 1.0

# (name, kernel, padding) of every convolution; k > 1 is fixed in DS-NiN
_CONVS = [("conv1", 5, 2), ("cccp1", 1, 0), ("cccp2", 1, 0),
          ("conv2", 5, 2), ("cccp3", 1, 0), ("cccp4", 1, 0),
          ("conv3", 3, 1), ("cccp5", 1, 0), ("cccp6", 1, 0)]


class Network(Sequential):
    """A Sequential with the metadata a checkpoint needs.

    ``name`` ('nin' or 'ds-nin'), ``in_channels``, ``num_classes``,
    ``dictionary`` (name of the fixed dictionary, or None for NiN) and
    ``widths`` (the 8 hidden widths).
    """

    def __init__(self, layers, name, in_channels, num_classes, dictionary, widths):
        super().__init__(layers)
        self.name, self.in_channels, self.num_classes = name, in_channels, num_classes
        self.dictionary, self.widths = dictionary, tuple(widths)

    def conv_layers(self):
        """(name, layer) of every convolution, in order."""
        return [(n, layer) for n, layer in self.named_layers() if isinstance(layer, Conv2d)]

    def fixed_layers(self):
        """Names of the fixed (dictionary) convolutions."""
        return [n for n, layer in self.conv_layers() if layer.fixed]

    def coefficient_layers(self):
        """Names of the 1×1 convolutions that directly follow a fixed convolution."""
        convs = self.conv_layers()
        return [convs[i + 1][0] for i, (_, layer) in enumerate(convs[:-1]) if layer.fixed]


def dictionary_factors(dictionary, c_out, c_in, k, gain, atoms=None):
    """The :class:`KroneckerFactors` of a fixed conv's weight (atoms × ``gain``), or None.

    Only ``odct3`` (each output one Kronecker-product atom) has them. ``atoms``
    picks columns of the ``c_out``-atom dictionary (a pruned layer's outputs).
    """
    if dictionary not in VOLUME_DICTIONARIES:
        return None
    a_c, a_v, a_h = odct3_factors(c_out, c_in, k)
    factors = KroneckerFactors(a_c * gain, a_v, a_h,
                               odct3_frequencies(c_out, c_in, k), gain=gain)
    # only the channel frequencies and 1-D atoms that the kept outputs use
    return factors.subset(np.arange(c_out) if atoms is None else atoms)


def build_model(name, in_channels=3, num_classes=10, seed=0, dtype=np.float32,
                dictionary=DEFAULT_DICTIONARY, widths=NIN_WIDTHS, dropout=DEFAULT_DROPOUT, rng=None,
                mask_stream="splitmix64"):
    """Build NiN or DS-NiN.

    Args:
        name: 'nin' or 'ds-nin'.
        in_channels, num_classes: input channels (3 for SVHN/CIFAR-10, 1 for
            Fashion-MNIST) and classes. Any spatial size ≥ 9 works; the net
            ends in a global average pool.
        seed: seeds the initialisation and the dropout masks (one generator,
            ``model.rng``), unless ``rng`` (a numpy Generator) is given.
        dtype: float32 (training) or float64 (gradient checks).
        dictionary: name of the fixed dictionary for DS-NiN.
        widths: the 8 hidden widths (small ones make tiny test networks).
        dropout: probability of drop1 and drop2, in [0, 1) (0 keeps the
            layers but they draw no masks).
        mask_stream: how the dropout masks are drawn
            (:data:`minids.layers.dropout.MASK_STREAMS`; "legacy" for files
            written before the splitmix64 stream).
    Returns:
        a :class:`Network` on the host (NumPy); ``.to(cupy)`` moves it.
    """
    if name not in MODELS:
        raise MinidsError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if not 0.0 <= dropout < 1.0:
        raise MinidsError(f"dropout must be in [0, 1), got {dropout!r}")
    if len(widths) != 8:
        raise MinidsError(f"widths must list 8 channel counts, got {len(widths)}")
    dtype = as_dtype(dtype)
    rng = np.random.default_rng(seed) if rng is None else rng
    fixed = name == "ds-nin"
    make_atoms = get_dictionary(dictionary) if fixed else None
    channels = [in_channels, *widths, num_classes]
    layers, relu_count = [], 0
    for index, (conv_name, k, padding) in enumerate(_CONVS):
        c_in, c_out = channels[index], channels[index + 1]
        if fixed and k > 1:
            atoms = make_atoms(c_out, c_in, k, dtype)
            gain = he_gain(dictionary, make_atoms(c_out, c_in, k, np.float64), rectified_input=index > 0)
            conv = FixedConv2d(atoms * dtype.type(gain), padding=padding, dtype=dtype,
                               factors=dictionary_factors(dictionary, c_out, c_in, k, gain))
        else:
            conv = Conv2d(c_in, c_out, k, padding=padding, dtype=dtype, rng=rng)
        if conv_name == "cccp6":
            conv.params["weight"] *= dtype.type(CLASSIFIER_WEIGHT_SCALE)
            conv.params["bias"][...] = CLASSIFIER_BIAS
        relu_count += 1
        layers += [(conv_name, conv), (f"relu{relu_count}", ReLU())]
        if conv_name == "cccp2":
            layers += [("pool1", MaxPool2d(3, 2, ceil_mode=True)), ("drop1", Dropout(dropout, rng, mask_stream))]
        elif conv_name == "cccp4":
            layers += [("pool2", AvgPool2d(3, 2, ceil_mode=True)), ("drop2", Dropout(dropout, rng, mask_stream))]
    layers.append(("gap", GlobalAvgPool()))
    model = Network(layers, name, in_channels, num_classes, dictionary if fixed else None, widths)
    model.rng, model.mask_stream = rng, mask_stream
    return model


def count_parameters(model):
    """Per-layer rows (name, kind, trainable count, fixed count) of a model's convolutions."""
    rows = []
    for name, layer in model.conv_layers():
        trainable = sum(int(p.size) for p in layer.params.values())
        fixed = sum(int(b.size) for b in layer.buffers.values())
        kind = f"{'fixed ' if layer.fixed else ''}conv {layer.k}x{layer.k} {layer.c_in}->{layer.c_out}"
        rows.append((name, kind, trainable, fixed))
    return rows
