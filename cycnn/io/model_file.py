"""Model and checkpoint files: a versioned .npz that loads without pickle, written atomically.

Layout (format "cycnn-model", version 1; docs/MODEL_FORMAT.md has the full description): a zip archive in numpy's
.npz layout whose member ``header.npy`` is the UTF-8 JSON header as a 1-D uint8 array, plus one ``.npy`` member per
array. The header holds the format name and version, the kind ("model" or "checkpoint"), the architecture
(``Sequential.get_config()``), and for every array its shape, dtype and SHA-256, plus free-form metadata and, in
checkpoints, the training state.

Loading never calls ``np.load`` on the whole file and never unpickles: it looks at the file's first bytes, reads
the zip directory, parses each member's .npy header itself, and checks every shape, dtype, size and checksum
against the JSON header (and the weights against the architecture) before allocating or building anything. Any
problem raises ModelFileError naming the file and what is wrong.
"""
import hashlib
import json
import os
import zipfile

import numpy as np

from cycnn.errors import CycnnError, ModelFileError, OutputError
from cycnn.io.architecture import build
from cycnn.io.atomic import write_atomic
from cycnn.version import __version__

FORMAT = "cycnn-model"
VERSION = 1
KINDS = ("model", "checkpoint")
HEADER = "header"
ALLOWED_DTYPES = {"float32", "float64", "int64", "int32", "uint8"}
MAX_HEADER_BYTES = 16 << 20  # a JSON header this large is not one cycnn wrote
MAX_ARRAY_BYTES = 4 << 30  # refuse to read more than 4 GiB of arrays from one file
MAX_NPY_HEADER = 10_000  # numpy's own limit for a .npy header

ZIP_MAGIC = b"PK\x03\x04"
NPY_MAGIC = b"\x93NUMPY"


def _digest(array):
    """SHA-256 of the array's data in C order, little-endian (the same on every machine)."""
    array = np.ascontiguousarray(array)
    return hashlib.sha256(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()).hexdigest()


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
    if header_bytes.size > MAX_HEADER_BYTES:  # what cycnn writes, it must read back
        raise OutputError(f"{path}: not saved, its header would take {header_bytes.size:,} bytes, more than the "
                          f"{MAX_HEADER_BYTES:,} a model file may hold (too much metadata)")
    write_atomic(path, lambda fh: np.savez(fh, **{HEADER: header_bytes}, **arrays))


# --- reading ----------------------------------------------------------------------------------------------------

def _what_is(head):
    """Why a file that is not a zip archive is not a model file, from its first bytes."""
    if not head:
        return "empty file, not a cycnn model file"
    if head.startswith(NPY_MAGIC):
        return "a bare .npy array, not a cycnn model file (.npz archive)"
    if head[:1] == b"\x80":
        return "a Python pickle, not a cycnn model file (cycnn never unpickles files)"
    return "not a cycnn model file (not an .npz archive)"


def _read_npy(zf, info, dtype, shape, name, path, limit=MAX_ARRAY_BYTES):
    """Read one .npy member, checking its own header against what the JSON header says before allocating.

    ``shape`` None accepts any 1-D array (the JSON header itself) of at most ``limit`` bytes.
    """
    with zf.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            file_shape, fortran, file_dtype = np.lib.format.read_array_header_1_0(fh, MAX_NPY_HEADER)
        elif version == (2, 0):
            file_shape, fortran, file_dtype = np.lib.format.read_array_header_2_0(fh, MAX_NPY_HEADER)
        else:
            raise ModelFileError(f"{path}: array {name!r} has an unsupported .npy version {version}")
        if file_dtype.hasobject or file_dtype.newbyteorder("=") != dtype.newbyteorder("="):
            raise ModelFileError(f"{path}: array {name!r} is stored as {file_dtype}, the header says {dtype}")
        if fortran:
            raise ModelFileError(f"{path}: array {name!r} is stored in Fortran order; cycnn writes C order")
        if shape is not None and tuple(file_shape) != tuple(shape):
            raise ModelFileError(f"{path}: array {name!r} is stored with shape {file_shape}, the header says "
                                 f"{tuple(shape) if shape is not None else '(n,)'}")
        if shape is None and len(file_shape) != 1:
            raise ModelFileError(f"{path}: damaged header")
        nbytes = int(np.prod(file_shape, dtype=object)) * file_dtype.itemsize
        if nbytes > limit:
            raise ModelFileError(f"{path}: array {name!r} would take {nbytes:,} bytes, more than this reader accepts")
        if nbytes > info.file_size:
            raise ModelFileError(f"{path}: array {name!r} is truncated")
        buffer = bytearray(nbytes)
        if fh.readinto(buffer) != nbytes:
            raise ModelFileError(f"{path}: array {name!r} is truncated")
        if fh.read(1):  # reading to the end also makes zipfile check the member's CRC-32
            raise ModelFileError(f"{path}: array {name!r} has trailing data")
    array = np.frombuffer(buffer, dtype=file_dtype).reshape(file_shape)
    return array if file_dtype.isnative else array.astype(file_dtype.newbyteorder("="))


