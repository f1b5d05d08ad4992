"""Training-step and inference throughput of NiN and DS-NiN, minids beside PyTorch.

    python benchmarks/train_step.py [--json PATH] [--repeats R] [--steps S]
        [--models nin,ds-nin] [--shapes 3x32x32,1x28x28] [--batch 128]
        [--frameworks minids,trainer,torch] [--allocators default,tuned] [--devices cpu,gpu]
        [--dropout P]

Every measurement runs in a fresh subprocess (``--worker``), so its peak
memory is its own; within one repeat the frameworks alternate (minids, torch,
then in reverse order in the next repeat), so slow spells of a shared machine hit
both alike. Reported per configuration, as medians over the repeats:

* ``train``: images/s of a training step at batch ``--batch``: forward,
  softmax-NLL, backward, MomentumShrink update (PyTorch: the same update
  written with tensor ops, ``torch_models.TorchMomentumShrink``);
* ``infer``: images/s of an evaluation forward pass;
* ``device_mb`` (GPU only): the peak device memory in use during the timed
  steps: CuPy's memory pool (every allocation is routed through it and the
  pool's used bytes noted), ``torch.cuda.max_memory_allocated`` for PyTorch;
* ``peak_mb``: the process's peak resident memory (VmHWM) during the timed
  steps, the high-water mark being reset after setup (``/proc/self/clear_refs``);
  ``step_mb``: that peak minus the resident memory before the first step
  (model, data and libraries excluded);
* ``gemm_frac``: (GEMM FLOPs of the *trainable* convolutions in one step per
  image × images/s) ÷ the float32 GEMM rate NumPy reaches on this machine
  (2048³, best of 3), measured in the same worker just before the model is
  built, so that both see the same load (the rate printed first, measured
  once, is for reference). Those GEMMs are the forward of every trainable
  convolution, its weight gradient, and its input gradient unless it is the
  network's first layer (:func:`trainable_gemm_flops`): work that every
  framework does as dense GEMMs, whatever it does with the fixed dictionaries.
  So ``gemm_frac`` is the share of a step that no fixed-convolution trick can
  remove, and ``1 / gemm_frac`` of a framework is the most any other can be
  faster than it at this GEMM rate: the ``bound`` printed under the ratios
  (``ratio_bound_torch`` in the JSON; docs/performance.md).

Frameworks: ``minids`` times forward, loss, backward and update on one fixed
batch (as ``torch`` does); ``trainer`` times what ``minids train`` runs per
batch (:func:`minids.step.train_step`): the next batch from a
:class:`minids.data.BatchIterator` over uint8 images (on a GPU resident on
the device), normalisation, the device-side epoch sums, backward and update.

Allocators: ``default`` is glibc's; ``tuned`` sets ``MALLOC_MMAP_MAX_=0
MALLOC_TRIM_THRESHOLD_=100000000000`` so that large temporaries are reused
instead of being mapped, faulted in and unmapped every step. minids sets
the same thresholds itself at start-up (:mod:`minids.allocator`), unless
``MINIDS_MALLOC=default``, so its ``default`` row is what a user gets.

The models are built with the dropout ``minids train`` uses for each
(``--dropout``, default: 0 for DS-NiN, 0.5 for NiN; docs/training.md), so
the step measured is the step a user trains; a dropout layer with p = 0 is
skipped by both frameworks. The results in docs/performance.md before its
section "With the dropout users train with" were measured with 0.5 for both
models.

Both frameworks use the same number of threads (``--threads``, default: all
cores) and float32. PyTorch (``pip install torch==2.13.0``) is optional: without
it only minids is measured. PyTorch is used by the benchmarks only.
"""

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time

TUNED_MALLOC = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}
HERE = os.path.dirname(os.path.abspath(__file__))


# --------------------------------------------------------------------- worker

def _proc_status(key):
    """A /proc/self/status value in MB (e.g. 'VmHWM'), or None off Linux."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _reset_peak():
    """Reset VmHWM to the current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def _peak_mb():
    peak = _proc_status("VmHWM")
    if peak is None:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return peak


