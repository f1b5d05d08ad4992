"""Pruning: exact on weights with known zero patterns, counted by hand, and the CLI."""

import numpy as np
import pytest
from click.testing import CliRunner

from minids.cli.main import main
from minids.errors import MinidsError
from minids.flops import model_flops
from minids.io import WeightsFile, layer_arrays, load_model, read_weights, write_weights
from minids.layers import FixedConv2d
from minids.models import build_model
from minids.prune import prune_model, prune_plan, pruned_counts

WIDTHS = (12, 10, 8, 12, 10, 8, 10, 8)  # conv1 cccp1 cccp2 conv2 cccp3 cccp4 conv3 cccp5


def ds_nin(rng, widths=WIDTHS, dtype=np.float32):
    """A small DS-NiN with random non-zero biases, half of them negative."""
    model = build_model("ds-nin", in_channels=3, num_classes=5, widths=widths, dtype=dtype,
                        rng=np.random.default_rng(7))
    for key, bias in model.params.items():
        if key.endswith(".bias"):
            bias[...] = rng.uniform(-1, 1, bias.shape)
    return model


def zero_pattern(model, filters, columns):
    """Zero the given rows (filters) and columns of each coefficient layer."""
    for name in model.coefficient_layers():
        w = model[name].params["weight"]
        w[filters.get(name, []), :] = 0
        w[:, columns.get(name, [])] = 0


FILTERS = {"cccp1": [1, 4], "cccp3": [0, 2, 9], "cccp5": [7]}
COLUMNS = {"cccp1": [0, 5, 11], "cccp3": [3], "cccp5": [1, 2, 4, 9]}


def test_pruned_widths_counted_by_hand(rng):
    model = ds_nin(rng)
    zero_pattern(model, FILTERS, COLUMNS)
    assert pruned_counts(model) == {"conv1": (12, 9), "cccp1": (10, 8), "conv2": (12, 11),
                                    "cccp3": (10, 7), "conv3": (10, 6), "cccp5": (8, 7)}
    pruned = prune_model(model)
    assert pruned.widths == (9, 8, 8, 11, 7, 8, 6, 7)
    assert pruned["cccp2"].c_in == 8 and pruned["cccp4"].c_in == 7 and pruned["cccp6"].c_in == 7


def test_pruned_model_gives_the_same_logits(rng):
    model = ds_nin(rng)
    zero_pattern(model, FILTERS, COLUMNS)
    pruned = prune_model(model)
    x = rng.standard_normal((6, 3, 13, 11)).astype(np.float32)
    before, after = model.forward(x, train=False), pruned.forward(x, train=False)
    assert np.abs(before - after).max() <= 1e-4
    assert np.abs(before).max() > 0.1  # the check compares something


def test_zero_filters_with_positive_bias_are_folded_exactly(rng):
    # float64: the only difference left is rounding
    model = ds_nin(rng, dtype=np.float64)
    zero_pattern(model, {"cccp1": [2, 3]}, {})
    model["cccp1"].params["bias"][[2, 3]] = [0.7, -0.4]   # relu: 0.7 and 0
    pruned = prune_model(model)
    expected_bias = (model["cccp2"].bias + model["cccp2"].weight[:, 2, 0, 0] * 0.7)
    np.testing.assert_allclose(pruned["cccp2"].bias, expected_bias, rtol=0, atol=1e-15)
    x = rng.standard_normal((3, 3, 9, 9))
    np.testing.assert_allclose(pruned.forward(x, train=False), model.forward(x, train=False),
                               rtol=0, atol=1e-12)


def test_pruned_fixed_conv_keeps_its_atoms_and_the_original_is_untouched(rng):
    model = ds_nin(rng)
    zero_pattern(model, FILTERS, COLUMNS)
    original = {k: v.copy() for k, v in {**model.params, **model.buffers}.items()}
    pruned = prune_model(model)
    kept = [o for o in range(12) if o not in COLUMNS["cccp1"]]
    assert isinstance(pruned["conv1"], FixedConv2d)
    np.testing.assert_array_equal(pruned["conv1"].weight, model["conv1"].weight[kept])
    np.testing.assert_array_equal(pruned["conv1"].bias, model["conv1"].bias[kept])
    assert "weight" not in pruned["conv1"].params
    for key, value in {**model.params, **model.buffers}.items():
        np.testing.assert_array_equal(value, original[key])


