"""The options of a training run, in one table (:data:`OPTIONS`).

Each :class:`RunOption` holds everything about one option of ``minids
train``: its name, click type and help, its default (a value, or a rule on
the options before it in the table), its check, the weights-file attributes
it is stored as and how it is read back (files of earlier versions
included), and what a resumed run does with it. Derived from the table:
:class:`TrainConfig`, the click options (:func:`click_options`), defaults
(:func:`fill_defaults`), checks (:func:`check`), resume matching
(:func:`from_resumed`) and the file attributes (:func:`to_file`). Adding a
run option is one row here. See docs/architecture.md.
"""

import json
import math
from dataclasses import dataclass, field, make_dataclass, replace
from pathlib import Path

import click
import numpy as np

from minids.backend import DEVICES
from minids.data import DATASETS
from minids.data.preprocess import PREPROCESSING
from minids.dictionary import DEFAULT_DICTIONARY, DICTIONARIES, get_dictionary
from minids.errors import MinidsError
from minids.models import DEFAULT_DROPOUT, MODELS, NIN_WIDTHS
from minids.optim import constant, multistep, step_decay

# Per data set: epochs when --epochs is not given (see docs/training.md).
DEFAULT_EPOCHS = {"fashion-mnist-mini": 4, "fashion-mnist": 15, "svhn": 20, "cifar10": 100}
DEFAULT_LR = {"ds-nin": 0.5, "nin": 0.1}  # see docs/training.md
DEFAULT_ZETA = {"ds-nin": 1e-5, "nin": 0.0}
# dropout probability when --dropout is not given: DS-NiN underfits, dropout costs it accuracy
DEFAULT_DROPOUT_OF = {"ds-nin": 0.0, "nin": DEFAULT_DROPOUT}  # see docs/training.md
DEFAULT_BATCH_SIZE = 128
# the embedded set is small: twice the steps per epoch let plain `minids train` learn in minutes
DEFAULT_BATCH_SIZE_OF = {"fashion-mnist-mini": 64}
# the largest --batch-size and --widths accepted (far past what fits in memory at NiN's sizes)
MAX_BATCH_SIZE = 65536
MAX_WIDTH = 16384
# --shrink: which trainable tensors the L1 shrink applies to (docs/training.md)
SHRINK_SCOPES = ("all", "weights", "coefficients")
# --zeta-schedule: the threshold stays zeta, or follows the learning-rate schedule
ZETA_SCHEDULES = ("constant", "follow-lr")

# What a resumed run does with an option (RunOption.on_resume):
MATCH = "match"      # it defines the run: taken from the file; another value is refused
FROM_FILE = "file"   # taken from the file unless given (--epochs: the total to reach)


def parse_schedule(spec, flag="--lr-schedule", integer=False):
    """(callable epoch -> multiplier, JSON description) of a schedule string.

    ``constant``, ``step:EPOCHS:GAMMA`` or ``multistep:E1,E2,...:GAMMA``
    (epochs counted from 0). ``integer``: GAMMA must be a whole number >= 1
    (``--batch-schedule``: a step's batch grows by whole mini-batches), and
    the multiplier is an int. ``flag`` names the option in the error.
    """
    text = str(spec).strip()
    parts = text.split(":")
    try:
        if parts == ["constant"]:
            return constant(), json.dumps({"spec": text, "kind": "constant"})
        if parts[0] in ("step", "multistep") and len(parts) == 3:
            gamma = int(parts[2]) if integer else float(parts[2])
            if integer and gamma < 1:
                raise ValueError
            if parts[0] == "step":
                every = int(parts[1])
                return step_decay(every, gamma), json.dumps(
                    {"spec": text, "kind": "step", "step_epochs": every, "gamma": gamma})
            milestones = sorted(int(m) for m in parts[1].split(","))
            if any(m < 0 for m in milestones):
                raise ValueError
            return multistep(milestones, gamma), json.dumps(
                {"spec": text, "kind": "multistep", "milestones": milestones, "gamma": gamma})
    except (ValueError, MinidsError):  # MinidsError: step_decay's or multistep's own check
        pass
    if integer:
        raise MinidsError(f"bad {flag} {text!r}; use constant, step:EPOCHS:FACTOR or "
                          "multistep:E1,E2,...:FACTOR with a whole FACTOR >= 1 (e.g. multistep:12:10)")
    raise MinidsError(f"bad {flag} {text!r}; use constant, step:EPOCHS:GAMMA "
                      "or multistep:E1,E2,...:GAMMA (e.g. multistep:8,12:0.1)")


