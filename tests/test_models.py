"""NiN and DS-NiN: architecture, parameter counts (paper Figure 4), fixed weights."""

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from minids.cli.main import main
from minids.data import MINI_FILE
from minids.dictionary import dct_conv_weight
from minids.errors import MinidsError
from minids.layers import Conv2d, SoftmaxNLL
from minids.models import build_model, count_parameters


def hand_count(in_channels, classes, fixed):
    """Figure 4 by hand: weights c_out*c_in*k*k (0 when fixed) plus biases c_out."""
    convs = [(in_channels, 192, 5, True), (192, 160, 1, False), (160, 96, 1, False),
             (96, 192, 5, True), (192, 192, 1, False), (192, 192, 1, False),
             (192, 192, 3, True), (192, 192, 1, False), (192, classes, 1, False)]
    return sum((0 if fixed and is_kxk else co * ci * k * k) + co for ci, co, k, is_kxk in convs)


def test_parameter_counts_match_the_paper():
    nin = sum(r[2] for r in count_parameters(build_model("nin")))
    ds = sum(r[2] for r in count_parameters(build_model("ds-nin")))
    assert nin == hand_count(3, 10, False) == 966_986
    assert ds == hand_count(3, 10, True) == 160_010
    assert round(ds / nin, 3) == 0.165
    one = build_model("ds-nin", in_channels=1, num_classes=10)
    assert sum(r[2] for r in count_parameters(one)) == hand_count(1, 10, True)


def test_params_cli_reports_figure_4():
    nin = CliRunner().invoke(main, ["params", "--model", "nin"])
    ds = CliRunner().invoke(main, ["params", "--model", "ds-nin"])
    assert nin.exit_code == 0 and ds.exit_code == 0
    assert "966,986" in nin.output and "ratio to NiN: 1.000" in nin.output
    assert "160,010" in ds.output and "ratio to NiN: 0.165" in ds.output
    ds1 = CliRunner().invoke(main, ["params", "--model", "ds-nin", "--in-channels", "1", "--classes", "10"])
    assert f"{hand_count(1, 10, True):,}" in ds1.output


def test_layer_list_and_spatial_sizes():
    model = build_model("nin")
    convs = model.conv_layers()
    assert [(n, c.k, c.padding, c.c_in, c.c_out) for n, c in convs] == [
        ("conv1", 5, 2, 3, 192), ("cccp1", 1, 0, 192, 160), ("cccp2", 1, 0, 160, 96),
        ("conv2", 5, 2, 96, 192), ("cccp3", 1, 0, 192, 192), ("cccp4", 1, 0, 192, 192),
        ("conv3", 3, 1, 192, 192), ("cccp5", 1, 0, 192, 192), ("cccp6", 1, 0, 192, 10)]
    assert model.names.count("drop1") == 1 and model["drop1"].p == 0.5
    assert model["pool1"].ceil_mode and model["pool2"].ceil_mode
    # every conv is followed by a ReLU
    for name, _ in convs:
        assert type(model.layers[model.names.index(name) + 1]).__name__ == "ReLU"
    x = np.zeros((2, 3, 32, 32), np.float32)
    for name, layer in model.named_layers():
        x = layer.forward(x, train=False)
        if name in ("pool1", "pool2"):
            assert x.shape[2:] == {"pool1": (16, 16), "pool2": (8, 8)}[name]
    assert x.shape == (2, 10)


def test_ds_nin_fixed_layers_and_coefficient_layers():
    model = build_model("ds-nin", dictionary="odct2")
    assert model.fixed_layers() == ["conv1", "conv2", "conv3"]
    assert model.coefficient_layers() == ["cccp1", "cccp3", "cccp5"]
    # the dictionary times the He gain of unit-norm pair kernels, sqrt(2 / c_in)
    np.testing.assert_array_equal(model["conv2"].weight,
                                  dct_conv_weight(192, 96, 5) * np.float32(np.sqrt(2 / 96)))
    norms = np.sqrt((model["conv1"].weight.astype(np.float64) ** 2).sum(axis=(2, 3)))
    np.testing.assert_allclose(norms, np.sqrt(2 / 3), rtol=1e-6)
    assert build_model("nin").coefficient_layers() == []


def test_ds_nin_odct3_is_the_default_and_kernels_have_he_norm():
    model = build_model("ds-nin")
    assert model.dictionary == "odct3"
    for name in model.fixed_layers():
        weight = model[name].weight.astype(np.float64).reshape(192, -1)
        norms = np.sqrt((weight ** 2).sum(axis=1))
        if name == "conv1":  # zero-mean input: He's squared norm 2
            np.testing.assert_allclose(norms, np.sqrt(2.0), rtol=1e-6)
            continue
        # rectified input x = relu(z), z ~ N(0, 1): E[x] = 1/sqrt(2 pi), E[x^2] = 1/2; every
        # output's second moment Var(x)|a|^2 + E[x]^2 (sum a)^2, averaged, is twice E[x^2]
        mean, second = 1 / np.sqrt(2 * np.pi), 0.5
        moments = (second - mean ** 2) * norms ** 2 + mean ** 2 * weight.sum(axis=1) ** 2
        np.testing.assert_allclose(moments.mean(), 2 * second, rtol=1e-5)
        np.testing.assert_allclose(norms, norms[0], rtol=1e-6)  # one gain for the layer


