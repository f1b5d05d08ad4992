"""``minids sweep``: one ordinary training per grid point, resumable, table read back by h5py."""

import csv
import importlib.util
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from minids.cli.main import main
from helpers import SignalAtBatch
from minids.errors import MinidsError
from minids.sweep import Point, grid, parse_list
from minids.train import Interrupted, TrainConfig, train

TINY = "8,8,8,8,8,8,8,8"
TRAIN_ARGS = ["--widths", TINY, "--train-size", "64", "--test-size", "20", "--epochs", "2",
              "--batch-size", "32", "--device", "cpu"]


def sweep(*args):
    return CliRunner().invoke(main, ["sweep", *map(str, args)])


def table_rows(folder):
    with open(folder / "sweep.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def assert_table_matches_files(folder, expected_stems):
    rows = table_rows(folder)
    assert [row["weights"] for row in rows] == [f"{stem}.h5" for stem in expected_stems]
    for row in rows:
        with h5py.File(folder / row["weights"], "r") as f:  # plain h5py, no minids
            a = f.attrs
            assert float(row["test_accuracy"]) == pytest.approx(float(a["test_accuracy"]), abs=0)
            assert float(row["sparsity"]) == pytest.approx(float(a["sparsity"]), abs=0)
            assert float(row["zeta"]) == float(a["zeta"]) and int(row["seed"]) == int(a["seed"])
            assert int(row["epoch"]) == int(a["epoch"]) == int(a["epochs"])
            assert float(row["images_per_second"]) == float(f["history/images_per_second"][-1])
            for part in row["sparsity_layers"].split():
                name, value = part.split("=")
                assert float(value) == pytest.approx(float(f[f"history/sparsity_{name}"][-1]), abs=5e-5)
            # hand count of the zero coefficients over the three coefficient layers
            weights = [f[f"layers/{n}/weight"][()] for n in ("cccp1", "cccp3", "cccp5")]
            zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.size for w in weights)
            assert float(row["sparsity"]) == pytest.approx(zeros)
        assert int(row["flops_pruned"]) <= int(row["flops"])


def test_grid_names_and_lists():
    points = grid([0.0, 1e-5], ["ds-nin", "nin"], ["odct3", "odct2-dc"], [0, 1])
    assert len(points) == 2 * 2 * 2 + 2 * 2  # NiN has no dictionary axis
    assert Point("ds-nin", "odct3", 1e-5, 2).stem == "ds-nin-odct3-zeta1e-05-seed2"
    assert Point("nin", None, 0.0, 0).stem == "nin-zeta0-seed0"
    assert parse_list("0, 1e-6,3e-6", float, "zeta") == [0.0, 1e-6, 3e-6]
    with pytest.raises(MinidsError, match="--zeta must be a comma-separated list"):
        parse_list("0,abc", float, "zeta")


def test_local_two_point_sweep_table_equals_the_weights_files(tmp_path):
    folder = tmp_path / "s"
    result = sweep("--zeta", "0,1e-3", "--out-dir", folder, "--jobs", "2", *TRAIN_ARGS)
    assert result.exit_code == 0, result.output
    assert_table_matches_files(folder, ["ds-nin-odct3-zeta0-seed0", "ds-nin-odct3-zeta0.001-seed0"])
    assert (folder / "frontier.png").stat().st_size > 0
    assert (folder / "ds-nin-odct3-zeta0-seed0.csv").exists()
    # analyze reads the folder back and draws the same figure
    analyzed = CliRunner().invoke(main, ["analyze", str(folder), "--plots", str(tmp_path / "p")])
    assert analyzed.exit_code == 0, analyzed.output
    assert "0.001" in analyzed.output and (tmp_path / "p" / "frontier.png").exists()


def test_rerun_finishes_missing_points_only_and_leaves_finished_files_alone(tmp_path):
    folder = tmp_path / "s"
    assert sweep("--zeta", "0", "--out-dir", folder, *TRAIN_ARGS).exit_code == 0
    finished = {p.name: p.read_bytes() for p in folder.glob("ds-nin-odct3-zeta0-seed0.*")}
    # the second point was interrupted in its first epoch: a partial file to resume
    partial = Point("ds-nin", "odct3", 1e-3, 0).weights(folder)
    config = TrainConfig(data="fashion-mnist-mini", model="ds-nin", dictionary="odct3", zeta=1e-3, seed=0,
                         widths=tuple([8] * 8), train_size=64, test_size=20, epochs=2, batch_size=32,
                         device="cpu", out=str(partial))
    with pytest.raises(Interrupted):
        train(config, SignalAtBatch(1))
    with h5py.File(partial, "r") as f:
        assert f["partial_epoch"].attrs["batches"] == 1
    result = sweep("--zeta", "0,1e-3", "--out-dir", folder, *TRAIN_ARGS)
    assert result.exit_code == 0, result.output
    assert "start ds-nin-odct3-zeta0-seed0" not in result.output  # skipped
    assert "start ds-nin-odct3-zeta0.001-seed0" in result.output  # resumed
    assert {p.name: p.read_bytes() for p in folder.glob("ds-nin-odct3-zeta0-seed0.*")} == finished
    with h5py.File(partial, "r") as f:
        assert f.attrs["epoch"] == 2 and "partial_epoch" not in f
    # the resumed point equals the same run done straight through
    straight = tmp_path / "straight.h5"
    train(TrainConfig(**{**config.__dict__, "out": str(straight)}))
    with h5py.File(partial, "r") as a, h5py.File(straight, "r") as b:
        np.testing.assert_array_equal(a["layers/cccp1/weight"][()], b["layers/cccp1/weight"][()])
    assert_table_matches_files(folder, ["ds-nin-odct3-zeta0-seed0", "ds-nin-odct3-zeta0.001-seed0"])