def parse_batch_schedule(spec):
    """(callable epoch -> mini-batches per step (int), JSON description) of a ``--batch-schedule``."""
    factor, description = parse_schedule(spec, "--batch-schedule", integer=True)
    return (lambda epoch: int(factor(epoch))), description


def default_schedule(epochs, zeta=0.0, zeta_schedule="constant"):
    """The default ``--lr-schedule`` for a run of ``epochs`` with shrink ``zeta``.

    Without the shrink, or with a threshold that follows the rate
    (``zeta_schedule`` ``follow-lr``): divide ε by 10 after half and after
    three quarters of the epochs. With a constant threshold (ζ > 0): one cut,
    × 0.3 after three quarters (why: docs/training.md).
    """
    if zeta > 0 and zeta_schedule == "constant":
        cut = max(1, round(epochs * 3 / 4))
        return f"multistep:{cut}:0.3" if cut < epochs else "constant"
    first, second = max(1, round(epochs / 2)), max(1, round(epochs * 3 / 4))
    if first >= epochs:
        return "constant"
    return f"multistep:{first},{second}:0.1" if second > first else f"multistep:{first}:0.1"


def default_out(model, data):
    """``weights/<model>-<data>.h5`` in the current folder."""
    return str(Path("weights") / f"{model}-{data}.h5")


@dataclass(frozen=True)
class RunOption:
    """One option of a run.

    ``default``: the value when not given, or a callable of the config whose
    earlier options are filled in. ``check(value, cfg, flag)``: the one-line
    error message, or None when the value is fine. ``to_file(value)``: the weights-file
    attributes (dict) that store it; ``from_file(attrs)``: the value read
    back, older files included; both None for options not stored.
    ``on_resume``: :data:`MATCH`, :data:`FROM_FILE` or None (not part of the
    run: paths, device, flags). ``click``: extra keyword arguments of
    ``click.option`` (type, metavar, is_flag...); ``flags``: its parameter
    declarations when not the plain ``--name``.
    """

    name: str
    help: str
    default: object = None
    check: object = None
    to_file: object = None
    from_file: object = None
    on_resume: str | None = None
    click: dict = field(default_factory=dict)
    flags: tuple = ()

    @property
    def flag(self):
        return "--" + self.name.replace("_", "-")


def _finite_nonnegative(value, cfg, flag):
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        return f"{flag} must be a finite number >= 0, got {value!r}"
    return None


def _check_momentum(value, cfg, flag):
    problem = _finite_nonnegative(value, cfg, flag)
    return problem or (f"{flag} must be in [0, 1), got {value!r}" if value >= 1 else None)


def _check_dropout(value, cfg, flag):
    if not (isinstance(value, (int, float)) and 0 <= value < 1):
        return f"{flag} must be in [0, 1), got {value!r}"
    return None


def _in_range(low, high, shown):
    def check(value, cfg, flag):
        return None if low <= value <= high else f"{flag} must be {shown}, got {value}"
    return check


def _one_of(choices, what):
    def check(value, cfg, flag):
        return None if value in choices else f"unknown {what} {value!r}; choose one of {', '.join(choices)}"
    return check


def _size(minimum):
    def check(value, cfg, flag):
        return None if value is None or value >= minimum else f"{flag} must be positive, got {value}"
    return check


def _check_widths(value, cfg, flag):
    if len(value) != 8 or any(not 1 <= int(w) <= MAX_WIDTH for w in value):
        return (f"{flag} needs 8 positive channel counts of at most {MAX_WIDTH}, "
                f"got {','.join(map(str, value))}")
    return None


def _check_dictionary(value, cfg, flag):
    if value is None:
        return None
    if cfg.model == "nin":
        return f"{flag} is for --model ds-nin; nin has no fixed convolutions"
    get_dictionary(value)  # a one-line error for an unknown name
    return None


def _check_shrink(value, cfg, flag):
    if value not in SHRINK_SCOPES:
        return f"unknown {flag} {value!r}; choose one of {', '.join(SHRINK_SCOPES)}"
    if value == "coefficients" and cfg.model == "nin":
        return f"{flag} coefficients is for --model ds-nin; nin has no coefficient layers"
    return None


