"""The training loop as a library: :class:`TrainConfig` and :func:`train`.

One run trains NiN or DS-NiN with :class:`minids.optim.MomentumShrink` and,
after every epoch, records one history row (the paper's Figures 6-8: train
loss, train error, test error, sparsity of every coefficient layer and
overall) and writes the weights file (docs/weights.md) atomically, plus a CSV
of the history beside it. A run resumes exactly from its file: weights,
optimizer state, the dropout generator and the epoch; the data order of epoch
``e`` depends only on (seed, e). Ctrl-C stops at the end of the current batch
and saves that point (``partial_epoch`` in the file), so a resumed run goes on
from the next batch. See docs/training.md.
"""

import csv
import io
import itertools
import signal
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minids import run_options, step
from minids.backend import device_name, get_module, set_tf32
from minids.data import BatchIterator, prepare
from minids.errors import MinidsError
from minids.inference import predict
from minids.interrupt import StopRequest
from minids.io import (WeightsFile, check_compatible, check_resumable, layer_arrays, model_from_weights,
                       read_weights, write_text_atomically, write_weights)
from minids.layers import SoftmaxNLL
from minids.lock import OutputLock, remove_stale_temporaries
from minids.models import build_model
from minids.optim import MomentumShrink
from minids.run_options import TrainConfig
from minids.sparsity import layer_sparsity, overall_sparsity

def csv_path(out):
    """The history CSV beside the weights file ``out``.

    ``run.h5`` → ``run.csv``; any other name gets ``.csv`` appended
    (``run.hdf5`` → ``run.hdf5.csv``, ``run.csv`` → ``run.csv.csv``), so
    two weights files never share a CSV and the CSV is never the weights file.
    """
    out = Path(out)
    return out.with_suffix(".csv") if out.suffix == ".h5" else out.with_name(out.name + ".csv")


def resolve(cfg):
    """A complete config: defaults filled in, or the resumed file's run options.

    Raises MinidsError for invalid values, and when resuming with a run option
    that differs from the file's (another model, data set, learning rate...).
    Returns (config, resumed WeightsFile or None).
    """
    resumed = None
    if cfg.resume:
        resumed = read_weights(cfg.resume)
        cfg = run_options.from_resumed(cfg, resumed.attrs, cfg.resume)
        if resumed.optimizer is None or resumed.rng_state is None:
            raise MinidsError(f"--resume {cfg.resume}: the file has no optimizer or RNG state to resume")
    cfg = run_options.fill_defaults(cfg)
    run_options.check(cfg)
    if resumed is not None and cfg.epochs < int(resumed.attrs["epoch"]):
        raise MinidsError(f"--epochs {cfg.epochs} is fewer than the {resumed.attrs['epoch']} epochs "
                          f"{cfg.resume} has already done")
    return cfg, resumed


def _check_out(cfg):
    """Refuse to overwrite a file that is not the run being resumed (unless ``force``)."""
    out = Path(cfg.out)
    if out.is_dir():
        raise MinidsError(f"--out {out} is a folder; give a file name such as {out / 'run.h5'}")
    if cfg.force or (cfg.resume and out.resolve() == Path(cfg.resume).resolve()):
        return
    if out.exists():
        raise MinidsError(f"{out} already exists; pass --force to overwrite it, --resume {out} to "
                          "continue that run, or choose another --out")
    history = csv_path(out)
    if history.exists() and not (cfg.resume and history == csv_path(cfg.resume)):
        raise MinidsError(f"{history} (the history CSV of --out {out}) already exists and belongs "
                          "to another run; pass --force to overwrite it or choose another --out")


class SilentReporter:
    """Reporter protocol of :func:`train`; this one prints nothing.

    ``start(lines)``: a few lines describing the run; ``epoch_bar(epoch, batches)``
    returns an object with ``update(batches, images, loss)`` (after each step:
    its mini-batches and images, the epoch's running mean loss) and ``close()``;
    ``row(columns, values)``: one finished epoch.
    """

    def start(self, lines):
        pass

    def epoch_bar(self, epoch, batches):
        return self

    def update(self, batches, images, loss):
        pass

    def close(self):
        pass

    def row(self, columns, values):
        pass


class Interrupted(Exception):
    """Training stopped by Ctrl-C or SIGTERM; the message says where and what was kept.

    ``exit_status`` is the shell's convention for the signal: 130 for
    SIGINT (Ctrl-C), 143 for SIGTERM.
    """

    def __init__(self, message, signum=signal.SIGINT):
        super().__init__(message)
        self.exit_status = 128 + int(signum)


@dataclass
class TrainResult:
    """What :func:`train` returns: the resolved config, the model (on its device),
    the history (column -> list of floats) and the weights path."""

    config: TrainConfig
    model: object
    history: dict
    out: Path


