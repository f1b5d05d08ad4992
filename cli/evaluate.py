"""``minids evaluate``: test error, per-class accuracy and the confusion matrix of weights."""

import click

from minids.backend import DEVICES
from minids.data import DATASETS, get
from minids.evaluate import evaluate


@click.command("evaluate")
@click.argument("weights", type=click.Path(dir_okay=False))
@click.option("--data", type=click.Choice(DATASETS), default=None,
              help="Data set whose test split to use [default: the one WEIGHTS was trained on].")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Where data sets are.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--test-size", type=click.IntRange(min=1), default=None,
              help="Deterministic stratified subset (the one `minids train --test-size` used).")
@click.option("--download", is_flag=True, help="Download missing data files first.")
@click.option("--no-extra", is_flag=True, help="SVHN: as for training (does not change the test split).")
def evaluate_command(weights, data, data_dir, device, test_size, download, no_extra):
    """Evaluate WEIGHTS (an HDF5 file from `minids train`) on the test split of
    --data, by default the data set it was trained on.

    The preprocessing statistics stored with the weights are applied. Prints the
    test error, the accuracy of every class and the confusion matrix (rows: true
    class, columns: predicted class).
    """
    result = evaluate(weights, data, data_dir=data_dir, device=device, test_size=test_size,
                      download=download, extra=not no_extra)
    k, data = result.confusion.shape[0], result.data
    click.echo(f"{weights} on {data} test ({result.count} images): test error {result.test_error:.4f}, "
               f"accuracy {1 - result.test_error:.4f}")
    click.echo("per-class accuracy:")
    names = get(data).classes
    for c in range(k):
        name = f"  {names[c]}" if c < len(names) else ""
        click.echo(f"  class {c}: {result.per_class_accuracy[c]:.4f} "
                   f"({result.confusion[c, c]}/{result.confusion[c].sum()}){name}")
    click.echo("confusion matrix (rows: true class, columns: predicted):")
    width = max(5, len(str(result.confusion.max())) + 1)
    click.echo("true\\pred" + "".join(f"{c:>{width}}" for c in range(k)))
    for c in range(k):
        click.echo(f"{c:>9}" + "".join(f"{v:>{width}}" for v in result.confusion[c]))
