"""``--batch-schedule``: a step averages the gradients of several mini-batches, exactly as one
step on their union would, and a run with it counts, stops and resumes by whole steps."""

import h5py
import numpy as np
import pytest

from helpers import SignalAtBatch
from minids import step
from minids.errors import MinidsError
from minids.layers import SoftmaxNLL
from minids.models import build_model
from minids.optim import MomentumShrink
from minids.run_options import parse_batch_schedule
from minids.train import Interrupted, TrainConfig, train
from test_train import _assert_same_run, assert_one_line_error, invoke, tiny

WIDTHS = (6, 5, 4, 6, 5, 4, 6, 5)


def _model_and_optimizer():
    model = build_model("ds-nin", in_channels=1, seed=3, dtype=np.float64, widths=WIDTHS, dropout=0.0)
    model.needs_input_grad = False
    return model, MomentumShrink(0.3, momentum=0.7, weight_decay=1e-3, zeta=1e-4)


def test_an_accumulated_step_is_one_step_on_the_union_of_its_mini_batches():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 1, 12, 12))
    y = rng.integers(0, 10, 10)
    whole, whole_opt = _model_and_optimizer()
    split, split_opt = _model_and_optimizer()
    whole_sums, split_sums = step.EpochSums(np), step.EpochSums(np)
    for t in range(3):  # several steps, so momentum and the shrink's zeros take part
        step.train_step(whole, SoftmaxNLL(), whole_opt, whole_sums, t, x, y)
        chunks = [(x[:4], y[:4]), (x[4:8], y[4:8]), (x[8:], y[8:])]  # sizes 4, 4, 2
        step.accumulated_step(split, SoftmaxNLL(), split_opt, split_sums, 3 * t, chunks)
    for name, w in whole.params.items():
        np.testing.assert_allclose(split.params[name], w, rtol=1e-10, atol=1e-13, err_msg=name)
    whole_loss, whole_errors, _, _ = whole_sums.read()
    split_loss, split_errors, _, _ = split_sums.read()
    assert split_loss == pytest.approx(whole_loss, rel=1e-12) and split_errors == whole_errors
    assert split_opt.steps == whole_opt.steps == 3


def test_one_mini_batch_per_step_is_the_plain_step():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((6, 1, 12, 12)), rng.integers(0, 10, 6)
    plain, plain_opt = _model_and_optimizer()
    grouped, grouped_opt = _model_and_optimizer()
    step.train_step(plain, SoftmaxNLL(), plain_opt, step.EpochSums(np), 0, x, y)
    step.accumulated_step(grouped, SoftmaxNLL(), grouped_opt, step.EpochSums(np), 0, [(x, y)])
    for name, w in plain.params.items():
        np.testing.assert_array_equal(grouped.params[name], w)


def test_batch_schedule_values():
    factor, description = parse_batch_schedule("multistep:2,4:3")
    assert [factor(e) for e in range(6)] == [1, 1, 3, 3, 9, 9]
    assert all(type(factor(e)) is int for e in range(6)) and '"gamma": 3' in description
    assert [parse_batch_schedule("step:2:2")[0](e) for e in range(5)] == [1, 1, 2, 2, 4]
    assert parse_batch_schedule("constant")[0](7) == 1


def test_a_grown_epoch_takes_fewer_steps_and_resumes_exactly_after_ctrl_c(tmp_path):
    # 96 images in mini-batches of 32: 3 steps in epoch 1, then groups of 2 (2 + 1 mini-batches)
    options = dict(epochs=2, batch_schedule="multistep:1:2")
    straight = tmp_path / "straight.h5"
    train(tiny(straight, **options))
    with h5py.File(straight, "r") as f:
        assert f["optimizer"].attrs["steps"] == 3 + 2
        assert f.attrs["batch_schedule"] == "multistep:1:2"
    stopped = tmp_path / "stopped.h5"
    with pytest.raises(Interrupted, match="2 of 3 batches of epoch 2"):
        train(tiny(stopped, **options), SignalAtBatch(4))  # the 4th step: epoch 2's first group
    with h5py.File(stopped, "r") as f:
        assert f["partial_epoch"].attrs["batches"] == 2 and f["optimizer"].attrs["steps"] == 4
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(stopped.read_bytes())
    with h5py.File(damaged, "r+") as f:  # a stop after one mini-batch of a two-mini-batch step
        f["partial_epoch"].attrs["batches"] = 1
    with pytest.raises(MinidsError, match="partial_epoch stops inside a step of 2 mini-batches"):
        train(TrainConfig(resume=str(damaged), device="cpu"))
    train(TrainConfig(resume=str(stopped), device="cpu"))
    _assert_same_run(straight, stopped)


def test_the_progress_lines_count_mini_batches_and_images(tmp_path):
    result = invoke("--widths", ",".join(map(str, WIDTHS)), "--train-size", "96", "--test-size", "40",
                    "--batch-size", "32", "--batch-schedule", "multistep:1:2", "--device", "cpu",
                    "--epochs", "2", "--out", str(tmp_path / "w.h5"))
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("  epoch 2 ")]
    # two steps in epoch 2 (2 + 1 mini-batches): a line after each, counted in mini-batches
    assert [line.split()[2] for line in lines] == ["2/3", "3/3"], result.output


def test_resume_refuses_another_batch_schedule(tmp_path):
    out = tmp_path / "run.h5"
    train(tiny(out, epochs=1, batch_schedule="multistep:1:2"))
    assert_one_line_error(invoke("--resume", str(out), "--epochs", "2", "--batch-schedule", "constant"),
                          "that run used --batch-schedule multistep:1:2")


@pytest.mark.parametrize("spec", ["multistep:2:0.5", "multistep:2:1.5", "step:0:2", "grow", "multistep:-1:2"])
def test_bad_batch_schedules_are_one_line_errors(tmp_path, spec):
    out = tmp_path / "w.h5"
    assert_one_line_error(invoke("--batch-schedule", spec, "--out", str(out)), "--batch-schedule")
    assert not out.exists()
