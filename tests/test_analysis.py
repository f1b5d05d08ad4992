"""``minids.analysis`` and ``minids analyze`` on weights files with known zeros.

The files are written here with plain h5py, following docs/weights.md
(schema v1) field by field, from small networks (``SMALL`` widths) whose
coefficient weights have hand-placed zeros, so that every count below is
computed by hand, not by the code under test.
"""

import csv
import io
import json

import h5py
import matplotlib.image
import numpy as np
import pytest
from click.testing import CliRunner

from minids.cli.main import main
from minids.analysis import (analyze, first_layer_filters, format_csv, format_json, format_table,
                             load, write_figures)
from minids.analysis.figures import DPI, figure_size
from minids.analysis.filters import mosaic, normalize_tiles
from minids.errors import MinidsError
from minids.models import build_model

SMALL = (6, 5, 4, 6, 6, 6, 6, 6)   # conv1 cccp1 cccp2 conv2 cccp3 cccp4 conv3 cccp5
SHAPE = (3, 12, 12)
CLASSES = 4
EPOCHS = 3


def write_schema_v1(path, model, input_shape=SHAPE, dataset="cifar10", zeta=1e-5, epochs=EPOCHS):
    """Write ``model`` as a schema-v1 weights file with plain h5py (docs/weights.md)."""
    convs = model.conv_layers()
    with h5py.File(path, "w") as f:
        f.attrs.update({
            "format": "minids-weights", "schema_version": 1, "minids_version": "0.1.0",
            "model": model.name, "input_shape": np.array(input_shape, dtype=np.int64),
            "num_classes": model.num_classes, "widths": np.array(model.widths, dtype=np.int64),
            "dictionary": model.dictionary or "", "dataset": dataset, "seed": 0,
            "epoch": epochs, "epochs": epochs, "lr": 0.1, "momentum": 0.9,
            "weight_decay": 0.0, "zeta": zeta, "batch_size": 16,
            "schedule": json.dumps({"name": "constant"}),
            "train_size": 100, "test_size": 40, "val_size": 0,
            "train_loss": 0.9, "train_error": 0.3, "test_error": 0.35, "test_accuracy": 0.65,
            "sparsity": 0.5})
        f.attrs["layer_order"] = np.array([n for n, _ in convs], dtype=h5py.string_dtype())
        f.attrs["coefficient_layers"] = np.array(model.coefficient_layers(),
                                                 dtype=h5py.string_dtype())
        for name, conv in convs:
            group = f.create_group(f"layers/{name}")
            group.attrs.update(k=conv.k, stride=conv.stride, padding=conv.padding, fixed=conv.fixed)
            group.create_dataset("weight", data=np.asarray(conv.weight, dtype=np.float32))
            group["weight"].attrs["fixed"] = conv.fixed
            group.create_dataset("bias", data=np.asarray(conv.bias, dtype=np.float32))
        pre = f.create_group("preprocessing")
        pre.attrs["kind"] = "standard"
        pre["mean"] = np.zeros(input_shape[0], np.float32)
        pre["std"] = np.ones(input_shape[0], np.float32)
        history = f.create_group("history")
        epoch = np.arange(1.0, epochs + 1)
        columns = {"epoch": epoch, "lr": np.full(epochs, 0.1), "train_loss": 2 / epoch,
                   "train_error": 0.6 / epoch, "test_error": 0.7 / epoch,
                   **{f"sparsity_{n}": 0.2 * epoch for n in model.coefficient_layers()},
                   "sparsity": 0.15 * epoch, "seconds": np.ones(epochs),
                   "images_per_second": np.full(epochs, 50.0)}
        for key, values in columns.items():
            history[key] = values


def nonzero_weights(model, seed=7):
    """Replace every learned weight by values with |w| in [0.1, 1] (no zeros by chance)."""
    rng = np.random.default_rng(seed)
    for _, conv in model.conv_layers():
        if not conv.fixed:
            w = conv.params["weight"]
            w[...] = rng.uniform(0.1, 1.0, w.shape) * rng.choice([-1.0, 1.0], w.shape)


