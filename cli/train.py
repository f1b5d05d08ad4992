"""``minids train``: train NiN or DS-NiN with the paper's update rule (docs/training.md)."""

import sys
import time

import click

from minids.backend import DEVICES
from minids.data import DATASETS
from minids.data.preprocess import PREPROCESSING
from minids.dictionary import DICTIONARIES
from minids.models import MODELS
from minids.train import DEFAULT_EPOCHS, SHRINK_SCOPES, ZETA_SCHEDULES, Interrupted, TrainConfig, train

_SHORT = {"train_loss": "loss", "train_error": "train_err", "test_error": "test_err",
          "val_error": "val_err", "images_per_second": "img/s", "seconds": "sec"}


def _short(col):
    return _SHORT.get(col, col.replace("sparsity_", "sp_") if col != "sparsity" else "sp_all")


class ConsoleReporter:
    """Prints the run: a progress bar per epoch (plain lines when stdout is not a
    terminal; nothing with ``quiet``), then one row per epoch."""

    def __init__(self, quiet):
        self.quiet, self.tty = quiet, sys.stdout.isatty()
        self.header_done = False

    def start(self, lines):
        for line in lines:
            click.echo(line)

    def epoch_bar(self, epoch, batches):
        self.epoch, self.batches, self.done, self.images = epoch, batches, 0, 0
        self.start_time, self.next_line = time.perf_counter(), 0.1
        self.bar = None
        if not self.quiet and self.tty:
            self.bar = click.progressbar(length=batches, label=f"epoch {epoch}", width=30,
                                         item_show_func=lambda text: text, file=sys.stdout)
            self.bar.__enter__()
        return self

    def _status(self, loss):
        rate = self.images / max(time.perf_counter() - self.start_time, 1e-9)
        return f"loss {loss:.4f}  {rate:.0f} img/s"

    def update(self, images, loss):
        self.done += 1
        self.images += images
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.update(1, self._status(loss))
        elif self.done / self.batches >= self.next_line or self.done == self.batches:
            click.echo(f"  epoch {self.epoch} {self.done}/{self.batches} batches  {self._status(loss)}")
            self.next_line += 0.1

    def close(self):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None

    def row(self, columns, values):
        widths = [max(len(_short(c)), 9) for c in columns]
        if not self.header_done:
            click.echo("  ".join(f"{_short(c):>{w}}" for c, w in zip(columns, widths)))
            self.header_done = True
        cells = []
        for col, value, width in zip(columns, values, widths):
            if col == "epoch":
                text = str(int(value))
            elif col == "lr":
                text = f"{value:.3g}"
            elif col in ("seconds", "images_per_second"):
                text = f"{value:.1f}"
            else:
                text = f"{value:.4f}"
            cells.append(f"{text:>{width}}")
        click.echo("  ".join(cells))


def _widths(ctx, param, value):
    if value is None:
        return None
    try:
        widths = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter("give 8 comma-separated integers, e.g. 16,16,16,16,16,16,16,16") from None
    return widths


@click.command("train")
@click.option("--data", type=click.Choice(DATASETS), default=None,
              help="Data set [default: fashion-mnist-mini, embedded in the package].")
@click.option("--model", type=click.Choice(MODELS), default=None, help="Model [default: ds-nin].")
@click.option("--epochs", type=int, default=None,
              help="Epochs in all [default per data set: "
                   + ", ".join(f"{k} {v}" for k, v in DEFAULT_EPOCHS.items()) + "].")
@click.option("--batch-size", type=int, default=None,
              help="Images per step [default: 64 on fashion-mnist-mini, else 128].")
@click.option("--lr", type=float, default=None,
              help="Learning rate ε (dampened momentum: the steady-state step is ε·g) [default: 0.5 for ds-nin, 0.1 for nin].")
@click.option("--momentum", type=float, default=None, help="Momentum η, also the dampening [default: 0.9].")
@click.option("--weight-decay", type=float, default=None, help="L2 coefficient μ [default: 1e-4].")
@click.option("--zeta", type=float, default=None,
              help="L1 shrink threshold ζ per step [default: 1e-5 for ds-nin, 0 for nin].")