def _sparsity_weights(model):
    """Weights whose zeros are counted: the coefficient layers (DS-NiN), or every
    learned convolution (NiN, which has none)."""
    names = model.coefficient_layers() or [n for n, c in model.conv_layers() if not c.fixed]
    return {name: model[name].weight for name in names}


def history_columns(model, with_val):
    """Names of the history columns, in order."""
    cols = ["epoch", "lr", "train_loss", "train_error", "test_error"]
    cols += ["val_error"] if with_val else []
    cols += [f"sparsity_{n}" for n in model.coefficient_layers()]
    return cols + ["sparsity", "seconds", "images_per_second"]


def unshrunk_params(model, scope):
    """Names of the trainable tensors of ``model`` that the shrink leaves alone under ``--shrink scope``.

    ``all``: none (the paper's rule: every trainable tensor, biases included).
    ``weights``: every bias. ``coefficients``: everything but the weights of
    the coefficient layers (the 1×1 convolutions after a fixed one), the
    tensors whose zeros the paper counts (a NiN run refuses this scope).
    """
    names = list(model.params)
    if scope == "all":
        return []
    if scope == "weights":
        return [n for n in names if n.endswith(".bias")]
    kept = {f"{layer}.weight" for layer in model.coefficient_layers()}
    return [n for n in names if n not in kept]