def ds_model():
    """DS-NiN with hand-placed zeros.

    cccp1 (5, 6): rows 0 and 3 zero (2 zero filters), column 2 zero (1 unused
    input), and [1, 4] zero: 12 + 3 + 1 = 16 zeros of 30.
    cccp3 (6, 6): no zeros.  cccp5 (6, 6): only [2, 5] non-zero: 35 zeros of
    36, 5 zero filters, 5 unused inputs.  cccp2: [0, 0] zero (1 of 20).
    """
    model = build_model("ds-nin", SHAPE[0], CLASSES, widths=SMALL)
    nonzero_weights(model)
    w1 = model["cccp1"].params["weight"]
    w1[[0, 3]] = 0.0
    w1[:, 2] = -0.0          # a negative zero is a zero
    w1[1, 4] = 0.0
    w5 = model["cccp5"].params["weight"]
    keep = w5[2, 5].copy()
    w5[...] = 0.0
    w5[2, 5] = keep
    model["cccp2"].params["weight"][0, 0] = 0.0
    return model


def nin_model():
    """NiN with conv1 filter 1 zero (75 zeros of 450) and nothing else zero."""
    model = build_model("nin", SHAPE[0], CLASSES, widths=SMALL)
    nonzero_weights(model)
    model["conv1"].params["weight"][1] = 0.0
    return model


@pytest.fixture
def files(tmp_path):
    ds, nin = tmp_path / "ds.h5", tmp_path / "nin.h5"
    write_schema_v1(ds, ds_model())
    write_schema_v1(nin, nin_model())
    return ds, nin


# hand-computed trainable parameters (weights + biases) for C=3, K=4, SMALL widths
DS_PARAMS = {"conv1": 6, "cccp1": 6 * 5 + 5, "cccp2": 5 * 4 + 4, "conv2": 6,
             "cccp3": 6 * 6 + 6, "cccp4": 6 * 6 + 6, "conv3": 6, "cccp5": 6 * 6 + 6,
             "cccp6": 6 * 4 + 4}
NIN_PARAMS = {**DS_PARAMS, "conv1": 3 * 6 * 25 + 6, "conv2": 4 * 6 * 25 + 6,
              "conv3": 6 * 6 * 9 + 6}


def by_name(report):
    return {row["name"]: row for row in report["layers"]}


def test_parameters_figure4(files):
    ds, nin = (analyze(p) for p in files)
    assert {n: r["trainable"] for n, r in by_name(ds).items()} == DS_PARAMS
    assert {n: r["trainable"] for n, r in by_name(nin).items()} == NIN_PARAMS
    assert ds["parameters"]["trainable"] == 231
    assert nin["parameters"]["trainable"] == 1605
    assert ds["parameters"]["fixed"] == 3 * 6 * 25 + 4 * 6 * 25 + 6 * 6 * 9 == 1374
    assert ds["parameters"]["nin_trainable"] == nin["parameters"]["nin_trainable"] == 1605
    assert ds["parameters"]["ratio_to_nin"] == pytest.approx(231 / 1605)
    assert nin["parameters"]["ratio_to_nin"] == 1.0


def test_full_size_parameters_match_the_paper(tmp_path):
    path = tmp_path / "full.h5"
    write_schema_v1(path, build_model("ds-nin", 3, 10), input_shape=(3, 32, 32))
    p = analyze(load(path), flops=False)["parameters"]
    assert (p["trainable"], p["nin_trainable"]) == (160010, 966986)   # Figure 4
    assert round(p["ratio_to_nin"], 3) == 0.165


def test_exact_zeros_figure7(files):
    ds, nin = (analyze(load(p)) for p in files)
    rows = by_name(ds)
    assert rows["cccp1"]["zeros"] == 16 and rows["cccp1"]["zero_fraction"] == 16 / 30
    assert (rows["cccp1"]["zero_filters"], rows["cccp1"]["zero_inputs"]) == (2, 1)
    assert (rows["cccp1"]["filters"], rows["cccp1"]["inputs"]) == (5, 6)
    assert rows["cccp3"]["zeros"] == 0 and rows["cccp3"]["zero_filters"] == 0
    assert rows["cccp5"]["zeros"] == 35
    assert (rows["cccp5"]["zero_filters"], rows["cccp5"]["zero_inputs"]) == (5, 5)
    assert rows["cccp2"]["zeros"] == 1 and rows["cccp2"]["zero_filters"] == 0
    assert [n for n, r in rows.items() if r["coefficient"]] == ["cccp1", "cccp3", "cccp5"]
    assert rows["conv1"]["zeros"] is None          # fixed: not counted
    assert ds["sparsity"]["layers"] == ["cccp1", "cccp3", "cccp5"]
    assert ds["sparsity"]["overall"] == (16 + 0 + 35) / (30 + 36 + 36)
    nin_rows = by_name(nin)
    assert nin_rows["conv1"]["zeros"] == 75 and nin_rows["conv1"]["zero_filters"] == 1
    assert nin_rows["conv1"]["zero_inputs"] == 0
    learned = 450 + 30 + 20 + 600 + 36 + 36 + 324 + 36 + 24
    assert nin["sparsity"]["overall"] == 75 / learned


