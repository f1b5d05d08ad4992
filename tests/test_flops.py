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
