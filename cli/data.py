"""``minids data``: download, inspect and verify data sets."""

import click

from minids import data as datamod

_NAME = click.argument("name", type=click.Choice(datamod.DATASETS))
_DATA_DIR = click.option("--data-dir", type=click.Path(file_okay=False), envvar="MINIDS_DATA",
                         help="Folder for downloads and the prepared cache "
                              "[env MINIDS_DATA; default: $XDG_CACHE_HOME/minids].")
_EXTRA = click.option("--extra/--no-extra", default=True, show_default=True,
                      help="SVHN: include extra_32x32.mat (the paper trains on train + extra).")


@click.group("data")
def data():
    """Download, inspect and verify data sets."""


@data.command()
@_NAME
@_DATA_DIR
@_EXTRA
@click.option("--mirror", envvar="MINIDS_MIRROR", help="Base URL serving the same file names [env MINIDS_MIRROR].")
def download(name, data_dir, extra, mirror):
    """Download NAME's files (resumable, checked against known MD5s)."""
    for path in datamod.download(name, data_dir, mirror=mirror, extra=extra):
        click.echo(f"ok  {path}")


@data.command()
@_NAME
@_DATA_DIR
@_EXTRA
def info(name, data_dir, extra):
    """Splits, counts, shapes, class histograms and file locations of NAME."""
    details = datamod.info(name, data_dir, extra=extra)
    click.echo(f"data set: {details['name']}")
    for path in details["files"]:
        click.echo(f"file:     {path}")
    if details["cache"]:
        click.echo(f"cache:    {details['cache']}")
    for split, s in details["splits"].items():
        shape = "×".join(map(str, s["shape"]))
        click.echo(f"{split + ':':9} {s['count']} images of {shape}, per class {s['histogram']}")


@data.command()
@_NAME
@_DATA_DIR
@_EXTRA
def verify(name, data_dir, extra):
    """Check NAME's files against their known sizes and MD5s."""
    bad = 0
    for path, problem in datamod.verify(name, data_dir, extra=extra):
        click.echo(f"{'ok ' if problem is None else 'BAD'} {path}" + (f": {problem}" if problem else ""))
        bad += problem is not None
    if bad:
        raise click.ClickException(f"{bad} file(s) failed verification")
