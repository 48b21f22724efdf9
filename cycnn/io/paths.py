"""Checks on the paths cycnn is asked to write, made before any work so a run never fails at its end."""
import os
from pathlib import Path

from cycnn.errors import ConfigError


def check_writable(path, flag):
    """Fail now rather than after training when ``path`` cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a directory; give a file name")
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: cannot write in {parent}")
