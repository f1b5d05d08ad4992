"""Each fixed convolution of a DS-NiN timed on each of its paths, beside the path its cost rule takes.

    python benchmarks/fixed_paths.py [--shape 3x32x32] [--batch 128] [--repeats 5]
        [--fraction F | --weights FILE] [--json PATH]

A fixed ``odct3`` convolution computes its output through one of three paths
(``FixedConv2d.PATHS``: fully factored, channel-factored, dense), chosen by
``FixedConv2d.path`` from multiply-add counts. This script runs the model's
evaluation forward once to get each fixed layer's real input (its memory
layout included), then times that layer alone on every path, in turns:
the evaluation forward, and a training forward + backward (an output
gradient in the layout of the layer's output; no input gradient for the
first layer, as in training). It prints milliseconds, the multiply-adds of
each path, the path the rule takes, and the largest difference of each
path's output from the dense one relative to the output's largest value.
``--fraction F`` first prunes the model as ``benchmarks/pruned_inference.py``
does with synthetic sparsity F, ``--weights FILE`` loads and prunes a trained
file; docs/performance.md says what the figures show.
"""

import argparse
import contextlib
import json
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from pruned_inference import synthetic  # noqa: E402 (a sibling script)


def fixed_inputs(model, x):
    """[(name, layer, input)] of every fixed convolution of ``model`` in an evaluation
    forward of the batch ``x``, each input as the network hands it over."""
    found = []
    for name, layer in model.named_layers():
        if getattr(layer, "fixed", False):
            found.append((name, layer, x))
        x = layer.forward(x, train=False)
    return found


def paths_of(layer, x):
    """The paths ``layer`` has for the input ``x`` (those it counts multiply-adds for)."""
    return list(layer.multiply_adds(*x.shape[2:]))


@contextlib.contextmanager
def forced(layer, path):
    """Run ``layer`` on ``path`` inside the block; its own choice is back after it."""
    before, layer.force_path = layer.force_path, path
    try:
        yield
    finally:
        layer.force_path = before


def path_outputs(layer, x):
    """{path: evaluation output of ``layer`` on ``x``} for every path the layer has."""
    outputs = {}
    for path in paths_of(layer, x):
        with forced(layer, path):
            outputs[path] = layer.forward(x, train=False)
    return outputs


def time_paths(layer, x, first, repeats):
    """{path: (evaluation s, training s)}, medians of ``repeats`` turns over the paths."""
    paths = paths_of(layer, x)
    y = layer.forward(x, train=False)
    dy = np.empty_like(y)  # the output's layout
    dy[...] = np.random.default_rng(2).standard_normal(y.shape)
    needs_input_grad, layer.needs_input_grad = layer.needs_input_grad, not first

    def train():
        layer.forward(x, train=True)
        layer.backward(dy)

    def evaluate():
        layer.forward(x, train=False)

    runs = {(path, kind): fn for path in paths for kind, fn in (("eval", evaluate), ("train", train))}
    times = {key: [] for key in runs}
    try:
        for _ in range(repeats + 1):  # the first turn warms up
            for (path, kind), fn in runs.items():
                with forced(layer, path):
                    start = time.perf_counter()
                    fn()
                    times[path, kind].append(time.perf_counter() - start)
    finally:
        layer.needs_input_grad = needs_input_grad
    return {path: tuple(statistics.median(times[path, kind][1:]) for kind in ("eval", "train"))
            for path in paths}


def relative_differences(outputs):
    """{path: max |output − dense output| / max |dense output|}."""
    dense = outputs["dense"].astype(np.float64)
    scale = max(float(np.abs(dense).max()), np.finfo(np.float64).tiny)
    return {path: float(np.abs(out - dense).max()) / scale for path, out in outputs.items()}


def main():
    from minids.io import load_model
    from minids.models import build_model
    from minids.prune import prune_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="3x32x32", help="C x H x W of one image (not with --weights)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--fraction", type=float, help="prune synthetic sparsity F first")
    source.add_argument("--weights", help="a trained DS-NiN weights file, pruned first")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()

    if args.weights:
        trained = load_model(args.weights)
        model, shape = prune_model(trained), tuple(trained.weights_attrs["input_shape"])
    else:
        shape = tuple(int(v) for v in args.shape.split("x"))
        model = (prune_model(synthetic(args.fraction, shape)) if args.fraction is not None
                 else build_model("ds-nin", in_channels=shape[0], seed=0))
    x = np.random.default_rng(1).standard_normal((args.batch, *shape)).astype(np.float32)
    rows = []
    print(f"{'layer':6} {'in':>4} {'out':>4} {'size':>5} {'rule':9} {'path':9} {'eval ms':>8} "
          f"{'train ms':>9} {'mult-adds/image':>16} {'rel. diff':>9}")
    first = next(iter(model.named_layers()))[0]
    for name, layer, layer_x in fixed_inputs(model, x):
        h, w = layer_x.shape[2:]
        rule = layer.path(h, w)
        seconds = time_paths(layer, layer_x, name == first, args.repeats)
        diffs = relative_differences(path_outputs(layer, layer_x))
        costs = layer.multiply_adds(h, w)
        for path, (eval_s, train_s) in seconds.items():
            rows.append({"layer": name, "c_in": layer.c_in, "c_out": layer.c_out, "size": [h, w],
                         "rule": rule, "path": path, "eval_seconds": eval_s, "train_seconds": train_s,
                         "multiply_adds": costs[path], "relative_difference": diffs[path]})
            print(f"{name:6} {layer.c_in:4d} {layer.c_out:4d} {h:2d}x{w:<2d} {rule:9} {path:9} "
                  f"{eval_s * 1e3:8.1f} {train_s * 1e3:9.1f} {costs[path]:16,d} {diffs[path]:9.1e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"shape": list(shape), "batch": args.batch, "fraction": args.fraction,
                       "weights": args.weights, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
