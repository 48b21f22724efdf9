"""Running the ``cycnn`` command in the test process, the way the console script does (through ``main``), and
what the tests of hostile input share: the one-line error check, a deadline against hangs, a tiny IDX dataset."""
import contextlib
import signal

import numpy as np
import pytest

from cycnn.cli import main


def run_cli(argv, capsys=None):
    """``cycnn ARGV`` in this process: (exit code, stdout, stderr); the output is captured only with ``capsys``.

    ``main`` owns the process's signals as the console script's entry point (an interrupted run ignores further
    Ctrl-C while it exits); here the test process gets its own handlers back, so that later tests and the
    processes they start are interruptible."""
    if capsys is not None:
        capsys.readouterr()  # drop what earlier code printed
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(SystemExit) as stop:
            main([str(a) for a in argv])
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    out, err = capsys.readouterr() if capsys is not None else ("", "")
    return stop.value.code, out, err


def assert_one_line_error(code, err, *fragments):
    """Exit code 2 and exactly one line ``cycnn: error: ...`` holding every fragment (never a traceback)."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cycnn: error: "), err
    assert "Traceback" not in err and "\x1b" not in err  # no traceback, and no terminal escape let through
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def write_tiny_dataset(directory, classes=3):
    """Four IDX files in MNIST's layout: 40 training and 10 test images of 8x8 pixels, ``classes`` classes."""
    rng = np.random.default_rng(0)

    def idx(array):
        return bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape) + array.tobytes()

    directory.mkdir()
    for prefix, n in (("train", 40), ("t10k", 10)):
        (directory / f"{prefix}-images-idx3-ubyte").write_bytes(idx(rng.integers(0, 256, (n, 8, 8), dtype=np.uint8)))
        (directory / f"{prefix}-labels-idx1-ubyte").write_bytes(idx(np.arange(n, dtype=np.uint8) % classes))
    return directory


@contextlib.contextmanager
def deadline(seconds=5):
    """Fail instead of hanging: a call that blocks (opening a FIFO nobody writes) is interrupted by SIGALRM."""
    def expire(signum, frame):
        raise AssertionError(f"still blocked after {seconds} s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
