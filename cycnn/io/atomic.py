"""Atomic file writing: a file is either its old content or the complete new one, whatever happens mid-write.

Every file cycnn writes (models, checkpoints, logs' neighbours, figures, reports, ONNX files) goes through
``write_atomic``.
"""
import os
import stat
import tempfile

from cycnn.errors import OutputError
from cycnn.io.paths import process_exists, resolve_output


def _new_file_mode(path):
    """The mode the file would get from a plain open(): the old file's mode, or 0o666 less the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _umask():
    """The process's umask, read without changing it where Linux allows (changing it races with other threads)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _remove_abandoned_temporaries(directory, base):
    """Delete temporary files of earlier saves to the same path whose writer process no longer exists.

    A process killed in the middle of a save leaves its temporary file behind (nothing can remove it at that
    moment); the next save to the same path cleans up after it. Temporaries are named ``.BASE.PID.RANDOM.tmp``.
    """
    prefix = f".{base}."
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid = name[len(prefix):].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or process_exists(int(pid)):
            continue
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass


def write_atomic(path, write):
    """Call ``write(fileobj)`` on a temporary file beside ``path``, fsync it, then rename it over ``path``.

    A crash or kill at any moment leaves either the old file or the complete new one at ``path`` (the rename is
    atomic on POSIX and Windows). The temporary file is a hidden ``.NAME.PID.RANDOM.tmp`` in the same directory.
    A symlink is followed (the file it points to is replaced and the link kept); a device, FIFO, socket or
    directory at the path is refused. Raises OutputError if the file cannot be written (one of those in the way,
    no permission, a full disk).
    """
    path = os.fspath(path)
    real = str(resolve_output(path, error=OutputError))
    directory, base = os.path.dirname(real), os.path.basename(real)
    try:
        os.makedirs(directory, exist_ok=True)
        mode = _new_file_mode(real)
        _remove_abandoned_temporaries(directory, base)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{base}.{os.getpid()}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"{path}: cannot write here ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            if hasattr(os, "fchmod"):  # mkstemp creates the file private (0o600)
                os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, real)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
        raise
    try:  # make the rename itself durable (POSIX; directories cannot be opened on Windows)
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
