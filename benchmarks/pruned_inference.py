"""Inference speed of a pruned DS-NiN against its FLOPs.

    python benchmarks/pruned_inference.py [--weights FILE] [--fractions 0.25,0.5,0.75]
        [--shape 3x32x32] [--batch 128] [--repeats 5] [--torch] [--json PATH]

With ``--weights`` the trained DS-NiN in FILE is pruned as ``minids prune``
does. Without it a freshly built DS-NiN gets synthetic structured sparsity:
for each fraction f, a random f of every coefficient layer's input columns
and f/2 of its filters are zeroed (the patterns the L1 shrink produces when
it kills a whole atom or a whole filter). For each model the dense and the
pruned network are timed alternately in one process (evaluation forward, batch
``--batch``, median of ``--repeats``), and the speed-up is printed beside the
FLOP ratio (:func:`minids.flops.model_flops`) and the largest logit difference.
With ``--torch`` the same two networks converted to PyTorch
(``torch_models.to_torch``: frozen bias-free convolutions) are timed in the
same turns, and minids' images/s are given as ratios to PyTorch's.
"""

import argparse
import json
import statistics
import time

import numpy as np

from minids.flops import model_flops
from minids.io import load_model
from minids.models import build_model
from minids.prune import check_same_function, prune_model


def synthetic(fraction, shape, seed=0):
    """A DS-NiN on ``shape`` with ``fraction`` of the coefficient columns and half
    that of the filters zeroed, and random biases."""
    rng = np.random.default_rng(seed)
    model = build_model("ds-nin", in_channels=shape[0], seed=seed)
    for key, bias in model.params.items():
        if key.endswith(".bias"):
            bias[...] = rng.uniform(-0.1, 0.1, bias.shape)
    for name in model.coefficient_layers():
        w = model[name].params["weight"]
        w[:, rng.permutation(w.shape[1])[:int(fraction * w.shape[1])]] = 0
        w[rng.permutation(w.shape[0])[:int(fraction / 2 * w.shape[0])]] = 0
    return model


def time_alternating(forwards, repeats):
    """Median seconds of each evaluation forward (callables), timed in turns."""
    times = [[] for _ in forwards]
    for forward in forwards:
        forward()
    for _ in range(repeats):
        for i, forward in enumerate(forwards):
            start = time.perf_counter()
            forward()
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def torch_forward(model, x):
    """An evaluation forward of ``model`` converted to PyTorch, on ``x``."""
    import torch

    from torch_models import to_torch

    net, tx = to_torch(model).eval(), torch.from_numpy(x)

    def forward():
        with torch.no_grad():
            return net(tx)
    return forward


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", help="a trained DS-NiN weights file")
    parser.add_argument("--fractions", default="0.25,0.5,0.75")
    parser.add_argument("--shape", default="3x32x32")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--torch", action="store_true", help="time PyTorch on the same networks too")
    parser.add_argument("--json", help="write the results to this JSON file")
    args = parser.parse_args()

    if args.weights:
        model = load_model(args.weights)
        cases = [(args.weights, model, tuple(model.weights_attrs["input_shape"]))]
    else:
        shape = tuple(int(v) for v in args.shape.split("x"))
        cases = [(f"synthetic f={f}", synthetic(float(f), shape), shape)
                 for f in args.fractions.split(",")]
    rows = []
    print(f"{'model':22s} {'widths':34s} {'FLOPs':>7s} {'fact.':>6s} {'speed-up':>8s} {'dense/s':>8s} "
          f"{'pruned/s':>8s} {'max|dlogit|':>11s}")
    for label, model, shape in cases:
        pruned = prune_model(model)
        x = np.random.default_rng(1).standard_normal((args.batch, *shape)).astype(np.float32)
        forwards = [lambda net=net: net.forward(x, train=False) for net in (model, pruned)]
        if args.torch:
            forwards += [torch_forward(net, x) for net in (model, pruned)]
        seconds = time_alternating(forwards, args.repeats)
        dense_s, pruned_s = seconds[:2]
        counts = model_flops(model, shape), model_flops(pruned, shape)
        flops = counts[1]["total"] / counts[0]["total"]
        factored = counts[1]["factored_total"] / counts[0]["factored_total"]
        diff, _ = check_same_function(model, pruned, shape)
        row = {"model": label, "widths": list(pruned.widths), "flop_ratio": flops,
               "factored_flop_ratio": factored,
               "speedup": dense_s / pruned_s, "dense_images_per_s": args.batch / dense_s,
               "pruned_images_per_s": args.batch / pruned_s, "max_logit_diff": diff}
        if args.torch:
            row["torch_dense_images_per_s"], row["torch_pruned_images_per_s"] = (
                args.batch / t for t in seconds[2:])
        rows.append(row)
        print(f"{label:22s} {str(row['widths']):34s} {flops:7.3f} {factored:6.3f} {row['speedup']:8.2f} "
              f"{row['dense_images_per_s']:8.1f} {row['pruned_images_per_s']:8.1f} {diff:11.2e}")
        if args.torch:
            print(f"{'':22s} PyTorch: {row['torch_dense_images_per_s']:.1f} dense/s, "
                  f"{row['torch_pruned_images_per_s']:.1f} pruned/s; minids/PyTorch "
                  f"{seconds[2] / seconds[0]:.2f} dense, {seconds[3] / seconds[1]:.2f} pruned")
    print("FLOPs: pruned/unpruned per image, fixed layers dense; fact.: the same as computed "
          "(factored); speed-up: unpruned time / pruned time")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(rows, out, indent=1)


if __name__ == "__main__":
    main()
