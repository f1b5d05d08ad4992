"""A grid of ordinary ``minids train`` runs over ζ (and dictionaries, models, seeds).

Each grid point is one training run in its own process, with its own weights
file and CSV under the sweep's folder, named from the point
(``ds-nin-odct3-zeta1e-05-seed0.h5``), so each can be evaluated, analysed,
pruned and resumed like any run. A point whose file holds all its epochs is
skipped; one whose file stops short is resumed from it; the others start.

Engines (docs/sweep.md): ``local`` runs ``jobs`` points at a time on this
machine, each with its share of the cores (``MINIDS_THREADS``) or one GPU
(``CUDA_VISIBLE_DEVICES``); ``ray`` runs each point as a Ray task on an
existing cluster (``address``) or a local one. The table (:func:`table`) is
read back from the weights files.
"""

import csv
import io
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import h5py

from minids.backend import gpu_count
from minids.errors import MinidsError
from minids.interrupt import StopRequest
from minids.io import write_text_atomically

ENGINES = ("local", "ray")
#: train options a sweep sets itself for every point (not passable through)
OWNED_OPTIONS = ("--zeta", "--dictionary", "--model", "--seed", "--out", "--resume", "--force")
TABLE_FILE = "sweep.csv"
FRONTIER_FILE = "frontier.png"


@dataclass(frozen=True)
class Point:
    """One grid point: model, dictionary (None for NiN), ζ and seed."""

    model: str
    dictionary: str | None
    zeta: float
    seed: int

    @property
    def stem(self):
        """File stem of the point's weights: ``<model>[-<dictionary>]-zeta<ζ>-seed<s>``."""
        parts = [self.model] + ([self.dictionary] if self.dictionary else [])
        return "-".join(parts + [f"zeta{self.zeta:g}", f"seed{self.seed}"])

    def weights(self, folder):
        return Path(folder) / f"{self.stem}.h5"

    @property
    def series(self):
        """The frontier line this point belongs to: ``model`` or ``model (dictionary)``."""
        return f"{self.model} ({self.dictionary})" if self.dictionary else self.model


def parse_list(text, kind, name):
    """A comma-separated option value as a list of ``kind``; MinidsError naming ``name``."""
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    if not items:
        raise MinidsError(f"--{name} needs at least one value")
    try:
        values = [kind(item) for item in items]
    except ValueError:
        raise MinidsError(f"--{name} must be a comma-separated list, got {text!r}") from None
    if len(set(values)) != len(values):
        raise MinidsError(f"--{name} lists a value twice: {text!r}")
    return values


def grid(zetas, models, dictionaries, seeds):
    """Every point of the grid, in a fixed order (model, dictionary, ζ, seed)."""
    for zeta in zetas:
        if not zeta >= 0:
            raise MinidsError(f"--zeta values must be >= 0, got {zeta:g}")
    points = []
    for model in models:
        for dictionary in (dictionaries if model == "ds-nin" else [None]):
            points += [Point(model, dictionary, float(z), int(s)) for z in zetas for s in seeds]
    return points


def check_passed_options(args):
    """Refuse train options the sweep sets for every point."""
    for arg in args:
        flag = arg.split("=", 1)[0]
        if flag in OWNED_OPTIONS:
            raise MinidsError(f"{flag} is set by the sweep for every point; give it to "
                              "`minids sweep` as --zeta/--dictionary/--model/--seeds, or drop it")


def status(point, folder):
    """'done', 'partial' (a file to resume) or 'new'; MinidsError for a foreign file."""
    path = point.weights(folder)
    if not path.exists():
        return "new"
    try:
        with h5py.File(path, "r") as f:
            a = f.attrs
            epoch, epochs = int(a["epoch"]), int(a["epochs"])
            same = (a["model"] == point.model and float(a["zeta"]) == point.zeta
                    and int(a["seed"]) == point.seed)
            partial = "partial_epoch" in f
    except (OSError, KeyError, ValueError) as err:
        raise MinidsError(f"{path}: not a minids weights file of this sweep ({err})") from None
    if not same:
        raise MinidsError(f"{path} holds another run than its name says; move it away")
    return "done" if epoch >= epochs and not partial else "partial"


def train_command(point, folder, passed):
    """The ``minids train`` argument list of a point (new or resumed)."""
    out = point.weights(folder)
    if status(point, folder) == "partial":
        # a resume takes the run's options from its file and refuses any that differ
        return ["train", "--resume", str(out), "--quiet", *passed]
    args = ["train", "--model", point.model, "--zeta", f"{point.zeta!r}", "--seed", str(point.seed),
            "--out", str(out), "--quiet"]
    if point.dictionary:
        args += ["--dictionary", point.dictionary]
    return args + list(passed)


