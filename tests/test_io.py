"""HDF5 weights: the schema read back with plain h5py, round trips, refusals, atomic writes."""

import h5py
import numpy as np
import pytest

from minids.data import prepare
from minids.dictionary import odct3_conv_weight
from minids.errors import MinidsError
from minids.io import WeightsFile, layer_arrays, load_model, read_weights, write_weights
from minids.train import TrainConfig, train

TINY = (8, 8, 8, 8, 8, 8, 8, 8)
SIZES = dict(train_size=96, test_size=40)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("io") / "tiny.h5"
    result = train(TrainConfig(data="fashion-mnist-mini", model="ds-nin", epochs=2, batch_size=32,
                               lr=0.02, lr_schedule="constant", device="cpu", widths=TINY, out=str(out), seed=3, **SIZES))
    return result


def test_schema_with_plain_h5py(run):
    model = run.model
    with h5py.File(run.out, "r") as f:
        a = f.attrs
        assert a["format"] == "minids-weights" and a["schema_version"] == 1
        assert a["model"] == "ds-nin" and a["dictionary"] == "odct3" and a["dataset"] == "fashion-mnist-mini"
        assert list(a["input_shape"]) == [1, 28, 28] and a["num_classes"] == 10
        assert list(a["widths"]) == list(TINY)
        assert a["epoch"] == 2 and a["epochs"] == 2 and a["seed"] == 3 and a["batch_size"] == 32
        assert a["train_size"] == 96 and a["test_size"] == 40 and a["val_size"] == 0
        assert a["lr"] == 0.02 and a["momentum"] == 0.9 and a["weight_decay"] == pytest.approx(1e-4)
        assert '"constant"' in a["schedule"]
        assert a["zeta"] == pytest.approx(1e-5)
        assert [s for s in a["layer_order"]] == ["conv1", "cccp1", "cccp2", "conv2", "cccp3", "cccp4",
                                                 "conv3", "cccp5", "cccp6"]
        assert list(a["coefficient_layers"]) == ["cccp1", "cccp3", "cccp5"]
        assert a["test_accuracy"] == pytest.approx(1 - a["test_error"])
        for name in a["layer_order"]:
            g = f["layers"][name]
            fixed = name in ("conv1", "conv2", "conv3")
            assert bool(g.attrs["fixed"]) is fixed and bool(g["weight"].attrs["fixed"]) is fixed
            assert g["weight"].dtype == np.float32 and g["bias"].dtype == np.float32
            conv = model[name]
            np.testing.assert_array_equal(g["weight"][()], conv.weight)
            np.testing.assert_array_equal(g["bias"][()], conv.bias)
            assert g.attrs["k"] == g["weight"].shape[2] == g["weight"].shape[3]
        # The fixed weights are the odct3 dictionary times one gain per layer.
        w = f["layers/conv2/weight"][()].astype(np.float64)
        atoms = odct3_conv_weight(w.shape[0], w.shape[1], w.shape[2], np.float64)
        gain = np.linalg.norm(w.reshape(w.shape[0], -1), axis=1)
        np.testing.assert_allclose(gain, gain[0], rtol=1e-6)
        np.testing.assert_allclose(w, atoms * gain[0], rtol=0, atol=1e-6 * gain[0])
        # History: one float64 entry per epoch for every documented column.
        for col in ("epoch", "lr", "train_loss", "train_error", "test_error", "sparsity_cccp1",
                    "sparsity_cccp3", "sparsity_cccp5", "sparsity", "seconds", "images_per_second"):
            assert f["history"][col].shape == (2,) and f["history"][col].dtype == np.float64
        assert list(f["history/epoch"][()]) == [1.0, 2.0]
        # Overall sparsity: zeros of the three coefficient layers pooled, counted here directly.
        coef = [f[f"layers/{n}/weight"][()] for n in ("cccp1", "cccp3", "cccp5")]
        zeros = sum(int((c == 0).sum()) for c in coef)
        assert a["sparsity"] == pytest.approx(zeros / sum(c.size for c in coef))
        for n, c in zip(("cccp1", "cccp3", "cccp5"), coef):
            assert f[f"history/sparsity_{n}"][-1] == pytest.approx((c == 0).mean())
        # Preprocessing: the per-channel mean/std of the training subset, computed here.
        images = prepare("fashion-mnist-mini", seed=3, **SIZES).train[0].astype(np.float64)
        assert f["preprocessing"].attrs["kind"] == "standard"
        np.testing.assert_allclose(f["preprocessing/mean"][()], [images.mean()], rtol=1e-6)
        np.testing.assert_allclose(f["preprocessing/std"][()], [images.std()], rtol=1e-5)
        # Optimizer and RNG state for resuming.
        assert f["optimizer"].attrs["steps"] == 2 * 3
        prev = f["optimizer/prev"]
        assert set(prev) == set(model.params)
        assert "state" in f["rng"].attrs


