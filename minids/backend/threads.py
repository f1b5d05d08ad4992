"""Thread parallelism for the NumPy path: GEMMs and copies split over cores.

NumPy runs element-wise work and copies on one core, and multi-threaded
OpenBLAS degrades badly on a shared machine for the long-K GEMMs of weight
gradients (docs/performance.md, "What was changed, and why"). So on NumPy
minids splits the work itself:

* :func:`matmul` splits the columns of the right factor, :func:`matmul_rows`
  the rows of the left one (a channels-last product), :func:`matmul_nt`
  (``a @ b.T``) the shared K axis (partial products are summed), one
  single-threaded BLAS call per thread;
* :func:`gemm_blocks` and :func:`run_gemms` are the same split for other
  GEMM work (one block of columns per thread);
* :func:`for_blocks` runs a function over blocks of an axis (channels) in
  parallel; NumPy releases the GIL in copies and ufunc loops;
* :func:`gemm_chunks` gives each thread a block of items (images) and walks
  it in cache-sized chunks, for work that runs its own small GEMMs and
  passes on each chunk (a short convolution, a factored one);
* :func:`cache_chunks` cuts a thread's block into pieces small enough that a
  loop of several ufunc passes reads all but the first from cache.

While minids' threads run GEMMs, OpenBLAS is set to one thread and restored
afterwards (through its ``openblas_set_num_threads``); where that symbol is
not found (another BLAS) the GEMMs are left to the BLAS. CuPy arrays, small
problems and ``MINIDS_THREADS=1`` take the plain single call, and so does
any of these called inside a block that minids' threads already run (a
nested split runs inline, in that block's thread). The thread
count is ``MINIDS_THREADS`` or the number of cores this process may use.
``MINIDS_THREADS`` caps OpenBLAS's own threads too, so ``MINIDS_THREADS=1``
keeps a run on one core (docs/performance.md says why that matters for runs
side by side).
"""

import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from minids.backend import get_array_module

#: below this many columns (or K) per thread a GEMM runs as one call
MIN_GEMM_SPLIT = 2048
#: below this many elements per thread element-wise work runs in one thread
MIN_BLOCK_ELEMENTS = 1 << 16
#: working set (bytes) of one chunk of a loop that passes several times over its data
#: (:func:`cache_chunks`): about one core's L2 cache
CACHE_CHUNK_BYTES = 1 << 20
#: working set (bytes) of one chunk of :func:`gemm_chunks` (docs/performance.md,
#: "Convolutions and pooling in cache-sized chunks")
GEMM_CHUNK_BYTES = 4 << 20


def _requested_threads():
    """``MINIDS_THREADS`` as a positive int, or None when unset or invalid."""
    value = os.environ.get("MINIDS_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


REQUESTED_THREADS = _requested_threads()
THREADS = REQUESTED_THREADS or _cores()
_pool = _pool_pid = None
_lock = threading.Lock()


def _executor():
    """The worker threads, created on first use (again in a forked child, whose
    copy of the pool has no threads)."""
    global _pool, _pool_pid
    with _lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(max_workers=THREADS - 1, thread_name_prefix="minids")
            _pool_pid = os.getpid()
    return _pool


def _find_openblas():
    """(set_num_threads, get_num_threads) of the OpenBLAS NumPy loaded, or None."""
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps
                            if "openblas" in line.lower() and line.split()[-1].startswith("/")})
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_openblas", "64_"), ("scipy_openblas", ""),
                               ("openblas", ""), ("openblas", "64_")):
            setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
            getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            if setter is not None and getter is not None:
                setter.argtypes, getter.restype = [ctypes.c_int], ctypes.c_int
                return setter, getter
    return None


_OPENBLAS = _find_openblas() if THREADS > 1 or REQUESTED_THREADS else None
if _OPENBLAS is not None and REQUESTED_THREADS:
    _OPENBLAS[0](THREADS)  # MINIDS_THREADS caps OpenBLAS's own threads too
#: OpenBLAS's thread controls while minids splits GEMMs itself; None: plain single calls
_BLAS = _OPENBLAS if THREADS > 1 else None


_worker = threading.local()


def _in_block():
    """True in a thread while it runs a block of :func:`_run`: splits nested there run inline."""
    return getattr(_worker, "in_block", False)


def _as_block(task):
    """``task`` marked, while it runs, as a block of :func:`_run` (:func:`_in_block`)."""
    def block():
        outer, _worker.in_block = _in_block(), True
        try:
            return task()
        finally:
            _worker.in_block = outer
    return block


def _run(tasks):
    """Run the callables, the first in this thread, the rest in the pool; return results."""
    tasks = [_as_block(task) for task in tasks]
    futures = [_executor().submit(task) for task in tasks[1:]]
    results = [tasks[0]()]
    return results + [f.result() for f in futures]


