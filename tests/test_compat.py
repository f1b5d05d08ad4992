"""Weights files of earlier releases evaluate, resume and prune exactly as those releases did.

The fixtures in tests/fixtures were written by the releases themselves: for
each, a tiny DS-NiN trained for 2 epochs straight, for 1 epoch, and the
2-epoch file pruned (``<release>-ds-nin-{2epochs,1epoch,2epochs-pruned}.h5``).

- ``v0.1`` (commit 4e2bf22, before odct3, the splitmix64 dropout masks and
  the factored path): widths 8, odct2, dropout 0.5, ζ 1e-3, 96 embedded
  images, batch 32, lr 0.02, seed 5;
- ``757cc05`` (the landed release before the run-options table, the generic
  weights-file layers, the data-set registry and the device-side epoch sums):
  widths 16, odct3 with its Kronecker factors, splitmix64 dropout 0.25,
  ζ 1e-3, 640 embedded images, batch 32, lr 0.5, seed 5.
"""

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from minids.cli.main import main
from minids.evaluate import evaluate
from minids.io import read_weights
from minids.prune import prune_weights_file
from minids.train import TrainConfig, train

FIXTURES = Path(__file__).parent / "fixtures"
STRAIGHT, HALF, PRUNED = (FIXTURES / f"v0.1-ds-nin-{name}.h5"
                          for name in ("2epochs", "1epoch", "2epochs-pruned"))
RELEASES = {"v0.1": "odct2", "757cc05": "odct3"}


def fixture(release, name):
    return FIXTURES / f"{release}-ds-nin-{name}.h5"


def test_fixture_is_an_old_odct2_file():
    with h5py.File(STRAIGHT, "r") as f:
        assert f.attrs["dictionary"] == "odct2" and f.attrs["dropout"] == 0.5
        assert "dropout_masks" not in f.attrs and "atoms" not in f["layers/conv1"].attrs


@pytest.mark.parametrize("release", RELEASES)
def test_old_file_resumes_as_the_old_release_did(tmp_path, release):
    """The old release's own 2-epoch run, to float32 rounding: fixtures written on
    another CPU round differently in its BLAS kernels (bit-identity holds on one
    machine: tests/test_train.py)."""
    half = tmp_path / "half.h5"
    shutil.copy(fixture(release, "1epoch"), half)
    train(TrainConfig(resume=str(half), epochs=2, device="cpu"))
    done, reference = read_weights(half), read_weights(fixture(release, "2epochs"))
    for name, layer in reference.layers.items():
        for key in ("weight", "bias"):
            np.testing.assert_allclose(done.layers[name][key], layer[key], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(done.history["test_error"], reference.history["test_error"])
    assert done.attrs["dictionary"] == RELEASES[release]


@pytest.mark.parametrize("release", RELEASES)
def test_old_file_evaluates_as_recorded(release):
    straight = fixture(release, "2epochs")
    result = evaluate(straight, "fashion-mnist-mini", device="cpu", test_size=40)
    assert result.test_error == read_weights(straight).attrs["test_error"]


@pytest.mark.parametrize("release", RELEASES)
def test_old_file_prunes_to_the_old_release_pruned_file(tmp_path, release):
    out = tmp_path / "pruned.h5"
    prune_weights_file(fixture(release, "2epochs"), out)
    ours, old = read_weights(out), read_weights(fixture(release, "2epochs-pruned"))
    assert list(ours.attrs["widths"]) == list(old.attrs["widths"])
    for name, layer in old.layers.items():
        for key in ("weight", "bias"):
            np.testing.assert_array_equal(ours.layers[name][key], layer[key])
        assert {k for k in layer if k not in ("weight", "bias")} <= set(ours.layers[name])  # its settings too


@pytest.mark.parametrize("release", RELEASES)
def test_old_file_analyzes(tmp_path, release):
    result = CliRunner().invoke(main, ["analyze", str(fixture(release, "2epochs")), "--plots", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert RELEASES[release] in result.output
