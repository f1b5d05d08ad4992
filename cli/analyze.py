"""``minids analyze``: the paper's tables and figures from one or more weights files."""

import click

from minids.analysis import FIGURES, FORMATS, analyze, format_reports, load, write_figures
from minids.analysis.figures import check_figures


def _stems(weights):
    """Figure file stems: each file's stem, numbered where two files share one."""
    stems = [w.path.stem for w in weights]
    return [f"{s}-{i + 1}" if stems.count(s) > 1 else s for i, s in enumerate(stems)]


@click.command("analyze")
@click.argument("weights", nargs=-1, required=True, type=click.Path(dir_okay=False))
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
    several zeta). With --plots: Figure 8 (history), Figure 9 (DCT atoms),
    Figure 10 (learned first-layer filters) and a histogram of coefficient
    magnitudes. The table goes to stdout, the written figure paths to stderr.
    """
    if figures and not plots:
        raise click.UsageError("--figure needs --plots DIR")
    loaded = [load(path) for path in weights]
    for w in loaded:
        check_figures(w, figures)
    reports = [analyze(w, flops=flops) for w in loaded]
    if plots:   # before the table, so that an unwritable DIR is the only output
        for w, stem in zip(loaded, _stems(loaded)):
            for path in write_figures(w, plots, names=list(figures) or None, stem=stem):
                click.echo(f"wrote {path}", err=True)
    click.echo(format_reports(reports, fmt), nl=False)
