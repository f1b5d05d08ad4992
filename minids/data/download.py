"""Resumable, verified downloads into the data directory.

A file is fetched to ``<name>.part`` (continued with an HTTP Range request when
a partial file is already there), then checked against its known size and MD5
and renamed into place. A download cut short (the connection dropped, the server
closed early) keeps its ``.part`` for the next attempt; a complete file that
fails the check is renamed ``<name>.corrupt`` and never used. The base URL of
every data set can be replaced by a mirror (``mirror=`` or the
``MINIDS_MIRROR`` environment variable) that serves the same file names.
"""

import hashlib
import http.client
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

import click

from minids.data.cache import ensure_writable
from minids.errors import MinidsError

TIMEOUT_S = 10
_BLOCK = 1 << 16


def md5sum(path):
    """Hex MD5 of the file at ``path``."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_file(path, size, md5):
    """None when ``path`` has ``size`` bytes and MD5 ``md5``, else a one-line reason."""
    actual = Path(path).stat().st_size
    if actual != size:
        return f"{actual} bytes, expected {size}"
    digest = md5sum(path)
    return None if digest == md5 else f"md5 {digest}, expected {md5}"


class _NoBar:
    """Stands in for click.progressbar when no progress is wanted."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n):
        pass


def _manual_hint(url, dest):
    return f"download {url} by hand and put it at {dest}, or set MINIDS_MIRROR to a mirror"


def fetch(url, dest, size, md5, progress=True, timeout=TIMEOUT_S):
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify it, return ``dest``."""
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if have > size:
        part.unlink()
        have = 0
    if have < size:
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if have and response.status != 206:  # the server ignored the Range: start again
                    have = 0
                bar = click.progressbar(length=size, label=dest.name) if progress else _NoBar()
                with open(part, "ab" if have else "wb") as out, bar:
                    bar.update(have)
                    for block in iter(lambda: response.read(_BLOCK), b""):
                        out.write(block)
                        bar.update(len(block))
        except urllib.error.HTTPError as err:
            raise MinidsError(f"could not download {url} (HTTP {err.code}); {_manual_hint(url, dest)}") from None
        except (urllib.error.URLError, socket.timeout, http.client.HTTPException, OSError) as err:
            reason = getattr(err, "reason", err) or type(err).__name__
            raise MinidsError(
                f"could not download {url} ({reason}); run the command again to resume, "
                f"or {_manual_hint(url, dest)}"
            ) from None
    have = part.stat().st_size
    if have < size:
        raise MinidsError(
            f"download of {url} stopped at {have} of {size} bytes (kept in {part}); "
            "run the command again to resume"
        )
    problem = check_file(part, size, md5)
    if problem:
        corrupt = dest.with_name(dest.name + ".corrupt")
        os.replace(part, corrupt)
        raise MinidsError(f"downloaded {dest.name} is corrupt ({problem}); moved aside to {corrupt}")
    os.replace(part, dest)
    return dest


def download_files(files, base_url, data_dir, mirror=None, progress=True, timeout=TIMEOUT_S):
    """Fetch each of ``files`` (name -> (size, md5)) not yet verified in ``data_dir``.

    A complete file already present is checked and kept when it matches; one that
    does not match is moved aside as ``*.corrupt`` and fetched again. Returns the paths.
    """
    data_dir = ensure_writable(data_dir)
    base = (mirror or os.environ.get("MINIDS_MIRROR") or base_url).rstrip("/") + "/"
    paths = []
    for name, (size, md5) in files.items():
        dest = data_dir / name
        if dest.exists():
            problem = check_file(dest, size, md5)
            if not problem:
                paths.append(dest)
                continue
            os.replace(dest, dest.with_name(name + ".corrupt"))
            click.echo(f"{dest} is corrupt ({problem}); moved aside, downloading again", err=True)
        paths.append(fetch(base + name, dest, size, md5, progress=progress, timeout=timeout))
    return paths
