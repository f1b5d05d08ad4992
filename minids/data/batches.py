"""Mini-batches of normalised float32 images: gathered on the GPU, or prepared by a host thread.

The order of epoch ``e`` is a permutation drawn from ``(seed, e)`` alone, so a
run resumed at epoch ``e`` sees exactly the batches it would have seen. The
last batch is smaller when the batch size does not divide the data. Both
ways of preparing a batch give the same arrays (docs/data.md).
"""

import queue
import threading

import numpy as np

from minids.backend import free_device_bytes, to_device
from minids.data.preprocess import normalize, stats_to_device

_DONE = object()
#: the share of the GPU's free memory the uint8 training set may take to live there
RESIDENT_SHARE = 0.5


class BatchIterator:
    """Batches ``(x float32 xp (B, C, H, W), y int64 xp (B,))`` of uint8 ``images`` / ``labels``.

    ``resident`` (default: on a GPU, when the uint8 images take at most
    ``RESIDENT_SHARE`` of its free memory): the images and labels are copied
    to the device once, each epoch's order too, and a batch is gathered and
    normalised there, with no host work and no thread. Otherwise ``images``
    may be a memory map: only one or two batches are read at a time, and
    with ``prefetch`` a thread reads, normalises and (on a GPU) copies the
    next batch to the device while the current one is used.
    """

    def __init__(self, images, labels, batch_size, stats, xp, shuffle=True, seed=0, prefetch=True,
                 resident=None):
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, np.asarray(labels, dtype=np.int64)
        self.batch_size, self.xp = int(batch_size), xp
        self.stats = stats_to_device(stats, xp)
        self.shuffle, self.seed, self.prefetch = shuffle, int(seed), prefetch
        if resident is None:
            free = free_device_bytes(xp)
            resident = free is not None and images.nbytes <= RESIDENT_SHARE * free
        self.resident = bool(resident)
        if self.resident:  # one copy of the whole split (a memory map is read once, front to back)
            self.images, self.labels = to_device(images, xp), to_device(self.labels, xp)

    def __len__(self):
        return -(-len(self.labels) // self.batch_size)

    def order(self, epoch):
        """The sample order (int64 (N,)) of ``epoch``: a permutation seeded by (seed, epoch)."""
        if not self.shuffle:
            return np.arange(len(self.labels))
        return np.random.default_rng([self.seed, int(epoch)]).permutation(len(self.labels))

    def _batch(self, index):
        index = np.sort(index)  # read a memory map front to back; the batch is a set
        x = normalize(self.images[index], self.stats, self.xp)
        return x, to_device(self.labels[index], self.xp)

    def _slices(self, epoch, start):
        order = self.order(epoch)
        first = start * self.batch_size
        return (order[lo:lo + self.batch_size] for lo in range(first, len(order), self.batch_size))

    def epoch(self, epoch, start=0):
        """An iterator over the batches of ``epoch`` (0-based), from batch ``start`` on
        (a run resumed in the middle of an epoch skips the batches it already used)."""
        if self.resident:
            return self._gathered(epoch, start)
        if not self.prefetch:
            return (self._batch(index) for index in self._slices(epoch, start))
        return self._prefetched(epoch, start)

    def _gathered(self, epoch, start):
        xp = self.xp
        order = to_device(self.order(epoch), xp)
        for lo in range(start * self.batch_size, len(order), self.batch_size):
            index = xp.sort(order[lo:lo + self.batch_size])  # the same set, in the same order, as _batch
            yield normalize(self.images[index], self.stats, xp), self.labels[index]

    def _prefetched(self, epoch, start):
        out, stop = queue.Queue(maxsize=1), threading.Event()
        device = None if self.xp is np else self.xp.cuda.Device()

        def put(item):
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    pass
            return False

        def work():
            try:
                if device is not None:
                    device.use()
                for index in self._slices(epoch, start):
                    if not put(self._batch(index)):
                        return
                put(_DONE)
            except BaseException as err:  # handed to the consumer, raised there
                put(err)

        thread = threading.Thread(target=work, daemon=True, name=f"minids-prefetch-{epoch}")
        thread.start()
        try:
            while True:
                item = out.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            thread.join()
