"""The coefficient layers' GEMMs in minids' channel-major layout and in a channels-last one.

    python benchmarks/gemm_layout.py [--shape 3x32x32] [--batch 128] [--repeats 5] [--row-pad N]
        [--threads N] [--json FILE]

A 1×1 convolution of a batch is one GEMM per pass. minids keeps activations
channel-major, (C, N·H·W) in memory, so with weight W (M, K) and input X
(K, P), P = N·H·W pixels:

* forward        Y (M, P)  = W  @ X
* input gradient dX (K, P) = Wᵀ @ dY
* weight gradient dW (M, K) = dY @ Xᵀ

Channels last, (N·H·W, C) in memory, the same products are Xᵀ @ Wᵀ, dYᵀ @ W
and dYᵀᵀ @ Xᵀ: the same FLOPs on the same data, only the order the BLAS
sees the operands in differs. This script times both for every coefficient
layer of DS-NiN at ``--shape`` (the best of ``--repeats``) and prints GFLOP/s
per pass and the milliseconds of one step's coefficient GEMMs in each
layout. ``--threads N`` (default 1) splits every product over N threads as
minids does (``minids.backend.threads``: the pixels of a forward or input
gradient, the K axis of a weight gradient; one single-threaded BLAS call per
thread). ``--row-pad N`` gives every channel-major operand and
result a row pitch of P + N floats instead of P (N·H·W is a multiple of 4 KiB
at these shapes); docs/performance.md says what it shows.
"""

import argparse
import json
import os
import time


def best_seconds(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def coefficient_gemms(shape, batch):
    """[(layer name, M, K, P)] for DS-NiN's coefficient layers on ``shape`` (C, H, W)."""
    from minids.layers import Conv2d
    from minids.models import build_model

    model = build_model("ds-nin", in_channels=shape[0], num_classes=10, seed=0)
    gemms, current = [], shape
    for name, layer in model.named_layers():
        if isinstance(layer, Conv2d) and not layer.fixed and layer.is_pointwise:
            gemms.append((name, layer.c_out, layer.c_in, batch * current[1] * current[2]))
        current = layer.output_shape(current)
    return gemms


def padded_rows(rows, p, row_pad, dtype):
    """An empty (rows, p) array whose rows lie ``row_pad`` elements further apart than p."""
    import numpy as np

    return np.empty((rows, p + row_pad), dtype)[:, :p]


def layout_products(w, x_cm, dy_cm, row_pad=0):
    """{pass: (channel-major product, channels-last product)} as callables, for weight
    ``w`` (M, K), input ``x_cm`` (K, P) and output gradient ``dy_cm`` (M, P); the
    channels-last ones take contiguous (P, ·) copies and give the transposed result
    (the weight gradient: the same (M, K)). The channel-major ones read copies of
    ``x_cm`` and ``dy_cm`` and write results with a row pitch of P + ``row_pad``."""
    import numpy as np

    from minids.backend import threads

    x_cl, dy_cl, w_t = (np.ascontiguousarray(a.T) for a in (x_cm, dy_cm, w))
    m, k, p = w.shape + (x_cm.shape[1],)
    x_rows, dy_rows = padded_rows(k, p, row_pad, w.dtype), padded_rows(m, p, row_pad, w.dtype)
    x_rows[...], dy_rows[...] = x_cm, dy_cm
    y_cm, dx_cm = padded_rows(m, p, row_pad, w.dtype), padded_rows(k, p, row_pad, w.dtype)
    y_cl, dx_cl = np.empty((p, m), w.dtype), np.empty((p, k), w.dtype)
    return {
        "forward": (lambda: threads.matmul(w, x_rows, out=y_cm),
                    lambda: threads.matmul_rows(x_cl, w_t, out=y_cl)),
        "input gradient": (lambda: threads.matmul(w_t, dy_rows, out=dx_cm),
                           lambda: threads.matmul_rows(dy_cl, w, out=dx_cl)),
        "weight gradient": (lambda: threads.matmul_nt(dy_rows, x_rows),
                            lambda: threads.matmul_nt(dy_cl.T, x_cl.T)),
    }


def measure(m, k, p, repeats, row_pad=0):
    """{pass: (channel-major s, channels-last s)} for one (M, K, P) layer in float32."""
    import numpy as np

    rng = np.random.default_rng(0)
    products = layout_products(rng.standard_normal((m, k), dtype=np.float32),
                               rng.standard_normal((k, p), dtype=np.float32),
                               rng.standard_normal((m, p), dtype=np.float32), row_pad)
    return {phase: tuple(best_seconds(fn, repeats) for fn in pair) for phase, pair in products.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="3x32x32", help="C x H x W of one image")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--row-pad", type=int, default=0,
                        help="floats of padding after each channel-major row [default: 0]")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads each product is split over, as minids splits it [default: 1]")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    # one BLAS thread per call, set before NumPy loads OpenBLAS (here, not at import:
    # fused_epilogue.py imports this); minids splits the products over --threads
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("MINIDS_THREADS", str(args.threads))
    shape = tuple(int(v) for v in args.shape.split("x"))
    rows, totals = [], [0.0, 0.0]
    print(f"{'layer':6} {'M':>4} {'K':>4} {'P':>7} {'pass':16} {'GFLOP/s C-major':>16} "
          f"{'GFLOP/s C-last':>15}")
    for name, m, k, p in coefficient_gemms(shape, args.batch):
        flop = 2.0 * m * k * p
        for phase, seconds in measure(m, k, p, args.repeats, args.row_pad).items():
            rate = [flop / s / 1e9 for s in seconds]
            totals = [t + s for t, s in zip(totals, seconds)]
            rows.append({"layer": name, "M": m, "K": k, "P": p, "pass": phase,
                         "seconds_channel_major": seconds[0], "seconds_channels_last": seconds[1]})
            print(f"{name:6} {m:4d} {k:4d} {p:7d} {phase:16} {rate[0]:16.1f} {rate[1]:15.1f}")
    print(f"one step's coefficient GEMMs, {args.threads} thread(s): {totals[0] * 1e3:.0f} ms channel-major, "
          f"{totals[1] * 1e3:.0f} ms channels-last ({totals[0] / totals[1]:.2f}x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"shape": args.shape, "batch": args.batch, "row_pad": args.row_pad,
                       "threads": args.threads, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
