"""minids.flops.model_flops against FLOPs counted by hand."""

import pytest

from minids.errors import MinidsError
from minids.flops import model_flops
from minids.layers import AvgPool2d, Conv2d, GlobalAvgPool, MaxPool2d, ReLU, Sequential
from minids.models import build_model


def test_small_model_by_hand():
    model = Sequential([("c1", Conv2d(2, 4, 3, padding=1)), ("r", ReLU()),
                        ("p", MaxPool2d(3, 2, ceil_mode=True)),
                        ("c2", Conv2d(4, 5, 3, stride=2))])
    f = model_flops(model, (2, 9, 9))
    # c1: 9×9 out, 2·(2·3·3)·4·81; pool: ceil((9-3)/2)+1 = 4 → 4×4, 9 reads each
    # c2 on 4×4, k 3 stride 2 → 1×1: 2·(4·9)·5
    assert f["layers"]["c1"] == 2 * 2 * 9 * 4 * 81
    assert f["layers"]["p"] == 9 * 4 * 16
    assert f["layers"]["c2"] == 2 * 4 * 9 * 5 * 1


def test_small_model_totals():
    model = Sequential([("c1", Conv2d(1, 3, 5, padding=2)), ("p", AvgPool2d(2, 2)),
                        ("c2", Conv2d(3, 2, 1)), ("g", GlobalAvgPool())])
    f = model_flops(model, (1, 8, 8))
    c1 = 2 * 1 * 25 * 3 * 64
    p = 4 * 3 * 16
    c2 = 2 * 3 * 2 * 16
    g = 2 * 16
    assert f["layers"] == {"c1": c1, "p": p, "c2": c2, "g": g}
    assert (f["conv"], f["pool"], f["total"]) == (c1 + c2, p + g, c1 + c2 + p + g)


def test_nin_cifar_known_total():
    # conv1..cccp6 on 32→16→8 pixels, counted by hand in the module docstring
    expected = 2 * (1024 * (3 * 25 * 192 + 192 * 160 + 160 * 96)
                    + 256 * (96 * 25 * 192 + 192 * 192 * 2)
                    + 64 * (192 * 9 * 192 + 192 * 192 + 192 * 10))
    for name in ("nin", "ds-nin"):
        assert model_flops(build_model(name), (3, 32, 32))["conv"] == expected


def test_bad_input_shape():
    model = build_model("nin", widths=(4,) * 8)
    with pytest.raises(MinidsError, match="input channels"):
        model_flops(model, (1, 32, 32))
    with pytest.raises(MinidsError, match="C, H, W"):
        model_flops(model, (3, 32))
    with pytest.raises(MinidsError, match="too small"):
        model_flops(model, (3, 4, 4))


def test_factored_flops_of_ds_nin_odct3_by_hand():
    from minids.models import build_model
    counts = model_flops(build_model("ds-nin", in_channels=3), (3, 32, 32))
    # conv2: 96 -> 192 at 5x5 on 16x16, pad 2; atoms per axis (16, 4, 4): the 192 outputs use
    # 12 channel frequencies. Channel DCT 96*12 per input pixel, vertical bank 12*4 maps * 5 taps
    # on 16 rows x 20 padded columns, horizontal bank 12*4*4 maps * 5 taps on 16x16.
    conv2 = 96 * 12 * 256 + 12 * 4 * 5 * 16 * 20 + 12 * 4 * 4 * 5 * 256
    # conv3: 192 -> 192 at 3x3 on 8x8, pad 1; (24, 3, 3): ceil(192 / 9) = 22 channel frequencies
    conv3 = 192 * 22 * 64 + 22 * 3 * 3 * 8 * 10 + 22 * 3 * 3 * 3 * 64
    assert counts["factored_layers"]["conv2"] == 2 * conv2
    assert counts["factored_layers"]["conv3"] == 2 * conv3
    assert counts["layers"]["conv2"] == 2 * 96 * 25 * 192 * 256  # dense, as before
    # conv1: 3 -> 192 at 5x5 on 32x32, pad 2; (5, 7, 7): 49 outputs per channel frequency, so
    # 4 of them. Channel DCT 3*4 per pixel, then 25 taps per output: the layer's channel path
    conv1 = 3 * 4 * 1024 + 192 * 25 * 1024
    model = build_model("ds-nin", in_channels=3)
    assert model["conv1"].factored_flops((3, 32, 32)) == 2 * conv1
    # in the network every k×k layer feeds a 1×1 one and is asked for a channels-last output:
    # conv1 (K = 75) writes one and takes the dense GEMM, conv2 and conv3 stay factored
    assert model.channels_last_outputs() == {"conv1", "conv2", "conv3"}
    assert counts["factored_layers"]["conv1"] == counts["layers"]["conv1"] == 2 * 3 * 25 * 192 * 1024
    saved = counts["layers"]["conv2"] + counts["layers"]["conv3"] - 2 * (conv2 + conv3)
    assert counts["factored_total"] == counts["total"] - saved