def _time_calls(fn, warmup, repeats, sync):
    """Median seconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _track_device_peak(xp):
    """Route CuPy's allocations through its pool, noting the pool's peak use;
    returns a function giving that peak in MB (None on NumPy)."""
    if xp.__name__ == "numpy":
        return lambda: None
    pool, peak = xp.get_default_memory_pool(), [0]

    def malloc(size):
        memory = pool.malloc(size)
        peak[0] = max(peak[0], pool.used_bytes())
        return memory

    xp.cuda.set_allocator(malloc)
    return lambda: peak[0] / 2**20


def _minids_runner(cfg):
    """(train_step, infer, sync, device_peak_mb) closures for minids on cfg['device']."""
    import numpy as np

    from minids.backend import get_module, to_device, to_host
    from minids.layers import SoftmaxNLL
    from minids.models import build_model
    from minids.optim import MomentumShrink

    try:  # what the minids command does at start-up (not with MINIDS_MALLOC=default)
        from minids.allocator import keep_freed_memory
        keep_freed_memory()
    except ImportError:  # a --baseline checkout from before minids.allocator
        pass
    xp = get_module(cfg["device"])
    device_peak = _track_device_peak(xp)
    c, h, w = cfg["shape"]
    model = build_model(cfg["model"], in_channels=c, num_classes=10, seed=0,
                        dropout=cfg["dropout"]).to(xp)
    model.needs_input_grad = False
    rng = np.random.default_rng(0)
    loss = SoftmaxNLL()
    opt = MomentumShrink(0.01, momentum=0.9, zeta=1e-5)
    if cfg["framework"] == "trainer":  # what `minids train` runs per batch, its data path included
        from minids.data import BatchIterator
        from minids.step import EpochSums, train_step as trainer_step
        images = rng.integers(0, 256, (8 * cfg["batch"], c, h, w), dtype=np.uint8)
        stats = {"kind": "standard", "mean": np.full(c, 120, np.float32), "std": np.full(c, 60, np.float32)}
        batches = BatchIterator(images, rng.integers(0, 10, len(images)), cfg["batch"], stats, xp)
        sums, stream = EpochSums(xp), iter(())

        def train_step():
            nonlocal stream
            batch = next(stream, None)
            if batch is None:
                stream = batches.epoch(0)
                batch = next(stream)
            trainer_step(model, loss, opt, sums, 0, *batch)

        x = next(iter(batches.epoch(0)))[0]
    else:
        x = to_device(rng.standard_normal((cfg["batch"], c, h, w), dtype=np.float32), xp)
        y = to_device(rng.integers(0, 10, cfg["batch"]), xp)

        def train_step():
            loss.forward(model.forward(x, train=True), y)
            model.backward(loss.backward())
            opt.step(model.params, model.grads)

    def infer():
        return model.forward(x, train=False)

    def sync():
        to_host(model.params["cccp6.bias"])

    return train_step, infer, sync, device_peak


def _torch_runner(cfg):
    """(train_step, infer, sync, device_peak_mb) closures for the same network in PyTorch."""
    import numpy as np
    import torch

    from minids.models import build_model
    from torch_models import TorchMomentumShrink, to_torch

    torch.set_num_threads(cfg["threads"])
    device = "cuda" if cfg["device"] == "gpu" else "cpu"
    c, h, w = cfg["shape"]
    model = to_torch(build_model(cfg["model"], in_channels=c, num_classes=10, seed=0,
                                 dropout=cfg["dropout"])).to(device)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((cfg["batch"], c, h, w), dtype=np.float32)).to(device)
    y = torch.from_numpy(rng.integers(0, 10, cfg["batch"])).to(device)
    loss = torch.nn.CrossEntropyLoss()
    opt = TorchMomentumShrink(model.parameters(), 0.01, momentum=0.9, zeta=1e-5)

    def train_step():
        model.train()
        for p in opt.params:
            p.grad = None
        loss(model(x), y).backward()
        opt.step()

    @torch.no_grad()
    def infer():
        model.eval()
        return model(x)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def device_peak():
        return torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None

    return train_step, infer, sync, device_peak


def _gemm_rate_here(size=2048, repeats=3):
    """Best float32 GEMM rate (FLOP/s) of NumPy's BLAS in this process, now."""
    import numpy as np

    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    a @ a
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


def worker(cfg):
    """Measure one configuration; print one JSON line."""
    gemm = _gemm_rate_here()
    runner = _torch_runner if cfg["framework"] == "torch" else _minids_runner
    train_step, infer, sync, device_peak = runner(cfg)
    base = _proc_status("VmRSS")
    reset = _reset_peak()
    train_s = _time_calls(train_step, cfg["warmup"], cfg["steps"], sync)
    peak = _peak_mb()
    infer_s = _time_calls(infer, 1, cfg["steps"], sync)
    batch = cfg["batch"]
    print(json.dumps({"train": batch / train_s, "infer": batch / infer_s, "peak_mb": peak,
                      "step_mb": peak - base if (reset and base is not None) else None,
                      "device_mb": device_peak(), "gemm_flops_per_s": gemm}))


