"""A streaming reader for MATLAB v5 ``.mat`` files (SVHN's "format 2").

``scipy.io.loadmat`` inflates a whole variable in memory; SVHN's
``extra_32x32.mat`` holds 1.6 GB of pixels, so this reader hands out the raw
data of each variable in pieces instead. It understands what SVHN and
``scipy.io.savemat`` write: numeric matrices, stored plainly or zlib-compressed
(``miCOMPRESSED``), little- or big-endian.
"""

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from minids.errors import MinidsError

_MI_MATRIX, _MI_COMPRESSED = 14, 15
_MI_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8",
              12: "i8", 13: "u8"}
_CHUNK = 1 << 18


class _Plain:
    """Reads at most ``nbytes`` from a file object."""

    def __init__(self, f, nbytes):
        self.f, self.left = f, nbytes

    def read(self, n):
        data = self.f.read(min(n, self.left))
        self.left -= len(data)
        return data

    def finish(self):
        return True


class _Inflate:
    """Inflates ``nbytes`` of zlib data from a file object, ``n`` bytes at a time."""

    def __init__(self, f, nbytes, path):
        self.f, self.left, self.path, self.z = f, nbytes, path, zlib.decompressobj()

    def read(self, n):
        out = bytearray()
        while len(out) < n and not self.z.eof:
            data = self.z.unconsumed_tail
            if not data:
                data = self.f.read(min(_CHUNK, self.left))
                if not data:
                    break
                self.left -= len(data)
            try:
                out += self.z.decompress(data, n - len(out))
            except zlib.error:
                raise MinidsError(f"{self.path} is corrupt (bad compressed data)") from None
        return bytes(out)

    def finish(self):
        """Inflate what is left so that zlib checks the stream's checksum."""
        while not self.z.eof and self.read(_CHUNK):
            pass
        return self.z.eof


@dataclass
class Variable:
    """One matrix of a .mat file: ``name``, ``dims`` (MATLAB order), ``dtype`` of its data."""

    name: str
    dims: tuple
    dtype: np.dtype
    nbytes: int
    _stream: object
    _path: str
    consumed: int = 0

    def read(self, count):
        """The next ``count`` elements as a 1-D array (column-major order)."""
        n = count * self.dtype.itemsize
        data = self._stream.read(n)
        if len(data) != n:
            raise MinidsError(f"{self._path} is truncated or corrupt (variable {self.name} ends early)")
        self.consumed += n
        return np.frombuffer(data, dtype=self.dtype)


def _exact(stream, n, path):
    data = stream.read(n)
    if len(data) != n:
        raise MinidsError(f"{path} is truncated or corrupt (a MATLAB element ends early)")
    return data


def _element(stream, endian, path):
    """Read one data element (tag + data + padding); return (type, bytes)."""
    first, second = struct.unpack(endian + "II", _exact(stream, 8, path))
    if first >> 16:  # small data element: type and size packed in 4 bytes
        return first & 0xFFFF, struct.pack(endian + "I", second)[: first >> 16]
    data = _exact(stream, second, path)
    _exact(stream, -second % 8, path)
    return first, data


def _header(stream, endian, path):
    """Parse a miMATRIX header up to its real part; return a Variable."""
    typ, _ = struct.unpack(endian + "II", _exact(stream, 8, path))
    if typ != _MI_MATRIX:
        raise MinidsError(f"{path} is corrupt or not a MATLAB v5 file (element type {typ})")
    _element(stream, endian, path)  # array flags
    _, dims = _element(stream, endian, path)
    _, name = _element(stream, endian, path)
    first, second = struct.unpack(endian + "II", _exact(stream, 8, path))
    typ, nbytes = (first & 0xFFFF, first >> 16) if first >> 16 else (first, second)
    if typ not in _MI_DTYPES:
        raise MinidsError(f"{path}: variable {name.decode(errors='replace')} is not a numeric matrix")
    dtype = np.dtype(endian + _MI_DTYPES[typ])
    dims = tuple(int(d) for d in np.frombuffer(dims, dtype=endian + "i4"))
    return Variable(name.decode(errors="replace"), dims, dtype, nbytes, stream, path)


def variables(path):
    """Yield each top-level matrix of the v5 .mat file at ``path`` as a :class:`Variable`.

    Read its data with ``Variable.read`` before asking for the next one. A
    compressed variable that was read completely is inflated to its end, so a
    corrupt stream fails its zlib checksum here; one not read is skipped.
    """
    path = str(path)
    with open(path, "rb") as f:
        head = f.read(128)
        if len(head) < 128 or head[126:128] not in (b"IM", b"MI"):
            raise MinidsError(f"{path} is not a MATLAB .mat file (bad header)")
        if head.startswith(b"MATLAB 7.3"):
            raise MinidsError(f"{path} is a MATLAB v7.3 (HDF5) file; expected a v5 (format 2) .mat file")
        endian = "<" if head[126:128] == b"IM" else ">"
        while True:
            tag = f.read(8)
            if not tag:
                return
            if len(tag) < 8:
                raise MinidsError(f"{path} is truncated (partial element tag at the end)")
            typ, nbytes = struct.unpack(endian + "II", tag)
            start = f.tell()
            if typ == _MI_COMPRESSED:
                stream = _Inflate(f, nbytes, path)
            elif typ == _MI_MATRIX:
                f.seek(-8, 1)
                start, nbytes = start - 8, nbytes + 8
                stream = _Plain(f, nbytes)
            else:
                raise MinidsError(f"{path} is corrupt or not a MATLAB v5 file (element type {typ})")
            var = _header(stream, endian, path)
            yield var
            if var.consumed == var.nbytes and not stream.finish():
                raise MinidsError(f"{path} is truncated (variable {var.name} ends early)")
            end = start + nbytes + (0 if typ == _MI_COMPRESSED else -nbytes % 8)
            if end > f.seek(0, 2):
                raise MinidsError(f"{path} is truncated (variable {var.name} ends past the end of the file)")
            f.seek(end)
