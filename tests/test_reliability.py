"""Nothing a user made is lost: history names, full disks, unwritable folders,
concurrent writers, SIGTERM, non-finite weights and out-of-range options.

Each case asserts the exit status, the one-line message and that the files
already there are byte-identical afterwards.
"""

import errno
import signal

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from minids.cli.main import main
from helpers import SignalAtBatch
from minids.io import temporary_path
from minids.lock import OutputLock
from minids.train import Interrupted, TrainConfig, csv_path, train

TINY = (8, 8, 8, 8, 8, 8, 8, 8)
TINY_ARGS = ["--widths", ",".join(map(str, TINY)), "--train-size", "64", "--test-size", "20",
             "--batch-size", "32", "--device", "cpu", "--quiet"]


def tiny(out, **kw):
    base = dict(data="fashion-mnist-mini", model="ds-nin", batch_size=32, lr=0.02, device="cpu",
                widths=TINY, train_size=64, test_size=20, seed=5, epochs=1, out=str(out))
    base.update(kw)
    return TrainConfig(**base)


def invoke(*args):
    return CliRunner().invoke(main, list(map(str, args)))


def one_line_error(result, *fragments, status=1):
    assert result.exit_code == status, result.output
    lines = result.output.strip().splitlines()
    assert "Traceback" not in result.output
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def snapshot(folder):
    """{name: bytes} of every file in ``folder``."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_csv_names_never_clash_with_weights_or_each_other():
    assert str(csv_path("run.h5")) == "run.csv"
    assert str(csv_path("run.hdf5")) == "run.hdf5.csv"
    assert str(csv_path("run.csv")) == "run.csv.csv"
    assert csv_path("r1.h5") != csv_path("r1.hdf5")


def test_out_named_csv_keeps_the_weights(tmp_path):
    out = tmp_path / "run.csv"
    result = invoke("train", *TINY_ARGS, "--epochs", "1", "--out", out)
    assert result.exit_code == 0, result.output
    assert h5py.is_hdf5(out)  # the weights, not overwritten by the history
    assert (tmp_path / "run.csv.csv").read_text().startswith("epoch,")


def test_existing_csv_of_another_run_is_refused(tmp_path):
    (tmp_path / "r1.csv").write_text("someone else's history\n")
    before = snapshot(tmp_path)
    error = one_line_error(invoke("train", *TINY_ARGS, "--out", tmp_path / "r1.h5"), "r1.csv", "--force")
    assert "another run" in error
    assert snapshot(tmp_path) == before


def test_full_disk_during_save_keeps_the_previous_file(tmp_path, monkeypatch):
    out = tmp_path / "w.h5"
    train(tiny(out))
    before = snapshot(tmp_path)

    real = h5py.File

    def no_space(name, mode="r", *args, **kwargs):
        if mode == "w":  # writing fails as on a full disk; reading works
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(name, mode, *args, **kwargs)

    monkeypatch.setattr("minids.io.h5py.File", no_space)
    result = invoke("train", *TINY_ARGS, "--resume", out, "--epochs", "2")
    one_line_error(result, "No space left on device", "unchanged")
    assert snapshot(tmp_path) == before  # no temporary left, the file as it was


def test_out_under_a_file_is_one_line_error(tmp_path):
    (tmp_path / "plain").write_text("not a folder")
    before = snapshot(tmp_path)
    one_line_error(invoke("train", *TINY_ARGS, "--out", tmp_path / "plain" / "w.h5"), "plain")
    assert snapshot(tmp_path) == before


def test_unwritable_folder_is_one_line_error(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("minids.lock.open", denied, raising=False)
    one_line_error(invoke("train", *TINY_ARGS, "--out", tmp_path / "w.h5"), "Permission denied")
    assert list(tmp_path.iterdir()) == []


def test_a_second_writer_is_refused_with_the_first_ones_pid(tmp_path):
    out = tmp_path / "w.h5"
    train(tiny(out))
    before = snapshot(tmp_path)
    with OutputLock(out):  # another process would hold it the same way
        result = invoke("train", *TINY_ARGS, "--resume", out, "--epochs", "2")
        error = one_line_error(result, "being written by another minids process", "pid")
        assert str(__import__("os").getpid()) in error
    assert snapshot(tmp_path) == before


def test_stale_temporaries_of_killed_writers_are_removed(tmp_path):
    out = tmp_path / "w.h5"
    stale = tmp_path / f".{out.name}.99999999.tmp"
    stale.write_bytes(b"half a file")
    stale_csv = tmp_path / ".w.csv.12345678.tmp"
    stale_csv.write_bytes(b"half a csv")
    train(tiny(out))
    assert not stale.exists() and not stale_csv.exists()
    assert temporary_path(out).name.startswith(".w.h5.") and temporary_path(out).name.endswith(".tmp")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.csv", "w.h5"]  # no lock file left


def test_sigterm_saves_the_current_batch_and_exits_143(tmp_path, monkeypatch):
    out = tmp_path / "w.h5"
    with pytest.raises(Interrupted, match="stopped by SIGTERM") as stop:
        train(tiny(out, epochs=2), SignalAtBatch(1, signal.SIGTERM))
    assert stop.value.exit_status == 143
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with h5py.File(out, "r") as f:
        assert f["partial_epoch"].attrs["batches"] == 1
    monkeypatch.setattr("minids.cli.train.ConsoleReporter", lambda quiet: SignalAtBatch(1, signal.SIGTERM))
    result = invoke("train", *TINY_ARGS, "--epochs", "2", "--out", tmp_path / "cli.h5")
    assert result.exit_code == 143 and "stopped by SIGTERM" in result.output
    assert "Traceback" not in result.output


def test_non_finite_weights_are_refused_by_evaluate_analyze_and_prune(tmp_path):
    out = tmp_path / "w.h5"
    train(tiny(out))
    with h5py.File(out, "r+") as f:
        f["layers/cccp1/weight"][0, 0, 0, 0] = np.nan
    before = snapshot(tmp_path)
    for args in (["evaluate", out, "--data", "fashion-mnist-mini"], ["analyze", out],
                 ["prune", out, "--out", tmp_path / "pruned.h5"]):
        one_line_error(invoke(*args), "cccp1", "NaN or inf")
    assert snapshot(tmp_path) == before


def test_a_step_that_makes_weights_non_finite_is_never_saved(tmp_path, monkeypatch):
    out = tmp_path / "w.h5"
    train(tiny(out))
    before = snapshot(tmp_path)
    from minids.optim import MomentumShrink
    real = MomentumShrink.step

    calls = []

    def blow_up(self, params, grads):
        real(self, params, grads)
        calls.append(1)
        if len(calls) == 2:  # the last of epoch 2's two batches diverges; its loss was finite
            params["cccp6.bias"][...] = np.inf

    monkeypatch.setattr(MomentumShrink, "step", blow_up)
    result = invoke("train", *TINY_ARGS, "--resume", out, "--epochs", "2")
    one_line_error(result, "diverged", "cccp6.bias", f"{out} keeps epoch 1")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("args,fragment", [
    (["--batch-size", "0"], "--batch-size must be in 1..65536, got 0"),
    (["--batch-size", "10000000000"], "--batch-size must be in 1..65536"),
    (["--seed", "-1"], "--seed must be in 0..2**63-1, got -1"),
    (["--widths", "8,8,8,8,8,8,8,100000000"], "--widths needs 8 positive channel counts of at most 16384"),
])
def test_out_of_range_options_are_one_line_errors(tmp_path, args, fragment):
    one_line_error(invoke("train", "--out", tmp_path / "w.h5", *args), fragment)
    assert list(tmp_path.iterdir()) == []


def test_resume_with_zero_epochs_is_refused(tmp_path):
    out = tmp_path / "w.h5"
    train(tiny(out))
    before = snapshot(tmp_path)
    one_line_error(invoke("train", "--resume", out, "--epochs", "0", "--device", "cpu"), "--epochs must be >= 1")
    assert snapshot(tmp_path) == before


def test_missing_svhn_names_every_file_and_gpu_error_names_the_checkout_extra(tmp_path):
    result = invoke("train", "--data", "svhn", "--data-dir", tmp_path, "--out", tmp_path / "w.h5")
    error = one_line_error(result, "train_32x32.mat", "test_32x32.mat", "extra_32x32.mat")
    assert "minids data download svhn" in error
    from minids.backend import gpu_available
    if not gpu_available():
        result = invoke("train", "--device", "gpu", "--out", tmp_path / "w.h5")
        one_line_error(result, "pip install '.[cuda12]'")
    assert not (tmp_path / "w.h5").exists()


def _add_partial_epoch(f, **values):
    group = f.create_group("partial_epoch")
    for key, value in {"batches": 1, "images": 32, "errors": 3, "loss_sum": 70.0, "seconds": 1.0, **values}.items():
        if value is not None:
            group.attrs[key] = value


def _replace(f, name, value):
    del f[name]
    f[name] = value


# (damage to a 1-epoch tiny run's file, a fragment the error must hold, whether
# every reader refuses it (True) or only a resume (False))
DAMAGES = {
    "mean missing": (lambda f: f.__delitem__("preprocessing/mean"), "preprocessing/mean is missing", True),
    "mean of 3 channels": (lambda f: _replace(f, "preprocessing/mean", np.zeros(3, np.float32)),
                           "preprocessing/mean has shape (3,), input shape (1, 28, 28) needs (1,)", True),
    "std zero": (lambda f: _replace(f, "preprocessing/std", np.zeros(1, np.float32)),
                 "preprocessing/std is not positive", True),
    "rng not JSON": (lambda f: f["rng"].attrs.__setitem__("state", "garbage"), "rng/state is not JSON", True),
    "rng not a state": (lambda f: f["rng"].attrs.__setitem__("state", '{"bit_generator": "PCG64"}'),
                        "rng/state is not a NumPy generator state", True),
    "epoch negative": (lambda f: f.attrs.__setitem__("epoch", -1), "attribute 'epoch' is -1", True),
    "partial past the end": (lambda f: _add_partial_epoch(f, batches=10**6),
                             "partial_epoch says 1000000 batches of epoch 2 are done, an epoch has 2", False),
    "partial without seconds": (lambda f: _add_partial_epoch(f, seconds=None),
                                "attribute 'seconds' of partial_epoch is missing", True),
    "history column removed": (lambda f: f.__delitem__("history/test_error"), "history/test_error is missing", False),
    "history column short": (lambda f: _replace(f, "history/train_loss", np.zeros(0)),
                             "history/train_loss has 0 rows, the file has done 1 epochs", False),
    "momentum state removed": (lambda f: f.__delitem__("optimizer/prev/cccp1.weight"),
                               "optimizer/prev/cccp1.weight is missing", False),
    "momentum state NaN": (lambda f: _replace(f, "optimizer/prev/cccp1.weight",
                                              np.full((8, 8, 1, 1), np.nan, np.float32)),
                           "optimizer/prev/cccp1.weight holds NaN or inf", True),
    "step count removed": (lambda f: f["optimizer"].attrs.__delitem__("steps"), "optimizer state is missing 'steps'",
                           False),
    "layer bias removed": (lambda f: f.__delitem__("layers/cccp3/bias"), "layers/cccp3/bias is missing", True),
}


@pytest.fixture(scope="module")
def one_epoch_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("base") / "w.h5"
    train(tiny(out))
    return out


@pytest.mark.parametrize("case", DAMAGES)
def test_hand_damaged_weights_are_refused_naming_the_field(tmp_path, one_epoch_file, case):
    damage, fragment, every_reader = DAMAGES[case]
    out = tmp_path / "w.h5"
    out.write_bytes(one_epoch_file.read_bytes())
    (tmp_path / "w.csv").write_bytes(one_epoch_file.with_suffix(".csv").read_bytes())
    with h5py.File(out, "r+") as f:
        damage(f)
    before = snapshot(tmp_path)
    one_line_error(invoke("train", *TINY_ARGS, "--resume", out, "--epochs", "2"), fragment, str(out))
    evaluated = invoke("evaluate", out, "--data", "fashion-mnist-mini", "--test-size", "20", "--device", "cpu")
    if every_reader:
        one_line_error(evaluated, fragment, str(out))
    else:
        assert evaluated.exit_code == 0, evaluated.output
    assert snapshot(tmp_path) == before


def test_full_disk_while_preparing_data_is_one_line_error(tmp_path, monkeypatch):
    """`minids train` on SVHN when the disk fills while its split is converted:
    exit 1, one line, no temporary left in prepared/, the sources untouched."""
    import os

    from data_files import random_split, write_svhn
    for name, seed in (("train", 1), ("test", 2)):
        write_svhn(tmp_path / f"{name}_32x32.mat", *random_split(40, (3, 32, 32), seed))
    before = snapshot(tmp_path)

    def no_space(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    result = invoke("train", "--data", "svhn", "--no-extra", "--data-dir", tmp_path, "--out", tmp_path / "w.h5",
                    *TINY_ARGS[:2], "--device", "cpu", "--quiet")
    one_line_error(result, "cannot prepare svhn-train", "No space left on device", "free some space")
    assert snapshot(tmp_path) == before
    assert [p.name for p in (tmp_path / "prepared").iterdir()] == [".svhn-train.lock"]
