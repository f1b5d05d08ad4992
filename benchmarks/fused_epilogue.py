"""A coefficient layer with its bias and ReLU: separate passes (minids), fused per block of pixels, or the bias in the GEMMs.

    python benchmarks/fused_epilogue.py [--shape 3x32x32] [--batch 128] [--block 4096] [--repeats 5]

minids runs a 1×1 convolution followed by a ReLU as whole-batch passes over
the (C, P) channel-major matrices (P = N·H·W pixels): forward one GEMM
Y = W @ X, then the bias pass, then the ReLU and its mask; backward the mask
product dY ⊙ mask, the bias sum, the weight gradient dY @ Xᵀ and the input
gradient Wᵀ @ dY. Each element-wise pass streams an activation-sized matrix
from memory. The fused variant does all of a pass's work on one block of
``--block`` pixels (columns) at a time while the block is in cache, so only
the GEMMs touch memory. The ones-row variant keeps the whole-batch passes
but computes the bias inside the GEMMs, as Caffe did: the input carries an
extra row of ones (which the layer before would allocate with its output),
so Y = [W | b] @ [X; 1] adds the bias and the weight gradient
dY @ [X; 1]ᵀ = [dW | db] sums it; the bias pass and the bias sum go. All
split the pixels over minids' threads (``MINIDS_THREADS``, default all
cores) as :mod:`minids.backend.threads` does. The script prints
milliseconds per layer and pass for DS-NiN's coefficient layers at
``--shape``; docs/performance.md says what it shows.
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from gemm_layout import best_seconds, coefficient_gemms  # noqa: E402 (a sibling script)


def relu_with_mask(y, mask):
    """y ← max(y, 0) and mask ← y > 0, in place, whole (M, P) rows split over the threads; (y, mask)."""
    import numpy as np

    from minids.backend import threads

    def relu(lo, hi):
        np.maximum(y[lo:hi], 0, out=y[lo:hi])
        np.greater(y[lo:hi], 0, out=mask[lo:hi])

    threads.for_blocks(np, y.shape[0], y.size, relu)
    return y, mask


def masked_gradient(dy, mask, dz):
    """dz ← dy ⊙ mask, (M, P) rows split over the threads."""
    import numpy as np

    from minids.backend import threads

    threads.for_blocks(np, dz.shape[0], dz.size,
                       lambda lo, hi: np.multiply(dy[lo:hi], mask[lo:hi], out=dz[lo:hi]))


def separate_passes(w, b, x, dy):
    """(forward, backward) callables in minids' whole-batch order, for weight ``w``
    (M, K), bias ``b`` (M,), input ``x`` (K, P) and output gradient ``dy`` (M, P).
    forward() → (y, mask): y = relu(w @ x + b) (M, P), mask = y > 0; backward()
    (after a forward) → (dW (M, K), db (M,), dX (K, P)) for the gradient dy
    of y; ``dy`` is left as it was."""
    import numpy as np

    from minids.backend import threads

    m, p = w.shape[0], x.shape[1]
    y, mask, dz = np.empty((m, p), w.dtype), np.empty((m, p), bool), np.empty((m, p), w.dtype)
    bias = b[:, None]

    def forward():
        threads.matmul(w, x, out=y)
        threads.for_blocks(np, m, y.size, lambda lo, hi: np.add(y[lo:hi], bias[lo:hi], out=y[lo:hi]))
        return relu_with_mask(y, mask)

    def backward():
        masked_gradient(dy, mask, dz)
        return threads.matmul_nt(dz, x), dz.sum(axis=1), threads.matmul(w.T, dz)

    return forward, backward


def fused_blocks(w, b, x, dy, block):
    """The same (forward, backward) as :func:`separate_passes`, each thread doing
    all the work of one pass on ``block`` pixels at a time."""
    import numpy as np

    from minids.backend import threads

    m, k, p = w.shape + (x.shape[1],)
    y, mask, dz = np.empty((m, p), w.dtype), np.empty((m, p), bool), np.empty((m, p), w.dtype)
    dx = np.empty((k, p), w.dtype)
    bias = b[:, None]
    parts = threads.gemm_blocks(np, p)

    def in_threads(work):
        return threads.run_gemms([lambda lo=lo, hi=hi: work(lo, hi) for lo, hi in parts])

    def forward():
        def work(lo, hi):
            for start in range(lo, hi, block):
                cols = slice(start, min(start + block, hi))
                out = y[:, cols]
                np.matmul(w, x[:, cols], out=out)
                np.add(out, bias, out=out)
                np.maximum(out, 0, out=out)
                np.greater(out, 0, out=mask[:, cols])

        in_threads(work)
        return y, mask

    def backward():
        def work(lo, hi):
            dw, db = np.zeros((m, k), w.dtype), np.zeros(m, w.dtype)
            for start in range(lo, hi, block):
                cols = slice(start, min(start + block, hi))
                grad = np.multiply(dy[:, cols], mask[:, cols], out=dz[:, cols])
                db += grad.sum(axis=1)
                dw += grad @ x[:, cols].T
                np.matmul(w.T, grad, out=dx[:, cols])
            return dw, db

        partials = in_threads(work)
        return sum(dw for dw, _ in partials), sum(db for _, db in partials), dx

    return forward, backward


def ones_row(w, b, x, dy):
    """The same (forward, backward) as :func:`separate_passes`, the bias computed
    in the GEMMs through a row of ones below a copy of ``x`` (made here, once)."""
    import numpy as np

    from minids.backend import threads

    m, k, p = w.shape + (x.shape[1],)
    x_ones = np.empty((k + 1, p), w.dtype)
    x_ones[:k], x_ones[k] = x, 1
    y, mask, dz = np.empty((m, p), w.dtype), np.empty((m, p), bool), np.empty((m, p), w.dtype)

    def forward():
        threads.matmul(np.concatenate([w, b[:, None]], axis=1), x_ones, out=y)
        return relu_with_mask(y, mask)

    def backward():
        masked_gradient(dy, mask, dz)
        dw_db = threads.matmul_nt(dz, x_ones)
        return dw_db[:, :k], dw_db[:, k], threads.matmul(w.T, dz)

    return forward, backward


VARIANTS = ("separate", "fused", "ones row")


def measure(m, k, p, block, repeats):
    """{(variant, pass): seconds} for one (M, K, P) layer in float32."""
    import numpy as np

    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal(m, dtype=np.float32)
    x, dy = rng.standard_normal((k, p), dtype=np.float32), rng.standard_normal((m, p), dtype=np.float32)
    times = {}
    for variant, (forward, backward) in zip(VARIANTS, (separate_passes(w, b, x, dy),
                                                       fused_blocks(w, b, x, dy, block), ones_row(w, b, x, dy))):
        times[variant, "forward"] = best_seconds(forward, repeats)
        times[variant, "backward"] = best_seconds(backward, repeats)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="3x32x32", help="C x H x W of one image")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--block", type=int, default=4096, help="pixels per fused block")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from minids.backend import threads

    shape = tuple(int(v) for v in args.shape.split("x"))
    print(f"DS-NiN {args.shape}, batch {args.batch}, {threads.THREADS} threads, block {args.block} "
          f"pixels; ms, best of {args.repeats}")
    print(f"{'layer':6} {'M':>4} {'K':>4} {'P':>7} " + " ".join(
        f"{phase + ' ' + variant:>12}" for phase in ("fw", "bw") for variant in VARIANTS))
    totals = {}
    for name, m, k, p in coefficient_gemms(shape, args.batch):
        times = measure(m, k, p, args.block, args.repeats)
        for key, seconds in times.items():
            totals[key] = totals.get(key, 0.0) + seconds
        ms = [times[v, phase] * 1e3 for phase in ("forward", "backward") for v in VARIANTS]
        print(f"{name:6} {m:4d} {k:4d} {p:7d} " + " ".join(f"{t:12.1f}" for t in ms))
    total = {v: (totals[v, "forward"] + totals[v, "backward"]) * 1e3 for v in VARIANTS}
    print("all coefficient layers, forward + backward: " + ", ".join(
        f"{total[v]:.0f} ms {v} ({total['separate'] / total[v]:.2f}x)" for v in VARIANTS))


if __name__ == "__main__":
    main()
