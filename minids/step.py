"""One training step of ``minids train`` and the epoch's running sums, kept on the device.

The loop in :mod:`minids.train` calls :func:`train_step` once per batch (or
:func:`accumulated_step` once per group of mini-batches, under a
``--batch-schedule``) and reads :class:`EpochSums` back every
:data:`SYNC_BATCHES` batches (docs/training.md).
"""


#: batches between two reads of the epoch's sums from the device (a GPU sync)
SYNC_BATCHES = 16


class EpochSums:
    """The running sums of an epoch's history row, kept on the device.

    ``add`` queues a few device operations per batch and never waits for the
    device: the loss sum (float64) and the error count (int64), and the first
    batch whose loss was not finite (its index and loss). ``read`` brings them
    to the host (one sync). A loss that is not finite poisons the model state
    from that step on; the trainer reads the sums before anything is saved
    or reported as final, so such a state is never written (docs/training.md).
    """

    def __init__(self, xp, loss_sum=0.0, errors=0):
        self.xp = xp
        self.loss_sum = xp.asarray(loss_sum, dtype=xp.float64)
        self.errors = xp.asarray(errors, dtype=xp.int64)
        self.bad_batch = xp.asarray(-1, dtype=xp.int64)
        self.bad_loss = xp.asarray(0.0, dtype=xp.float64)

    def add(self, index, loss, logits, labels):
        """Batch ``index``: its mean loss (0-d array), logits (N, classes) and labels (N,)."""
        xp, n = self.xp, int(labels.shape[0])
        loss = loss.astype(xp.float64)
        self.loss_sum += loss * n
        self.errors += (logits.argmax(axis=1) != labels).sum()
        first_bad = (self.bad_batch < 0) & ~xp.isfinite(loss)
        self.bad_batch = xp.where(first_bad, index, self.bad_batch)
        self.bad_loss = xp.where(first_bad, loss, self.bad_loss)

    def read(self):
        """(loss sum float, errors int, first bad batch index or None, its loss float)."""
        bad = int(self.bad_batch)
        return float(self.loss_sum), int(self.errors), (None if bad < 0 else bad), float(self.bad_loss)


def train_step(model, loss_fn, optimizer, sums, index, x, y):
    """The trainer's step on batch ``index``: forward, the epoch sums (no sync), backward, update.

    ``x`` float32 (B, C, H, W) and ``y`` int64 (B,) on the model's device;
    ``sums`` an :class:`EpochSums`. (``benchmarks/train_step.py`` times this.)
    """
    _forward_backward(model, loss_fn, sums, index, x, y)
    optimizer.step(model.params, model.grads)


def _forward_backward(model, loss_fn, sums, index, x, y):
    """Batch ``index``'s forward, its epoch sums (no sync) and backward: ``model.grads`` filled."""
    logits = model.forward(x, train=True)
    sums.add(index, loss_fn.forward(logits, y), logits, y)
    model.backward(loss_fn.backward())


def accumulated_step(model, loss_fn, optimizer, sums, index, batches):
    """One update from the mini-batches ``batches`` (``[(x, y), ...]``, indices ``index``, ``index + 1``...).

    The gradient is that of the mean loss over all their images,
    ``sum_i (b_i / B) * g_i`` for mini-batches of ``b_i`` images (``B`` in
    all) with mean-loss gradients ``g_i``: one step on a batch of ``B``
    images, while the activations in memory are those of one mini-batch.
    One mini-batch is :func:`train_step` itself.
    """
    if len(batches) == 1:
        train_step(model, loss_fn, optimizer, sums, index, *batches[0])
        return
    total = sum(int(y.shape[0]) for _, y in batches)
    mean = {}
    for i, (x, y) in enumerate(batches):
        _forward_backward(model, loss_fn, sums, index + i, x, y)
        share = int(y.shape[0]) / total
        for name, g in model.grads.items():
            if name in mean:
                mean[name] += g * share
            else:
                mean[name] = g * share
    optimizer.step(model.params, mean)
