import math

import numpy as np
import pytest

from minids import backend
from minids.errors import MinidsError
from minids.optim import MomentumShrink, constant, multistep, step_decay


def hand_steps(w0, grads, lr, eta, mu, zeta):
    """The update rule on plain Python floats, one weight at a time.

    u = w_t + eta*(w_t - w_{t-1}) - (1-eta)*lr*(g + mu*w_t);  w_{t+1} = sign(u)*max(|u|-zeta, 0)
    with w_{-1} = w_0. Returns the list of weights after each step.
    """
    w, w_prev, out = w0, w0, []
    for g in grads:
        u = w + eta * (w - w_prev) - (1 - eta) * lr * (g + mu * w)
        sign = 1.0 if u > 0 else (-1.0 if u < 0 else 0.0)
        w_prev, w = w, sign * max(abs(u) - zeta, 0.0)
        out.append(w)
    return out


def test_two_steps_written_out():
    # eps=0.1, eta=0.9, mu=0, zeta=0.01, w0=1, g=0.5 twice:
    # step 1: u = 1 - 0.1*0.1*0.5 = 0.995                     -> 0.985
    # step 2: u = 0.985 + 0.9*(0.985 - 1) - 0.005 = 0.9665    -> 0.9565
    w = np.array([1.0])
    opt = MomentumShrink(lr=0.1, momentum=0.9, zeta=0.01)
    opt.step({"w": w}, {"w": np.array([0.5])})
    assert w[0] == pytest.approx(0.985, abs=1e-15)
    opt.step({"w": w}, {"w": np.array([0.5])})
    assert w[0] == pytest.approx(0.9565, abs=1e-15)
    assert opt.steps == 2


def test_matches_hand_formula_exactly():
    lr, eta, mu, zeta = 1.0, 0.9, 0.01, 0.005
    w0 = [0.5, -0.3, 0.001, 0.02, 0.004, 0.0, 0.03]
    grads = [[0.2, -0.1, 0.5, 0.1, 0.0, 0.0, 0.2],
             [0.3, 0.4, -0.2, 0.05, -0.01, 0.2, 0.1],
             [-0.1, 0.0, 0.1, -0.3, 0.01, -0.3, 0.0],
             [0.0, 0.2, 0.0, 0.0, 0.02, 0.0, -0.1],
             [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]]
    expected = [hand_steps(w0[i], [g[i] for g in grads], lr, eta, mu, zeta) for i in range(len(w0))]
    w = np.array(w0)
    opt = MomentumShrink(lr=lr, momentum=eta, weight_decay=mu, zeta=zeta)
    for step, g in enumerate(grads):
        opt.step({"w": w}, {"w": np.array(g)})
        np.testing.assert_array_equal(w, [e[step] for e in expected])
    # The chosen cases really happen:
    assert expected[2][0] < 0 < w0[2]                      # 0.001 crosses zero at once
    assert expected[3][0] > 0 > expected[3][1]              # 0.02 crosses zero under momentum
    assert expected[4][:4] == [0.0] * 4                     # 0.004 sits in the dead zone
    assert expected[5][1] != 0.0 and expected[5][2] == 0.0  # leaves zero, is shrunk back


def test_biases_are_shrunk_unless_excluded():
    lr, eta, mu, zeta = 0.05, 0.9, 0.001, 0.002
    g = {"conv.weight": np.array([0.3, -0.2]), "conv.bias": np.array([0.04, -0.01])}
    for exclude, bias_zeta in [((), zeta), (("conv.bias",), 0.0)]:
        params = {"conv.weight": np.array([0.1, 0.0015]), "conv.bias": np.array([0.001, 0.5])}
        opt = MomentumShrink(lr=lr, momentum=eta, weight_decay=mu, zeta=zeta, exclude=exclude)
        for _ in range(3):
            opt.step(params, g)
        for i, (w0, gi) in enumerate([(0.1, 0.3), (0.0015, -0.2)]):
            assert params["conv.weight"][i] == hand_steps(w0, [gi] * 3, lr, eta, mu, zeta)[-1]
        for i, (b0, gi) in enumerate([(0.001, 0.04), (0.5, -0.01)]):
            assert params["conv.bias"][i] == hand_steps(b0, [gi] * 3, lr, eta, mu, bias_zeta)[-1]
    # Shrunk, the small bias dies; excluded, it only follows the gradient.
    assert hand_steps(0.001, [0.04] * 3, lr, eta, mu, zeta)[-1] == 0.0
    assert hand_steps(0.001, [0.04] * 3, lr, eta, mu, 0.0)[-1] != 0.0


