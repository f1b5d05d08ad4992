"""HDF5 weights files, schema version 1 (docs/weights.md): write, read, load a model.

A file holds one run: the model's layers (OIHW float32 weights and biases, the
fixed DCT weights included and flagged), the preprocessing statistics, the
optimizer state, the dropout generator's state and the per-epoch history, so
that evaluation uses the same numbers and a run resumes exactly. It is readable
with plain h5py. :func:`write_weights` writes atomically: a temporary file in
the same folder (``NAME.tmp``), closed and synced, then renamed over ``NAME``.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from minids import __version__
from minids.backend import get_module, to_host
from minids.errors import MinidsError
from minids.models import DEFAULT_DROPOUT, build_model, dictionary_factors

FORMAT = "minids-weights"
SCHEMA_VERSION = 1
#: the dictionary of a DS-NiN file written before the ``dictionary`` attribute existed
LEGACY_DICTIONARY = "odct2"


@dataclass
class WeightsFile:
    """The contents of a weights file as plain Python and NumPy values.

    attrs: root attributes (str, int, float, list of str / int).
    layers: layer name -> its arrays and settings (:func:`layer_arrays`; a
        convolution: 'weight' float32 (O, I, k, k), 'bias' float32 (O,),
        'k', 'stride', 'padding' (int), 'fixed' (bool)), in network order.
    preprocessing: the statistics dict of :mod:`minids.data.preprocess`.
    optimizer: a :meth:`minids.optim.MomentumShrink.state_dict` (or None).
    rng_state: the run generator's ``bit_generator.state`` (or None).
    history: column -> float64 (epochs,).
    partial_epoch: None at an epoch boundary; after a Ctrl-C inside an epoch,
        {'batches', 'images', 'errors' (int), 'loss_sum', 'seconds' (float)}:
        the batches of epoch ``attrs['epoch'] + 1`` already applied and the
        running sums of its history row.
    """

    attrs: dict
    layers: dict
    preprocessing: dict
    optimizer: dict | None = None
    rng_state: dict | None = None
    history: dict = field(default_factory=dict)
    partial_epoch: dict | None = None
    path: str | None = None  # where it was read from (for messages)


PARTIAL_EPOCH_KEYS = ("batches", "images", "errors", "loss_sum", "seconds")


def _plain(value):
    """An h5py attribute value as a plain Python value."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _attr(value):
    """A Python value as something h5py stores portably (lists of str as UTF-8 strings)."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return np.array(value, dtype=h5py.string_dtype())
    if isinstance(value, (list, tuple)) and not value:
        return np.array([], dtype=h5py.string_dtype())
    if value is None:
        return ""
    return value


def layer_arrays(model):
    """{layer name: {array name: host float32 array, setting: value}} of every layer of
    ``model`` that has parameters or buffers, in network order.

    The arrays are the layer's ``params`` and ``buffers`` (a convolution:
    'weight' (O, I, k, k), 'bias' (O,)); the settings its ``file_attrs()``
    (a convolution: 'k', 'stride', 'padding', 'fixed'; a factored fixed one
    also 'atoms', 'dictionary_outputs' and 'gain').
    """
    layers = {}
    for name, layer in model.named_layers():
        arrays = {**layer.params, **layer.buffers}
        if arrays:
            layers[name] = {**{key: np.asarray(to_host(a), dtype=np.float32) for key, a in arrays.items()},
                            **layer.file_attrs()}
    return layers


def _is_array(value):
    """Float arrays are stored as data sets, everything else (settings) as attributes."""
    return isinstance(value, np.ndarray) and value.dtype.kind == "f"


def _write(f, contents):
    for key, value in contents.attrs.items():
        f.attrs[key] = _attr(value)
    f.attrs["layer_order"] = _attr(list(contents.layers))
    f.attrs["format"] = FORMAT
    f.attrs["schema_version"] = SCHEMA_VERSION
    f.attrs["minids_version"] = __version__
    layers = f.create_group("layers")
    for name, layer in contents.layers.items():
        group = layers.create_group(name)
        for key, value in layer.items():
            if _is_array(value):
                group.create_dataset(key, data=np.asarray(value, dtype=np.float32))
            else:
                group.attrs[key] = value
        if "fixed" in layer and "weight" in group:  # a fixed weight says so itself too
            group["weight"].attrs["fixed"] = bool(layer["fixed"])
    pre = f.create_group("preprocessing")
    for key, value in contents.preprocessing.items():
        if isinstance(value, str) or np.ndim(value) == 0:
            pre.attrs[key] = value
        else:
            pre.create_dataset(key, data=np.asarray(value))
    if contents.optimizer is not None:
        opt = f.create_group("optimizer")
        for key, value in contents.optimizer.items():  # the optimizer's own state_dict, as it is
            if key != "prev":
                opt.attrs[key] = _attr(list(value) if isinstance(value, (list, tuple, frozenset)) else value)
        prev = opt.create_group("prev")
        for key, value in contents.optimizer["prev"].items():
            prev.create_dataset(key, data=np.asarray(value))
    if contents.rng_state is not None:
        f.create_group("rng").attrs["state"] = json.dumps(contents.rng_state)
    history = f.create_group("history")
    for key, values in contents.history.items():
        history.create_dataset(key, data=np.asarray(values, dtype=np.float64))
    if contents.partial_epoch is not None:
        partial = f.create_group("partial_epoch")
        for key in PARTIAL_EPOCH_KEYS:
            partial.attrs[key] = contents.partial_epoch[key]


def write_weights(path, contents):
    """Write ``contents`` (a :class:`WeightsFile`) to ``path`` atomically.

    The file appears complete or not at all: on any error (a full disk, an
    interrupt) the temporary file is removed and an existing ``path`` is left
    as it was. Raises MinidsError when the folder cannot be written.
    """
    path = Path(path)
    tmp = temporary_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(tmp, "w") as f:
            _write(f, contents)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # h5py reports a full disk as either
        remove_quietly(tmp)
        reason = getattr(err, "strerror", None) or str(err).splitlines()[0]
        raise MinidsError(f"cannot write weights to {path}: {reason}; "
                          "the file there (if any) is unchanged") from None
    except BaseException:
        remove_quietly(tmp)
        raise


def write_text_atomically(path, text):
    """Write ``text`` to ``path`` through a temporary file and a rename; MinidsError on failure."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as err:
        remove_quietly(tmp)
        raise MinidsError(f"cannot write {path}: {err.strerror or err}") from None