def test_summary_fields(files):
    s = analyze(load(files[0]))["summary"]
    assert s == {"model": "ds-nin", "dataset": "cifar10", "input_shape": [3, 12, 12],
                 "num_classes": 4, "epoch": 3, "epochs": 3, "test_accuracy": 0.65,
                 "test_error": 0.35, "dictionary": "odct3", "zeta": 1e-5, "lr": 0.1, "seed": 0}
    assert analyze(load(files[1]))["summary"]["dictionary"] is None


def test_dense_flops_by_hand(files):
    # 3x12x12, 2 FLOPs per multiply-add; pools: one op per window element read
    conv = (2 * 3 * 25 * 6 * 144 + 2 * 6 * 5 * 144 + 2 * 5 * 4 * 144     # 12x12
            + 2 * 4 * 25 * 6 * 36 + 2 * 6 * 6 * 36 * 2                   # 6x6 after pool1
            + 2 * 6 * 9 * 6 * 9 + 2 * 6 * 6 * 9 + 2 * 6 * 4 * 9)         # 3x3 after pool2
    pool = 9 * 4 * 36 + 9 * 6 * 9 + 4 * 9
    for path in files:    # a fixed DCT conv costs the same dense GEMM as a learned one
        assert analyze(load(path))["flops"]["dense"] == conv + pool == 201114


def test_pruned_flops_by_hand(files):
    # cccp1: filters 0, 3 zero (folded into cccp2's bias) and input 2 unused -> conv1 6->5,
    # cccp1 5->3; cccp5: all filters but 2 zero, inputs but 5 unused -> conv3 6->1, cccp5 6->1
    conv = (2 * 3 * 25 * 5 * 144 + 2 * 5 * 3 * 144 + 2 * 3 * 4 * 144
            + 2 * 4 * 25 * 6 * 36 + 2 * 6 * 6 * 36 * 2
            + 2 * 6 * 9 * 1 * 9 + 2 * 1 * 1 * 9 + 2 * 1 * 4 * 9)
    pool = 9 * 4 * 36 + 9 * 6 * 9 + 4 * 9
    ds, nin = (analyze(load(p))["flops"] for p in files)
    assert ds["pruned"] == conv + pool == 167040
    assert ds["pruned_ratio"] == 167040 / 201114
    assert nin["pruned"] is None and nin["pruned_ratio"] is None    # NiN: nothing to prune


def test_first_layer_filters_against_h5py_einsum(files):
    with h5py.File(files[0], "r") as f:
        phi = f["layers/conv1/weight"][()].astype(np.float64)     # (6, 3, 5, 5)
        w = f["layers/cccp1/weight"][()].astype(np.float64)       # (5, 6, 1, 1)
    expected = np.einsum("ab,bcij->acij", w.reshape(5, 6), phi)
    d1 = first_layer_filters(files[0])           # a path works as well as load(path)
    assert d1.shape == (5, 3, 5, 5)
    np.testing.assert_allclose(d1, expected, rtol=1e-12, atol=1e-15)
    # zero rows of W1 are zero filters; the others are not
    assert [bool(np.any(d1[f])) for f in range(5)] == [False, True, True, False, True]
    with pytest.raises(MinidsError, match="DS-NiN"):
        first_layer_filters(load(files[1]))


def assert_png(path, size):
    image = matplotlib.image.imread(path)
    width, height = size
    assert image.shape[:2] == (round(height * DPI), round(width * DPI)), path
    rgb = image[..., :3].reshape(-1, 3)
    assert rgb.var(axis=0).sum() > 0, f"{path} is blank"
    assert len(np.unique(rgb, axis=0)) > 20, f"{path} has too few colours"


