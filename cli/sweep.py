"""``minids sweep``: one ``minids train`` per grid point over ζ (docs/sweep.md)."""

import sys
from pathlib import Path

import click

from minids.analysis.frontier import plot_frontier
from minids.dictionary import DEFAULT_DICTIONARY
from minids.errors import MinidsError
from minids.sweep import (ENGINES, FRONTIER_FILE, check_passed_options, format_table, grid,
                          parse_list, run_local, run_ray, table, write_table)


@click.command("sweep", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--zeta", "zetas", required=True, metavar="Z1,Z2,...",
              help="The ζ values, comma-separated, e.g. 0,1e-6,3e-6,1e-5,3e-5,1e-4.")
@click.option("--dictionary", "dictionaries", default=DEFAULT_DICTIONARY, show_default=True,
              metavar="A,B,...", help="DS-NiN dictionaries to sweep (NiN has none).")
@click.option("--model", "models", default="ds-nin", show_default=True, metavar="M,...",
              help="Models to sweep: ds-nin, nin or both.")
@click.option("--seeds", default="0", show_default=True, metavar="S1,S2,...",
              help="Seeds of each point; several give error bars.")
@click.option("--out-dir", type=click.Path(file_okay=False), default="sweep", show_default=True,
              help="Folder of the points' weights, CSVs, sweep.csv and frontier.png.")
@click.option("--engine", type=click.Choice(ENGINES), default="local", show_default=True,
              help="local: a pool of processes here; ray: Ray tasks (pip install '.[ray]').")
@click.option("--jobs", type=int, default=1, show_default=True,
              help="local: points run at once, each with its share of the cores (or one GPU).")
@click.option("--gpus", type=int, default=None,
              help="local: GPUs to spread the jobs over, one each [default: every GPU CuPy sees]; "
                   "ray: GPUs per point [default: 1 on a cluster with GPUs, else 0]. 0: CPU only.")
@click.option("--cpus-per-point", type=int, default=1, show_default=True, help="ray: CPUs per point.")
@click.option("--address", default=None, help="ray: address of an existing cluster [default: start a local one].")
@click.pass_context
def sweep_command(ctx, zetas, dictionaries, models, seeds, out_dir, engine, jobs, gpus, cpus_per_point,
                  address):
    """Train one run per grid point; skip finished points, resume interrupted ones.

    Any other option goes to every `minids train` (e.g. --data fashion-mnist
    --epochs 10 --train-size 20000). Prints the table and writes
    OUT_DIR/sweep.csv and OUT_DIR/frontier.png.
    """
    passed = list(ctx.args)
    check_passed_options(passed)
    if jobs < 1 or (gpus is not None and gpus < 0) or cpus_per_point < 1:
        raise MinidsError("--jobs and --cpus-per-point must be >= 1, --gpus >= 0")
    points = grid(parse_list(zetas, float, "zeta"), parse_list(models, str, "model"),
                  parse_list(dictionaries, str, "dictionary"), parse_list(seeds, int, "seeds"))
    folder = Path(out_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise MinidsError(f"cannot create --out-dir {folder}: {err.strerror or err}") from None

    def report(line):
        click.echo(line, err=True)

    if engine == "local":
        results, stopped = run_local(points, folder, passed, jobs, report, gpus=gpus)
    else:
        results, stopped = run_ray(points, folder, passed, address, report, cpus_per_point, gpus)
    rows = table(points, folder)
    if rows:
        write_table(rows, folder)
        plot_frontier(rows, folder / FRONTIER_FILE)
    click.echo(format_table(rows), nl=False)
    failed = [p.stem for p, (code, _) in results.items() if code != 0]
    if stopped is not None:
        click.echo(f"sweep stopped: {len(rows)} of {len(points)} points finished; run the same "
                   "command again to finish the others", err=True)
        sys.exit(128 + int(stopped))
    if failed:
        raise MinidsError(f"{len(failed)} point(s) failed: {', '.join(failed)} (see their output above)")