def test_flops_fall_by_the_removed_channels(rng):
    model = ds_nin(rng)
    zero_pattern(model, FILTERS, COLUMNS)
    shape = (3, 8, 8)  # 8×8 → pool 4×4 → pool 2×2
    before = model_flops(model, shape)["layers"]
    after = model_flops(prune_model(model), shape)["layers"]
    assert after["conv1"] == 2 * 3 * 25 * 9 * 64
    assert after["cccp1"] == 2 * 9 * 8 * 64
    assert after["cccp2"] == 2 * 8 * 8 * 64
    assert after["conv3"] == 2 * 8 * 9 * 6 * 4
    assert after["cccp6"] == 2 * 7 * 5 * 4
    assert after["cccp4"] == before["cccp4"] * 7 // 10


def test_a_layer_keeps_one_channel_when_everything_is_zero(rng):
    model = ds_nin(rng)
    model["cccp3"].params["weight"][...] = 0
    pruned = prune_model(model)
    assert pruned["cccp3"].c_out == 1 and pruned["conv2"].c_out == 1
    x = rng.standard_normal((2, 3, 10, 10)).astype(np.float32)
    assert np.abs(model.forward(x, train=False) - pruned.forward(x, train=False)).max() <= 1e-4


def test_nothing_to_prune_keeps_the_model(rng):
    model = ds_nin(rng)
    plan = prune_plan(model)
    assert all(s["zero_filters"].size == 0 and s["dead_channels"].size == 0 for s in plan.values())
    assert prune_model(model).widths == WIDTHS


def test_nin_cannot_be_pruned():
    with pytest.raises(MinidsError, match="no coefficient layers"):
        prune_model(build_model("nin", widths=(4,) * 8))


def _write_run(path, model):
    attrs = {"model": model.name, "input_shape": [3, 12, 12], "num_classes": model.num_classes,
             "widths": list(model.widths), "dictionary": model.dictionary or "", "seed": 0,
             "sparsity": 0.5, "layer_order": [n for n, _ in model.conv_layers()]}
    pre = {"kind": "standard", "mean": np.zeros(3, np.float32), "std": np.ones(3, np.float32)}
    write_weights(path, WeightsFile(attrs, layer_arrays(model), pre,
                                    history={"epoch": np.arange(2.0)}))


def test_cli_writes_a_pruned_file_that_loads_and_predicts_alike(rng, tmp_path):
    model = ds_nin(rng)
    zero_pattern(model, FILTERS, COLUMNS)
    src, out = tmp_path / "run.h5", tmp_path / "pruned.h5"
    _write_run(src, model)
    result = CliRunner().invoke(main, ["prune", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "conv1" in result.output and "FLOPs per image" in result.output
    loaded = load_model(out)
    assert loaded.widths == (9, 8, 8, 11, 7, 8, 6, 7)
    x = rng.standard_normal((4, 3, 12, 12)).astype(np.float32)
    assert np.abs(loaded.forward(x, train=False) - model.forward(x, train=False)).max() <= 1e-4
    attrs = read_weights(out).attrs
    assert attrs["pruned_from"] == str(src) and attrs["widths"] == [9, 8, 8, 11, 7, 8, 6, 7]
    w = np.concatenate([loaded[n].weight.ravel() for n in loaded.coefficient_layers()])
    assert attrs["sparsity"] == pytest.approx(np.mean(w == 0))


def test_cli_errors_are_one_line_and_nothing_is_overwritten(rng, tmp_path):
    model = ds_nin(rng)
    src, out = tmp_path / "run.h5", tmp_path / "pruned.h5"
    _write_run(src, model)
    runner = CliRunner()
    result = runner.invoke(main, ["prune", str(tmp_path / "missing.h5"), "--out", str(out)])
    assert result.exit_code == 1 and "Error:" in result.output and "Traceback" not in result.output
    before = src.read_bytes()
    result = runner.invoke(main, ["prune", str(src), "--out", str(src)])
    assert result.exit_code == 1 and "input file" in result.output
    assert src.read_bytes() == before
    out.write_bytes(b"keep me")
    result = runner.invoke(main, ["prune", str(src), "--out", str(out)])
    assert result.exit_code == 1 and "--force" in result.output
    assert out.read_bytes() == b"keep me"
    assert runner.invoke(main, ["prune", str(src), "--out", str(out), "--force"]).exit_code == 0
    nin = tmp_path / "nin.h5"
    _write_run(nin, build_model("nin", widths=(4,) * 8, num_classes=5))
    result = runner.invoke(main, ["prune", str(nin), "--out", str(tmp_path / "x.h5")])
    assert result.exit_code == 1 and "only DS-NiN" in result.output
