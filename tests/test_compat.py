"""Weights files of minids 0.1 (before odct3, the splitmix64 dropout masks and the
factored path) evaluate, resume and prune exactly as that release did.

The fixtures in tests/fixtures were written by minids 0.1 (commit 4e2bf22):
a tiny DS-NiN (widths 8, odct2, dropout 0.5, ζ 1e-3) on 96 embedded images,
trained for 2 epochs straight, for 1 epoch, and the 2-epoch file pruned.
"""

import shutil
from pathlib import Path

import h5py
import numpy as np
from click.testing import CliRunner

from minids.cli.main import main
from minids.evaluate import evaluate
from minids.io import read_weights
from minids.prune import prune_weights_file
from minids.train import TrainConfig, train

FIXTURES = Path(__file__).parent / "fixtures"
STRAIGHT, HALF, PRUNED = (FIXTURES / f"v0.1-ds-nin-{name}.h5"
                          for name in ("2epochs", "1epoch", "2epochs-pruned"))


def test_fixture_is_an_old_odct2_file():
    with h5py.File(STRAIGHT, "r") as f:
        assert f.attrs["dictionary"] == "odct2" and f.attrs["dropout"] == 0.5
        assert "dropout_masks" not in f.attrs and "atoms" not in f["layers/conv1"].attrs


def test_old_file_resumes_as_the_old_release_did(tmp_path):
    """The old release's own 2-epoch run, to float32 rounding: the fixtures were written
    on another CPU, whose BLAS kernels round differently (bit-identity holds on one
    machine: tests/test_train.py)."""
    half = tmp_path / "half.h5"
    shutil.copy(HALF, half)
    train(TrainConfig(resume=str(half), epochs=2, device="cpu"))
    done, reference = read_weights(half), read_weights(STRAIGHT)
    for name, layer in reference.layers.items():
        for key in ("weight", "bias"):
            np.testing.assert_allclose(done.layers[name][key], layer[key], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(done.history["test_error"], reference.history["test_error"])
    assert done.attrs["dictionary"] == "odct2"


def test_old_file_evaluates_as_recorded():
    result = evaluate(STRAIGHT, "fashion-mnist-mini", device="cpu", test_size=40)
    assert result.test_error == read_weights(STRAIGHT).attrs["test_error"]


def test_old_file_prunes_to_the_old_release_pruned_file(tmp_path):
    out = tmp_path / "pruned.h5"
    prune_weights_file(STRAIGHT, out)
    ours, old = read_weights(out), read_weights(PRUNED)
    assert list(ours.attrs["widths"]) == list(old.attrs["widths"])
    for name, layer in old.layers.items():
        for key in ("weight", "bias"):
            np.testing.assert_array_equal(ours.layers[name][key], layer[key])


def test_old_file_analyzes(tmp_path):
    result = CliRunner().invoke(main, ["analyze", str(STRAIGHT), "--plots", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "odct2" in result.output
