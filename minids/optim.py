"""The paper's update rule: dampened momentum SGD followed by an L1 shrink.

For every trainable tensor ``w`` (learning rate ``eps``, momentum ``eta``,
L2 coefficient ``mu``, L1 threshold ``zeta``, ``g = dE_NLL/dw`` at ``w_t``)::

    u       = w_t + eta*(w_t - w_{t-1}) - (1 - eta)*eps*(g + mu*w_t)
    w_{t+1} = shrink_zeta(u) = sign(u) * max(|u| - zeta, 0)

``w_{t-1}`` is the previous weight, so the momentum term is the realised step,
shrink included; at the first step ``w_{t-1} = w_t``. The threshold is
``zeta`` itself, not ``eps*zeta``. With ``zeta = 0`` this is Torch7's
``optim.sgd`` with ``dampening = momentum`` (velocity started at zero). See
``docs/method.md``.

Arrays may be NumPy or CuPy; the array module is taken from each parameter.
"""

import math

import numpy as np

from minids.backend import get_array_module, to_device, to_host
from minids.errors import MinidsError


def constant():
    """Schedule: learning-rate multiplier 1 at every epoch."""
    return lambda epoch: 1.0


def step_decay(step_epochs, gamma):
    """Schedule: multiplier ``gamma ** (epoch // step_epochs)`` (epochs count from 0)."""
    if step_epochs < 1:
        raise MinidsError(f"step_epochs must be >= 1, got {step_epochs!r}")
    _check_gamma(gamma)
    return lambda epoch: gamma ** (epoch // step_epochs)


def multistep(milestones, gamma):
    """Schedule: multiplier ``gamma ** (number of milestones <= epoch)`` (epochs from 0)."""
    milestones = sorted(int(m) for m in milestones)
    _check_gamma(gamma)
    return lambda epoch: gamma ** sum(1 for m in milestones if m <= epoch)


def _check_gamma(gamma):
    if not (math.isfinite(gamma) and gamma > 0):
        raise MinidsError(f"schedule gamma must be a finite number > 0, got {gamma!r}")


def _check_hyper(lr, momentum, weight_decay, zeta):
    """Return the four hyper-parameters as floats, or raise MinidsError."""
    values = {}
    for name, value in (("lr", lr), ("momentum", momentum),
                        ("weight_decay", weight_decay), ("zeta", zeta)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise MinidsError(f"{name} must be a number, got {value!r}") from None
        if not math.isfinite(value) or value < 0:
            raise MinidsError(f"{name} must be a finite number >= 0, got {value!r}")
        values[name] = value
    if values["momentum"] >= 1:
        raise MinidsError(f"momentum must be in [0, 1), got {momentum!r}")
    return values["lr"], values["momentum"], values["weight_decay"], values["zeta"]


def _check_grads(params, grads):
    for name, w in params.items():
        if name not in grads:
            raise MinidsError(f"no gradient for parameter {name!r}")
        if grads[name].shape != w.shape:
            raise MinidsError(f"gradient of {name!r} has shape {grads[name].shape}, parameter {w.shape}")


class MomentumShrink:
    """Dampened momentum SGD with L2 weight decay and an L1 soft-threshold.

    Args:
        lr: base learning rate ``eps`` (>= 0).
        momentum: ``eta`` in [0, 1); also the dampening.
        weight_decay: L2 coefficient ``mu`` (>= 0), applied as ``g + mu*w``.
        zeta: L1 shrink threshold (>= 0), in weight units; not scaled by lr
            (unless ``zeta_follows_lr``).
        schedule: callable ``epoch -> multiplier``; the learning rate at epoch
            ``e`` is ``lr * schedule(e)``. ``None`` means :func:`constant`.
        exclude: parameter names that get the same update without the shrink
            (``zeta = 0`` for them; momentum and weight decay still apply).
        zeta_follows_lr: when true, the threshold at epoch ``e`` is
            ``zeta * lr_e / lr`` (the schedule's multiplier), so the L1
            penalty ``zeta / ((1 - eta) * lr_e)`` the rule implies stays the
            same when the schedule lowers the rate. False (the paper's rule):
            the threshold is ``zeta`` at every step.

    State: one previous-weight array per tensor (same shape, dtype and
    device as the parameter), the step count and the epoch.
    """

    def __init__(self, lr, momentum=0.9, weight_decay=0.0, zeta=0.0, schedule=None, exclude=(),
                 zeta_follows_lr=False):
        self.base_lr, self.momentum, self.weight_decay, self.zeta = _check_hyper(
            lr, momentum, weight_decay, zeta)
        self.schedule = constant() if schedule is None else schedule
        self.exclude = frozenset(exclude)
        self.zeta_follows_lr = bool(zeta_follows_lr)
        self.steps = 0
        self._prev = {}
        self.set_epoch(0)

    def set_epoch(self, epoch):
        """Set the current epoch (0-based) and the learning rate it implies."""
        lr = self.base_lr * float(self.schedule(epoch))
        if not (math.isfinite(lr) and lr >= 0):
            raise MinidsError(f"schedule gave an invalid learning rate {lr!r} at epoch {epoch}")
        self.epoch = int(epoch)
        self.lr = lr

    @property
    def threshold(self):
        """The shrink threshold of the current epoch, in weight units (``zeta`` or its scaled value)."""
        if self.zeta_follows_lr and self.base_lr > 0:
            return self.zeta * (self.lr / self.base_lr)
        return self.zeta

    def step(self, params, grads):
        """Update every array in ``params`` in place.

        Args:
            params: dict name -> float array (NumPy or CuPy), updated in place.
            grads: dict name -> gradient of the NLL loss (same shape/module),
                without the L2 term; not modified.
        """
        _check_grads(params, grads)  # before touching anything: no half-applied step
        threshold = self.threshold
        for name, w in params.items():
            zeta = 0.0 if name in self.exclude else threshold
            self._prev[name] = self._update(w, grads[name], self._previous(name, w), zeta)
        self.steps += 1

    def _previous(self, name, w):
        """w_{t-1} for ``name`` on the parameter's device (w_t itself at the first step)."""
        prev = self._prev.get(name)
        if prev is None:
            return w.copy()
        if prev.shape != w.shape:
            raise MinidsError(f"optimizer state for {name!r} has shape {prev.shape}, parameter {w.shape}")
        xp = get_array_module(w)
        if get_array_module(prev) is not xp:
            prev = to_device(prev, xp)
        return prev if prev.dtype == w.dtype else prev.astype(w.dtype)

    def _update(self, w, g, prev, zeta):
        """One step on one tensor; ``prev`` is reused as scratch. Returns the new w_{t-1}."""
        xp = get_array_module(w)
        # reg = (1 - eta)*eps*(g + mu*w_t): the only per-step temporary.
        reg = xp.multiply(w, self.weight_decay)
        reg += g
        reg *= (1.0 - self.momentum) * self.lr
        # u = w_t + eta*(w_t - w_{t-1}) - reg, built in the buffer of w_{t-1}.
        u = xp.subtract(w, prev, out=prev)
        u *= self.momentum
        u += w
        u -= reg
        if zeta:
            # u - clip(u, -zeta, zeta) == sign(u)*max(|u| - zeta, 0) bit for bit
            # (only the sign of a zero differs).
            u -= xp.clip(u, -zeta, zeta, out=reg)
        reg[...] = w  # reg now holds w_t: the next step's w_{t-1}
        w[...] = u
        return reg

    def state_dict(self):
        """Everything needed to resume: plain Python scalars and NumPy arrays (copies).

        Keys: ``lr`` (current), ``base_lr``, ``momentum``, ``weight_decay``,
        ``zeta``, ``exclude`` (sorted list of names), ``zeta_follows_lr``,
        ``steps``, ``epoch``, and ``prev``: dict name -> previous weight (NumPy, parameter dtype).
        """
        return {
            "lr": self.lr,
            "base_lr": self.base_lr,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "zeta": self.zeta,
            "exclude": sorted(self.exclude),
            "zeta_follows_lr": self.zeta_follows_lr,
            "steps": self.steps,
            "epoch": self.epoch,
            "prev": {name: np.array(to_host(a)) for name, a in self._prev.items()},
        }

    def load_state_dict(self, state):
        """Restore what :meth:`state_dict` returned; the next step continues bit-identically.

        Previous weights are copied and moved to each parameter's array module
        (NumPy or CuPy) at the next :meth:`step`. The schedule callable is not
        part of the state: construct the optimizer with the same one. A state
        without ``zeta_follows_lr`` (files of minids before it) means False.
        """
        try:
            hyper = _check_hyper(state["base_lr"], state["momentum"],
                                 state["weight_decay"], state["zeta"])
            lr, steps, epoch = float(state["lr"]), int(state["steps"]), int(state["epoch"])
            exclude, prev = frozenset(state["exclude"]), dict(state["prev"])
        except KeyError as err:
            raise MinidsError(f"optimizer state is missing {err.args[0]!r}") from None
        self.base_lr, self.momentum, self.weight_decay, self.zeta = hyper
        self.lr, self.steps, self.epoch, self.exclude = lr, steps, epoch, exclude
        self.zeta_follows_lr = bool(state.get("zeta_follows_lr", False))
        self._prev = {name: np.array(to_host(a)) for name, a in prev.items()}
