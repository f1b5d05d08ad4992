"""Does computing the DCT convolutions separably (two 1-D passes) pay? Measured: no.

    OPENBLAS_NUM_THREADS=1 python benchmarks/separable_dct.py [--batch 8] [--repeats 3]

Times are CPU seconds of the process (best of ``--repeats``), which a loaded
machine disturbs less than wall time; run it with one BLAS thread.

Every kernel of an ``odct2`` fixed convolution is an outer product
``weight[o, i] = u_a ⊗ v_b`` of two 1-D DCT atoms, (a, b) = divmod(o·c_in + i, m)
(:func:`minids.dictionary.dct_conv_weight`). Separably:

1. horizontal pass: H[i, b] = x_i ⋆ v_b for every (input channel, 1-D atom)
   pair that occurs — one small GEMM per input channel, K = k;
2. vertical pass: y_o = Σ_i u_a(o,i) ⋆ H[i, b(o,i)] (vertical 1-D correlation).

Per output pixel that is c_in·|b|·k + c_out·c_in·k multiply-adds against
c_out·c_in·k² for the dense im2col GEMM (5×5, 96→192: 157k against 461k).
But every (o, i) pair has its own atom, so the vertical pass is a gather over
c_out·c_in distinct intermediate channels, not a GEMM, and the intermediate
holds c_in·|b| channels (13,056 for conv2: 28× the input). The script runs
both on the NiN conv2 and conv3 shapes, checks they agree, and prints the
times: the separable form loses by a wide margin on these channel counts, so
minids keeps the dense GEMM.
"""

import argparse
import time

import numpy as np

from minids.dictionary import atoms_per_axis, odct1d
from minids.layers import FixedConv2d
from minids.layers.base import swap_nc


def separable_conv(x, c_out, k, padding):
    """The odct2 fixed convolution of x (N, C, H, W), stride 1, computed separably."""
    n, c_in, h, w = x.shape
    m = atoms_per_axis(c_out, c_in)
    atoms = odct1d(k, m, dtype=x.dtype)                   # (k, m): columns are 1-D atoms
    t = np.arange(c_out * c_in).reshape(c_out, c_in)
    a, b = np.divmod(t, m)                                # vertical and horizontal atom of (o, i)
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    # horizontal pass for every (input channel, horizontal atom) pair in use
    used = [np.unique(b[:, i]) for i in range(c_in)]
    slot = np.zeros((c_in, m), dtype=np.int64)
    pieces = []
    for i in range(c_in):
        rows = np.stack([xp[:, i, :, j:j + w] for j in range(k)], axis=-1)   # (N, H+2p, W, k)
        pieces.append(np.moveaxis(rows @ atoms[:, used[i]], -1, 0))          # (|b_i|, N, H+2p, W)
        slot[i, used[i]] = sum(len(u) for u in used[:i]) + np.arange(len(used[i]))
    inter = np.concatenate(pieces)                                           # (Σ|b_i|, N, H+2p, W)
    # vertical pass: a gather of each (o, i) pair's intermediate channel
    y = np.zeros((c_out, n, h, w), dtype=x.dtype)
    gathered = slot[np.arange(c_in)[None, :], b]                             # (c_out, c_in)
    for r in range(k):
        coeff = atoms[r][a]                                                  # (c_out, c_in)
        for o in range(c_out):
            y[o] += np.tensordot(coeff[o], inter[gathered[o], :, r:r + h], axes=1)
    return swap_nc(y)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    from minids.dictionary import dct_conv_weight
    for label, c_in, c_out, k, size in (("conv2 5x5", 96, 192, 5, 16), ("conv3 3x3", 192, 192, 3, 8)):
        conv = FixedConv2d(dct_conv_weight(c_out, c_in, k), padding=k // 2)
        x = rng.standard_normal((args.batch, c_in, size, size)).astype(np.float32)
        dense = conv.forward(x, train=False)
        separable = separable_conv(x, c_out, k, k // 2)
        error = np.abs(dense - separable).max() / np.abs(dense).max()
        times = {}
        for name, fn in (("dense GEMM", lambda: conv.forward(x, train=False)),
                         ("separable", lambda: separable_conv(x, c_out, k, k // 2))):
            best = float("inf")
            for _ in range(args.repeats):
                start = time.process_time()
                fn()
                best = min(best, time.process_time() - start)
            times[name] = best
        print(f"{label} {c_in}->{c_out} on {size}x{size}, batch {args.batch}: "
              f"dense {times['dense GEMM'] * 1e3:.1f} ms, separable {times['separable'] * 1e3:.1f} ms "
              f"({times['separable'] / times['dense GEMM']:.1f}x slower), rel. difference {error:.1e}")


if __name__ == "__main__":
    main()