def test_ds_nin_training_step_leaves_fixed_weights_bit_identical():
    model = build_model("ds-nin", in_channels=1, widths=(12, 10, 8, 12, 12, 12, 12, 12))
    before = {k: v.copy() for k, v in model.buffers.items()}
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 1, 16, 16)).astype(np.float32)
    loss = SoftmaxNLL()
    loss.forward(model.forward(x), np.array([0, 1, 2, 3]))
    model.backward(loss.backward())
    for key, value in before.items():
        np.testing.assert_array_equal(model.buffers[key], value)
    assert not any(k.startswith(("conv1.weight", "conv2.weight", "conv3.weight")) for k in model.grads)
    assert set(model.grads) == set(model.params)


def test_initialisation_keeps_logits_in_a_sane_range():
    x = np.random.default_rng(1).standard_normal((16, 3, 32, 32)).astype(np.float32)
    for name in ("nin", "ds-nin"):
        logits = build_model(name, seed=3).forward(x, train=False)
        assert 0.05 < logits.std() < 20, name


def test_classifier_starts_with_live_relu_and_near_uniform_softmax():
    # 16 real images of the embedded set, normalised as training does
    with np.load(Path(__file__).parents[1] / "minids" / "data" / MINI_FILE) as mini:
        x = mini["train_images"][:16].reshape(16, 1, 28, 28).astype(np.float32)
    x = (x - x.mean()) / x.std()
    for name in ("nin", "ds-nin"):
        model = build_model(name, in_channels=1, seed=4)
        np.testing.assert_array_equal(model["cccp6"].bias, np.ones(10, np.float32))
        logits = model.forward(x, train=False)
        assert (logits > 0).all(), name  # the last ReLU is active everywhere
        loss = float(SoftmaxNLL().forward(logits, np.arange(16) % 10))
        assert abs(loss - np.log(10)) < 0.1, name


def test_ds_nin_gradients_are_balanced_across_layers():
    """Relative gradient size ||g|| / ||w|| of every learned hidden weight stays
    within a factor 30 of the others: without the gain on the fixed layers the
    coefficient layers after conv2/conv3 get 50-400x larger relative steps.
    (The classifier, initialised at 0.1 x He, is left out.)"""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((16, 1, 28, 28)).astype(np.float32)
    model = build_model("ds-nin", in_channels=1, seed=5)
    loss = SoftmaxNLL()
    loss.forward(model.forward(x, train=True), np.arange(16) % 10)
    model.backward(loss.backward())
    ratios = [np.linalg.norm(model.grads[k]) / np.linalg.norm(w)
              for k, w in model.params.items() if k.endswith("weight") and k != "cccp6.weight"]
    assert max(ratios) / min(ratios) < 30, ratios


def test_same_seed_same_model_and_unknown_names():
    a, b = build_model("nin", seed=5), build_model("nin", seed=5)
    for key in a.params:
        np.testing.assert_array_equal(a.params[key], b.params[key])
    with pytest.raises(MinidsError, match="unknown model 'vgg'"):
        build_model("vgg")
    with pytest.raises(MinidsError, match="unknown dictionary"):
        build_model("ds-nin", dictionary="wavelet")
    assert isinstance(build_model("nin")["cccp6"], Conv2d)


def test_dropout_zero_makes_a_training_pass_equal_an_evaluation_pass():
    model = build_model("ds-nin", in_channels=1, widths=(8,) * 8, seed=2, dropout=0.0)
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(model.forward(x, train=True), model.forward(x, train=False))


def test_dropout_probability_reaches_both_dropout_layers():
    p = 0.3
    model = build_model("ds-nin", in_channels=1, widths=(8,) * 8, seed=2, dropout=p)
    # Feed drop1 and drop2 ones: the share of zeros they put out is p, within sampling noise.
    ones = np.ones((64, 8, 16, 16), np.float32)
    for name in ("drop1", "drop2"):
        out = model[name].forward(ones, train=True)
        assert abs((out == 0).mean() - p) < 0.01, name
        np.testing.assert_allclose(out[out != 0], 1 / (1 - p), rtol=1e-6)
    with pytest.raises(MinidsError, match=r"dropout must be in \[0, 1\)"):
        build_model("nin", dropout=1.0)
