"""The exceptions cycnn raises for problems a user can fix; the CLI prints them as one line and exits with 2."""


class CycnnError(Exception):
    """Base class: a problem with the user's input, files or settings (never a bug in cycnn)."""


class ConfigError(CycnnError, ValueError):
    """A bad argument or setting: a negative size, a dropout outside [0, 1), an unknown optimizer."""


class ArchitectureError(ConfigError):
    """A network that cannot be built: a kernel larger than its input, mismatched channels, an unknown layer."""


class DataError(CycnnError):
    """A dataset file that is missing, damaged or not in the expected format."""


class ImageError(CycnnError):
    """An image file that cannot be read as a digit."""


class ModelFileError(CycnnError):
    """A model or checkpoint file that is missing, truncated, foreign or tampered with, or weights that cannot be
    saved (NaN or infinite values)."""


class OutputError(CycnnError):
    """A file cycnn cannot write: a directory in the way, no permission, a full disk."""


class TrainingDiverged(CycnnError):
    """The loss became NaN or infinite."""


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM, as the command line's signal handler raises it: a BaseException, like KeyboardInterrupt,
    so that no ``except Exception`` swallows it, but not a KeyboardInterrupt, which click would turn into an
    Abort after printing a blank line."""


class TrainingInterrupted(CycnnError):
    """Ctrl-C or SIGTERM stopped a run after writing a checkpoint; the message says how to resume."""
