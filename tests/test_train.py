"""``minids train``: a real run, exact resume, divergence, interruption, refusals."""

import csv
import os
import signal
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from minids.cli.main import main
from helpers import SignalAtBatch
from minids.dictionary import get_dictionary
from minids.errors import MinidsError
from minids.interrupt import StopRequest
from minids.io import read_weights
from minids.layers import SoftmaxNLL
from minids.run_options import default_schedule, parse_schedule
from minids.train import Interrupted, TrainConfig, resolve, train

TINY = (8, 8, 8, 8, 8, 8, 8, 8)
TINY_ARG = ",".join(map(str, TINY))


def tiny(out, **kw):
    base = dict(data="fashion-mnist-mini", model="ds-nin", batch_size=32, lr=0.02, device="cpu",
                widths=TINY, train_size=96, test_size=40, seed=5, lr_schedule="multistep:1:0.5", dropout=0.5,
                out=str(out))
    base.update(kw)
    return TrainConfig(**base)


def invoke(*args):
    return CliRunner().invoke(main, ["train", *args])


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.slow
def test_cli_trains_ds_nin_on_real_fashion_mnist(tmp_path):
    """Full-width DS-NiN on 320 real Fashion-MNIST images (the embedded subset), 2 epochs."""
    out = tmp_path / "run.h5"
    result = invoke("--train-size", "320", "--test-size", "100", "--epochs", "2", "--batch-size", "32",
                    "--lr", "0.01", "--lr-schedule", "constant", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "ds-nin (odct3) on fashion-mnist-mini: 320 train / 100 test" in result.output
    assert "epoch 1 10/10 batches" in result.output  # plain progress lines off a terminal
    with h5py.File(out, "r") as f:
        loss = f["history/train_loss"][()]
        assert f.attrs["epoch"] == 2 and f.attrs["model"] == "ds-nin"
        assert list(f.attrs["widths"]) == [192, 160, 96, 192, 192, 192, 192, 192]
        assert f["layers/cccp1/weight"].shape == (160, 192, 1, 1)
        test_error = f["history/test_error"][()]
    assert loss[1] < loss[0]
    assert loss[0] < np.log(10) + 1.5  # it learns, not diverges
    rows = list(csv.reader(out.with_suffix(".csv").open()))
    assert rows[0][:5] == ["epoch", "lr", "train_loss", "train_error", "test_error"]
    assert [float(r[2]) for r in rows[1:]] == list(loss)
    assert [float(r[4]) for r in rows[1:]] == list(test_error)


def _strip_clock(history):
    return {k: v for k, v in history.items() if k not in ("seconds", "images_per_second")}


def _assert_same_run(a, b):
    wa, wb = read_weights(a), read_weights(b)
    for name, layer in wa.layers.items():
        np.testing.assert_array_equal(layer["weight"], wb.layers[name]["weight"])
        np.testing.assert_array_equal(layer["bias"], wb.layers[name]["bias"])
    for name, prev in wa.optimizer["prev"].items():
        np.testing.assert_array_equal(prev, wb.optimizer["prev"][name])
    assert wa.optimizer["steps"] == wb.optimizer["steps"]
    assert wa.rng_state == wb.rng_state
    ha, hb = _strip_clock(wa.history), _strip_clock(wb.history)
    assert set(ha) == set(hb)
    for col in ha:
        np.testing.assert_array_equal(ha[col], hb[col])


@pytest.mark.parametrize("options", [{}, {"shrink": "coefficients", "zeta_schedule": "follow-lr", "zeta": 1e-3,
                                           "dropout": 0.2}])
def test_resume_is_bit_identical(tmp_path, options):
    straight = tmp_path / "straight.h5"
    train(tiny(straight, epochs=2, **options))
    split = tmp_path / "split.h5"
    train(tiny(split, epochs=1, **options))
    assert read_weights(split).attrs["epoch"] == 1
    result = invoke("--resume", str(split), "--epochs", "2", "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    _assert_same_run(straight, split)


def test_interrupt_keeps_last_epoch_and_resume_matches(tmp_path, monkeypatch):
    straight = tmp_path / "straight.h5"
    train(tiny(straight, epochs=2))
    out = tmp_path / "stopped.h5"
    calls = []
    real = SoftmaxNLL.backward

    def stop_in_epoch_two(self):
        calls.append(1)
        if len(calls) == 5:  # 3 batches per epoch: the second batch of epoch 2
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(SoftmaxNLL, "backward", stop_in_epoch_two)
    result = invoke("--data", "fashion-mnist-mini", "--model", "ds-nin", "--batch-size", "32", "--lr", "0.02",
                    "--device", "cpu", "--widths", TINY_ARG, "--train-size", "96", "--test-size", "40",
                    "--seed", "5", "--lr-schedule", "multistep:1:0.5", "--dropout", "0.5", "--epochs", "2",
                    "--out", str(out))
    assert result.exit_code == 130
    assert "Traceback" not in result.output
    assert "interrupted during epoch 2" in result.output and "--resume" in result.output
    assert read_weights(out).attrs["epoch"] == 1
    monkeypatch.setattr(SoftmaxNLL, "backward", real)
    train(TrainConfig(resume=str(out), device="cpu"))
    _assert_same_run(straight, out)


def test_ctrl_c_saves_the_current_batch_and_resume_matches(tmp_path):
    straight = tmp_path / "straight.h5"
    train(tiny(straight, epochs=2))
    out = tmp_path / "stopped.h5"
    with pytest.raises(Interrupted, match="2 of 3 batches of epoch 2"):
        train(tiny(out, epochs=2), SignalAtBatch(5))  # 3 batches per epoch: batch 2 of epoch 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with h5py.File(out, "r") as f:  # plain h5py: where the run stopped
        assert f.attrs["epoch"] == 1 and f["partial_epoch"].attrs["batches"] == 2
        assert f["partial_epoch"].attrs["images"] == 64 and f["optimizer"].attrs["steps"] == 5
        assert len(f["history/epoch"]) == 1
    train(TrainConfig(resume=str(out), device="cpu"))
    _assert_same_run(straight, out)
    assert read_weights(out).partial_epoch is None


def test_ctrl_c_on_the_command_line(tmp_path, monkeypatch):
    monkeypatch.setattr("minids.cli.train.ConsoleReporter", lambda quiet: SignalAtBatch(2))
    out = tmp_path / "w.h5"
    result = invoke("--widths", TINY_ARG, "--train-size", "96", "--test-size", "40", "--batch-size", "32",
                    "--device", "cpu", "--epochs", "2", "--out", str(out))
    assert result.exit_code == 130 and "Traceback" not in result.output
    assert "stopped by Ctrl-C" in result.output and "2 of 3 batches of epoch 1" in result.output
    assert f"--resume {out}" in result.output
    assert read_weights(out).partial_epoch["batches"] == 2


def test_a_second_ctrl_c_stops_at_once():
    before = signal.getsignal(signal.SIGINT)
    with StopRequest() as stop:
        assert not stop.requested
        signal.raise_signal(signal.SIGINT)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks")
def test_stop_request_sees_signals_its_parent_blocked():
    """A Ray worker blocks SIGINT and its children inherit the mask: a
    `minids train` started there must still see a Ctrl-C (here: a SIGTERM and
    a SIGINT sent to this process with both blocked)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT, signal.SIGTERM])
    try:
        with StopRequest() as stop:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # delivered at the next bytecode once unblocked
            assert stop.requested and stop.signal == signal.SIGTERM
        assert {signal.SIGINT, signal.SIGTERM} <= signal.pthread_sigmask(signal.SIG_BLOCK, [])
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def test_nan_loss_stops_and_keeps_the_last_good_epoch(tmp_path):
    good = tmp_path / "good.h5"
    train(tiny(good, epochs=1, lr_schedule="multistep:1:1e30"))
    out = tmp_path / "nan.h5"
    result = invoke("--widths", TINY_ARG, "--train-size", "96", "--test-size", "40", "--batch-size", "32",
                    "--lr", "0.02", "--seed", "5", "--device", "cpu", "--lr-schedule", "multistep:1:1e30",
                    "--dropout", "0.5", "--epochs", "3", "--out", str(out), "--quiet")
    assert result.exit_code == 1
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "the loss became" in error[0] and "epoch 2" in error[0], result.output
    kept = read_weights(out)
    assert kept.attrs["epoch"] == 1
    expected = read_weights(good)
    for name, layer in expected.layers.items():
        np.testing.assert_array_equal(kept.layers[name]["weight"], layer["weight"])
        assert np.isfinite(kept.layers[name]["weight"]).all()


def test_refuses_to_overwrite_another_run(tmp_path):
    out = tmp_path / "w.h5"
    out.write_bytes(b"precious")
    args = ["--widths", TINY_ARG, "--train-size", "64", "--test-size", "20", "--epochs", "1",
            "--device", "cpu", "--out", str(out)]
    assert_one_line_error(invoke(*args), "already exists", "--force")
    assert out.read_bytes() == b"precious"
    result = invoke(*args, "--force", "--quiet")
    assert result.exit_code == 0, result.output
    assert read_weights(out).attrs["epoch"] == 1


def test_resume_refuses_other_runs_and_non_weights(tmp_path):
    out = tmp_path / "w.h5"
    train(tiny(out, epochs=1))
    before = out.read_bytes()
    assert_one_line_error(invoke("--resume", str(out), "--model", "nin"),
                          "--model ds-nin", "not nin")
    assert_one_line_error(invoke("--resume", str(out), "--data", "fashion-mnist"), "--data fashion-mnist-mini")
    assert_one_line_error(invoke("--resume", str(out), "--lr", "0.5"), "--lr 0.02")
    assert_one_line_error(invoke("--resume", str(out), "--dictionary", "odct2-mixed"), "--dictionary odct3")
    assert_one_line_error(invoke("--resume", str(out), "--shrink", "weights"), "--shrink all")
    assert_one_line_error(invoke("--resume", str(out), "--zeta-schedule", "follow-lr"), "--zeta-schedule constant")
    assert_one_line_error(invoke("--resume", str(out), "--dropout", "0"), "--dropout 0.5", "not 0.0")
    assert out.read_bytes() == before
    notes = tmp_path / "notes.txt"
    notes.write_text("not weights")
    assert_one_line_error(invoke("--resume", str(notes)), "not an HDF5 file")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.zeros(2)
    assert_one_line_error(invoke("--resume", str(other)), "not minids weights")


@pytest.mark.parametrize("args, fragment", [
    (["--zeta", "-1e-5"], "--zeta must be a finite number >= 0"),
    (["--lr", "-0.1"], "--lr must be a finite number >= 0"),
    (["--momentum", "1"], "--momentum must be in [0, 1)"),
    (["--dropout", "1"], "--dropout must be in [0, 1)"),
    (["--dropout", "-0.1"], "--dropout must be in [0, 1)"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--lr-schedule", "cosine"], "bad --lr-schedule 'cosine'"),
    (["--lr-schedule", "step:x:0.1"], "bad --lr-schedule"),
    (["--train-size", "20000"], "--train-size 20000 is more than the 10000"),
    (["--widths", "8,8,8"], "--widths needs 8 positive channel counts"),
    (["--model", "nin", "--dictionary", "odct2"], "--dictionary is for --model ds-nin"),
    (["--model", "nin", "--shrink", "coefficients"], "--shrink coefficients is for --model ds-nin"),
])
def test_bad_options_are_one_line_errors(tmp_path, args, fragment):
    out = tmp_path / "w.h5"
    assert_one_line_error(invoke(*args, "--out", str(out)), fragment)
    assert not out.exists()


@pytest.mark.parametrize("args, fragment", [
    (["train", "--data", "mnist"], "'mnist' is not one of"),
    (["train", "--bogus"], "No such option '--bogus'"),
    (["trian"], "No such command 'trian'"),
    (["evaluate"], "Missing argument 'WEIGHTS'"),
    (["data", "info", "mnist"], "'mnist' is not one of"),
])
def test_usage_errors_are_one_line(args, fragment):
    result = CliRunner().invoke(main, args)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith("Error: ") and fragment in lines[0] and "--help" in lines[0], lines[0]


def test_schedules():
    fn, _ = parse_schedule("multistep:2,4:0.1")
    assert [fn(e) for e in range(6)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    fn, _ = parse_schedule("step:3:0.5")
    assert [fn(e) for e in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    assert default_schedule(20) == "multistep:10,15:0.1"
    assert default_schedule(3) == "multistep:2:0.1"
    assert default_schedule(1) == "constant"
    assert default_schedule(12, zeta=1e-5) == "multistep:9:0.3"
    assert default_schedule(3, zeta=1e-5) == "multistep:2:0.3"
    assert default_schedule(1, zeta=1e-5) == "constant"
    assert default_schedule(12, zeta=1e-5, zeta_schedule="follow-lr") == "multistep:6,9:0.1"


def test_default_schedule_follows_the_shrink():
    ds_nin, _ = resolve(TrainConfig(data="fashion-mnist", model="ds-nin"))
    assert (ds_nin.zeta, ds_nin.epochs, ds_nin.lr_schedule) == (1e-5, 15, "multistep:11:0.3")
    nin, _ = resolve(TrainConfig(data="fashion-mnist", model="nin"))
    assert (nin.zeta, nin.lr_schedule) == (0, "multistep:8,11:0.1")
    nin_shrink, _ = resolve(TrainConfig(data="fashion-mnist", model="nin", zeta=1e-5))
    assert nin_shrink.lr_schedule == "multistep:11:0.3"
    given, _ = resolve(TrainConfig(data="fashion-mnist", model="ds-nin", lr_schedule="constant"))
    assert given.lr_schedule == "constant"


def test_dictionary_option_builds_stores_and_resumes(tmp_path):
    out = tmp_path / "mixed.h5"
    train(tiny(out, epochs=1, dictionary="odct2-mixed"))
    with h5py.File(out, "r") as f:
        assert f.attrs["dictionary"] == "odct2-mixed"
        np.testing.assert_array_equal(f["layers/conv2/weight"][()],
                                      get_dictionary("odct2-mixed")(8, 8, 5) * np.float32(np.sqrt(2 / 8)))
    result = train(TrainConfig(resume=str(out), epochs=2, device="cpu"))
    assert result.config.dictionary == "odct2-mixed" and result.model.dictionary == "odct2-mixed"


LEARNED = {f"conv{i}.bias" for i in (1, 2, 3)} | {f"cccp{i}.{k}" for i in range(1, 7) for k in ("weight", "bias")}


@pytest.mark.parametrize("scope, shrunk", [
    ("all", LEARNED),
    ("weights", {f"cccp{i}.weight" for i in range(1, 7)}),
    ("coefficients", {"cccp1.weight", "cccp3.weight", "cccp5.weight"}),
])
def test_shrink_option_chooses_the_tensors_it_zeroes(tmp_path, scope, shrunk):
    # A threshold of 10 per step zeroes every shrunk tensor at the first step (all are far
    # below 10); the others keep what the gradient gives them.
    result = train(tiny(tmp_path / "w.h5", epochs=1, zeta=10.0, shrink=scope))
    with h5py.File(result.out, "r") as f:
        assert f.attrs["shrink"] == scope
        tensors = {f"{layer}.{key}": f[f"layers/{layer}/{key}"][()]
                   for layer in f.attrs["layer_order"] for key in ("weight", "bias")
                   if not (key == "weight" and f[f"layers/{layer}/weight"].attrs["fixed"])}
        excluded = set(f["optimizer"].attrs["exclude"])
    assert set(tensors) == LEARNED and excluded == LEARNED - shrunk
    for name in shrunk:
        assert not tensors[name].any(), name
    for name in excluded:
        assert tensors[name].any(), name


def test_files_from_before_the_shrink_options_resume_with_the_papers_rule(tmp_path):
    out = tmp_path / "old.h5"
    train(tiny(out, epochs=1, zeta=1e-3))
    with h5py.File(out, "r+") as f:   # what a file written before --shrink / --zeta-schedule / --dropout holds
        del f.attrs["shrink"], f.attrs["zeta_schedule"], f["optimizer"].attrs["zeta_follows_lr"]
        del f.attrs["dropout"]
    result = train(TrainConfig(resume=str(out), epochs=2, device="cpu"))
    assert (result.config.shrink, result.config.zeta_schedule, result.config.dropout) == ("all", "constant", 0.5)
    assert result.model["drop1"].p == result.model["drop2"].p == 0.5
    with h5py.File(out, "r") as f:
        assert f.attrs["epoch"] == 2 and list(f["optimizer"].attrs["exclude"]) == [] and f.attrs["dropout"] == 0.5
        assert not f["optimizer"].attrs["zeta_follows_lr"]


def test_nin_run_records_sparsity_over_learned_weights(tmp_path):
    result = train(tiny(tmp_path / "nin.h5", model="nin", epochs=1, zeta=1e-3))
    with h5py.File(result.out, "r") as f:
        assert list(f.attrs["coefficient_layers"]) == []
        assert not any(k.startswith("sparsity_") for k in f["history"])
        learned = [f[f"layers/{n}/weight"][()] for n in f.attrs["layer_order"]]
        zeros = sum(int((w == 0).sum()) for w in learned) / sum(w.size for w in learned)
        assert f.attrs["sparsity"] == pytest.approx(zeros) and zeros > 0


def test_default_out_and_device_refusal(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MinidsError):
        train(TrainConfig(device="tpu", widths=TINY, train_size=32, test_size=10, epochs=1))
    assert not (tmp_path / "weights").exists()
    result = train(TrainConfig(device="cpu", widths=TINY, train_size=32, test_size=10, epochs=1))
    assert result.out == Path("weights") / "ds-nin-fashion-mnist-mini.h5"
    assert (tmp_path / "weights" / "ds-nin-fashion-mnist-mini.h5").exists()
    assert (tmp_path / "weights" / "ds-nin-fashion-mnist-mini.csv").exists()


def test_epoch_sums_stay_on_the_device_and_name_the_first_bad_batch():
    from minids.step import EpochSums
    sums = EpochSums(np, loss_sum=1.5, errors=2)  # a resumed epoch's running sums
    logits = np.array([[0.0, 1.0], [2.0, 0.0], [0.0, 3.0]], np.float32)  # predicts 1, 0, 1
    labels = np.array([1, 1, 0])
    sums.add(4, np.float32(0.25), logits, labels)
    assert sums.read() == (1.5 + 3 * 0.25, 2 + 2, None, 0.0)
    sums.add(5, np.float32(np.inf), logits, labels)
    sums.add(6, np.float32(np.nan), logits, labels)
    loss_sum, errors, bad_batch, bad_loss = sums.read()
    assert (errors, bad_batch, bad_loss) == (8, 5, np.inf) and np.isnan(loss_sum)


def test_the_loop_reads_the_device_sums_once_per_sync_interval(tmp_path, monkeypatch):
    from minids import step
    reads = []
    real = step.EpochSums.read
    monkeypatch.setattr(step.EpochSums, "read", lambda self: reads.append(1) or real(self))
    monkeypatch.setattr(step, "SYNC_BATCHES", 2)
    result = train(tiny(tmp_path / "w.h5", epochs=1, train_size=160))  # 5 batches of 32
    assert len(reads) == 3  # after batches 2, 4 and the last
    monkeypatch.setattr(step, "SYNC_BATCHES", 1)  # a read after every batch: the same row
    every_batch = train(tiny(tmp_path / "w1.h5", epochs=1, train_size=160))
    for column in ("train_loss", "train_error", "test_error"):
        assert result.history[column] == every_batch.history[column]
