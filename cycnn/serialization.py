"""Model and checkpoint files: a versioned .npz that loads without pickle, written atomically.

Layout (format "cycnn-model", version 1): an uncompressed .npz whose member ``header`` is the UTF-8 JSON header
as a uint8 array, and one member per array. The header holds the format name and version, the kind ("model" or
"checkpoint"), the architecture (``Sequential.get_config()``), and for every array its shape, dtype and SHA-256,
plus free-form metadata (training figures) and, in checkpoints, the training state. Loading reads the file with
``allow_pickle=False``, checks every array against the header and the architecture before building anything, and
raises ModelFileError naming the file and the problem otherwise.
"""
import hashlib
import json
import os
import tempfile
import zipfile

import numpy as np

from cycnn import __version__
from cycnn.errors import CycnnError, ModelFileError

FORMAT = "cycnn-model"
VERSION = 1
HEADER = "header"
ALLOWED_DTYPES = {"float32", "float64", "int64", "int32", "uint8"}


def _digest(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def write_atomic(path, write):
    """Call ``write(fileobj)`` on a temporary file beside ``path``, fsync it, then rename it over ``path``.

    A crash or kill at any moment leaves either the old file or the complete new one at ``path``.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    except OSError as exc:
        raise CycnnError(f"{path}: cannot write here ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_arrays(path, kind, architecture, arrays, extra=None):
    """Write ``arrays`` (name -> ndarray) with a header describing them, atomically."""
    arrays = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
    header = {
        "format": FORMAT, "version": VERSION, "kind": kind, "cycnn_version": __version__,
        "architecture": architecture,
        "arrays": {name: {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": _digest(a)}
                   for name, a in arrays.items()},
        **(extra or {}),
    }
    header_bytes = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    write_atomic(path, lambda fh: np.savez(fh, **{HEADER: header_bytes}, **arrays))


def load_arrays(path, kind=None):
    """Read and verify a file written by ``save_arrays``: returns (header, arrays)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelFileError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ModelFileError(f"{path}: is a directory, not a model file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not hasattr(npz, "files"):
                raise ModelFileError(f"{path}: not a cycnn model file (a bare .npy array)")
            if HEADER not in npz.files:
                raise ModelFileError(f"{path}: not a cycnn model file (no header)")
            raw = npz[HEADER]
            if raw.dtype != np.uint8 or raw.ndim != 1:
                raise ModelFileError(f"{path}: damaged header")
            header = json.loads(raw.tobytes().decode("utf-8"))
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise ModelFileError(f"{path}: not a cycnn model file")
            if header.get("version") != VERSION:
                raise ModelFileError(f"{path}: format version {header.get('version')!r} is not supported by this "
                                     f"cycnn (it reads version {VERSION})")
            if kind is not None and header.get("kind") != kind:
                raise ModelFileError(f"{path}: is a {header.get('kind')} file, expected a {kind} file")
            described = header.get("arrays")
            if not isinstance(described, dict):
                raise ModelFileError(f"{path}: damaged header (no array list)")
            stored = set(npz.files) - {HEADER}
            if stored != set(described):
                missing, extra = set(described) - stored, stored - set(described)
                raise ModelFileError(f"{path}: arrays do not match the header (missing: {sorted(missing)}, "
                                     f"unexpected: {sorted(extra)})")
            arrays = {}
            for name, spec in described.items():
                array = npz[name]
                if (not isinstance(spec, dict) or str(array.dtype) != spec.get("dtype")
                        or list(array.shape) != spec.get("shape") or str(array.dtype) not in ALLOWED_DTYPES):
                    raise ModelFileError(f"{path}: array {name!r} does not match its description in the header")
                if _digest(array) != spec.get("sha256"):
                    raise ModelFileError(f"{path}: array {name!r} fails its checksum (the file was altered or damaged)")
                arrays[name] = array
    except ModelFileError:
        raise
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile,
            UnicodeDecodeError, NotImplementedError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: not a readable cycnn model file ({type(exc).__name__}: {exc})") from None
    return header, arrays


def _model_arrays(model):
    return {f"param.{key}": param for key, param, _ in model.parameters()}


def save_model(model, path, metadata=None):
    """Save a Sequential's architecture and weights (see the module docstring for the format)."""
    save_arrays(path, "model", model.get_config(), _model_arrays(model), {"metadata": metadata or {}})


def model_from(header, arrays, path):
    """Build the model a header describes and fill in its weights, checking each against the layer."""
    from cycnn.architecture import build
    try:
        model = build(header["architecture"])
    except CycnnError as exc:
        raise ModelFileError(f"{path}: the stored architecture is invalid ({exc})") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: the stored architecture is invalid ({exc})") from None
    expected = {f"param.{key}": param for key, param, _ in model.parameters()}
    params = {name: a for name, a in arrays.items() if name.startswith("param.")}
    if set(params) != set(expected):
        raise ModelFileError(f"{path}: weights do not match the architecture "
                             f"(expected {sorted(expected)}, found {sorted(params)})")
    dtypes = {str(a.dtype) for a in params.values()}
    if len(dtypes) != 1 or not dtypes <= {"float32", "float64"}:
        raise ModelFileError(f"{path}: weights must all be float32 or all float64, found {sorted(dtypes)}")
    model.astype(dtypes.pop())
    for name, target in expected.items():
        source = params[name]
        if source.shape != target.shape:
            raise ModelFileError(f"{path}: weight {name} has shape {source.shape}, the architecture needs "
                                 f"{target.shape}")
        if not np.all(np.isfinite(source)):
            raise ModelFileError(f"{path}: weight {name} holds NaN or infinite values")
    for i, layer in enumerate(model.layers):
        for pname in layer.params:
            layer.params[pname] = params[f"param.{i}.{pname}"].copy()
    return model


def load_model(path):
    """Load a model file (or the model inside a checkpoint)."""
    header, arrays = load_arrays(path)
    if header.get("kind") not in ("model", "checkpoint"):
        raise ModelFileError(f"{path}: unknown file kind {header.get('kind')!r}")
    model = model_from(header, arrays, path)
    model.metadata = header.get("metadata", {})
    return model
