"""``minids train``: train NiN or DS-NiN with the paper's update rule (docs/training.md)."""

import sys
import time

import click

from minids import run_options
from minids.train import Interrupted, TrainConfig, train

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

    def update(self, batches, images, loss):
        self.done += batches
        self.images += images
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.update(batches, self._status(loss))
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


ENVIRONMENT = """\b
Environment:
  MINIDS_THREADS  CPU threads for the matrix products (OpenBLAS's too)
                  [default: the cores this process may use]
  MINIDS_DATA     data directory [default: $XDG_CACHE_HOME/minids or
                  ~/.cache/minids]; --data-dir overrides it
  MINIDS_MIRROR   base URL that serves the data sets' files (--download)
Options, defaults and the reasons for them: docs/training.md."""


@click.command("train", epilog=ENVIRONMENT)
@run_options.click_options
@click.option("--quiet", is_flag=True, help="No progress bar (the run description and epoch rows still print).")
def train_command(quiet, **options):
    """Train NiN or DS-NiN; one row per epoch, weights (HDF5) written after every epoch."""
    config = TrainConfig(**options)
    try:
        result = train(config, ConsoleReporter(quiet))
    except Interrupted as stop:
        click.echo(str(stop), err=True)
        sys.exit(stop.exit_status)
    history = result.history
    epochs = len(history["epoch"])
    click.echo(f"done: test accuracy {1 - history['test_error'][-1]:.4f} after {epochs} "
               f"epoch{'s' if epochs != 1 else ''}; weights {result.out}")
