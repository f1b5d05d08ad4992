"""glibc's allocator thresholds, set once at start-up so large temporaries are reused.

By default glibc serves every block over 128 KiB to 32 MiB (its dynamic mmap
threshold) with a fresh ``mmap`` and returns it with ``munmap`` when freed:
each training step then faults in its large temporaries page by page again.
:func:`keep_freed_memory` sets the equivalent of ``MALLOC_MMAP_MAX_=0
MALLOC_TRIM_THRESHOLD_=100000000000`` through ``mallopt``: freed blocks stay
in the heap and the next step reuses them (docs/performance.md, "Allocator").

``MINIDS_MALLOC=default`` keeps glibc's behaviour; a ``MALLOC_MMAP_MAX_`` or
``MALLOC_TRIM_THRESHOLD_`` the user set is left alone. Off glibc nothing changes.
"""

import ctypes
import ctypes.util
import os

# mallopt parameter numbers from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM_THRESHOLD_BYTES = 100_000_000_000


def keep_freed_memory(environ=os.environ):
    """Make glibc keep freed memory for reuse; True when the settings were applied."""
    if environ.get("MINIDS_MALLOC", "") == "default":
        return False
    if "MALLOC_MMAP_MAX_" in environ or "MALLOC_TRIM_THRESHOLD_" in environ:
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    trimmed = mallopt(_M_TRIM_THRESHOLD, min(_TRIM_THRESHOLD_BYTES, 2**31 - 1))
    no_mmap = mallopt(_M_MMAP_MAX, 0)
    return bool(trimmed and no_mmap)