def _valid_shape(shape):
    return isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)


def _check_header(header, path, kind):
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a cycnn model file (the header is not cycnn's)")
    version = header.get("version")
    if type(version) is int and version > VERSION:
        raise ModelFileError(f"{path}: written in format version {version} by a newer cycnn; this cycnn "
                             f"({__version__}) reads version {VERSION}: upgrade cycnn to load it")
    if type(version) is not int or version != VERSION:  # not True or 1.0, which Python calls equal to 1
        raise ModelFileError(f"{path}: unknown format version {version!r} (this cycnn reads version {VERSION})")
    if header.get("kind") not in KINDS:
        raise ModelFileError(f"{path}: unknown file kind {header.get('kind')!r}")
    if kind is not None and header["kind"] != kind:
        raise ModelFileError(f"{path}: is a {header['kind']} file, expected a {kind} file")
    described = header.get("arrays")
    if not isinstance(described, dict):
        raise ModelFileError(f"{path}: damaged header (no array list)")
    total = 0
    for name, spec in described.items():
        if (not name or name == HEADER or "/" in name or not isinstance(spec, dict)
                or not _valid_shape(spec.get("shape")) or spec.get("dtype") not in ALLOWED_DTYPES
                or not isinstance(spec.get("sha256"), str)):
            raise ModelFileError(f"{path}: damaged header (bad description of array {name!r})")
        total += int(np.prod(spec["shape"], dtype=object)) * np.dtype(spec["dtype"]).itemsize
    if total > MAX_ARRAY_BYTES:
        raise ModelFileError(f"{path}: the header describes {total:,} bytes of arrays, more than this reader "
                             f"accepts ({MAX_ARRAY_BYTES:,})")


def load_arrays(path, kind=None, check=None):
    """Read and verify a file written by ``save_arrays``: returns (header, arrays). ``check(header, path)`` runs
    on the verified header before any array is read (``declared_weights_fit``: a model file's weights)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelFileError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ModelFileError(f"{path}: is a directory, not a model file")
    if not os.path.isfile(path):  # a FIFO would block the read, a device never end it
        raise ModelFileError(f"{path}: not a regular file (a device, FIFO or socket), not a model file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(ZIP_MAGIC))
            if head != ZIP_MAGIC:
                raise ModelFileError(f"{path}: {_what_is(head + fh.read(8))}")
            fh.seek(0)
            with zipfile.ZipFile(fh) as zf:
                return _read_archive(zf, path, kind, check)
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, EOFError) as exc:
        # zipfile says "File is not a zip file" when the directory at the archive's end is missing: a cut file.
        reason = "the end of the archive is missing" if "not a zip file" in str(exc) else str(exc)
        raise ModelFileError(f"{path}: truncated or damaged model file ({reason})") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError, OverflowError,
            RecursionError, UnicodeDecodeError, NotImplementedError, RuntimeError) as exc:
        # RuntimeError: an encrypted member; NotImplementedError: an unknown compression; RecursionError: a
        # pathologically nested JSON header; the rest: a damaged .npy header or member.
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFileError(f"{path}: damaged, truncated or not a cycnn model file ({reason})") from None


def _read_archive(zf, path, kind, check):
    infos = zf.infolist()
    members = {info.filename: info for info in infos}
    if len(members) != len(infos):
        raise ModelFileError(f"{path}: damaged archive (a member appears twice)")
    if HEADER + ".npy" not in members:
        raise ModelFileError(f"{path}: not a cycnn model file (a zip archive without cycnn's header)")
    raw = _read_npy(zf, members[HEADER + ".npy"], np.dtype(np.uint8), None, HEADER, path, MAX_HEADER_BYTES)
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise ModelFileError(f"{path}: damaged header (not valid JSON)") from None
    _check_header(header, path, kind)
    if check is not None:
        check(header, path)
    described = header["arrays"]
    stored = {name[:-len(".npy")] for name in members if name.endswith(".npy")} - {HEADER}
    others = sorted(name for name in members if not name.endswith(".npy"))
    if stored != set(described) or others:
        missing, unexpected = set(described) - stored, sorted(stored - set(described)) + others
        raise ModelFileError(f"{path}: the archive does not match its header (missing: {sorted(missing)}, "
                             f"unexpected: {unexpected})")
    arrays = {}
    for name, spec in described.items():
        array = _read_npy(zf, members[name + ".npy"], np.dtype(spec["dtype"]), spec["shape"], name, path)
        if _digest(array) != spec["sha256"]:
            raise ModelFileError(f"{path}: array {name!r} fails its checksum (the file was altered or damaged)")
        arrays[name] = array
    return header, arrays


# --- models -----------------------------------------------------------------------------------------------------

def _model_arrays(model):
    return {f"param.{key}": param for key, param, _ in model.parameters()}


def save_model(model, path, metadata=None):
    """Save a Sequential's architecture and weights (see the module docstring for the format).

    Weights holding NaN or infinity are refused (such a file could not be loaded back); nothing is written then.
    """
    arrays = _model_arrays(model)
    for name, array in arrays.items():
        if not np.all(np.isfinite(array)):
            raise ModelFileError(f"{path}: not saved, weight {name} holds NaN or infinite values")
    save_arrays(path, "model", model.get_config(), arrays, {"metadata": metadata or {}})


def _build_described(header, path):
    """The model a header's architecture describes, with placeholder weights (nothing allocated)."""
    try:
        return build(header.get("architecture"), initialize=False)
    except (CycnnError, KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ModelFileError(f"{path}: the stored architecture is invalid ({exc})") from None


def declared_weights_fit(header, path):
    """Refuse a file whose header declares weights (or optimizer slots) of shapes other than its architecture's,
    before any array is read: a crafted header cannot make the reader inflate gigabytes of compressed zeros."""
    shapes = {f"param.{key}": list(param.shape) for key, param, _ in _build_described(header, path).parameters()}
    for name, spec in header["arrays"].items():
        weight = "param." + name.partition(":")[2] if name.startswith("opt.") else name
        if weight in shapes and spec["shape"] == shapes[weight]:
            continue
        needed = shapes.get(weight, "no such weight")
        raise ModelFileError(f"{path}: array {name!r} is declared {spec['shape']}, the architecture needs {needed}")


def model_from(header, arrays, path):
    """Build the model a header describes and fill in its weights, checking each against the layer.

    The layers are built with placeholder weights that take no memory, so a tampered architecture cannot make
    the loader allocate (and fill with random numbers) layers far larger than the file before it is checked.
    """
    params = {name: a for name, a in arrays.items() if name.startswith("param.")}
    model = _build_described(header, path)
    expected = {f"param.{key}": param for key, param, _ in model.parameters()}
    if set(params) != set(expected):
        raise ModelFileError(f"{path}: weights do not match the architecture "
                             f"(expected {sorted(expected)}, found {sorted(params)})")
    dtypes = {str(a.dtype) for a in params.values()}
    if len(dtypes) > 1 or not dtypes <= {"float32", "float64"}:
        raise ModelFileError(f"{path}: weights must all be float32 or all float64, found {sorted(dtypes)}")
    for name, target in expected.items():
        source = params[name]
        if source.shape != target.shape:
            raise ModelFileError(f"{path}: weight {name} has shape {source.shape}, the architecture needs "
                                 f"{target.shape}")
        if not np.all(np.isfinite(source)):
            raise ModelFileError(f"{path}: weight {name} holds NaN or infinite values")
    dtype = dtypes.pop() if dtypes else "float32"
    for i, layer in enumerate(model.layers):
        if layer.params:
            layer.load_params({pname: params[f"param.{i}.{pname}"] for pname in layer.params})
        else:
            layer.astype(dtype)
    return model


def load_model(path):
    """Load a model file (or the model inside a checkpoint), in eval mode: a loaded model is for answering, so
    two passes on one image give the same logits (dropout off); training code switches it to train mode itself."""
    header, arrays = load_arrays(path, check=declared_weights_fit)
    model = model_from(header, arrays, path)
    metadata = header.get("metadata", {})
    model.metadata = metadata if isinstance(metadata, dict) else {}
    return model.eval()