class _Run:
    """State of one run between epochs (model, optimizer, data, history)."""

    def __init__(self, cfg, resumed, reporter):
        self.cfg, self.reporter = cfg, reporter
        self.xp = get_module(cfg.device)
        set_tf32(cfg.tf32)
        self.data = prepare(cfg.data, cfg.data_dir, train_size=cfg.train_size, test_size=cfg.test_size,
                            val_size=cfg.val_size, seed=cfg.seed, preprocess=cfg.preprocess,
                            extra=cfg.extra, download=cfg.download)
        if resumed is None:
            self.model = build_model(cfg.model, in_channels=self.data.input_shape[0],
                                     num_classes=self.data.num_classes, seed=cfg.seed,
                                     widths=cfg.widths, dictionary=cfg.dictionary, dropout=cfg.dropout)
        else:
            check_compatible(resumed.attrs, self.data.input_shape, self.data.num_classes,
                             where=f"--resume {cfg.resume}")
            self.model = model_from_weights(resumed)
        schedule, _ = run_options.parse_schedule(cfg.lr_schedule)
        #: epoch -> mini-batches of cfg.batch_size whose mean gradient makes one step
        self.batches_per_step, _ = run_options.parse_batch_schedule(cfg.batch_schedule)
        self.optimizer = MomentumShrink(cfg.lr, cfg.momentum, cfg.weight_decay, cfg.zeta, schedule,
                                        exclude=unshrunk_params(self.model, cfg.shrink),
                                        zeta_follows_lr=cfg.zeta_schedule == "follow-lr")
        self.epoch, self.history, self.partial = 0, {}, None
        if resumed is not None:
            self.model.rng.bit_generator.state = resumed.rng_state
            try:
                self.optimizer.load_state_dict(resumed.optimizer)
            except MinidsError as err:
                raise MinidsError(f"--resume {cfg.resume}: {err}") from None
            self.data.stats = resumed.preprocessing
            self.epoch = int(resumed.attrs["epoch"])
            self.history = {k: [float(v) for v in a] for k, a in resumed.history.items()}
            self.partial = resumed.partial_epoch
        self.model.to(self.xp)
        self.model.needs_input_grad = False  # nothing uses the gradient of the images
        self.columns = history_columns(self.model, self.data.val is not None)
        self.batches = BatchIterator(*self.data.train, cfg.batch_size, self.data.stats, self.xp,
                                     shuffle=True, seed=cfg.seed)
        if resumed is not None:
            check_resumable(resumed, self.model.params, self.columns, len(self.batches),
                            where=f"--resume {cfg.resume}", batches_per_step=self.batches_per_step(self.epoch))
        for col in self.columns:
            self.history.setdefault(col, [])
        self.saved = self.position()  # what the weights file holds (a resumed file: this)

    def describe(self):
        cfg, d = self.cfg, self.data
        shape = "x".join(map(str, d.input_shape))
        val = f" / {len(d.val[1])} val" if d.val is not None else ""
        start = f"resuming {cfg.resume} after {self.position()}" if cfg.resume else "new run"
        model = f"{cfg.model} ({cfg.dictionary})" if cfg.dictionary else cfg.model
        return [f"{model} on {cfg.data}: {len(d.train[1])} train / {len(d.test[1])} test{val} "
                f"images of {shape}, {self.model.num_classes} classes; {device_name(self.xp)}"
                f"{' with TF32' if cfg.tf32 and self.xp is not np else ''}",
                f"lr {cfg.lr:g} ({cfg.lr_schedule}), momentum {cfg.momentum:g}, weight decay "
                f"{cfg.weight_decay:g}, zeta {cfg.zeta:g} ({cfg.zeta_schedule}, shrink {cfg.shrink}), "
                f"batch {cfg.batch_size}{_batch_growth(cfg.batch_schedule)}, dropout {cfg.dropout:g}, "
                f"seed {cfg.seed}, epochs {cfg.epochs}; "
                f"{start}; weights -> {cfg.out}"]

    def position(self):
        """Where the run stands, in words: 'epoch 3' or 'epoch 3 and 120 of 469 batches of epoch 4'."""
        if self.partial is None:
            return f"epoch {self.epoch}"
        return (f"epoch {self.epoch} and {self.partial['batches']} of {len(self.batches)} batches "
                f"of epoch {self.epoch + 1}")

    def train_epoch(self, stop):
        """One pass over the training split (its remaining batches after a mid-epoch resume).

        Returns (mean loss, error, training seconds) of the whole epoch, or None
        when ``stop.requested`` (Ctrl-C) ended it after a batch: ``self.partial``
        then holds the batches done and the running sums of the epoch's row.
        """
        model, loss_fn, opt = self.model, SoftmaxNLL(), self.optimizer
        opt.set_epoch(self.epoch)
        done = self.partial or {"batches": 0, "images": 0, "errors": 0, "loss_sum": 0.0, "seconds": 0.0}
        first, seen = done["batches"], done["images"]
        sums = step.EpochSums(self.xp, done["loss_sum"], done["errors"])
        total_loss, wrong, read_seen = done["loss_sum"], done["errors"], seen
        bar = self.reporter.epoch_bar(self.epoch + 1, len(self.batches) - first)
        groups = _groups(self.batches.epoch(self.epoch, first), self.batches_per_step(self.epoch))
        start, index = time.perf_counter(), first
        try:
            # A diverging run overflows on the way (also in worker threads, where
            # errstate does not reach); the loss check below reports it.
            with np.errstate(over="ignore", invalid="ignore"), warnings.catch_warnings():
                warnings.filterwarnings("ignore", "(overflow|invalid value) encountered", RuntimeWarning)
                for group in groups:
                    step.accumulated_step(model, loss_fn, opt, sums, index, group)
                    images = sum(int(y.shape[0]) for _, y in group)
                    seen, end = seen + images, index + len(group)
                    last = end == len(self.batches)
                    if last or (end - first) // step.SYNC_BATCHES > (index - first) // step.SYNC_BATCHES:
                        (total_loss, wrong), read_seen = self._read(sums), seen
                    bar.update(len(group), images, total_loss / max(read_seen, 1))
                    index = end
                    if stop.requested and not last:
                        total_loss, wrong = self._read(sums)
                        self.partial = {"batches": end, "images": seen, "errors": wrong,
                                        "loss_sum": total_loss,
                                        "seconds": done["seconds"] + time.perf_counter() - start}
                        return None
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted during epoch {self.epoch + 1}; {self.cfg.out} holds {self.saved}; "
                f"`minids train --resume {self.cfg.out}` goes on from there exactly") from None
        finally:
            bar.close()
        self.partial = None
        return total_loss / seen, wrong / seen, done["seconds"] + time.perf_counter() - start

    def _read(self, sums):
        """The epoch's (loss sum, errors) from the device; MinidsError if a loss was not finite."""
        loss_sum, errors, bad_batch, bad_loss = sums.read()
        if bad_batch is not None:
            raise MinidsError(
                f"the loss became {bad_loss} at epoch {self.epoch + 1}, batch {bad_batch + 1} "
                f"(lr {self.optimizer.lr:g}); stopped; {self.cfg.out} keeps {self.saved}; "
                "try a smaller --lr")
        return loss_sum, errors

    def error(self, split):
        images, labels = split
        predictions = predict(self.model, images, labels, self.data.stats, self.xp)
        return float(np.mean(predictions != np.asarray(labels)))

    def record(self, loss, train_error, train_seconds):
        """Evaluate, append one history row and advance the epoch; returns the row (dict)."""
        eval_start = time.perf_counter()
        weights = _sparsity_weights(self.model)
        row = {"epoch": self.epoch + 1, "lr": self.optimizer.lr, "train_loss": loss,
               "train_error": train_error, "test_error": self.error(self.data.test)}
        if self.data.val is not None:
            row["val_error"] = self.error(self.data.val)
        for name, value in layer_sparsity(weights).items():
            if f"sparsity_{name}" in self.columns:
                row[f"sparsity_{name}"] = value
        row["sparsity"] = overall_sparsity(weights)
        row["seconds"] = train_seconds + time.perf_counter() - eval_start
        row["images_per_second"] = len(self.data.train[1]) / train_seconds
        for col in self.columns:
            self.history[col].append(float(row[col]))
        self.epoch += 1
        return row

    def contents(self):
        model, data = self.model, self.data
        counts = {"train_size": len(data.train[1]), "test_size": len(data.test[1]),
                  "val_size": 0 if data.val is None else len(data.val[1])}
        attrs = run_options.to_file(self.cfg, counts)
        attrs.update({
            "input_shape": np.array(data.input_shape, np.int64), "num_classes": int(model.num_classes),
            "dropout_masks": model.mask_stream, "epoch": int(self.epoch),
            "coefficient_layers": model.coefficient_layers(),
        })
        if self.history["epoch"]:
            for key in ("train_loss", "train_error", "test_error", "sparsity"):
                attrs[key] = self.history[key][-1]
            attrs["test_accuracy"] = 1.0 - self.history["test_error"][-1]
        else:
            attrs.update(train_loss=float("nan"), train_error=float("nan"), test_error=float("nan"),
                         test_accuracy=float("nan"), sparsity=overall_sparsity(_sparsity_weights(model)))
        return WeightsFile(attrs, layer_arrays(model), self.data.stats, self.optimizer.state_dict(),
                           self.model.rng.bit_generator.state, self.history, self.partial)

    def save(self):
        """Write the weights file and the CSV; a Ctrl-C during the write leaves the last file.

        Weights with a NaN or inf are never written: the run stops and the
        file keeps what it held.
        """
        xp = self.xp
        bad = [name for name, value in self.model.params.items() if not bool(xp.isfinite(value).all())]
        if bad:
            raise MinidsError(f"the weights diverged ({bad[0]} holds NaN or inf) at {self.position()} "
                              f"(lr {self.optimizer.lr:g}); stopped; {self.cfg.out} keeps {self.saved}; "
                              "try a smaller --lr")
        try:
            write_weights(self.cfg.out, self.contents())
            write_csv(csv_path(self.cfg.out), self.columns, self.history)
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted while saving; {self.cfg.out} holds {self.saved}; "
                              f"`minids train --resume {self.cfg.out}` goes on from there") from None
        self.saved = self.position()


