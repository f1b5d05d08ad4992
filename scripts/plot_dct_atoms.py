"""Draw the fixed DCT atoms of the first DS-NiN layer (3 -> 192, 5x5) as a grid.

The 576 atoms form the 24 x 24 grid of ``odct2d(5, 24)``: row = vertical
frequency i_v, column = horizontal frequency i_h; the weight of output o,
input i is the atom at row (3*o + i) // 24, column (3*o + i) % 24.

    python scripts/plot_dct_atoms.py [OUT.png]    (default docs/img/dct_atoms_conv1.png)
"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from minids.dictionary import atoms_per_axis, dct_conv_weight  # noqa: E402

C_OUT, C_IN, K = 192, 3, 5
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "img" / "dct_atoms_conv1.png"


def mosaic(atoms, m, gap=1):
    """Tile (m*m, k, k) atoms row-major into one 2-D image, NaN between tiles."""
    k = atoms.shape[-1]
    side = m * (k + gap) + gap
    image = np.full((side, side), np.nan)
    for index, atom in enumerate(atoms):
        row, col = divmod(index, m)
        top, left = gap + row * (k + gap), gap + col * (k + gap)
        image[top:top + k, left:left + k] = atom
    return image


def main(out):
    m = atoms_per_axis(C_OUT, C_IN)
    atoms = dct_conv_weight(C_OUT, C_IN, K, dtype=np.float64).reshape(-1, K, K)
    image = mosaic(atoms, m)
    limit = np.abs(atoms).max()
    cmap = plt.get_cmap("gray").copy()
    cmap.set_bad("#4a7fb0")
    fig, ax = plt.subplots(figsize=(8, 8), dpi=150)
    ax.imshow(image, cmap=cmap, vmin=-limit, vmax=limit, interpolation="nearest")
    ax.set_title(f"odct2: {m}x{m} grid of {K}x{K} atoms, conv1 ({C_IN}->{C_OUT})\n"
                 "rows: vertical frequency, columns: horizontal frequency")
    ax.set_axis_off()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
    print(out)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)
