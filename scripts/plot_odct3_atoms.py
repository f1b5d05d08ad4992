"""Draw the odct3 atoms of DS-NiN's first layer for 3-channel input (3 -> 192, 5x5), in colour.

Each tile is one output's 5x5x3 atom, RGB = the three input channels, one
scale for all (mid-grey = 0); the 192 atoms are the first 192 columns of the
(5, 7, 7) Kronecker grid, channel frequency slowest. Drawn by
``minids analyze``'s atoms figure from a freshly built model.

    python scripts/plot_odct3_atoms.py [OUT.png]    (default docs/img/odct3_atoms_conv1.png)
"""

import sys
import tempfile
from pathlib import Path

from minids.analysis.figures import plot_atoms
from minids.io import WeightsFile, layer_arrays, write_weights
from minids.models import build_model

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "img" / "odct3_atoms_conv1.png"


def main(out):
    model = build_model("ds-nin", in_channels=3)
    attrs = {"model": "ds-nin", "input_shape": [3, 32, 32], "num_classes": 10, "dictionary": "odct3",
             "widths": list(model.widths), "seed": 0, "dataset": "3x32x32",
             "layer_order": [name for name, _ in model.conv_layers()],
             "coefficient_layers": model.coefficient_layers()}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "odct3-3x32x32.h5"
        write_weights(path, WeightsFile(attrs, layer_arrays(model), {"kind": "none"}))
        print(plot_atoms(path, out))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)
