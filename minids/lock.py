"""Advisory locks: one writer per ``--out``, one builder per prepared data split.

``with OutputLock(out):`` holds ``fcntl.flock`` on a hidden ``.<name>.lock``
beside ``out`` (the file holds the writer's process id). A second trainer on
the same ``out`` is refused with a message naming the first. The kernel
releases the lock when its process dies, so a killed run never blocks the
next. While it holds the lock, a run removes the temporaries that killed
writers of the same files left behind (``.<name>.<pid>.tmp``). Off POSIX
(no ``fcntl``) the lock is skipped.

``with exclusive(path):`` waits for the lock on ``path`` instead (the data
cache uses it so that a second builder of a split waits for the first and then
finds the split built).
"""

import contextlib
import os
from pathlib import Path

from minids.errors import MinidsError
from minids.io import remove_quietly

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None


def lock_path(out):
    """The lock file of weights file ``out``."""
    out = Path(out)
    return out.with_name(f".{out.name}.lock")


def remove_stale_temporaries(path, suffix=""):
    """Remove ``.<name>.<tag>.tmp<suffix>`` files of ``path`` left by killed writers; returns them.

    Call it only while holding the lock that every writer of ``path`` holds.
    """
    path = Path(path)
    stale = sorted(path.parent.glob(f".{path.name}.*.tmp{suffix}")) if path.parent.is_dir() else []
    for tmp in stale:
        remove_quietly(tmp)
    return stale


@contextlib.contextmanager
def exclusive(path):
    """Hold ``fcntl.flock`` on ``path`` (created if missing), waiting for other holders.

    Yields True while the lock is held, False off POSIX (nothing is locked there).
    """
    if fcntl is None:
        yield False
        return
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield True


class OutputLock:
    """Context manager: hold the advisory lock of ``out`` or raise MinidsError."""

    def __init__(self, out):
        self.out, self.path, self._handle = Path(out), lock_path(out), None

    def __enter__(self):
        if fcntl is None:
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+")
        except OSError as err:
            raise MinidsError(f"cannot write beside {self.out}: {err.strerror or err}") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            other = handle.read().strip() or "unknown"
            handle.close()
            raise MinidsError(f"{self.out} is being written by another minids process (pid {other}); "
                              "wait for it to finish, stop it, or choose another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc):
        if self._handle is not None:
            remove_quietly(self.path)
            self._handle.close()
            self._handle = None
        return False
