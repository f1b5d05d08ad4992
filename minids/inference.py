"""Batched inference: the predicted classes of a model on a split of images."""

import numpy as np

from minids.backend import to_host
from minids.data import BatchIterator

EVAL_BATCH = 256


def predict(model, images, labels, stats, xp, batch_size=EVAL_BATCH):
    """Predicted classes (int64 host (N,)) of uint8 ``images`` (N, C, H, W), in input order.

    The model runs in inference mode (no dropout); inputs are normalised with
    ``stats``. ``labels`` only rides along with the batches.
    """
    batches = BatchIterator(images, labels, batch_size, stats, xp, shuffle=False, prefetch=False)
    out = [to_host(model.forward(x, train=False).argmax(axis=1)) for x, _ in batches.epoch(0)]
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)