def test_load_model_predicts_like_the_trained_model(run):
    loaded = load_model(run.out)
    x = np.random.default_rng(0).standard_normal((5, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(loaded.forward(x, train=False), run.model.forward(x, train=False))
    assert loaded.name == "ds-nin" and loaded.widths == TINY
    assert loaded.preprocessing["kind"] == "standard"


def test_read_weights_round_trip(run, tmp_path):
    contents = read_weights(run.out)
    assert contents.attrs["epoch"] == 2
    assert list(contents.layers) == [n for n, _ in run.model.conv_layers()]
    copy = tmp_path / "copy.h5"
    write_weights(copy, contents)
    again = read_weights(copy)
    for name, layer in contents.layers.items():
        np.testing.assert_array_equal(again.layers[name]["weight"], layer["weight"])
    assert again.rng_state == contents.rng_state
    np.testing.assert_array_equal(again.history["test_error"], contents.history["test_error"])


def test_refuses_files_that_are_not_minids_weights(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    with pytest.raises(MinidsError, match="not an HDF5 file"):
        read_weights(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(MinidsError, match="not minids weights"):
        load_model(other)
    with pytest.raises(MinidsError, match="no such weights file"):
        read_weights(tmp_path / "missing.h5")


def test_refuses_a_newer_schema(run, tmp_path):
    newer = tmp_path / "newer.h5"
    newer.write_bytes(run.out.read_bytes())
    with h5py.File(newer, "r+") as f:
        f.attrs["schema_version"] = 2
    with pytest.raises(MinidsError, match="schema version 2"):
        read_weights(newer)


def test_interrupted_write_keeps_the_previous_file(run, tmp_path, monkeypatch):
    target = tmp_path / "w.h5"
    target.write_bytes(run.out.read_bytes())
    before = target.read_bytes()
    contents = read_weights(run.out)
    real = h5py.Group.create_dataset
    calls = []

    def failing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    with pytest.raises(MinidsError, match="No space left"):
        write_weights(target, contents)
    assert len(calls) == 5
    assert target.read_bytes() == before
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left behind

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(h5py.Group, "create_dataset", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_weights(target, contents)
    assert target.read_bytes() == before
    assert list(tmp_path.iterdir()) == [target]


def test_any_layer_with_arrays_and_any_optimizer_key_is_stored_without_a_format_change(tmp_path):
    """The file is written from each layer's params, buffers and file_attrs()
    and from the optimizer's own state_dict: a new kind of layer, or a new
    optimizer field, round-trips as it is."""
    from minids.layers import Sequential
    from minids.layers.base import Layer
    from minids.layers.conv import Conv2d

    class Scale(Layer):  # a layer minids does not have: one parameter, one buffer, one setting
        def __init__(self):
            super().__init__()
            self.params["gamma"] = np.arange(4, dtype=np.float32)
            self.buffers["running"] = np.full((2, 2), 0.5, np.float32)

        def file_attrs(self):
            return {"mode": 3}

    net = Sequential([("conv", Conv2d(1, 4, 3, padding=1, rng=np.random.default_rng(0))), ("scale", Scale())])
    optimizer = {"steps": 2, "lr": 0.1, "exclude": [], "new_field": 7, "prev": {"scale.gamma": np.ones(4)}}
    stats = {"kind": "standard", "mean": np.zeros(1, np.float32), "std": np.ones(1, np.float32)}
    path = tmp_path / "w.h5"
    write_weights(path, WeightsFile({"input_shape": [1, 8, 8]}, layer_arrays(net), stats, optimizer))
    with h5py.File(path, "r") as f:  # plain h5py: where each piece went
        assert list(f.attrs["layer_order"]) == ["conv", "scale"]
        np.testing.assert_array_equal(f["layers/scale/gamma"][()], np.arange(4))
        np.testing.assert_array_equal(f["layers/scale/running"][()], np.full((2, 2), 0.5))
        assert f["layers/scale"].attrs["mode"] == 3 and f["layers/conv"].attrs["k"] == 3
        assert f["optimizer"].attrs["new_field"] == 7
    back = read_weights(path)
    assert back.layers["scale"]["mode"] == 3 and back.optimizer["new_field"] == 7
    np.testing.assert_array_equal(back.layers["conv"]["weight"], net["conv"].params["weight"])
