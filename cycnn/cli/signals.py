"""How the command line meets Ctrl-C and SIGTERM: both raise ``Interrupted`` (not KeyboardInterrupt, which click
would turn into an Abort after a blank line), anywhere outside a training step, and end in one line and exit 130.
The training loop installs its own graceful stop over these (``cycnn.train.run``)."""
import signal
import sys

from cycnn.errors import Interrupted

EXIT_INTERRUPTED = 130
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def install():
    """Make Ctrl-C and SIGTERM raise Interrupted, for the rest of the process."""
    for sig in SIGNALS:
        signal.signal(sig, _interrupt)


def _interrupt(signum, frame):
    raise Interrupted


def exit_interrupted(line):
    """One line and exit 130; a further Ctrl-C or SIGTERM while exiting is ignored, so it cannot cut that short."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    print(line, file=sys.stderr, flush=True)
    sys.exit(EXIT_INTERRUPTED)
