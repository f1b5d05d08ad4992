"""Test error, per-class accuracy and the confusion matrix of a model on a data set."""

from dataclasses import dataclass, replace

import numpy as np

from minids.backend import get_module
from minids.data import DATASETS, get, load
from minids.data.preprocess import stratified_order, subset
from minids.errors import MinidsError
from minids.inference import predict
from minids.io import check_compatible, load_model

def confusion_matrix(labels, predictions, num_classes):
    """int64 (K, K) matrix whose [true, predicted] entry counts the images."""
    labels, predictions = np.asarray(labels, np.int64), np.asarray(predictions, np.int64)
    flat = labels * num_classes + predictions
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


@dataclass
class Evaluation:
    """Result of :func:`evaluate`: ``confusion`` (K, K) int64 [true, predicted],
    ``test_error`` (fraction), ``per_class_accuracy`` float64 (K,) (NaN for a class
    with no images) and ``data``, the data set evaluated on (None from :func:`summarize`)."""

    confusion: np.ndarray
    test_error: float
    per_class_accuracy: np.ndarray
    data: str = None

    @property
    def count(self):
        return int(self.confusion.sum())


def summarize(confusion):
    """An :class:`Evaluation` from a confusion matrix."""
    confusion = np.asarray(confusion, np.int64)
    total = confusion.sum()
    per_class = np.diag(confusion) / np.maximum(confusion.sum(axis=1), 1)
    per_class = np.where(confusion.sum(axis=1) > 0, per_class, np.nan)
    error = 1.0 - np.trace(confusion) / total if total else float("nan")
    return Evaluation(confusion, float(error), per_class)


def evaluate(weights, data=None, data_dir=None, device="auto", test_size=None, download=False,
             extra=True):
    """Evaluate the weights file ``weights`` on the test split of data set ``data``
    (None: the one the weights were trained on, the file's ``dataset`` attribute).

    The stored preprocessing statistics are used (not refitted). ``test_size``
    keeps the same deterministic stratified subset as ``minids train
    --test-size`` with the run's seed. Returns an :class:`Evaluation`.
    """
    xp = get_module(device)
    model = load_model(weights, device="cpu")
    if data is None:
        data = model.weights_attrs.get("dataset")
        if data not in DATASETS:
            raise MinidsError(f"{weights} does not name a data set minids knows "
                              f"({data!r}); give --data")
    images, labels = load(data, "test", data_dir, extra=extra, download=download)
    check_compatible(model.weights_attrs, tuple(images.shape[1:]), len(get(data).classes),
                     where=str(weights))
    if test_size:
        if test_size > len(labels):
            raise MinidsError(f"--test-size {test_size} is more than the {len(labels)} images available")
        seed = int(model.weights_attrs.get("seed", 0))
        images, labels = subset(images, labels, stratified_order(labels, seed)[:test_size])
    model.to(xp)
    predictions = predict(model, images, labels, model.preprocessing, xp)
    return replace(summarize(confusion_matrix(labels, predictions, model.num_classes)), data=data)
