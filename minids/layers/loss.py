"""Softmax cross-entropy (negative log-likelihood) loss."""

import numpy as np

from minids.backend import get_array_module
from minids.layers.base import Layer, check_rank
from minids.layers.cases import Case, normal


class SoftmaxNLL(Layer):
    """Mean over the batch of −log softmax(logits)[label].

    ``forward(logits (N, K), labels int (N,))`` → 0-d array (the loss, in nats);
    ``backward(dy=1)`` → dlogits (N, K) = dy · (softmax − one_hot) / N, where
    ``dy`` is the gradient of what follows with respect to the loss (a scalar:
    1 when the loss is the objective). Like every layer, it takes its input
    first (the labels are a second, non-differentiable input) and backward
    takes the gradient of its output. Uses a stable log-softmax (logits
    shifted by their row maximum).
    """

    @classmethod
    def gradcheck_cases(cls):
        return [Case("softmax_nll", lambda rng: SoftmaxNLL(), normal(4, 5), labels=np.array([0, 3, 3, 1]))]

    def forward(self, logits, labels, train=True):
        check_rank(self, logits, rank=2)
        if labels.shape != (logits.shape[0],):
            raise ValueError(f"{self!r} expects labels of shape ({logits.shape[0]},), "
                             f"got {tuple(labels.shape)}")
        xp = get_array_module(logits)
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_prob = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        rows = xp.arange(logits.shape[0])
        self.keep((xp.exp(log_prob), rows, labels) if train else None)
        return -log_prob[rows, labels].mean()

    def backward(self, dy=None):
        prob, rows, labels = self.take()
        dlogits = prob.copy()
        dlogits[rows, labels] -= 1.0
        dlogits /= prob.shape[0]
        if dy is not None:
            dlogits *= dy
        return dlogits