@pytest.mark.parametrize("follows", [True, False])
def test_zeta_follows_lr_scales_the_threshold_with_the_schedule(follows):
    lr, eta, mu, zeta = 0.5, 0.9, 1e-3, 0.004
    grads = [0.02, -0.01, 0.03, 0.0, 0.01, 0.02]
    scales = [1, 1, 0.1, 0.1, 0.01, 0.01]   # multistep([2, 4], 0.1) at epochs 0..5
    w = np.array([0.05])
    opt = MomentumShrink(lr=lr, momentum=eta, weight_decay=mu, zeta=zeta,
                         schedule=multistep([2, 4], 0.1), zeta_follows_lr=follows)
    # By hand, one epoch per step: the rate follows the schedule; the threshold too, or stays zeta.
    expect_w, expect_prev = 0.05, 0.05
    for epoch, (g, scale) in enumerate(zip(grads, scales)):
        threshold = zeta * scale if follows else zeta
        opt.set_epoch(epoch)
        assert opt.threshold == pytest.approx(threshold, rel=1e-12)
        opt.step({"w": w}, {"w": np.array([g])})
        u = expect_w + eta * (expect_w - expect_prev) - (1 - eta) * lr * scale * (g + mu * expect_w)
        expect_prev, expect_w = expect_w, math.copysign(max(abs(u) - threshold, 0.0), u)
        assert w[0] == pytest.approx(expect_w, rel=1e-12, abs=1e-15)
        if epoch == 2:   # the first step at the lower rate: the two rules part here
            assert w[0] == pytest.approx(0.029238765 if follows else 0.025638765, abs=1e-9)


def test_zeta_follows_lr_survives_the_state_dict_and_old_states_mean_false():
    opt = MomentumShrink(lr=0.2, zeta=1e-3, schedule=step_decay(1, 0.5), zeta_follows_lr=True)
    opt.set_epoch(2)
    opt.step({"w": np.ones(2)}, {"w": np.ones(2)})
    state = opt.state_dict()
    assert state["zeta_follows_lr"] is True
    resumed = MomentumShrink(lr=1.0, schedule=step_decay(1, 0.5))
    resumed.load_state_dict(state)
    assert resumed.threshold == pytest.approx(2.5e-4, rel=1e-12)
    del state["zeta_follows_lr"]   # a file written before the option
    resumed.load_state_dict(state)
    assert resumed.threshold == 1e-3


def dampened_momentum_sgd(w, grads, lr, eta, mu):
    """Torch7 optim.sgd with dampening = momentum, written independently (velocity from 0)."""
    v = np.zeros_like(w)
    for g in grads:
        d = g + mu * w
        v = eta * v + (1 - eta) * d
        w = w - lr * v
    return w


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_zeta_zero_is_dampened_momentum_sgd(dtype):
    """zeta = 0 is the velocity form of Torch7's rule, equal up to rounding.

    The two forms are algebraically identical, but they keep different state
    (v versus w_{t-1}) and round differently: w_t - w_{t-1} is not exactly
    -lr*v_{t-1} once w_t has been rounded, and the constants (1-eta)*lr and
    lr, (1-eta) are rounded separately. So bit equality cannot hold. What
    must hold: (1) one step from the same (w_{t-1}, w_t) lands within a few
    ulps of the largest weight involved (measured <= 3 ulps in float64 and
    <= 5.5 in float32 over 20 seeds; we allow 8); (2) over 50 steps these
    roundings, summed by the momentum with weight 1/(1-eta) = 10, stay far
    below one step's size (measured <= 68 ulps of max|w|; we allow 128,
    and the mean step is more than 100 times that, even in float32).
    """
    rng = np.random.default_rng(0)
    lr, eta, mu = 0.05, 0.9, 5e-4
    w0 = rng.standard_normal(200).astype(dtype)
    grads = [rng.standard_normal(200).astype(dtype) for _ in range(50)]
    reference = [w0]
    for t in range(len(grads)):
        reference.append(dampened_momentum_sgd(w0, grads[:t + 1], lr, eta, mu))

    for t in range(1, len(grads)):   # (1) one step from the reference state
        opt = MomentumShrink(lr=lr, momentum=eta, weight_decay=mu)
        state = opt.state_dict()
        state["prev"] = {"w": reference[t - 1]}
        opt.load_state_dict(state)
        w = reference[t].copy()
        opt.step({"w": w}, {"w": grads[t]})
        scale = np.max(np.abs(reference[t - 1:t + 2]), axis=0)
        assert np.all(np.abs(w - reference[t + 1]) <= 8 * np.spacing(scale))

    w = w0.copy()                    # (2) the whole run
    opt = MomentumShrink(lr=lr, momentum=eta, weight_decay=mu, zeta=0.0)
    for g in grads:
        opt.step({"w": w}, {"w": g})
    assert w.dtype == dtype
    ulp = np.spacing(np.abs(reference[-1]).max())
    assert np.abs(w - reference[-1]).max() <= 128 * ulp
    assert np.abs(np.diff(reference, axis=0)).mean() > 100 * 128 * ulp