@click.option("--zeta-schedule", type=click.Choice(ZETA_SCHEDULES), default=None,
              help="constant: the threshold is ζ at every step (the paper's rule); follow-lr: ζ times "
                   "the --lr-schedule multiplier, so the L1 penalty stays the same when ε drops "
                   "[default: constant].")
@click.option("--shrink", type=click.Choice(SHRINK_SCOPES), default=None,
              help="Tensors the shrink applies to: all (the paper's rule), weights (not biases), or "
                   "coefficients (only the coefficient layers' weights) [default: all].")
@click.option("--dropout", type=float, default=None,
              help="Probability of both dropout layers [default: 0 for ds-nin, 0.5 for nin; "
                   "see docs/training.md].")
@click.option("--lr-schedule", default=None, metavar="SPEC",
              help="constant | step:EPOCHS:GAMMA | multistep:E1,E2:GAMMA (epochs from 0) "
                   "[default: with --zeta > 0 and a constant threshold, × 0.3 at 3/4 of --epochs; "
                   "otherwise × 0.1 at 1/2 and at 3/4].")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
              help="auto uses the GPU when CuPy sees one.")
@click.option("--seed", type=int, default=None, help="Seeds init, dropout, data order, subsets [default: 0].")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Where data sets are (see `minids data`).")
@click.option("--download", is_flag=True, help="Download missing data files first.")
@click.option("--no-extra", "no_extra", is_flag=True, default=None,
              help="SVHN: train on train_32x32 only, without extra_32x32.")
@click.option("--preprocess", type=click.Choice(PREPROCESSING), default=None,
              help="Per-channel mean/std, or GCN + ZCA [default: standard].")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Weights file [default: weights/<model>-<data>.h5; history CSV beside it].")
@click.option("--resume", type=click.Path(dir_okay=False), default=None,
              help="Continue the run in this weights file (to --epochs in all), exactly.")
@click.option("--force", is_flag=True, help="Overwrite an existing --out file of another run.")
@click.option("--train-size", type=int, default=None, help="Use a deterministic stratified subset.")
@click.option("--test-size", type=int, default=None, help="Use a deterministic stratified test subset.")
@click.option("--val-size", type=int, default=None, help="Hold out N training images as validation.")
@click.option("--widths", callback=_widths, default=None, metavar="W1,...,W8",
              help="Hidden widths (small values make tiny networks for tests) [default: NiN's].")
@click.option("--dictionary", type=click.Choice(sorted(DICTIONARIES)), default=None,
              help="Fixed dictionary of DS-NiN's k×k convolutions [default: odct3, the paper "
                   "author's 3-D DCT; see docs/method.md].")
@click.option("--quiet", is_flag=True, help="No progress bar (the run description and epoch rows still print).")
def train_command(data, model, epochs, batch_size, lr, momentum, weight_decay, zeta, zeta_schedule, shrink,
                  dropout, lr_schedule, device, seed, data_dir, download, no_extra, preprocess, out, resume,
                  force, train_size, test_size, val_size, widths, dictionary, quiet):
    """Train NiN or DS-NiN; one row per epoch, weights (HDF5) written after every epoch."""
    config = TrainConfig(data=data, model=model, epochs=epochs, batch_size=batch_size, lr=lr,
                         momentum=momentum, weight_decay=weight_decay, zeta=zeta,
                         zeta_schedule=zeta_schedule, shrink=shrink, dropout=dropout,
                         lr_schedule=lr_schedule, device=device, seed=seed, data_dir=data_dir,
                         download=download, extra=None if not no_extra else False,
                         preprocess=preprocess, out=out, resume=resume, force=force,
                         train_size=train_size, test_size=test_size, val_size=val_size, widths=widths,
                         dictionary=dictionary)
    try:
        result = train(config, ConsoleReporter(quiet))
    except Interrupted as stop:
        click.echo(str(stop), err=True)
        sys.exit(stop.exit_status)
    history = result.history
    epochs = len(history["epoch"])
    click.echo(f"done: test accuracy {1 - history['test_error'][-1]:.4f} after {epochs} "
               f"epoch{'s' if epochs != 1 else ''}; weights {result.out}")
