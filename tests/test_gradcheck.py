"""Every layer's analytic gradient against central differences, and the
checker's own ability to catch a wrong backward."""

import numpy as np
import pytest
from click.testing import CliRunner

from minids.cli.main import main
from minids import gradcheck
from minids.layers import ReLU


@pytest.mark.parametrize("case", gradcheck.CASES, ids=lambda c: c.name)
def test_layer_gradients_pass(case):
    results = gradcheck.check_case(case, np, seed=0)
    assert results, "no tensor was checked"
    for r in results:
        assert r.error <= 1e-6, f"{r.case} {r.tensor}: {r.error:.2e}"


def test_every_parameter_and_the_input_are_checked():
    tensors = {(r.case, r.tensor) for r in gradcheck.run(np, seed=1, only="conv3x3 pad1")}
    assert tensors == {("conv3x3 pad1", "weight"), ("conv3x3 pad1", "bias"), ("conv3x3 pad1", "input")}
    network = {r.tensor for r in gradcheck.run(np, seed=1, only="network ds-nin")}
    assert "conv1.weight" not in network and "conv1.bias" in network and "cccp1.weight" in network


class _WrongReLU(ReLU):
    """Backward off by 1% on every element: the checker must notice."""

    def backward(self, dy):
        return super().backward(dy) * 1.01


def test_checker_catches_a_wrong_backward():
    case = gradcheck.Case("wrong", lambda rng: _WrongReLU(), gradcheck.away_from_zero(2, 2, 3, 3))
    [result] = gradcheck.check_case(case, np)
    assert not result.passed and result.error == pytest.approx(0.01 / 1.01, rel=1e-3)


def test_relative_error_is_scale_relative():
    assert gradcheck.relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.002])) == pytest.approx(0.002 / 2.002, rel=1e-9)
    assert gradcheck.relative_error(np.zeros(3), np.zeros(3)) == 0.0


def test_cli_prints_a_row_per_tensor_and_exits_zero():
    result = CliRunner().invoke(main, ["gradcheck", "--device", "cpu", "--layer", "conv1x1"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("conv1x1")]
    assert len(rows) == 3 and all(row.endswith("PASS") for row in rows)
    assert "3 passed, 0 failed" in result.output


def test_cli_exits_one_on_failure(monkeypatch):
    monkeypatch.setattr(gradcheck, "CASES", [gradcheck.Case(
        "wrong", lambda rng: _WrongReLU(), gradcheck.away_from_zero(2, 2, 3, 3))])
    result = CliRunner().invoke(main, ["gradcheck", "--device", "cpu"])
    assert result.exit_code == 1 and "FAIL" in result.output


def test_cli_unknown_layer_is_one_line_error():
    result = CliRunner().invoke(main, ["gradcheck", "--layer", "nonsense"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: no gradient-check case named 'nonsense'")
    assert "Traceback" not in result.output


@pytest.mark.gpu
@pytest.mark.parametrize("case", gradcheck.CASES, ids=lambda c: c.name)
def test_gpu_gradients_match_numpy_numeric(case):
    from minids.backend import get_module
    for r in gradcheck.check_case(case, get_module("gpu"), seed=0):
        assert r.error <= 1e-6, f"{r.case} {r.tensor}: {r.error:.2e}"


def test_every_layer_class_brings_its_own_cases():
    from minids import layers
    for name in layers.__all__:
        cls = getattr(layers, name)
        if name in ("Layer", "Sequential"):  # the protocol, and a container checked as whole networks
            continue
        own = cls.gradcheck_cases()
        assert own and all(isinstance(case.build(np.random.default_rng(0)), cls) for case in own), name