# --------------------------------------------------------------------- parent

def gemm_rate(threads, size=2048, repeats=5):
    """Best float32 GEMM rate (FLOP/s) of NumPy's BLAS at ``size``³, in a subprocess."""
    code = ("import numpy as np, time\n"
            f"a = np.random.rand({size}, {size}).astype(np.float32); b = a.copy(); a @ b\n"
            "best = float('inf')\n"
            f"for _ in range({repeats}):\n"
            "    t = time.perf_counter(); a @ b; best = min(best, time.perf_counter() - t)\n"
            f"print(2 * {size}**3 / best)\n")
    out = subprocess.run([sys.executable, "-c", code], env=_env(threads, {}), check=True,
                         capture_output=True, text=True)
    return float(out.stdout.strip())


def trainable_gemm_flops(model_name, shape):
    """GEMM FLOPs per image of one training step's trainable convolutions (module docstring)."""
    from minids.flops import model_flops
    from minids.models import build_model

    model = build_model(model_name, in_channels=shape[0])
    flops = model_flops(model, shape)["layers"]
    convs = model.conv_layers()
    trainable = [(i, name) for i, (name, layer) in enumerate(convs) if not layer.fixed]
    forward_and_weight_grad = sum(2 * flops[name] for _, name in trainable)
    input_grad = sum(flops[name] for i, name in trainable if i > 0)
    return forward_and_weight_grad + input_grad


def _env(threads, extra):
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[key] = str(threads)
    for key in TUNED_MALLOC:
        env.pop(key, None)
    env.update(extra)
    return env