def _bounds(n, parts, minimum):
    """Split range(n) into at most ``parts`` (lo, hi) blocks of at least ``minimum``."""
    parts = max(1, min(parts, n // max(minimum, 1)))
    edges = [n * i // parts for i in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:]))


def gemm_blocks(xp, n):
    """The (lo, hi) blocks of range(n) that a GEMM is split into over minids'
    threads: one per thread, each at least ``MIN_GEMM_SPLIT`` long; a single
    block on CuPy, without OpenBLAS's thread controls, or for small ``n``."""
    return _bounds(n, THREADS, MIN_GEMM_SPLIT) if _split_gemms(xp) else [(0, n)]


def _split_gemms(xp):
    """Whether GEMM work on ``xp`` arrays is split here over minids' threads."""
    return bool(_BLAS) and xp is np and not _in_block()


def run_gemms(tasks):
    """Run GEMM callables (one per :func:`gemm_blocks` block) and return their
    results: several in parallel with OpenBLAS on one thread meanwhile, a
    single one in this thread."""
    if len(tasks) == 1:
        return [tasks[0]()]
    setter, getter = _BLAS
    before = getter()
    setter(1)
    try:
        return _run(tasks)
    finally:
        setter(before)


def _split_matmul(a, b, out, rows):
    """``a @ b`` into ``out`` (or a new array), split over the rows of ``a`` (``rows``)
    or the columns of ``b``."""
    xp = get_array_module(a, b)
    blocks = gemm_blocks(xp, a.shape[0] if rows else b.shape[1])
    if len(blocks) == 1:
        return xp.matmul(a, b, out=out)
    if out is None:
        out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))

    def block(lo, hi):
        if rows:
            np.matmul(a[lo:hi], b, out=out[lo:hi])
        else:
            np.matmul(a, b[:, lo:hi], out=out[:, lo:hi])

    run_gemms([lambda lo=lo, hi=hi: block(lo, hi) for lo, hi in blocks])
    return out


def matmul(a, b, out=None):
    """``a @ b`` for 2-D ``a`` (M, K) and ``b`` (K, N), into ``out`` (M, N) if given."""
    return _split_matmul(a, b, out, rows=False)


def matmul_rows(a, b, out=None):
    """``a @ b`` for 2-D ``a`` (M, K) and ``b`` (K, N), split over the rows of ``a``,
    into ``out`` (M, N) if given: the product of a channels-last activation
    (pixels, channels) with a weight, where M is long and N short."""
    return _split_matmul(a, b, out, rows=True)


def matmul_nt(a, b):
    """``a @ b.T`` for ``a`` (M, K) and ``b`` (N, K): a weight gradient, K = pixels."""
    xp = get_array_module(a, b)
    blocks = gemm_blocks(xp, a.shape[1])
    if len(blocks) == 1:
        return a @ b.T
    partials = run_gemms([lambda lo=lo, hi=hi: a[:, lo:hi] @ b[:, lo:hi].T for lo, hi in blocks])
    total = partials[0]
    for partial in partials[1:]:
        total += partial
    return total


def gemm_chunks(xp, n, bytes_per_item, fn):
    """Call ``fn(start, stop, block)`` over chunks [start, stop) covering range(n),
    for work that runs its own GEMMs and passes on each chunk (a convolution on a
    chunk of images): on NumPy each thread takes one block of range(n) (``block``:
    its index, for naming per-thread buffers) with OpenBLAS on one thread meanwhile,
    and walks it in chunks of at most ``GEMM_CHUNK_BYTES`` of working set
    (``bytes_per_item`` per item), so that a chunk's GEMMs and passes read from
    cache; on CuPy one chunk, block 0."""
    if xp is not np:
        fn(0, n, 0)
        return
    step = max(1, GEMM_CHUNK_BYTES // max(bytes_per_item, 1))
    blocks = _bounds(n, THREADS, 1) if _split_gemms(xp) else [(0, n)]

    def walk(block, lo, hi):
        for start in range(lo, hi, step):
            fn(start, min(start + step, hi), block)

    run_gemms([lambda block=block, lo=lo, hi=hi: walk(block, lo, hi)
               for block, (lo, hi) in enumerate(blocks)])


def for_blocks(xp, n, elements, fn):
    """Call ``fn(lo, hi)`` over blocks covering range(n), in parallel on NumPy.

    ``elements`` is the total work (array elements touched), used to keep
    small problems in one thread. The blocks must touch disjoint memory.
    """
    if xp is not np or THREADS == 1 or _in_block():
        fn(0, n)
        return
    per_row = max(1, elements // max(n, 1))
    blocks = _bounds(n, THREADS, -(-MIN_BLOCK_ELEMENTS // per_row))
    if len(blocks) == 1:
        fn(0, n)
        return
    _run([lambda lo=lo, hi=hi: fn(lo, hi) for lo, hi in blocks])


def cache_chunks(xp, lo, hi, bytes_per_element):
    """(start, stop) ranges covering [lo, hi) in order, for a loop that makes several
    passes over each range touching ``bytes_per_element`` bytes per element in all:
    on NumPy at most ``CACHE_CHUNK_BYTES`` of them per range, so that the passes after
    the first read from the core's cache; on CuPy the whole range (one kernel a pass)."""
    if xp is not np:
        return [(lo, hi)]
    step = max(1, CACHE_CHUNK_BYTES // bytes_per_element)
    return [(start, min(start + step, hi)) for start in range(lo, hi, step)]


def zeros_operand(xp, bytes_per_element, dtype):
    """The zero that element-wise passes over :func:`cache_chunks` ranges compare
    or clip against, as ``zero[:length]`` for a range of ``length`` elements: on
    NumPy a zero-filled array as long as the longest range (NumPy 2's
    ``maximum`` and ``greater`` ran 1.5–3× faster against an array than against
    a scalar; docs/performance.md), on CuPy a one-element zero that broadcasts."""
    if xp is not np:
        return xp.zeros(1, dtype=dtype)
    return np.zeros(max(1, CACHE_CHUNK_BYTES // bytes_per_element), dtype=dtype)