@pytest.mark.parametrize("eta, c, expected", [
    (0.9, 1.0, 0.9),     # c - zeta/((1-eta)*lr*a) = 1 - 1e-3/(0.1*0.1*1)
    (0.0, 1.0, 0.99),    # without momentum the penalty is zeta/lr: 1 - 1e-3/0.1
    (0.5, -1.0, -0.98),  # -1 + 1e-3/(0.5*0.1*1)
    (0.9, 0.05, 0.0),    # |c| below the threshold 0.1: the lasso solution is exactly 0
])
def test_shrink_acts_as_l1_penalty_zeta_over_one_minus_eta_lr(eta, c, expected):
    """On E(w) = a/2 (w - c)^2 the rule settles where E'(w) + lam*sign(w) = 0.

    At a fixed point the realised step is zero, so w = shrink(w - (1-eta)*lr*a*(w - c)),
    i.e. (1-eta)*lr*a*|c - w| = zeta: the shrink is an L1 penalty
    lam = zeta/((1-eta)*lr), ten times zeta/lr at eta = 0.9 (docs/method.md).
    The minimiser of a/2 (w - c)^2 + lam*|w| is sign(c)*max(|c| - lam/a, 0).
    """
    a, lr, zeta = 1.0, 0.1, 1e-3
    w = np.array([0.5])
    opt = MomentumShrink(lr=lr, momentum=eta, zeta=zeta)
    for _ in range(3000):
        opt.step({"w": w}, {"w": a * (w - c)})
    assert w[0] == pytest.approx(expected, abs=1e-9)


def test_updates_in_place_and_keeps_dtype():
    w = np.ones((3, 2), dtype=np.float32)
    view = w[0]
    opt = MomentumShrink(lr=0.1, zeta=1e-3)
    opt.step({"w": w}, {"w": np.full((3, 2), 0.5, dtype=np.float32)})
    assert w.dtype == np.float32
    assert view[0] != 1.0 and view[0] == w[0, 0]


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(1)
    names = ("a.weight", "a.bias")
    params = {n: rng.standard_normal((4, 3)).astype(np.float32) for n in names}
    grads = [{n: rng.standard_normal((4, 3)).astype(np.float32) for n in names} for _ in range(6)]
    kwargs = dict(lr=0.1, momentum=0.9, weight_decay=1e-3, zeta=1e-2, exclude=("a.bias",),
                  schedule=step_decay(2, 0.5))
    opt = MomentumShrink(**kwargs)
    opt.set_epoch(3)
    for g in grads[:3]:
        opt.step(params, g)
    state = opt.state_dict()
    assert set(state["prev"]) == set(names)
    assert all(type(a) is np.ndarray for a in state["prev"].values())
    assert state["steps"] == 3 and state["epoch"] == 3 and state["lr"] == 0.05
    resumed_params = {n: p.copy() for n, p in params.items()}
    resumed = MomentumShrink(lr=1.0, schedule=step_decay(2, 0.5))  # hyper-parameters come from state
    resumed.load_state_dict(state)
    for arr in state["prev"].values():   # the optimizer holds copies, not the caller's arrays
        arr[...] = np.nan
    for g in grads[3:]:
        opt.step(params, g)
        resumed.step(resumed_params, g)
    for n in names:
        np.testing.assert_array_equal(resumed_params[n], params[n])
    assert resumed.state_dict()["steps"] == 6 and resumed.zeta == 1e-2