@pytest.mark.filterwarnings("error")   # a matplotlib layout warning means a broken figure
def test_figures(files, tmp_path):
    ds, nin = load(files[0]), load(files[1])
    out = tmp_path / "plots"
    paths = write_figures(ds, out)
    assert [p.name for p in paths] == ["ds_history.png", "ds_atoms.png", "ds_filters.png",
                                       "ds_histogram.png"]
    for path, name in zip(paths, ["history", "atoms", "filters", "histogram"]):
        assert_png(path, figure_size(name, 3))
    filters = matplotlib.image.imread(paths[2])[..., :3]
    red = (filters[..., 0] > 0.8) & (filters[..., 1] < 0.2) & (filters[..., 2] < 0.2)
    assert red.sum() > 50          # the frames of the two zero filters
    nin_paths = write_figures(nin, out)
    assert [p.name for p in nin_paths] == ["nin_history.png", "nin_histogram.png"]
    assert_png(nin_paths[0], figure_size("history"))
    assert_png(nin_paths[1], figure_size("histogram", 9))    # every learned conv of NiN
    for name in ("atoms", "filters"):
        with pytest.raises(MinidsError, match="nin model.*need a DS-NiN"):
            write_figures(nin, out, names=[name])


def test_grey_filters_for_one_channel(tmp_path):
    path = tmp_path / "gray.h5"
    write_schema_v1(path, build_model("ds-nin", 1, CLASSES, widths=SMALL), input_shape=(1, 12, 12),
                    dataset="fashion-mnist")
    [png] = write_figures(load(path), tmp_path, names=["filters"])
    image = matplotlib.image.imread(png)[..., :3]
    # the tiles are grey: in the mosaic's pixels R = G = B (the title text is black)
    assert np.array_equal(image[..., 0], image[..., 1])
    assert_png(png, figure_size("filters"))


def test_formats_side_by_side(files):
    reports = [analyze(load(p)) for p in files]
    rows = list(csv.DictReader(io.StringIO(format_csv(reports))))
    assert [r["file"] for r in rows] == [str(p) for p in files]
    assert [r["model"] for r in rows] == ["ds-nin", "nin"]
    assert [int(r["params_total"]) for r in rows] == [231, 1605]
    assert float(rows[0]["zeros_cccp1"]) == 16 / 30
    assert [r["zero_filters_cccp5"] for r in rows] == ["5", "0"]
    assert rows[0]["zeros_conv1"] == "" and rows[1]["zeros_conv1"] == str(75 / 450)
    assert [int(r["flops"]) for r in rows] == [201114, 201114]
    assert [r["flops_pruned"] for r in rows] == ["167040", ""]
    parsed = json.loads(format_json(reports))
    assert parsed[0]["layers"][1]["zero_filters"] == 2
    assert parsed[1]["parameters"]["trainable"] == 1605
    table = format_table(reports).splitlines()
    assert table[0] == "Summary" and table[1].split() == ["ds.h5", "nin.h5"]
    cells = {line.split("  ")[0].strip(): line.split() for line in table if "  " in line}
    assert cells["cccp1* zero weights"][-2:] == ["53.33%", "0.00%"]
    assert cells["cccp5* zero filters"][-6:] == ["5", "/", "6", "0", "/", "6"]
    assert cells["conv1 zero weights"][-2:] == ["-", "16.67%"]
    assert cells["total"][-2:] == ["231", "1,605"]
    # NiN's conv rows are merged in model order, right before cccp1
    labels = [line.split("  ")[0].strip() for line in table]
    assert labels.index("conv1 unused inputs") + 1 == labels.index("cccp1* zero weights")


def run(*args):
    return CliRunner().invoke(main, ["analyze", *map(str, args)])


