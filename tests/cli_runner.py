"""Running the ``cycnn`` command in the test process, the way the console script does (through ``main``)."""
import pytest

from cycnn.cli import main


def run_cli(argv, capsys=None):
    """``cycnn ARGV`` in this process: (exit code, stdout, stderr); the output is captured only with ``capsys``."""
    if capsys is not None:
        capsys.readouterr()  # drop what earlier code printed
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in argv])
    out, err = capsys.readouterr() if capsys is not None else ("", "")
    return stop.value.code, out, err
