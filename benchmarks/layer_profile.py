"""Where a training step's time goes: milliseconds per layer, minids beside PyTorch.

    python benchmarks/layer_profile.py [--model ds-nin] [--shape 3x32x32] [--batch 128]
        [--steps 5] [--threads N] [--dropout P]

minids: each layer's forward and backward inside ``Sequential.forward`` /
``backward`` (the layers' methods are wrapped with timers, so the in-place
ReLUs run as in training), plus the update, medians over ``--steps`` steps
after two warm-up steps. PyTorch (``pip install torch==2.13.0``, optional):
each module's forward through forward hooks; its backward is one autograd
call and is given as a whole. Both in float32 with ``--threads`` threads
(default: all cores) and minids' start-up allocator setting
(:mod:`minids.allocator`) in this process, so PyTorch gets it too
(the "tuned" allocator of ``train_step.py``). The totals include the timers'
overhead, a few microseconds per layer; ``train_step.py`` is the figure of
record (docs/performance.md).
"""

import argparse
import importlib.util
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _set_threads(threads):
    for key in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "MINIDS_THREADS"):
        os.environ[key] = str(threads)


def profile_minids(args, shape):
    """({layer: (forward ms, backward ms)}, step ms) of minids."""
    import numpy as np

    from minids.allocator import keep_freed_memory
    from minids.layers import SoftmaxNLL
    from minids.models import build_model
    from minids.optim import MomentumShrink

    keep_freed_memory()
    model = build_model(args.model, in_channels=shape[0], num_classes=10, seed=0, dropout=args.dropout)
    model.needs_input_grad = False
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch,) + shape, dtype=np.float32)
    y = rng.integers(0, 10, args.batch)
    loss, opt = SoftmaxNLL(), MomentumShrink(0.01, momentum=0.9, zeta=1e-5)
    times = {}

    def timed(name, phase, method):
        def call(*a, **kw):
            start = time.perf_counter()
            out = method(*a, **kw)
            times.setdefault((name, phase), []).append(time.perf_counter() - start)
            return out
        return call

    for name, layer in model.named_layers():
        layer.forward = timed(name, "forward", layer.forward)
        layer.backward = timed(name, "backward", layer.backward)
    steps = []
    for step in range(args.steps + 2):
        if step == 2:
            times.clear()
        start = time.perf_counter()
        loss.forward(model.forward(x, train=True), y)
        model.backward(loss.backward())
        update = time.perf_counter()
        opt.step(model.params, model.grads)
        times.setdefault(("update", "backward"), []).append(time.perf_counter() - update)
        steps.append(time.perf_counter() - start)
    ms = {key: 1000 * statistics.median(values) for key, values in times.items()}
    names = [name for name, _ in model.named_layers()] + ["update"]
    return ({name: (ms.get((name, "forward")), ms.get((name, "backward"))) for name in names},
            1000 * statistics.median(steps[2:]))


def profile_torch(args, shape):
    """({module: forward ms}, backward ms, step ms) of the same network in PyTorch."""
    import numpy as np
    import torch

    from minids.models import build_model
    sys.path.insert(0, HERE)
    from torch_models import TorchMomentumShrink, to_torch

    torch.set_num_threads(args.threads)
    model = to_torch(build_model(args.model, in_channels=shape[0], num_classes=10, seed=0,
                                 dropout=args.dropout))
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((args.batch,) + shape, dtype=np.float32))
    y = torch.from_numpy(rng.integers(0, 10, args.batch))
    loss = torch.nn.CrossEntropyLoss()
    opt = TorchMomentumShrink(model.parameters(), 0.01, momentum=0.9, zeta=1e-5)
    times, started = {}, {}
    for name, module in model.named_children():
        module.register_forward_pre_hook(lambda m, i, name=name: started.__setitem__(name, time.perf_counter()))
        module.register_forward_hook(lambda m, i, o, name=name: times.setdefault(name, []).append(
            time.perf_counter() - started[name]))
    backward, steps = [], []
    for step in range(args.steps + 2):
        if step == 2:
            times.clear()
            backward.clear()
        start = time.perf_counter()
        for p in opt.params:
            p.grad = None
        value = loss(model(x), y)
        middle = time.perf_counter()
        value.backward()
        backward.append(time.perf_counter() - middle)
        opt.step()
        steps.append(time.perf_counter() - start)
    return ({name: 1000 * statistics.median(values) for name, values in times.items()},
            1000 * statistics.median(backward), 1000 * statistics.median(steps[2:]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="ds-nin")
    parser.add_argument("--shape", default="3x32x32")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--dropout", type=float,
                        help="both dropout layers [default: the model's `minids train` default, "
                             "as in train_step.py]")
    args = parser.parse_args(argv)
    # before NumPy, PyTorch and minids (which reads MINIDS_THREADS on import) load their thread pools
    _set_threads(args.threads)
    if args.dropout is None:
        from minids.run_options import DEFAULT_DROPOUT_OF
        args.dropout = DEFAULT_DROPOUT_OF[args.model]
    shape = tuple(int(v) for v in args.shape.split("x"))
    layers, step = profile_minids(args, shape)
    if importlib.util.find_spec("torch") is not None:
        torch_forward, torch_backward, torch_step = profile_torch(args, shape)
    else:
        torch_forward = torch_backward = torch_step = None
    print(f"{args.model} {args.shape}, batch {args.batch}, {args.threads} threads; milliseconds")
    print(f"{'layer':8s} {'minids fw':>10s} {'minids bw':>10s} {'torch fw':>10s}")
    for name, (forward, back) in layers.items():
        extra = [torch_forward.get(n) for n in (name, name + "_bias", name + "_flat")] if torch_forward else []
        theirs = sum(v for v in extra if v is not None) if any(v is not None for v in extra) else None
        cells = [format(v, "10.1f") if v is not None else format("-", ">10") for v in (forward, back, theirs)]
        print(f"{name:8s} " + " ".join(cells))
    print(f"{'step':8s} {step:10.1f}" + ("" if torch_step is None else
                                         f"   torch: step {torch_step:.1f}, backward {torch_backward:.1f}"))


if __name__ == "__main__":
    main()