def test_cli_formats_and_plots(files, tmp_path):
    result = run(*files, "--format", "json")
    assert result.exit_code == 0, result.output
    assert [r["summary"]["model"] for r in json.loads(result.stdout)] == ["ds-nin", "nin"]
    result = run(files[0], "--format", "csv", "--plots", tmp_path / "p", "--figure", "filters")
    assert result.exit_code == 0, result.output
    assert len(list(csv.DictReader(io.StringIO(result.stdout)))) == 1
    assert [p.name for p in (tmp_path / "p").iterdir()] == ["ds_filters.png"]
    result = run(files[0], files[0], "--plots", tmp_path / "q", "--figure", "history")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == ["ds-1_history.png",
                                                                  "ds-2_history.png"]
    assert "Trainable parameters (Figure 4)" in run(*files).stdout


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_cli_errors(files, tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.zeros(3)
    newer = tmp_path / "newer.h5"
    write_schema_v1(newer, nin_model())
    with h5py.File(newer, "a") as f:
        f.attrs["schema_version"] = 2
    assert_one_line_error(run(text), "not an HDF5 file")
    assert_one_line_error(run(other), "not minids weights")
    assert_one_line_error(run(newer), "schema version 2")
    assert_one_line_error(run(tmp_path / "missing.h5"), "no such")
    result = run(files[0], "--plots", files[1] / "sub", "--figure", "history")
    assert_one_line_error(result, "cannot write figure")
    result = run(files[1], "--plots", tmp_path / "p", "--figure", "atoms")
    assert_one_line_error(result, "nin model", "DS-NiN")
    assert not (tmp_path / "p").exists()


def test_file_saved_before_the_first_epoch(tmp_path):
    path = tmp_path / "fresh.h5"
    write_schema_v1(path, ds_model(), epochs=0)
    with h5py.File(path, "a") as f:
        f.attrs["test_accuracy"] = f.attrs["test_error"] = float("nan")
    w = load(path)
    report = analyze(w, flops=False)
    assert report["summary"]["test_accuracy"] is None and report["flops"] is None

    def no_nan(token):
        raise AssertionError(f"{token} is not JSON")
    assert json.loads(format_json([report]), parse_constant=no_nan)[0]["summary"]["epoch"] == 0
    [row] = [line for line in format_table([report]).splitlines() if line.startswith("test acc")]
    assert row.split()[-1] == "-"
    assert [p.name for p in write_figures(w, tmp_path)] == [
        "fresh_atoms.png", "fresh_filters.png", "fresh_histogram.png"]    # no history yet
    with pytest.raises(MinidsError, match="no training history"):
        write_figures(w, tmp_path, names=["history"])


def test_tile_normalisation_and_mosaic():
    tiles = np.array([[[-2.0, 1.0]], [[0.0, 0.0]], [[0.5, 0.25]]])       # three 1x2 tiles
    np.testing.assert_array_equal(normalize_tiles(tiles),
                                  [[[0.0, 0.75]], [[0.5, 0.5]], [[1.0, 0.75]]])
    rgb = np.zeros((1, 1, 2, 3))
    rgb[0, 0, 0] = [4.0, -2.0, 0.0]         # one scale over all channels of a tile
    np.testing.assert_array_equal(normalize_tiles(rgb)[0, 0], [[1.0, 0.25, 0.5], [0.5, 0.5, 0.5]])
    image = mosaic(np.arange(3 * 4, dtype=float).reshape(3, 2, 2) + 1, fill=0)
    # ceil(sqrt(3)) = 2 tiles per row, 1-pixel gaps and frame
    np.testing.assert_array_equal(image, [[0, 0, 0, 0, 0, 0, 0],
                                          [0, 1, 2, 0, 5, 6, 0],
                                          [0, 3, 4, 0, 7, 8, 0],
                                          [0, 0, 0, 0, 0, 0, 0],
                                          [0, 9, 10, 0, 0, 0, 0],
                                          [0, 11, 12, 0, 0, 0, 0],
                                          [0, 0, 0, 0, 0, 0, 0]])


@pytest.mark.parametrize("channels", [1, 3])
def test_odct3_atoms_and_filters_figures_for_one_and_three_channels(tmp_path, channels):
    """Figure 9 of an odct3 net: one tile per output atom, in colour for RGB input."""
    import matplotlib.image

    from minids.analysis.figures import plot_atoms, plot_filters
    from minids.io import WeightsFile, layer_arrays, write_weights
    from minids.models import build_model

    model = build_model("ds-nin", in_channels=channels, seed=0)
    attrs = {"model": "ds-nin", "input_shape": [channels, 32, 32], "num_classes": 10,
             "dictionary": "odct3", "widths": list(model.widths), "seed": 0,
             "layer_order": [name for name, _ in model.conv_layers()],
             "coefficient_layers": model.coefficient_layers()}
    path = tmp_path / "odct3.h5"
    stats = {"kind": "standard", "mean": np.zeros(channels, np.float32), "std": np.ones(channels, np.float32)}
    write_weights(path, WeightsFile(attrs, layer_arrays(model), stats))
    for plot in (plot_atoms, plot_filters):
        image = matplotlib.image.imread(plot(path, tmp_path / f"{plot.__name__}.png"))[..., :3]
        spread = np.abs(image - image.mean(axis=2, keepdims=True)).max()
        # colour where the atoms span three channels; grey (R = G = B) for one
        assert (spread > 0.2) if channels == 3 else (spread < 1e-3)