def test_state_dict_is_a_snapshot():
    w = np.array([1.0, 2.0])
    opt = MomentumShrink(lr=0.1)
    opt.step({"w": w}, {"w": np.array([1.0, 1.0])})
    state = opt.state_dict()
    snapshot = state["prev"]["w"].copy()
    opt.step({"w": w}, {"w": np.array([1.0, 1.0])})
    np.testing.assert_array_equal(state["prev"]["w"], snapshot)


def test_schedules():
    assert [constant()(e) for e in (0, 5, 100)] == [1.0, 1.0, 1.0]
    decay = step_decay(10, 0.1)
    assert [decay(e) for e in (0, 9, 10, 19, 20)] == [1, 1, 0.1, 0.1, 0.1 ** 2]
    steps = multistep([8, 5], 0.5)
    assert [steps(e) for e in (0, 4, 5, 7, 8, 50)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    opt = MomentumShrink(lr=0.2, schedule=decay)
    assert opt.lr == 0.2
    opt.set_epoch(10)
    assert opt.lr == 0.2 * 0.1 and opt.epoch == 10
    w = np.array([1.0])
    opt.step({"w": w}, {"w": np.array([1.0])})
    assert w[0] == hand_steps(1.0, [1.0], 0.2 * 0.1, 0.9, 0.0, 0.0)[0]


@pytest.mark.parametrize("kwargs,match", [
    (dict(lr=-0.1), "lr must be"),
    (dict(lr=float("nan")), "lr must be"),
    (dict(lr="fast"), "lr must be a number"),
    (dict(lr=0.1, zeta=-1e-5), "zeta must be"),
    (dict(lr=0.1, weight_decay=-1e-4), "weight_decay must be"),
    (dict(lr=0.1, momentum=1.0), r"momentum must be in \[0, 1\)"),
    (dict(lr=0.1, momentum=-0.5), "momentum must be"),
])
def test_bad_hyper_parameters(kwargs, match):
    with pytest.raises(MinidsError, match=match) as err:
        MomentumShrink(**kwargs)
    assert "\n" not in str(err.value)


def test_bad_schedules_and_steps():
    with pytest.raises(MinidsError):
        step_decay(0, 0.1)
    with pytest.raises(MinidsError):
        multistep([3], 0.0)
    opt = MomentumShrink(lr=0.1)
    with pytest.raises(MinidsError, match="no gradient for parameter 'b'"):
        opt.step({"b": np.zeros(2)}, {})
    with pytest.raises(MinidsError, match="shape"):
        opt.step({"b": np.zeros(2)}, {"b": np.zeros(3)})
    a = np.ones(2)
    with pytest.raises(MinidsError):     # a bad entry leaves every parameter untouched
        opt.step({"a": a, "b": np.zeros(2)}, {"a": np.ones(2)})
    np.testing.assert_array_equal(a, [1.0, 1.0])
    assert opt.steps == 0
    with pytest.raises(MinidsError, match="missing 'prev'"):
        opt.load_state_dict({k: v for k, v in opt.state_dict().items() if k != "prev"})


@pytest.mark.gpu
@pytest.mark.skipif(not backend.gpu_available(), reason="needs CuPy and a CUDA device")
def test_cupy_matches_numpy_and_resumes_from_host_state():
    xp = backend.get_module("gpu")
    rng = np.random.default_rng(2)
    w_host = rng.standard_normal(1000)
    grads = [rng.standard_normal(1000) for _ in range(4)]
    kwargs = dict(lr=0.1, momentum=0.9, weight_decay=1e-3, zeta=0.02)
    opt_np, opt_cp = MomentumShrink(**kwargs), MomentumShrink(**kwargs)
    w_dev = xp.asarray(w_host)
    for g in grads[:2]:
        opt_np.step({"w": w_host}, {"w": g})
        opt_cp.step({"w": w_dev}, {"w": xp.asarray(g)})
    resumed = MomentumShrink(lr=1.0)
    resumed.load_state_dict(opt_np.state_dict())   # host state, device params
    w_res = xp.asarray(w_host)
    for g in grads[2:]:
        opt_np.step({"w": w_host}, {"w": g})
        opt_cp.step({"w": w_dev}, {"w": xp.asarray(g)})
        resumed.step({"w": w_res}, {"w": xp.asarray(g)})
    assert isinstance(w_dev, xp.ndarray)
    np.testing.assert_allclose(backend.to_host(w_dev), w_host, rtol=0, atol=1e-14)
    np.testing.assert_allclose(backend.to_host(w_res), w_host, rtol=0, atol=1e-14)
    assert math.isclose(resumed.lr, 0.1)
