"""The paths cycnn writes: checked before any work (so a run never fails at its end), what a symlink means, and a
lock that keeps two runs from writing the same output at once.

A symlink is followed: the file it points to is what gets replaced (atomically, by ``cycnn.io.atomic``), and the
link stays. Whatever exists at the end of the path must be a regular file: a device, a FIFO, a socket or a
directory is refused, never replaced.
"""
import os
from pathlib import Path

from cycnn.errors import ConfigError, OutputError

LOCK_SUFFIX = ".lock"


def resolve_output(path, what="", error=ConfigError):
    """The real path that writing ``path`` would replace (symlinks followed); refuses (``error``, one line
    starting with ``what``, the flag that named the path) an empty name, a symlink loop, a name longer than the
    file system takes and anything but a regular file at the end of the path."""
    text = os.fspath(path)
    what = f"{what} " if what else ""
    if not text or text.endswith(os.sep):
        raise error(f"{what}{text!r}: give a file name")
    if len(os.fsencode(text)) > 4096:  # PATH_MAX: nothing longer can be opened (and stat would fail on it)
        raise error(f"{what}{text[:80]}...: the name is longer than the file system allows")
    try:
        return _regular_target(text, what, error)
    except (RuntimeError, OSError) as exc:  # RuntimeError: Python before 3.13 on a symlink loop
        raise error(f"{what}{text[:200]}: cannot follow this path ({getattr(exc, 'strerror', None) or exc})") from None


def _regular_target(text, what, error):
    real = Path(text).resolve(strict=False)
    parent = real.parent
    while not parent.exists():
        parent = parent.parent
    try:
        name_max = os.pathconf(parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    if any(len(os.fsencode(part)) > name_max for part in real.parts) or len(os.fsencode(str(real))) > 4096:
        raise error(f"{what}{text[:80]}...: the name is longer than the file system allows")
    if real.is_dir():
        raise error(f"{what}{text}: is a directory; give a file name")
    if real.exists() and not real.is_file():
        raise error(f"{what}{text}: is not a regular file (a device, FIFO or socket); cycnn only replaces "
                          "regular files")
    return real


def check_output_directory(path, what):
    """Refuse, before any work, a directory to write into that cannot be one: an over-long name, or an existing
    path that is not a directory."""
    text = os.fspath(path)
    if len(os.fsencode(text)) > 4096 or any(len(os.fsencode(part)) > 255 for part in Path(text).parts):
        raise ConfigError(f"{what} {text[:80]}...: the name is longer than the file system allows")
    try:
        if os.path.exists(text) and not os.path.isdir(text):
            raise ConfigError(f"{what} {text}: exists and is not a directory")
    except OSError as exc:
        raise ConfigError(f"{what} {text[:200]}: cannot use this directory ({exc.strerror})") from None


def check_writable(path, what):
    """Fail now rather than after training when ``path`` cannot be written."""
    real = resolve_output(path, what)
    parent = real.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {path}: cannot write in {parent}")


class OutputLock:
    """``with OutputLock(path):`` holds ``PATH.lock`` (holding this process's id) while a run writes ``path``; a
    second run on the same output is refused with one line. A lock left by a process that no longer exists (a
    killed run) is taken over."""

    def __init__(self, path, what="--out"):
        self.path = str(resolve_output(path, what)) + LOCK_SUFFIX
        self.what, self.target = what, path
        self._held = False

    def __enter__(self):
        for _ in range(2):
            try:
                os.makedirs(os.path.dirname(self.path), exist_ok=True)  # as the model's save will
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                if self._owner_alive():
                    raise ConfigError(f"{self.what} {self.target}: another cycnn run (process {self._owner()}) is "
                                      f"writing it; wait for it to end or choose another {self.what}") from None
                self._remove()
                continue
            except OSError as exc:
                raise OutputError(f"{self.path}: cannot create the lock file ({exc.strerror})") from None
            with os.fdopen(fd, "w") as fh:
                fh.write(str(os.getpid()))
            self._held = True
            return self
        raise ConfigError(f"{self.what} {self.target}: cannot take the lock {self.path}")

    def __exit__(self, *exc):
        if self._held:
            self._remove()
            self._held = False

    def _owner(self):
        try:
            with open(self.path) as fh:
                text = fh.read(32).strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def _owner_alive(self):
        pid = self._owner()
        return pid is not None and pid != os.getpid() and process_exists(pid)

    def _remove(self):
        try:
            os.unlink(self.path)
        except OSError:
            pass


def process_exists(pid):
    """Whether process ``pid`` runs (one of another user counts; a number that is no pid does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # it exists but belongs to someone else, or the number is not a pid: leave its files alone
    return True