def test_options_the_sweep_owns_are_refused(tmp_path):
    result = sweep("--zeta", "0", "--out-dir", tmp_path / "s", "--out", "x.h5", *TRAIN_ARGS)
    assert result.exit_code == 1 and "--out is set by the sweep" in result.output
    result = sweep("--zeta", "0,x", "--out-dir", tmp_path / "s", *TRAIN_ARGS)
    assert result.exit_code == 1 and "comma-separated" in result.output


def test_ray_engine_without_ray_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # `import ray` fails as if absent
    result = sweep("--zeta", "0", "--engine", "ray", "--out-dir", tmp_path / "s", *TRAIN_ARGS)
    assert result.exit_code == 1 and "pip install '.[ray]'" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs Ray (pip install '.[ray]')")
def test_ray_two_point_sweep_on_a_local_instance(tmp_path):
    folder = tmp_path / "s"
    result = sweep("--zeta", "0,1e-3", "--engine", "ray", "--cpus-per-point", "1", "--out-dir", folder,
                   *TRAIN_ARGS)
    assert result.exit_code == 0, result.output
    assert_table_matches_files(folder, ["ds-nin-odct3-zeta0-seed0", "ds-nin-odct3-zeta0.001-seed0"])


LONG_TRAIN_ARGS = ["--widths", TINY, "--train-size", "64", "--test-size", "20", "--batch-size", "32",
                   "--device", "cpu", "--epochs", "200"]


def _interrupt_a_running_sweep(folder, engine_args):
    """Start a 2-point sweep of 200 epochs, Ctrl-C it once both points have
    saved their first file, and return (exit status, output)."""
    command = [sys.executable, "-c", "from minids.cli.main import main; main()", "sweep", "--zeta", "0,1e-3",
               "--out-dir", str(folder), *engine_args, *LONG_TRAIN_ARGS]
    sweep_process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    files = [Point("ds-nin", "odct3", z, 0).weights(folder) for z in (0.0, 1e-3)]
    deadline = time.monotonic() + 120
    while not all(f.exists() for f in files) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # a few batches into the run
    sweep_process.send_signal(signal.SIGINT)
    output, _ = sweep_process.communicate(timeout=120)
    return sweep_process.returncode, output, files


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["local", "ray"])
def test_ctrl_c_stops_every_point_cleanly_and_a_rerun_goes_on(tmp_path, engine):
    if engine == "ray" and importlib.util.find_spec("ray") is None:
        pytest.skip("needs Ray (pip install '.[ray]')")
    folder = tmp_path / "s"
    engine_args = ["--jobs", "2"] if engine == "local" else ["--engine", "ray", "--cpus-per-point", "1"]
    code, output, files = _interrupt_a_running_sweep(folder, engine_args)
    assert code == 130, output
    assert "sweep stopped: 0 of 2 points finished" in output and "Traceback" not in output
    for path in files:  # each point saved where it stopped, and no process writes it any more
        assert not (folder / f".{path.name}.lock").exists()
        with h5py.File(path, "r") as f:
            assert 0 <= f.attrs["epoch"] < 200
        assert not list(folder.glob(f".{path.name}.*.tmp"))
    # a re-run resumes both points from their files (to one epoch past the furthest)
    done = []
    for path in files:
        with h5py.File(path, "r") as f:
            done.append(int(f.attrs["epoch"]))
    epochs = 1 + max(done)
    rerun = sweep("--zeta", "0,1e-3", "--out-dir", folder, *engine_args, *LONG_TRAIN_ARGS[:-1], epochs)
    assert rerun.exit_code == 0, rerun.output
    for path in files:
        with h5py.File(path, "r") as f:
            assert f.attrs["epoch"] == epochs and "partial_epoch" not in f


def test_local_jobs_take_one_visible_gpu_each_or_a_share_of_the_cores(tmp_path, monkeypatch):
    import threading

    from minids import sweep as sweep_module
    envs, together = [], threading.Barrier(2, timeout=10)

    def run(self, args, env):  # the two jobs' first points run at the same time, as real ones do
        envs.append(env)
        if len(envs) <= 2:
            together.wait()
        return 0, "done"

    monkeypatch.setattr(sweep_module.Children, "run", run)
    points = [Point("ds-nin", "odct3", z, 0) for z in (0.0, 1e-5, 1e-4, 1e-3)]
    monkeypatch.setattr(sweep_module, "gpu_count", lambda: 2)  # CuPy sees two GPUs
    sweep_module.run_local(points, tmp_path, [], 2, lambda line: None, cores=8)
    assert sorted(env["CUDA_VISIBLE_DEVICES"] for env in envs[:2]) == ["0", "1"]
    assert all(env.get("CUDA_VISIBLE_DEVICES") in ("0", "1") for env in envs) and len(envs) == 4
    envs.clear()
    together.reset()
    sweep_module.run_local(points, tmp_path, [], 2, lambda line: None, gpus=0, cores=8)  # --gpus 0
    assert [env["MINIDS_THREADS"] for env in envs] == ["4"] * 4
