"""One minids weights file (docs/weights.md, schema v1) opened for analysis.

:func:`load` reads a file with :func:`minids.io.read_weights` and keeps its
path beside the contents. Everything the analysis computes starts from this
object, so the same numbers are reachable from Python and from
``minids analyze``.
"""

from dataclasses import dataclass
from pathlib import Path

from minids.io import WeightsFile, read_weights


@dataclass
class Weights:
    """A weights file in memory: ``path`` and ``contents`` (a :class:`minids.io.WeightsFile`).

    ``attrs`` (root attributes), ``layers`` (conv name -> {'weight' (O, I, k, k)
    float32, 'bias' (O,) float32, 'k', 'stride', 'padding', 'fixed'}, in
    network order) and ``history`` (column -> (epochs,) float64) are those of
    ``contents``.
    """

    path: Path
    contents: WeightsFile

    @property
    def attrs(self):
        return self.contents.attrs

    @property
    def layers(self):
        return self.contents.layers

    @property
    def history(self):
        return self.contents.history

    @property
    def model(self):
        """'nin' or 'ds-nin'."""
        return self.attrs["model"]

    @property
    def is_ds(self):
        """True for a DS-NiN (fixed dictionary convolutions)."""
        return any(layer["fixed"] for layer in self.layers.values())

    @property
    def coefficient_layers(self):
        """Names of the 1×1 layers that follow a fixed convolution (Figure 7)."""
        return list(self.attrs.get("coefficient_layers") or [])

    @property
    def input_shape(self):
        """(C, H, W) of one image."""
        return tuple(int(s) for s in self.attrs["input_shape"])


def load(path):
    """Read a minids weights file; MinidsError if it is missing or not one."""
    return Weights(Path(path), read_weights(path))


def as_weights(weights):
    """``weights`` itself if it is a :class:`Weights`, else :func:`load` it (a path)."""
    return weights if isinstance(weights, Weights) else load(weights)