def _check_schedule(value, cfg, flag):
    parse_schedule(value)  # raises its own message
    return None


def _check_batch_schedule(value, cfg, flag):
    parse_batch_schedule(value)  # raises its own message
    return None


def _widths(ctx, param, value):
    """click callback: ``W1,...,W8`` -> tuple of ints."""
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter("give 8 comma-separated integers, e.g. 16,16,16,16,16,16,16,16") from None


def _stored(attr, cast, legacy=None):
    """(to_file, from_file) for an option stored as one attribute; ``legacy`` for files without it."""
    def to_file(value):
        return {attr: cast(value)}

    def from_file(attrs):
        return cast(attrs[attr]) if attr in attrs or legacy is None else legacy
    return to_file, from_file


def _split_size(name):
    """A subset size: the file keeps the split's image count and whether the size was asked for.

    ``to_file`` takes (value, count); from_file returns None for a split
    that was not asked for (the whole split).
    """
    def to_file(value, count):
        return {name: int(count), f"{name}_asked": value is not None}

    def from_file(attrs):
        return int(attrs[name]) if attrs.get(f"{name}_asked", 1) else None
    return to_file, from_file


def _dictionary_from_file(attrs):
    from minids.io import LEGACY_DICTIONARY
    return attrs.get("dictionary") or (LEGACY_DICTIONARY if attrs["model"] == "ds-nin" else None)


def _row(name, help, stored=None, **kwargs):
    to_file, from_file = stored or (None, None)
    return RunOption(name, help, to_file=to_file, from_file=from_file, **kwargs)