#: how a child process starts the minids command line
CLI = [sys.executable, "-c", "from minids.cli.main import main; main()"]


class Children:
    """The running child processes; :meth:`stop` passes a stop signal on to each once.

    Children start in their own session, so a Ctrl-C at the terminal reaches
    the sweep only, which forwards it: each point then saves at the end of
    its current batch, as one ``minids train`` does.
    """

    def __init__(self):
        self.running, self.stopped, self.signal, self._lock = set(), False, None, threading.Lock()

    def run(self, args, env):
        """Run ``minids <args>``; returns (exit status, last output line)."""
        with self._lock:
            if self.stopped:
                return None, "not started (stopped)"
            child = subprocess.Popen([*CLI, *args], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
            self.running.add(child)
        output = _wait(child)
        with self._lock:
            self.running.discard(child)
        lines = output.strip().splitlines()
        return child.returncode, lines[-1] if lines else ""

    def stop(self, signum):
        with self._lock:
            if self.stopped:
                return
            self.stopped, self.signal = True, signum
            for child in self.running:
                child.send_signal(signum)


def _wait(child):
    """The whole output of ``child`` once it exits.

    Waits in short slices: a cancelled Ray task gets its KeyboardInterrupt
    only between Python bytecodes, never inside one long blocking wait. On
    that interrupt the child gets SIGINT (it saves at the end of its batch)
    and is waited for.
    """
    try:
        while True:
            try:
                return child.communicate(timeout=0.2)[0]
            except subprocess.TimeoutExpired:
                continue  # no output is lost: communicate() goes on where it stopped
    except KeyboardInterrupt:
        child.send_signal(signal.SIGINT)
        return child.communicate()[0]


def _run_process(args, env):
    """Run ``minids <args>`` in a child process (a Ray task's body)."""
    return Children().run(args, env)


def _child_env(threads=None, gpu=None):
    env = dict(os.environ)
    if threads is not None:
        env["MINIDS_THREADS"] = str(threads)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    return env


def run_local(points, folder, passed, jobs, report, gpus=None, cores=None):
    """Run the unfinished points, ``jobs`` at a time; returns ({point: (status, last line)}, signal).

    Each job gets ``cores // jobs`` threads, or one GPU of ``gpus`` each
    (None: every GPU CuPy sees; 0: the CPU only).
    Ctrl-C or SIGTERM stops every running point at the end of its batch (it
    saves, as one ``minids train`` does) and starts no other; the signal
    number is returned (None when the sweep ran through).
    """
    if gpus is None:
        gpus = gpu_count()
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    queue = [p for p in points if status(p, folder) != "done"]
    results, lock, children = {}, threading.Lock(), Children()

    def worker(slot):
        while True:
            with lock:
                if not queue or children.stopped:
                    return
                point = queue.pop(0)
            env = _child_env(threads=None if gpus else max(1, cores // jobs),
                             gpu=slot % gpus if gpus else None)
            report(f"start {point.stem}")
            code, last = children.run(train_command(point, folder, passed), env)
            if code is None:
                return
            with lock:
                results[point] = (code, last)
            report(f"{'done' if code == 0 else 'stopped'} {point.stem}: {last}")

    threads = [threading.Thread(target=worker, args=(slot,))
               for slot in range(max(1, min(jobs, len(queue))))]
    with StopRequest() as stop:
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            if stop.requested:
                children.stop(stop.signal)
            for thread in threads:
                thread.join(timeout=0.2)
    return results, children.signal


def run_ray(points, folder, passed, address, report, cpus_per_point=1, gpus_per_point=None):
    """Run the unfinished points as Ray tasks; returns ({point: (status, last line)}, signal).

    Ctrl-C or SIGTERM cancels every task: a queued one never starts, a running
    one passes SIGINT to its ``minids train``, which saves at the end of its
    batch; the sweep waits for those saves before it shuts Ray down.
    ``gpus_per_point`` None: one GPU per point on a cluster that has GPUs, else none.
    """
    try:
        import ray
    except ImportError:
        raise MinidsError("--engine ray needs Ray: pip install '.[ray]' in the minids checkout") from None
    todo = [p for p in points if status(p, folder) != "done"]
    if not todo:
        return {}, None
    ray.init(address=address, num_cpus=None if address else max(cpus_per_point, os.cpu_count() or 1),
             include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        if gpus_per_point is None:
            gpus_per_point = 1 if ray.cluster_resources().get("GPU", 0) else 0
        task = ray.remote(num_cpus=cpus_per_point, num_gpus=gpus_per_point)(_run_process)
        env = _child_env(threads=None if gpus_per_point else cpus_per_point)
        futures = {task.remote(train_command(point, folder, passed), env): point for point in todo}
        for point in todo:
            report(f"start {point.stem} (ray)")
        results, pending = {}, list(futures)
        with StopRequest() as stop:
            cancelled = False
            while pending:
                if stop.requested and not cancelled:
                    for future in pending:
                        ray.cancel(future)
                    cancelled = True
                finished, pending = ray.wait(pending, num_returns=1, timeout=0.2)
                for future in finished:
                    point = futures[future]
                    try:
                        results[point] = tuple(ray.get(future))
                    except ray.exceptions.TaskCancelledError:
                        continue  # cancelled before it started
                    code, last = results[point]
                    report(f"{'done' if code == 0 else 'stopped'} {point.stem}: {last}")
        return results, stop.signal
    finally:
        ray.shutdown()


#: columns of the sweep table, in order
COLUMNS = ("model", "dictionary", "zeta", "seed", "epoch", "test_accuracy", "sparsity", "sparsity_layers",
           "flops", "flops_pruned", "flops_pruned_factored", "images_per_second", "weights")


def point_row(point, folder):
    """The table row of a finished point, read from its weights file."""
    from minids.analysis import analyze, load

    path = point.weights(folder)
    weights = load(path)
    report = analyze(weights)
    with h5py.File(path, "r") as f:
        a = f.attrs
        layers = {name: float(f[f"history/sparsity_{name}"][-1])
                  for name in [n.decode() if isinstance(n, bytes) else n for n in a["coefficient_layers"]]}
        rate = float(f["history/images_per_second"][-1])
        row = {"model": point.model, "dictionary": point.dictionary or "", "zeta": point.zeta,
               "seed": point.seed, "epoch": int(a["epoch"]), "test_accuracy": float(a["test_accuracy"]),
               "sparsity": float(a["sparsity"]),
               "sparsity_layers": " ".join(f"{n}={v:.4f}" for n, v in layers.items()),
               "flops": report["flops"]["dense"],
               "flops_pruned": report["flops"]["pruned"] or report["flops"]["dense"],
               "flops_pruned_factored": report["flops"]["pruned_factored"] or report["flops"]["factored"],
               "images_per_second": rate, "weights": path.name}
    return row


def table(points, folder):
    """Rows of the finished points (others are left out)."""
    return [point_row(p, folder) for p in points if status(p, folder) == "done"]


def write_table(rows, folder):
    """``sweep.csv`` in ``folder``, written atomically; returns its path."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    path = Path(folder) / TABLE_FILE
    write_text_atomically(path, buffer.getvalue())
    return path


def format_table(rows):
    """The rows as an aligned text table."""
    head = ["model", "dictionary", "zeta", "seed", "epoch", "test acc", "sparsity", "MFLOPs",
            "pruned", "pruned fact.", "img/s"]
    body = [[r["model"], r["dictionary"] or "-", f"{r['zeta']:g}", str(r["seed"]), str(r["epoch"]),
             f"{100 * r['test_accuracy']:.2f}%", f"{100 * r['sparsity']:.2f}%", f"{r['flops'] / 1e6:.1f}",
             f"{r['flops_pruned'] / 1e6:.1f}", f"{r['flops_pruned_factored'] / 1e6:.1f}",
             f"{r['images_per_second']:.0f}"] for r in rows]
    widths = [max(len(str(c)) for c in column) for column in zip(head, *body)] if body else map(len, head)
    lines = ["  ".join(str(c).rjust(w) for c, w in zip(line, widths)) for line in [head, *body]]
    return "\n".join(lines) + "\n"


def read_table(folder):
    """The rows of ``folder/sweep.csv`` (numbers as floats and ints)."""
    path = Path(folder) / TABLE_FILE
    if not path.exists():
        raise MinidsError(f"{folder} has no {TABLE_FILE}; run `minids sweep --out-dir {folder}` first")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key in ("zeta", "test_accuracy", "sparsity", "images_per_second"):
            row[key] = float(row[key])
        for key in ("seed", "epoch", "flops", "flops_pruned", "flops_pruned_factored"):
            row[key] = int(row[key])
    return rows
