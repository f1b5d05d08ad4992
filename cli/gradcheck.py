"""``minids gradcheck``: every layer's backward against finite differences."""

import click

from minids import gradcheck as checker
from minids.backend import DEVICES, device_name, get_module
from minids.errors import MinidsError


@click.command("gradcheck")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
              help="Where the analytic gradients run; numeric ones always use NumPy on the CPU.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of shapes' values.")
@click.option("--layer", "only", metavar="NAME", default=None,
              help="Check only the cases whose name starts with NAME (e.g. conv, maxpool, network).")
def gradcheck(device, seed, only):
    """Check every layer's input and parameter gradients in float64.

    One row per layer and tensor: the max relative error of the analytic
    gradient against central differences, and PASS at <= 1e-6. Exits 1 if
    any tensor fails.
    """
    xp = get_module(device)
    try:
        results = checker.run(xp, seed=seed, only=only)
    except ValueError as err:
        raise MinidsError(str(err)) from None
    click.echo(f"gradient check on {device_name(xp)}, float64, seed {seed}, "
               f"tolerance {checker.TOLERANCE:.0e}")
    width = max([len("case"), *(len(r.case) for r in results)])
    click.echo(f"{'case':<{width}} {'tensor':<14} {'shape':<16} {'max rel err':>11}  result")
    for r in results:
        verdict = "PASS" if r.passed else click.style("FAIL", fg="red")
        click.echo(f"{r.case:<{width}} {r.tensor:<14} {str(r.shape):<16} {r.error:>11.2e}  {verdict}")
    failed = sum(not r.passed for r in results)
    click.echo(f"{len(results) - failed} passed, {failed} failed")
    if failed:
        raise SystemExit(1)
