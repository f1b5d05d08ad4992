"""Entry point of the ``minids`` console script.

Every sub-command lives in its own module under ``cli/`` and is registered in
``COMMANDS``; it is imported only when invoked, so ``minids --help`` is fast.
A :class:`minids.errors.MinidsError` raised anywhere becomes a one-line
``Error: ...`` and exit status 1, never a traceback. A usage error of a
sub-command (unknown option, invalid choice, missing argument) is one line too,
naming the command's ``--help``, with click's exit status 2.
"""

import importlib

import click

from minids import __version__
from minids.allocator import keep_freed_memory
from minids.errors import MinidsError

# command name -> (module under cli/, attribute, one-line help)
COMMANDS = {
    "data": ("minids.cli.data", "data", "Download, inspect and verify data sets."),
    "gradcheck": ("minids.cli.gradcheck", "gradcheck", "Check every layer's backward against finite differences."),
    "params": ("minids.cli.params", "params", "Trainable parameters per layer (the paper's Figure 4)."),
    "prune": ("minids.cli.prune", "prune", "Remove zeroed coefficient filters and dead dictionary channels."),
    "train": ("minids.cli.train", "train_command", "Train NiN or DS-NiN; weights and history to HDF5."),
    "evaluate": ("minids.cli.evaluate", "evaluate_command", "Test error, per-class accuracy and confusion matrix."),
    "analyze": ("minids.cli.analyze", "analyze_command", "Tables and figures of the paper from weights files."),
    "sweep": ("minids.cli.sweep", "sweep_command", "Train over a grid of ζ; the accuracy-sparsity frontier."),
}


class LazyGroup(click.Group):
    """A group that imports a sub-command's module only when it is used."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MinidsError as err:
            raise click.ClickException(str(err)) from None
        except click.UsageError as err:
            raise _one_line(err) from None


def _one_line(err):
    """click's usage error as a single ``Error: ...`` line, with the same exit status."""
    hint = f" (see '{err.ctx.command_path} --help')" if err.ctx is not None else ""
    short = click.ClickException(err.format_message() + hint)
    short.exit_code = err.exit_code
    return short


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="minids")
def main():
    """minids: double-sparsity Network-in-Network on NumPy and CuPy.

    \b
    Environment: MINIDS_THREADS (CPU threads, default all cores),
    MINIDS_DATA (data folder), MINIDS_MALLOC=default (keep glibc's
    allocator thresholds; see docs/performance.md).
    """
    keep_freed_memory()