def temporary_path(path):
    """The temporary name ``path`` is written under first: hidden, unique to this process."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def remove_quietly(path):
    """Remove ``path`` if it is there; never raises (for clean-up after another error)."""
    try:
        Path(path).unlink(missing_ok=True)
    except OSError:
        pass


def _open(path):
    path = Path(path)
    if not path.exists():
        raise MinidsError(f"{path}: no such weights file")
    if path.is_dir():
        raise MinidsError(f"{path} is a folder, not a weights file")
    if not h5py.is_hdf5(path):
        raise MinidsError(f"{path} is not an HDF5 file (minids weights are HDF5, see docs/weights.md)")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise MinidsError(f"cannot open {path}: {err}") from None
    fmt = _plain(f.attrs.get("format", ""))
    if fmt != FORMAT:
        f.close()
        raise MinidsError(f"{path} is HDF5 but not minids weights (no format={FORMAT!r} attribute)")
    version = _plain(f.attrs.get("schema_version", 0))
    if not isinstance(version, int) or version > SCHEMA_VERSION or version < 1:
        f.close()
        raise MinidsError(f"{path} has weights schema version {version}; this minids "
                          f"({__version__}) reads version {SCHEMA_VERSION}: upgrade minids")
    return f


class _Fields:
    """Reads named fields of an open weights file; a missing one is a MinidsError naming it."""

    def __init__(self, f, path):
        self.f, self.path = f, path

    def damaged(self, what):
        return MinidsError(f"{self.path}: damaged minids weights file: {what}")

    def get(self, name):
        if name not in self.f:
            raise self.damaged(f"{name} is missing")
        return self.f[name]

    def attr(self, name, key):
        obj = self.get(name) if name else self.f
        if key not in obj.attrs:
            raise self.damaged(f"attribute {key!r} of {name or 'the root'} is missing")
        return _plain(obj.attrs[key])


def read_weights(path):
    """Read a weights file into a :class:`WeightsFile`; MinidsError naming the field if it is not one."""
    with _open(path) as f:
        fields = _Fields(f, path)
        try:
            attrs = {k: _plain(v) for k, v in f.attrs.items()}
            order = attrs.get("layer_order") or list(fields.get("layers"))
            layers = {}
            for name in order:
                group = fields.get(f"layers/{name}")
                layers[name] = {key: group[key][()] for key in group}
                for key, value in group.attrs.items():  # settings; int arrays (atoms) stay arrays
                    layers[name][key] = (np.asarray(value, dtype=np.int64).reshape(-1)
                                         if isinstance(value, np.ndarray) and value.dtype.kind in "iu"
                                         else _plain(value))
            pre = fields.get("preprocessing")
            preprocessing = {k: (v if isinstance(v, str) else np.float32(v))
                             for k, v in ((k, _plain(v)) for k, v in pre.attrs.items())}
            preprocessing.update({k: pre[k][()] for k in pre})
            optimizer = None
            if "optimizer" in f:
                optimizer = {k: _plain(v) for k, v in f["optimizer"].attrs.items()}
                prev = fields.get("optimizer/prev")
                optimizer["prev"] = {k: prev[k][()] for k in prev}
            rng_state = None
            if "rng" in f:
                try:
                    rng_state = json.loads(fields.attr("rng", "state"))
                except ValueError:
                    raise fields.damaged("rng/state is not JSON") from None
            history = {k: f["history"][k][()] for k in f["history"]} if "history" in f else {}
            partial = None
            if "partial_epoch" in f:
                partial = {k: fields.attr("partial_epoch", k) for k in PARTIAL_EPOCH_KEYS}
        except (KeyError, ValueError, TypeError) as err:
            raise fields.damaged(str(err)) from None
    contents = WeightsFile(attrs, layers, preprocessing, optimizer, rng_state, history, partial, str(path))
    _check_values(contents, fields)
    return contents


def _finite(array):
    array = np.asarray(array)
    return array.dtype.kind not in "fc" or bool(np.isfinite(array).all())


def _check_values(contents, fields):
    """The checks every reader needs: counts, shapes and finite numbers of the fields read."""
    for name, layer in contents.layers.items():
        for key in (k for k, v in layer.items() if _is_array(v)):
            if not _finite(layer[key]):
                raise MinidsError(f"{fields.path}: layer {name} {key} holds NaN or inf (the run diverged); "
                                  "these weights cannot be used")
    epoch = contents.attrs.get("epoch", 0)
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise fields.damaged(f"attribute 'epoch' is {epoch!r}, not a count of epochs")
    _check_preprocessing(contents, fields)
    if contents.optimizer is not None:
        for name, prev in contents.optimizer["prev"].items():
            if not _finite(prev):
                raise fields.damaged(f"optimizer/prev/{name} holds NaN or inf")
    if contents.rng_state is not None:
        try:
            np.random.PCG64().state = contents.rng_state
        except (KeyError, TypeError, ValueError) as err:
            raise fields.damaged(f"rng/state is not a NumPy generator state ({err})") from None
    if contents.partial_epoch is not None:
        for key, value in contents.partial_epoch.items():
            counts = key in ("batches", "images", "errors")
            if (counts and (not isinstance(value, int) or value < 0)) or \
                    (not counts and not (isinstance(value, float) and np.isfinite(value) and value >= 0)):
                raise fields.damaged(f"partial_epoch attribute {key!r} is {value!r}")


def _check_preprocessing(contents, fields):
    stats = contents.preprocessing
    kind = stats.get("kind")
    needed = {"standard": ("mean", "std"), "gcn-zca": ("zca_mean", "zca_matrix")}.get(kind)
    if needed is None:
        raise fields.damaged(f"preprocessing kind {kind!r} is not one of standard, gcn-zca")
    shape = contents.attrs.get("input_shape")
    for key in needed:
        if key not in stats:
            raise fields.damaged(f"preprocessing/{key} is missing")
        if not _finite(stats[key]):
            raise fields.damaged(f"preprocessing/{key} holds NaN or inf")
        if shape is not None:
            d = int(np.prod(shape))
            expected = {"mean": (shape[0],), "std": (shape[0],), "zca_mean": (d,), "zca_matrix": (d, d)}[key]
            if np.shape(stats[key]) != expected:
                raise fields.damaged(f"preprocessing/{key} has shape {np.shape(stats[key])}, "
                                     f"input shape {tuple(shape)} needs {expected}")
    if kind == "standard" and not (np.asarray(stats["std"]) > 0).all():
        raise fields.damaged("preprocessing/std is not positive")


def check_resumable(contents, params, columns, batches_per_epoch, where, batches_per_step=1):
    """Refuse a file whose training state cannot continue the run exactly.

    ``params``: the model's parameters (name -> array); ``columns``: the run's
    history columns; ``batches_per_epoch``: the training split's batch count;
    ``batches_per_step``: the mini-batches of one step in the epoch a
    ``partial_epoch`` is in (its ``--batch-schedule``; a stop comes after a whole step).
    ``where`` names the file in messages (e.g. ``--resume run.h5``).
    """
    def damaged(what):
        return MinidsError(f"{where}: damaged minids weights file: {what}")

    epoch = int(contents.attrs["epoch"])
    if contents.optimizer["steps"] > 0:
        for name, w in params.items():
            prev = contents.optimizer["prev"].get(name)
            if prev is None:
                raise damaged(f"optimizer/prev/{name} is missing")
            if prev.shape != tuple(w.shape):
                raise damaged(f"optimizer/prev/{name} has shape {prev.shape}, the parameter {tuple(w.shape)}")
    for col in columns:
        if col not in contents.history:
            raise damaged(f"history/{col} is missing")
        if len(contents.history[col]) != epoch:
            raise damaged(f"history/{col} has {len(contents.history[col])} rows, the file has done "
                          f"{epoch} epochs")
    partial = contents.partial_epoch
    if partial is not None and not 0 < partial["batches"] < batches_per_epoch:
        raise damaged(f"partial_epoch says {partial['batches']} batches of epoch {epoch + 1} are done, "
                      f"an epoch has {batches_per_epoch}")
    if partial is not None and partial["batches"] % batches_per_step:
        raise damaged(f"partial_epoch stops inside a step of {batches_per_step} mini-batches")


def model_from_weights(contents, dtype=np.float32):
    """A :class:`minids.models.Network` (NumPy) with the layers of ``contents``."""
    attrs = contents.attrs
    c, _, _ = attrs["input_shape"]
    model = build_model(attrs["model"], in_channels=int(c), num_classes=int(attrs["num_classes"]),
                        seed=int(attrs.get("seed", 0)), dtype=dtype,
                        dictionary=attrs.get("dictionary") or LEGACY_DICTIONARY, widths=tuple(attrs["widths"]),
                        dropout=float(attrs.get("dropout", DEFAULT_DROPOUT)),
                        mask_stream=attrs.get("dropout_masks") or "legacy")
    where = contents.path or "weights file"
    for name, module in model.named_layers():
        stores = [(key, store) for store in (module.params, module.buffers) for key in store]
        if not stores:
            continue
        layer = contents.layers.get(name)
        if layer is None:
            raise MinidsError(f"{where}: damaged minids weights file: layers/{name} is missing")
        for key, store in stores:
            if key not in layer:
                raise MinidsError(f"{where}: damaged minids weights file: layers/{name}/{key} is missing")
            if store[key].shape != layer[key].shape:
                raise MinidsError(f"layer {name}.{key} has shape {layer[key].shape} in the file, "
                                  f"the model needs {store[key].shape}")
            store[key][...] = layer[key]
        if getattr(module, "fixed", False):  # its Kronecker factors, from the stored atoms
            module.factors = _file_factors(attrs, name, module, layer)
    return model


def _file_factors(attrs, name, conv, layer):
    """The Kronecker factors of fixed conv ``conv`` read from a file, or None.

    From the layer's ``atoms`` and ``dictionary_outputs`` (all its columns of
    a ``c_out``-atom dictionary when absent) and ``gain`` (in files written
    before it was stored: the norm of the stored weight's atoms, which equals
    it to float32 rounding); None when the dictionary has no factors or they
    do not reproduce the stored weight (the dense path runs).
    """
    outputs = layer.get("dictionary_outputs", conv.c_out)
    atoms = layer.get("atoms", np.arange(conv.c_out))
    if len(atoms) != conv.c_out or atoms.min(initial=0) < 0 or atoms.max(initial=0) >= outputs:
        raise MinidsError(f"layer {name}: atoms do not fit a dictionary of "
                          f"{outputs} outputs")
    weight = np.asarray(layer["weight"], dtype=np.float64)
    gain = layer.get("gain", np.sqrt((weight ** 2).sum() / conv.c_out))  # every atom's norm
    factors = dictionary_factors(attrs.get("dictionary") or LEGACY_DICTIONARY, outputs,
                                 conv.c_in, conv.k, gain, atoms)
    if factors is None:
        return None
    if np.abs(factors.dense() - weight).max() > 1e-6 * max(np.abs(weight).max(), 1e-30):
        return None
    return factors


def load_model(path, device="cpu"):
    """A ready model from a weights file, on ``device`` ('auto', 'cpu' or 'gpu').

    The model carries ``preprocessing`` (the statistics to normalise inputs
    with) and ``weights_attrs`` (the file's root attributes).
    """
    contents = read_weights(path)
    model = model_from_weights(contents)
    model.to(get_module(device))
    model.preprocessing = contents.preprocessing
    model.weights_attrs = contents.attrs
    return model


def check_compatible(attrs, input_shape, num_classes, where="weights"):
    """Raise MinidsError when weights' input shape or class count differ from the data's."""
    shape = tuple(int(v) for v in attrs["input_shape"])
    if shape[0] != input_shape[0] or int(attrs["num_classes"]) != num_classes:
        raise MinidsError(f"{where} are for inputs {'x'.join(map(str, shape))} with "
                          f"{attrs['num_classes']} classes, the data has "
                          f"{'x'.join(map(str, input_shape))} with {num_classes} classes")
    if shape != tuple(input_shape):
        raise MinidsError(f"{where} were trained on {'x'.join(map(str, shape))} images, the data has "
                          f"{'x'.join(map(str, input_shape))}")