def run_worker(cfg, baseline=None):
    env = _env(cfg["threads"], TUNED_MALLOC if cfg["allocator"] == "tuned" else {})
    if cfg["framework"] == "baseline":
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [baseline, env.get("PYTHONPATH")]))
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(cfg)],
                         env=env, capture_output=True, text=True, cwd=HERE)
    if out.returncode != 0:
        raise RuntimeError(f"worker {cfg} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _available_frameworks(requested):
    frameworks = []
    for name in requested:
        if name == "torch" and importlib.util.find_spec("torch") is None:
            print("PyTorch is not installed: measuring minids only", file=sys.stderr)
            continue
        frameworks.append(name)
    return frameworks


def _device_ok(framework, device):
    if device == "cpu":
        return True
    if framework == "torch":
        import torch
        return torch.cuda.is_available()
    from minids.backend import gpu_available
    return gpu_available()


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _fmt(value, spec):
    """``value`` formatted with ``spec`` (e.g. '8.2f'), or '-' right-aligned to its width."""
    return format("-", ">" + spec.split(".")[0]) if value is None else format(value, spec)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="write the results to this JSON file")
    parser.add_argument("--models", default="nin,ds-nin")
    parser.add_argument("--shapes", default="3x32x32,1x28x28")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1, help="alternating rounds (median)")
    parser.add_argument("--frameworks", default="minids,torch")
    parser.add_argument("--allocators", default="default,tuned")
    parser.add_argument("--devices", default="auto", help="cpu, gpu, or auto (cpu and any gpu)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--baseline", metavar="DIR",
                        help="also measure the minids package found in DIR (e.g. an older "
                             "checkout: DIR/minids), as framework 'baseline'")
    parser.add_argument("--dropout", type=float,
                        help="both dropout layers of every model [default: each model's "
                             "`minids train` default]")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return
    from minids.run_options import DEFAULT_DROPOUT_OF

    models = args.models.split(",")
    dropout_of = {m: DEFAULT_DROPOUT_OF[m] if args.dropout is None else args.dropout for m in models}
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    devices = ["cpu", "gpu"] if args.devices == "auto" else args.devices.split(",")
    frameworks = _available_frameworks(args.frameworks.split(","))
    if args.baseline and "baseline" not in frameworks:
        frameworks.append("baseline")
    configs = [dict(model=m, shape=s, allocator=a, device=d, dropout=dropout_of[m])
               for d in devices for s in shapes for m in models
               for a in args.allocators.split(",")]
    configs = [c for c in configs if any(_device_ok(f, c["device"]) for f in frameworks)]
    rate = gemm_rate(args.threads)
    print(f"float32 GEMM rate (NumPy, {args.threads} threads): {rate / 1e9:.1f} GFLOP/s", flush=True)

    samples = {}
    for rep in range(args.repeats):
        order = frameworks if rep % 2 == 0 else frameworks[::-1]
        for cfg in configs:
            for framework in order:
                if not _device_ok(framework, cfg["device"]):
                    continue
                full = dict(cfg, framework=framework, batch=args.batch, steps=args.steps,
                            warmup=args.warmup, threads=args.threads)
                result = run_worker(full, args.baseline)
                key = (cfg["device"], cfg["shape"], cfg["model"], cfg["allocator"], framework)
                samples.setdefault(key, []).append(result)
                print(f"  [{rep + 1}/{args.repeats}] {framework:6s} {cfg['model']:6s} "
                      f"{'x'.join(map(str, cfg['shape']))} {cfg['device']} {cfg['allocator']:7s} "
                      f"train {result['train']:6.1f} img/s  infer {result['infer']:6.1f} img/s  "
                      f"peak {result['peak_mb']:6.0f} MB", flush=True)

    rows = []
    for cfg in configs:
        flops = trainable_gemm_flops(cfg["model"], cfg["shape"])
        row = dict(cfg, shape="x".join(map(str, cfg["shape"])), trainable_gemm_flops_per_image=flops)
        for framework in frameworks:
            runs = samples.get((cfg["device"], cfg["shape"], cfg["model"], cfg["allocator"], framework))
            if not runs:
                continue
            stats = {k: _median([r.get(k) for r in runs])
                     for k in ("train", "infer", "peak_mb", "step_mb", "device_mb")}
            stats["gemm_frac"] = (_median([r["train"] * flops / r["gemm_flops_per_s"] for r in runs])
                                  if cfg["device"] == "cpu" else None)
            stats["runs"] = runs
            row[framework] = stats
        for other in ("torch", "baseline"):
            if "minids" in row and other in row:
                row[f"ratio_{other}"] = {k: row["minids"][k] / row[other][k]
                                         for k in ("train", "infer", "peak_mb", "step_mb", "device_mb")
                                         if row["minids"][k] and row[other][k]}
        if "torch" in row and row["torch"]["gemm_frac"]:
            row["ratio_bound_torch"] = 1 / row["torch"]["gemm_frac"]
        rows.append(row)

    header = (f"{'device':6s} {'shape':8s} {'model':6s} {'alloc':7s} | {'fw':7s} {'train/s':>8s} "
              f"{'infer/s':>8s} {'peak MB':>8s} {'step MB':>8s} {'dev MB':>8s} {'GEMM%':>6s}")
    print("\n" + header + "\n" + "-" * len(header))
    for row in rows:
        lead = f"{row['device']:6s} {row['shape']:8s} {row['model']:6s} {row['allocator']:7s}"
        for framework in frameworks:
            if framework not in row:
                continue
            s = row[framework]
            frac = None if s["gemm_frac"] is None else 100 * s["gemm_frac"]
            print(f"{lead} | {framework:7s} {s['train']:8.1f} {s['infer']:8.1f} "
                  f"{s['peak_mb']:8.0f} {_fmt(s['step_mb'], '8.0f')} {_fmt(s['device_mb'], '8.0f')} "
                  f"{_fmt(frac, '6.1f')}")
            lead = " " * len(lead)
        for other in ("torch", "baseline"):
            r = row.get(f"ratio_{other}")
            if r:
                label = "/torch" if other == "torch" else "/base"
                print(f"{lead} | {label:7s} {_fmt(r.get('train'), '8.2f')} {_fmt(r.get('infer'), '8.2f')} "
                      f"{_fmt(r.get('peak_mb'), '8.2f')} {_fmt(r.get('step_mb'), '8.2f')} "
                      f"{_fmt(r.get('device_mb'), '8.2f')}")
        if row.get("ratio_bound_torch"):
            print(f"{lead} | {'bound':7s} {row['ratio_bound_torch']:8.2f}   "
                  "(torch's step ÷ its trainable GEMMs at NumPy's rate)")
    if args.json:
        meta = {"gemm_flops_per_s": rate, "threads": args.threads, "batch": args.batch,
                "steps": args.steps, "repeats": args.repeats,
                "dropout": dropout_of, "machine": platform.machine(),
                "processor": _cpu_name(), "python": platform.python_version(),
                "loadavg_at_end": os.getloadavg(), "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        with open(args.json, "w") as out:
            json.dump({"meta": meta, "results": rows}, out, indent=1)
        print(f"\nwrote {args.json}")


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    main()
