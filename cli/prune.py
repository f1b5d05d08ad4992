"""``minids prune``: remove the zeroed coefficient filters and dead dictionary channels."""

import click

from minids.prune import prune_weights_file


@click.command("prune")
@click.argument("weights", type=click.Path(dir_okay=False))
@click.option("--out", "out", type=click.Path(dir_okay=False), required=True,
              help="Where to write the pruned weights file (a new file).")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def prune(weights, out, force):
    """Prune the DS-NiN in WEIGHTS exactly and write it to --out.

    Removes coefficient-layer filters that are entirely zero (their constant
    output is folded into the next layer's bias) and the fixed-conv channels
    that feed only all-zero coefficient columns. The pruned network is checked
    to give the same logits on random inputs before it is written.
    """
    result = prune_weights_file(weights, out, force=force)
    click.echo(f"{'layer':<7} {'channels':>9} {'kept':>6}")
    for name, (before, after) in result["counts"].items():
        click.echo(f"{name:<7} {before:>9} {after:>6}")
    before, after = result["flops_before"], result["flops_after"]
    click.echo(f"FLOPs per image, fixed convs dense: {before / 1e6:.1f} M -> {after / 1e6:.1f} M "
               f"({after / before:.3f} of the original)")
    before, after = result["factored_flops_before"], result["factored_flops_after"]
    click.echo(f"FLOPs per image, as computed (factored): {before / 1e6:.1f} M -> {after / 1e6:.1f} M "
               f"({after / before:.3f} of the original)")
    click.echo(f"trainable parameters: {result['params_before']:,} -> {result['params_after']:,}")
    click.echo(f"max |logit difference| on random inputs: {result['max_logit_diff']:.2e} "
               f"(largest |logit| {result['max_logit']:.3g})")
    click.echo(f"wrote {out}")
