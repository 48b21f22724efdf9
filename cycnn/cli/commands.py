"""The ``cycnn`` command line: the commands, and ``main``, which turns errors into one line.

Every problem the user can fix (a missing file, a bad flag value, a kernel larger than its input) ends the command
with one line on stderr, ``cycnn: error: ...``, and exit code 2; an interrupted run says how to resume and exits
with 130.
"""
import sys
import warnings

import typer

try:  # typer >= 0.20 carries its own click; older releases use click's exceptions
    from typer import TyperException as UsageProblem
except ImportError:  # pragma: no cover
    from click import ClickException as UsageProblem

from cycnn.cli import compare, explore, models, pictures, reference
from cycnn.cli.common import EXIT_USAGE
from cycnn.cli.signals import exit_interrupted
from cycnn.cli.train import train
from cycnn.errors import CycnnError, Interrupted, TrainingInterrupted

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="cycnn: a from-scratch CNN with Cython kernels that learns to read handwritten digits.")
app.command()(train)
app.command("evaluate")(models.evaluate)
app.command()(models.predict)
app.command()(models.summary)
app.command()(models.export)
app.command()(reference.layers)
app.command()(compare.compare)
app.command()(pictures.visualize)
app.command()(pictures.report)
app.command()(explore.explore)


def run(argv):
    """Run the CLI (``cycnn.cli.main`` has installed the signal handlers, which stay until the process exits, so
    that a signal as a command ends is still one line), turning user errors into one line on stderr and exit
    code 2, and an interruption into one line (with the command that resumes, where a checkpoint exists) and exit
    code 130."""
    warnings.formatwarning = _one_line_warning
    try:
        result = app(args=argv, prog_name="cycnn", standalone_mode=False)
    except (TrainingInterrupted, Interrupted, typer.Abort, KeyboardInterrupt) as exc:
        exit_interrupted(str(exc) if isinstance(exc, TrainingInterrupted) else "cycnn: interrupted")
    except CycnnError as exc:
        typer.echo(f"cycnn: error: {printable(str(exc))}", err=True)
        sys.exit(EXIT_USAGE)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except UsageProblem as exc:
        message = exc.format_message()
        if message:  # (bare `cycnn` has already printed the help)
            typer.echo(f"cycnn: error: {message}", err=True)
        sys.exit(exc.exit_code)
    except RuntimeError as exc:
        if not isinstance(exc.__cause__, Interrupted):  # Python wraps a signal that lands in a class definition
            raise
        exit_interrupted("cycnn: interrupted")
    except MemoryError:
        typer.echo("cycnn: error: out of memory (try a smaller --batch-size)", err=True)
        sys.exit(EXIT_USAGE)
    except OSError as exc:  # the last net under the checks: a file system refusing something none foresaw
        where = f"{str(exc.filename)[:200]}: " if exc.filename else ""
        typer.echo(f"cycnn: error: {where}{exc.strerror or exc}", err=True)
        sys.exit(EXIT_USAGE)
    sys.exit(result if isinstance(result, int) else 0)


def _one_line_warning(message, category, filename, lineno, line=None):
    return f"cycnn: warning: {printable(str(message))}\n"


def printable(text):
    """``text`` as one printable line: a newline or a terminal escape in a file's name (or anywhere a message
    quotes a file) is shown escaped, never obeyed."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