def _groups(batches, per_step):
    """Lists of ``per_step`` consecutive items of the iterator ``batches`` (the last may be shorter)."""
    while group := list(itertools.islice(batches, per_step)):
        yield group


def _batch_growth(spec):
    """The header's note on a --batch-schedule ('' when constant)."""
    return "" if spec == "constant" else f" (mini-batches per step: {spec})"


def write_csv(path, columns, history):
    """The history as CSV (one row per epoch), written atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for i in range(len(history[columns[0]])):
        writer.writerow([_fmt(col, history[col][i]) for col in columns])
    write_text_atomically(path, buffer.getvalue())


def _fmt(col, value):
    if col == "epoch":
        return str(int(value))
    return repr(float(value))


def train(config, reporter=None):
    """Run (or resume) training as ``config`` says; returns a :class:`TrainResult`.

    Writes the weights file after every epoch (and once before the first,
    so an early Ctrl-C leaves a resumable file). Ctrl-C stops at the end of
    the current batch, saves that point and raises :class:`Interrupted`; a
    second Ctrl-C stops at once, keeping the last file written. Raises
    MinidsError on bad options or a NaN/inf loss (the file keeps the last
    good epoch).
    """
    reporter = reporter or SilentReporter()
    cfg, resumed = resolve(config)
    get_module(cfg.device)  # a one-line error for a missing GPU before anything is written
    with OutputLock(cfg.out):
        _check_out(cfg)
        for path in (cfg.out, csv_path(cfg.out)):
            remove_stale_temporaries(path)
        return _train(cfg, resumed, reporter)


def _train(cfg, resumed, reporter):
    """The body of :func:`train`, while the run holds the lock of its weights file."""
    run = _Run(cfg, resumed, reporter)
    reporter.start(run.describe())
    with StopRequest() as stop:
        if resumed is None or Path(cfg.out).resolve() != Path(cfg.resume).resolve():
            run.save()
        while run.epoch < cfg.epochs:
            result = run.train_epoch(stop)
            if result is not None:
                row = run.record(*result)
            run.save()
            if result is not None:
                reporter.row(run.columns, [row[c] for c in run.columns])
            if stop.requested and run.epoch < cfg.epochs:
                what = "SIGTERM" if stop.signal == signal.SIGTERM else "Ctrl-C"
                raise Interrupted(f"stopped by {what}; {cfg.out} holds {run.saved}; `minids train "
                                  f"--resume {cfg.out}` goes on from there exactly", stop.signal)
    return TrainResult(cfg, run.model, run.history, Path(cfg.out))


