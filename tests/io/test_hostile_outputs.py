"""Where cycnn writes, under attack: a save never replaces what is not a regular file, follows a symlink to the
file it names, and refuses, before any work, paths that cannot be written; two runs cannot write one output."""
import os
import stat
import subprocess
import sys

import pytest

from cycnn.errors import ConfigError, OutputError
from cycnn.io.atomic import write_atomic
from cycnn.io.paths import OutputLock, check_writable

from cli_runner import assert_one_line_error, deadline, run_cli  # tests/cli_runner.py

QUICK = ["train", "--epochs", "1", "--limit-train", "64", "--val-split", "0", "--conv", "2", "--dense", "8",
         "--quiet"]


def write(path, text):
    write_atomic(path, lambda fh: fh.write(text.encode()))


def test_a_fifo_is_refused_not_replaced(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with deadline(), pytest.raises(OutputError, match="not a regular file"):
        write(fifo, "x")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_device_is_refused_not_replaced(tmp_path):
    device = tmp_path / "null"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # the same device as /dev/null
    except PermissionError:
        pytest.skip("this process may not make device nodes")
    with pytest.raises(OutputError, match="not a regular file"):
        write(device, "x")
    assert stat.S_ISCHR(os.lstat(device).st_mode)


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(OutputError, match="is a directory"):
        write(tmp_path, "x")


def test_a_symlink_is_followed_and_kept(tmp_path):
    target, link = tmp_path / "target.txt", tmp_path / "link.txt"
    target.write_text("old")
    link.symlink_to(target)
    write(link, "new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new"


def test_a_symlink_to_a_terminal_or_pipe_is_refused(tmp_path):
    link = tmp_path / "stdout"
    link.symlink_to("/proc/self/fd/1")
    read_end, write_end = os.pipe()
    try:
        code = subprocess.run([sys.executable, "-c", f"from cycnn.io.atomic import write_atomic\n"
                               f"write_atomic({str(link)!r}, lambda fh: fh.write(b'x'))"],
                              stdout=write_end, stderr=subprocess.PIPE, timeout=60).returncode
    finally:
        os.close(write_end)
        os.close(read_end)
    assert code != 0 and link.is_symlink()


@pytest.mark.parametrize("name, problem", [("", "give a file name"), (".", "is a directory"), ("/", "give a file name"),
                                           ("x" * 300 + ".npz", "longer than the file system allows")])
def test_impossible_names_are_refused_before_work(name, problem):
    with pytest.raises(ConfigError, match=problem):
        check_writable(name, "--out")


def test_a_symlink_loop_is_refused_before_work(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(ConfigError, match="cannot follow"):
        check_writable(tmp_path / "a" / "m.npz", "--out")


@pytest.mark.parametrize("kind", ["fifo", "loop", "long"])
def test_train_refuses_an_output_it_cannot_write_before_training(kind, tmp_path, capsys):
    """Each of these failed only after the whole training, or replaced a FIFO with the model."""
    out = tmp_path / "m.npz"
    if kind == "fifo":
        os.mkfifo(out)
    elif kind == "loop":
        (tmp_path / "a").symlink_to(tmp_path / "b")
        (tmp_path / "b").symlink_to(tmp_path / "a")
        out = tmp_path / "a" / "m.npz"
    else:
        out = tmp_path / ("m" * 300 + ".npz")
    with deadline(20):
        code, _, err = run_cli([*QUICK, "--out", out], capsys)
    assert_one_line_error(code, err, "--out")
    assert "epoch" not in err


def test_a_second_run_on_the_same_output_is_refused(tmp_path, capsys):
    out = tmp_path / "m.npz"
    (tmp_path / "m.npz.lock").write_text(str(os.getppid()))  # a live process holds it
    code, _, err = run_cli([*QUICK, "--out", out], capsys)
    assert_one_line_error(code, err, "another cycnn run", str(os.getppid()))
    assert not out.exists()


def test_a_lock_left_by_a_dead_run_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = tmp_path / "m.npz.lock"
    lock.write_text(dead.stdout.strip())
    with OutputLock(tmp_path / "m.npz"):
        assert lock.read_text() == str(os.getpid())
    assert not lock.exists()
