"""``minids params``: trainable parameters per layer, as in the paper's Figure 4."""

import click

from minids.models import MODELS, build_model, count_parameters


@click.command("params")
@click.option("--model", "model_name", type=click.Choice(MODELS), default="ds-nin", show_default=True)
@click.option("--in-channels", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--classes", type=click.IntRange(min=2), default=10, show_default=True)
def params(model_name, in_channels, classes):
    """Trainable (and fixed) parameters per layer, the total and the ratio to NiN."""
    rows = count_parameters(build_model(model_name, in_channels, classes))
    nin_total = sum(r[2] for r in count_parameters(build_model("nin", in_channels, classes)))
    click.echo(f"{'layer':<7} {'kind':<26} {'trainable':>10} {'fixed':>9}")
    for name, kind, trainable, fixed in rows:
        click.echo(f"{name:<7} {kind:<26} {trainable:>10,} {fixed:>9,}")
    total = sum(r[2] for r in rows)
    click.echo(f"{'total':<34} {total:>10,} {sum(r[3] for r in rows):>9,}")
    click.echo(f"ratio to NiN: {total / nin_total:.3f}")