OPTIONS = (
    _row("data", "Data set [default: fashion-mnist-mini, embedded in the package].",
         default="fashion-mnist-mini", check=_one_of(DATASETS, "data set"),
         stored=_stored("dataset", str), on_resume=MATCH, click={"type": click.Choice(DATASETS)}),
    _row("model", "Model [default: ds-nin].", default="ds-nin", check=_one_of(MODELS, "model"),
         stored=_stored("model", str), on_resume=MATCH, click={"type": click.Choice(MODELS)}),
    _row("epochs", "Epochs in all [default per data set: "
         + ", ".join(f"{k} {v}" for k, v in DEFAULT_EPOCHS.items()) + "].",
         default=lambda c: DEFAULT_EPOCHS.get(c.data, 10),
         check=_in_range(1, math.inf, ">= 1"),
         stored=_stored("epochs", int), on_resume=FROM_FILE, click={"type": int}),
    _row("batch_size", "Images per step [default: 64 on fashion-mnist-mini, else 128].",
         default=lambda c: DEFAULT_BATCH_SIZE_OF.get(c.data, DEFAULT_BATCH_SIZE),
         check=_in_range(1, MAX_BATCH_SIZE, f"in 1..{MAX_BATCH_SIZE}"),
         stored=_stored("batch_size", int), on_resume=MATCH, click={"type": int}),
    _row("batch_schedule", "constant | step:EPOCHS:FACTOR | multistep:E1,E2:FACTOR (epochs from 0): from "
         "each listed epoch a step averages the gradients of FACTOR times more --batch-size mini-batches "
         "(a larger batch, in the memory of one mini-batch; see docs/training.md) [default: constant].",
         default="constant", check=_check_batch_schedule,
         stored=_stored("batch_schedule", str, legacy="constant"), on_resume=MATCH,
         click={"metavar": "SPEC"}),
    _row("lr", "Learning rate ε (dampened momentum: the steady-state step is ε·g) "
         "[default: 0.5 for ds-nin, 0.1 for nin].",
         default=lambda c: DEFAULT_LR[c.model], check=_finite_nonnegative,
         stored=_stored("lr", float), on_resume=MATCH, click={"type": float}),
    _row("momentum", "Momentum η, also the dampening [default: 0.9].", default=0.9, check=_check_momentum,
         stored=_stored("momentum", float), on_resume=MATCH, click={"type": float}),
    _row("weight_decay", "L2 coefficient μ [default: 1e-4].", default=1e-4, check=_finite_nonnegative,
         stored=_stored("weight_decay", float), on_resume=MATCH, click={"type": float}),
    _row("zeta", "L1 shrink threshold ζ per step [default: 1e-5 for ds-nin, 0 for nin].",
         default=lambda c: DEFAULT_ZETA.get(c.model, 0.0), check=_finite_nonnegative,
         stored=_stored("zeta", float), on_resume=MATCH, click={"type": float}),
    _row("zeta_schedule", "constant: the threshold is ζ at every step (the paper's rule); follow-lr: "
         "ζ times the --lr-schedule multiplier, so the L1 penalty stays the same when ε drops "
         "[default: constant].", default="constant", check=_one_of(ZETA_SCHEDULES, "--zeta-schedule"),
         stored=_stored("zeta_schedule", str, legacy="constant"), on_resume=MATCH,
         click={"type": click.Choice(ZETA_SCHEDULES)}),
    _row("shrink", "Tensors the shrink applies to: all (the paper's rule), weights (not biases), or "
         "coefficients (only the coefficient layers' weights) [default: all].",
         default="all", check=_check_shrink, stored=_stored("shrink", str, legacy="all"),
         on_resume=MATCH, click={"type": click.Choice(SHRINK_SCOPES)}),
    _row("dropout", "Probability of both dropout layers [default: 0 for ds-nin, 0.5 for nin; "
         "see docs/training.md].", default=lambda c: DEFAULT_DROPOUT_OF[c.model], check=_check_dropout,
         stored=_stored("dropout", float, legacy=float(DEFAULT_DROPOUT)), on_resume=MATCH,
         click={"type": float}),
    _row("lr_schedule", "constant | step:EPOCHS:GAMMA | multistep:E1,E2:GAMMA (epochs from 0) "
         "[default: with --zeta > 0 and a constant threshold, × 0.3 at 3/4 of --epochs; "
         "otherwise × 0.1 at 1/2 and at 3/4].",
         default=lambda c: default_schedule(c.epochs, c.zeta, c.zeta_schedule), check=_check_schedule,
         stored=(lambda v: {"schedule": parse_schedule(v)[1]}, lambda a: json.loads(a["schedule"])["spec"]),
         on_resume=MATCH, click={"metavar": "SPEC"}),
    _row("device", "auto uses the GPU when CuPy sees one.  [default: auto]", default="auto",
         click={"type": click.Choice(DEVICES)}),
    _row("tf32", "GPU: let cuBLAS use TF32 tensor cores for float32 matrix products (faster; inputs "
         "rounded to ~1e-3; see docs/performance.md). No effect on the CPU [default: off].", default=False,
         stored=_stored("tf32", bool, legacy=False), click={"is_flag": True}),
    _row("seed", "Seeds init, dropout, data order, subsets [default: 0].", default=0,
         check=_in_range(0, 2**63 - 1, "in 0..2**63-1"),
         stored=_stored("seed", int), on_resume=MATCH, click={"type": int}),
    _row("data_dir", "Where data sets are (see `minids data`).",
         click={"type": click.Path(file_okay=False)}),
    _row("download", "Download missing data files first.", default=False, click={"is_flag": True}),
    _row("extra", "SVHN: train on train_32x32 only, without extra_32x32.", default=True,
         stored=_stored("extra", bool, legacy=True), on_resume=MATCH,
         click={"flag_value": False}, flags=("--no-extra", "extra")),
    _row("preprocess", "Per-channel mean/std, or GCN + ZCA [default: standard].", default="standard",
         stored=_stored("preprocess", str), on_resume=MATCH,
         click={"type": click.Choice(PREPROCESSING)}),
    _row("out", "Weights file [default: weights/<model>-<data>.h5; history CSV beside it].",
         default=lambda c: c.resume or default_out(c.model, c.data),
         click={"type": click.Path(dir_okay=False)}),
    _row("resume", "Continue the run in this weights file (to --epochs in all), exactly.",
         click={"type": click.Path(dir_okay=False)}),
    _row("force", "Overwrite an existing --out file of another run.", default=False, click={"is_flag": True}),
    _row("train_size", "Use a deterministic stratified subset.", check=_size(1),
         stored=_split_size("train_size"), on_resume=MATCH, click={"type": int}),
    _row("test_size", "Use a deterministic stratified test subset.", check=_size(1),
         stored=_split_size("test_size"), on_resume=MATCH, click={"type": int}),
    _row("val_size", "Hold out N training images as validation.", default=0, check=_size(0),
         stored=_split_size("val_size"), on_resume=MATCH, click={"type": int}),
    _row("widths", "Hidden widths (small values make tiny networks for tests) [default: NiN's].",
         default=tuple(NIN_WIDTHS), check=_check_widths,
         stored=(lambda v: {"widths": np.array(v, np.int64)}, lambda a: tuple(int(w) for w in a["widths"])),
         on_resume=MATCH, click={"callback": _widths, "metavar": "W1,...,W8"}),
    _row("dictionary", "Fixed dictionary of DS-NiN's k×k convolutions [default: odct3, the paper "
         "author's 3-D DCT; see docs/method.md].",
         default=lambda c: DEFAULT_DICTIONARY if c.model == "ds-nin" else None, check=_check_dictionary,
         stored=(lambda v: {"dictionary": v or ""}, _dictionary_from_file), on_resume=MATCH,
         click={"type": click.Choice(sorted(DICTIONARIES))}),
)

