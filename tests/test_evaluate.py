"""``minids evaluate``: confusion matrix against direct loops, and mismatch refusals."""

import numpy as np
import pytest
from click.testing import CliRunner

from minids.cli.main import main
from minids.data import load
from minids.data.preprocess import stratified_order
from minids.errors import MinidsError
from minids.evaluate import confusion_matrix, evaluate, summarize
from minids.io import layer_arrays, load_model, read_weights, write_weights
from minids.models import build_model
from minids.train import TrainConfig, train

TINY = (8, 8, 8, 8, 8, 8, 8, 8)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "tiny.h5"
    train(TrainConfig(data="fashion-mnist-mini", epochs=1, batch_size=32, lr=0.02, device="cpu",
                      widths=TINY, train_size=200, test_size=60, seed=2, out=str(out)))
    return out


def test_confusion_matrix_against_loops(weights):
    result = evaluate(weights, "fashion-mnist-mini", device="cpu")
    images, labels = load("fashion-mnist-mini", "test")
    model = load_model(weights)
    stats = model.preprocessing
    # Independent predictions: normalise by hand, one forward pass per 500 images.
    predictions = []
    for lo in range(0, len(labels), 500):
        x = (images[lo:lo + 500].astype(np.float32) - stats["mean"][0]) / stats["std"][0]
        predictions.append(np.argmax(model.forward(x, train=False), axis=1))
    predictions = np.concatenate(predictions)
    expected = np.zeros((10, 10), dtype=np.int64)
    for t, p in zip(labels, predictions):
        expected[t, p] += 1
    np.testing.assert_array_equal(result.confusion, expected)
    assert result.count == len(labels) == 2000
    assert result.test_error == pytest.approx(np.mean(predictions != labels))
    for c in range(10):
        mine = labels == c
        assert result.per_class_accuracy[c] == pytest.approx(np.mean(predictions[mine] == c))


def test_subset_matches_the_training_run(weights):
    """--test-size picks the run's test subset: the error equals the one training recorded."""
    result = evaluate(weights, "fashion-mnist-mini", device="cpu", test_size=60)
    assert result.count == 60
    assert result.test_error == pytest.approx(read_weights(weights).attrs["test_error"])
    _, labels = load("fashion-mnist-mini", "test")
    kept = labels[np.sort(stratified_order(labels, 2)[:60])]
    np.testing.assert_array_equal(result.confusion.sum(axis=1), np.bincount(kept, minlength=10))


def test_confusion_matrix_small_case():
    m = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    np.testing.assert_array_equal(m, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    s = summarize(m)
    assert s.test_error == pytest.approx(2 / 6)
    np.testing.assert_allclose(s.per_class_accuracy, [0.5, 1.0, 2 / 3])


def test_cli_output(weights):
    result = CliRunner().invoke(main, ["evaluate", str(weights), "--data", "fashion-mnist-mini",
                                       "--device", "cpu", "--test-size", "60"])
    assert result.exit_code == 0, result.output
    error = read_weights(weights).attrs["test_error"]
    assert f"test error {error:.4f}" in result.output
    assert "confusion matrix" in result.output and "class 9:" in result.output


def _weights_for(source, tmp_path, in_channels, num_classes, shape):
    """A copy of ``source`` re-labelled for another input shape / class count."""
    contents = read_weights(source)
    model = build_model("ds-nin", in_channels=in_channels, num_classes=num_classes, widths=TINY)
    contents.layers = layer_arrays(model)
    contents.attrs["input_shape"] = list(shape)
    contents.attrs["num_classes"] = num_classes
    for key in ("mean", "std"):  # a file of that run holds statistics of its channels
        contents.preprocessing[key] = np.resize(contents.preprocessing[key], in_channels)
    path = tmp_path / f"w{in_channels}-{num_classes}-{shape[1]}.h5"
    write_weights(path, contents)
    return path


@pytest.mark.parametrize("in_channels, classes, shape, fragment", [
    (3, 10, (3, 32, 32), "inputs 3x32x32 with 10 classes, the data has 1x28x28"),
    (1, 5, (1, 28, 28), "with 5 classes, the data has 1x28x28 with 10 classes"),
    (1, 10, (1, 32, 32), "trained on 1x32x32 images, the data has 1x28x28"),
])
def test_refuses_mismatched_weights(weights, tmp_path, in_channels, classes, shape, fragment):
    path = _weights_for(weights, tmp_path, in_channels, classes, shape)
    with pytest.raises(MinidsError, match="the data has"):
        evaluate(path, "fashion-mnist-mini", device="cpu")
    result = CliRunner().invoke(main, ["evaluate", str(path), "--data", "fashion-mnist-mini"])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and fragment in result.output, result.output


def test_cli_names_the_classes(weights):
    result = CliRunner().invoke(main, ["evaluate", str(weights), "--data", "fashion-mnist-mini",
                                       "--device", "cpu", "--test-size", "60"])
    lines = [line for line in result.output.splitlines() if line.startswith("  class ")]
    assert lines[0].endswith("T-shirt/top") and lines[9].endswith("Ankle boot")


def test_data_defaults_to_the_set_the_weights_were_trained_on(weights, tmp_path):
    # the module's run trained on fashion-mnist-mini with --test-size 60
    result = CliRunner().invoke(main, ["evaluate", str(weights), "--device", "cpu", "--test-size", "60"])
    assert result.exit_code == 0, result.output
    error = read_weights(weights).attrs["test_error"]
    assert f"on fashion-mnist-mini test (60 images): test error {error:.4f}" in result.output
    assert evaluate(weights, device="cpu", test_size=60).data == "fashion-mnist-mini"
    # a file that names no known data set needs --data
    contents = read_weights(weights)
    del contents.attrs["dataset"]
    unnamed = tmp_path / "unnamed.h5"
    write_weights(unnamed, contents)
    result = CliRunner().invoke(main, ["evaluate", str(unnamed), "--device", "cpu"])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "does not name a data set" in result.output
    assert "give --data" in result.output
