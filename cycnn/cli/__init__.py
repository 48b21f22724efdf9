"""The command line: thin commands that parse flags, call the library and print (``cycnn --help``).

``main`` installs the signal handlers before it imports anything heavy, so that Ctrl-C or SIGTERM at any moment
of a command, its start included, ends in one line and exit code 130; the commands (``app``) are loaded then.
"""
from cycnn.cli import signals
from cycnn.errors import Interrupted


def main(argv=None):
    """The ``cycnn`` command (and ``python -m cycnn``)."""
    signals.install()
    try:
        from cycnn.cli.commands import run
    except Interrupted:
        signals.exit_interrupted("cycnn: interrupted")
    except RuntimeError as exc:  # a signal that lands in a class definition arrives wrapped in one
        if not isinstance(exc.__cause__, Interrupted):
            raise
        signals.exit_interrupted("cycnn: interrupted")
    run(argv)


def __getattr__(name):
    """the typer application (``cycnn.cli.commands.app``), for those who drive it (typer's test runner)."""
    if name == "app":
        from cycnn.cli.commands import app
        return app
    raise AttributeError(f"module 'cycnn.cli' has no attribute {name!r}")