BY_NAME = {option.name: option for option in OPTIONS}
# Options that define a run: a resumed run takes them from its file.
RUN_OPTIONS = tuple(o.name for o in OPTIONS if o.on_resume == MATCH)
SPLIT_SIZES = ("train_size", "test_size", "val_size")

TrainConfig = make_dataclass("TrainConfig", [(o.name, object, field(default=None)) for o in OPTIONS])
TrainConfig.__module__ = __name__
TrainConfig.__doc__ = ("Options of a run (one field per row of minids.run_options.OPTIONS); ``None`` "
                       "means \"the default\" (or, with ``resume``, \"as in the file\"). Sizes are image "
                       "counts (``None``: the whole split).")


def fill_defaults(cfg):
    """``cfg`` with every option left at None set to its default, in table order."""
    for option in OPTIONS:
        if getattr(cfg, option.name) is None and option.default is not None:
            value = option.default(cfg) if callable(option.default) else option.default
            cfg = replace(cfg, **{option.name: value})
    return cfg


def check(cfg):
    """Raise MinidsError, naming the flag, for the first option whose value is not accepted."""
    for option in OPTIONS:
        problem = option.check and option.check(getattr(cfg, option.name), cfg, option.flag)
        if problem:
            raise MinidsError(problem)


def from_file(attrs):
    """The stored run options (name -> value) of a weights file's attributes."""
    return {o.name: o.from_file(attrs) for o in OPTIONS if o.from_file is not None}


def from_resumed(cfg, attrs, where):
    """``cfg`` completed from a resumed file's attributes.

    The run-defining options are taken from the file, and one given with
    another value is refused (a MinidsError naming ``where``, the file).
    """
    stored = from_file(attrs)
    for name in RUN_OPTIONS:
        given = getattr(cfg, name)
        if given is not None and _differs(given, stored[name]):
            flag = BY_NAME[name].flag
            raise MinidsError(f"--resume {where}: that run used {flag} {_show(stored[name])}, "
                              f"not {_show(given)}; drop {flag} or start a new run with another --out")
    taken = {n: v for n, v in stored.items()
             if BY_NAME[n].on_resume == MATCH or getattr(cfg, n) is None}
    return replace(cfg, **taken)


def to_file(cfg, split_counts):
    """The weights-file attributes of the stored options; ``split_counts``: name -> images of each split."""
    attrs = {}
    for option in OPTIONS:
        if option.to_file is None:
            continue
        value = getattr(cfg, option.name)
        if option.name in SPLIT_SIZES:
            attrs.update(option.to_file(value, split_counts[option.name]))
        else:
            attrs.update(option.to_file(value))
    return attrs


def click_options(command):
    """Decorate a click command with one option per row, in table order; each passes None when not given."""
    for option in reversed(OPTIONS):
        command = click.option(*(option.flags or (option.flag,)), default=None, help=option.help,
                               **option.click)(command)
    return command


def _differs(given, stored):
    if isinstance(stored, float):
        return not math.isclose(float(given), stored, rel_tol=1e-12, abs_tol=0.0)
    if isinstance(stored, tuple):
        return tuple(int(v) for v in given) != stored
    return given != stored


def _show(value):
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
