"""Reference code and stand-ins shared by several test modules."""

import signal

from minids.train import SilentReporter


def hand_splitmix64(x):
    """splitmix64's output for state x, with Python integers (Vigna's reference code)."""
    mask = (1 << 64) - 1
    z = (x + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


class SignalAtBatch(SilentReporter):
    """A training reporter that sends this process a real ``signum`` (SIGINT:
    Ctrl-C, SIGTERM: a scheduler) after the ``at``-th step of the run (one
    batch, or one group of mini-batches under a ``--batch-schedule``)."""

    def __init__(self, at, signum=signal.SIGINT):
        self.at, self.signum, self.count = at, signum, 0

    def update(self, batches, images, loss):
        self.count += 1
        if self.count == self.at:
            signal.raise_signal(self.signum)
