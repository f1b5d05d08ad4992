"""``minids analyze``: the paper's tables and figures from one or more weights files."""

from pathlib import Path

import click

from minids.analysis import FIGURES, FORMATS, analyze, format_reports, load, write_figures
from minids.analysis.figures import check_figures
from minids.analysis.frontier import plot_frontier
from minids.errors import MinidsError
from minids.sweep import FRONTIER_FILE, format_table, read_table


def _stems(weights):
    """Figure file stems: each file's stem, numbered where two files share one."""
    stems = [w.path.stem for w in weights]
    return [f"{s}-{i + 1}" if stems.count(s) > 1 else s for i, s in enumerate(stems)]


@click.command("analyze")
@click.argument("weights", nargs=-1, required=True, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="table: one column per file; csv: one row per file; json: nested reports.")
@click.option("--plots", type=click.Path(file_okay=False), metavar="DIR",
              help="Write PNG figures to DIR as <file stem>_<figure>.png.")
@click.option("--figure", "figures", type=click.Choice(FIGURES), multiple=True,
              help="Figures to write with --plots (repeatable; default: all that apply: "
                   "atoms and filters need a DS-NiN).")
@click.option("--flops/--no-flops", default=True, show_default=True,
              help="Count forward FLOPs per image, as stored and after pruning.")
def analyze_command(weights, fmt, plots, figures, flops):
    """Summary, parameters (Figure 4), accuracy and exact zeros (Figures 6/7), FLOPs.

    Several WEIGHTS files are shown side by side (e.g. NiN and DS-NiN, or
    several zeta). A folder of `minids sweep` gives its table and the
    accuracy-sparsity frontier (frontier.png in --plots DIR, else in the folder). With --plots: Figure 8 (history), Figure 9 (DCT atoms),
    Figure 10 (learned first-layer filters) and a histogram of coefficient
    magnitudes. The table goes to stdout, the written figure paths to stderr.
    """
    if figures and not plots:
        raise click.UsageError("--figure needs --plots DIR")
    if any(Path(path).is_dir() for path in weights):
        _analyze_sweep(weights, plots, fmt)
        return
    loaded = [load(path) for path in weights]
    for w in loaded:
        check_figures(w, figures)
    reports = [analyze(w, flops=flops) for w in loaded]
    if plots:   # before the table, so that an unwritable DIR is the only output
        for w, stem in zip(loaded, _stems(loaded)):
            for path in write_figures(w, plots, names=list(figures) or None, stem=stem):
                click.echo(f"wrote {path}", err=True)
    click.echo(format_reports(reports, fmt), nl=False)


def _analyze_sweep(paths, plots, fmt):
    """The table and frontier figure of one `minids sweep` folder."""
    if len(paths) != 1:
        raise MinidsError("give one sweep folder, or weights files only")
    if fmt != "table":
        raise MinidsError("a sweep folder is shown as a table (its sweep.csv holds the same rows)")
    folder = Path(paths[0])
    rows = read_table(folder)
    out = Path(plots or folder) / FRONTIER_FILE
    click.echo(f"wrote {plot_frontier(rows, out)}", err=True)
    click.echo(format_table(rows), nl=False)
