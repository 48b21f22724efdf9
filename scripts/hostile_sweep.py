#!/usr/bin/env python3
"""A hostile sweep over every cycnn command: absurd flags, hostile output paths, crafted model, checkpoint,
architecture and log files, broken IDX datasets and images, signals at random moments, a full file system and bad
clients of the live page.

Every case runs ``sys.executable -m cycnn ...`` in a subprocess (PYTHONPATH from the environment), in a fresh
temporary directory, under a timeout, and is classified:

- handled: exit 0 for a case that should work; or exit 2 with stderr exactly one line ``cycnn: error: ...``
  (130 and one line ``interrupted ...; resume with: ...`` or ``cycnn: interrupted`` for an interruption); with
  no "Traceback" and no raw terminal escape (\\x1b) in the output, no file written outside the case's directory,
  no FIFO, device, symlink or (after an error) existing file replaced, a peak RSS under 2 GB, within the timeout;
- not handled: everything else, printed with its command, exit code and the first lines of stderr.

It ends with the counts per category and in total and exits 1 if any case was not handled.

    PYTHONPATH=/work/main .venv/bin/python scripts/hostile_sweep.py            # everything (about 9 minutes, 2 cores)
    PYTHONPATH=/work/main .venv/bin/python scripts/hostile_sweep.py --only flags,live --verbose --keep
    PYTHONPATH=/work/main .venv/bin/python scripts/hostile_sweep.py --match FIFO   # the cases whose name has FIFO

Categories: flags, outputs, crafted (model, checkpoint, architecture and log files, pickles, zip bombs, FIFOs and
devices as inputs), data (IDX datasets, image folders, images), signals, fullfs (a 600 kB tmpfs; needs root and
mount), live (bad clients of the --live server). Every child runs under an 8 GB address-space limit, so that a
runaway allocation cannot take the machine down (the 2 GB peak-RSS check still flags it).
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import pickle
import random
import re
import resource
import shlex
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np
from PIL import Image, ImageDraw

TIMEOUT = 60.0
FIFO_TIMEOUT = 10.0  # a command that opens a FIFO nobody writes blocks forever: no need to wait a minute
MAX_RSS_KB = 2 * 1024 * 1024  # ru_maxrss is in KiB on Linux
KEEP_OUTPUT = 1 << 20  # bytes of each stream kept (a command that floods its output must not flood the sweep)
CATEGORIES = ("flags", "outputs", "crafted", "data", "signals", "fullfs", "live")
INTERRUPT_LINE = re.compile(r"^(cycnn: )?interrupted.*; resume with: (cycnn .+)$")
REPO = Path(__file__).resolve().parent.parent
HOME = Path(os.path.expanduser("~"))
IS_ROOT = os.geteuid() == 0


# --- running one command -----------------------------------------------------------------------------------------

@dataclass
class Result:
    rc: Optional[int]
    out: bytes
    err: bytes
    seconds: float
    rss_kb: int
    timed_out: bool


class Proc:
    """A started cycnn process; ``send`` delivers a signal only while the process has not been reaped."""

    def __init__(self, popen):
        self.popen, self.lock, self.done = popen, threading.Lock(), False
        self.started = time.monotonic()

    def send(self, sig):
        with self.lock:
            if self.done:
                return False
            try:
                os.kill(self.popen.pid, sig)
            except ProcessLookupError:
                return False
            return True

    def alive(self):
        with self.lock:
            return not self.done


def _vm_hwm(pid):
    """The process's peak RSS so far in KiB (VmHWM), or 0."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _own_rss():
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def peak_rss(polled, usage, parent_rss):
    """The child's peak RSS: VmHWM polled while it ran; wait4's ru_maxrss also counts the moments between fork and
    exec, when the child's RSS is the sweep's own, so it is used only when it exceeds that."""
    return max(polled, usage.ru_maxrss if usage.ru_maxrss > parent_rss * 1.5 + 200 * 1024 else 0)


def _drain(stream, chunks):
    kept = 0
    while True:
        data = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
        if not data:
            break
        if kept < KEEP_OUTPUT:
            chunks.append(data[:KEEP_OUTPUT - kept])
            kept += len(chunks[-1])
    stream.close()


def run_cycnn(argv, cwd, timeout=TIMEOUT, env=None, during=None):
    """Run ``python -m cycnn ARGV`` in ``cwd``; ``during(proc)`` runs in a thread meanwhile. The child is reaped
    with wait4, so its own peak RSS is measured even while other cases run in parallel."""
    parent_rss = _own_rss()
    popen = subprocess.Popen([sys.executable, "-m", "cycnn", *argv], cwd=cwd, env=env or ENV,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
    proc = Proc(popen)
    polled = 0
    out, err = [], []
    readers = [threading.Thread(target=_drain, args=(popen.stdout, out), daemon=True),
               threading.Thread(target=_drain, args=(popen.stderr, err), daemon=True)]
    for t in readers:
        t.start()
    helper = None
    if during is not None:
        helper = threading.Thread(target=_guarded, args=(during, proc), daemon=True)
        helper.start()
    deadline, timed_out = proc.started + timeout, False
    while True:
        with proc.lock:
            polled = max(polled, _vm_hwm(popen.pid))
            pid, status, usage = os.wait4(popen.pid, os.WNOHANG)
            if pid:
                proc.done = True
                break
        if not timed_out and time.monotonic() > deadline:
            timed_out = True
            try:
                os.killpg(popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)
    seconds = time.monotonic() - proc.started
    popen.returncode = os.waitstatus_to_exitcode(status)
    try:  # the process group may have left children holding the pipes
        os.killpg(popen.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for t in readers:
        t.join(5)
    if helper is not None:
        helper.join(10)
    return Result(popen.returncode, b"".join(out), b"".join(err), seconds, peak_rss(polled, usage, parent_rss),
                  timed_out)


def _guarded(function, proc):
    try:
        function(proc)
    except Exception:  # a bug in a helper must show, not vanish in a thread
        sys.stderr.write(f"sweep: helper failed:\n{traceback.format_exc()}")


# --- snapshots: what a case may not touch ------------------------------------------------------------------------

def snapshot(root, flat=False, prune=()):
    """{relative path: (type, inode, size, mtime_ns, link target)} of everything under ``root`` (lstat), without
    descending into the directories named in ``prune``."""
    snap = {}
    root = str(root)
    if not os.path.isdir(root):
        return snap
    if flat:
        entries = [(root, name) for name in _listdir(root)]
    else:
        entries = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in prune]
            entries += [(dirpath, name) for name in dirnames + filenames]
    for dirpath, name in entries:
        path = os.path.join(dirpath, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        link = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
        snap[os.path.relpath(path, root)] = (stat.S_IFMT(st.st_mode), st.st_ino, st.st_size, st.st_mtime_ns, link)
    return snap


def _listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return []


KIND = {stat.S_IFIFO: "FIFO", stat.S_IFCHR: "character device", stat.S_IFBLK: "block device",
        stat.S_IFSOCK: "socket", stat.S_IFLNK: "symlink", stat.S_IFREG: "file", stat.S_IFDIR: "directory"}
SPECIAL = (stat.S_IFIFO, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFSOCK, stat.S_IFLNK)


# The names of what the sweep's commands write (outputs, their temporaries and locks, the pickle marker...). Other
# programs may be writing in /tmp or in the repository meanwhile (someone editing the sources), so only new files
# with these names count as written by a case.
OUTPUT_NAME = re.compile(r"(\.(npz|onnx|png|html|jsonl|lock|tmp|out)$)|^(UNPICKLED|pics|sub|real|target\.bin|new\.bin|"
                         r"victim.*|cycnn-model.*|n{100,}.*|d{200})$")


class GlobalWatch:
    """Directories outside every case's directory: no file that a case would write may appear there, and the
    bundled data may not change."""

    def __init__(self, ignore):
        self.ignore = {str(p) for p in ignore}
        self.lock = threading.Lock()
        self.flat = [Path("/"), Path("/tmp"), Path("/work"), HOME, HOME / ".cache", HOME / ".config", Path("/dev/shm"),
                     REPO / "cycnn" / "data" / "mnist"]
        self.base = self._take()

    def _take(self):
        snap = {}
        for d in self.flat:
            for rel, info in snapshot(d, flat=True).items():
                full = str(d / rel)
                if full not in self.ignore:
                    snap[full] = info if "mnist" in str(d) else None
        for rel in snapshot(REPO, prune=(".venv", ".git", ".hypothesis", "__pycache__", "build", "node_modules")):
            snap[str(REPO / rel)] = None
        return snap

    def check(self):
        with self.lock:
            now = self._take()
            added = sorted(p for p in set(now) - set(self.base) if OUTPUT_NAME.search(os.path.basename(p)))
            changed = sorted(p for p in set(now) & set(self.base) if now[p] != self.base[p])
            self.base = now
        return [f"written outside its directory: {p}" for p in added + changed]


# --- cases -------------------------------------------------------------------------------------------------------

@dataclass
class Case:
    cat: str
    name: str
    argv: list = field(default_factory=list)  # items may be callables of the setup's context
    expect: str = "error"  # ok | error | either | interrupt | help
    needs: tuple = ()  # shared files copied into the case's directory: model, ckpt, data, digit, log
    setup: Optional[Callable] = None  # setup(work, outside) -> dict (protect, absent, may_change, skip, ...)
    check: Optional[Callable] = None  # check(result, work, outside, ctx) -> [problem]
    during: Optional[Callable] = None  # during(proc, work, ctx)
    timeout: float = TIMEOUT
    env: Optional[dict] = None
    runner: Optional[Callable] = None  # runner(case_dir) -> [row]: a case with its own way of running


@dataclass
class Row:
    cat: str
    name: str
    cmd: str
    rc: Optional[int]
    err: str
    problems: List[str]
    accepted: bool = False  # exit 0 on a case that could also have been refused
    skipped: str = ""
    seconds: float = 0.0
    rss_kb: int = 0
    out: str = ""


def printable(text, limit=None):
    """Text with control characters escaped, so that the sweep's own report never carries an escape."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = "".join(c if (c.isprintable() or c in "\n\t") and c != "\x1b" else repr(c)[1:-1] for c in text)
    return text if limit is None or len(text) <= limit else text[:limit] + "..."


def command_text(argv, case_dir=None):
    words = ["cycnn"] + [str(a) for a in argv]
    text = " ".join(shlex.quote(w) for w in words)
    if case_dir is not None:
        text = text.replace(str(case_dir), "$CASE")
    return printable(text, 400)


def judge(expect, res, timeout):
    """The problems of an outcome against what the case expects."""
    problems = []
    text = res.out + res.err
    if res.timed_out:
        problems.append(f"still running after {timeout:.0f} s (killed)")
    if b"Traceback" in text:
        problems.append("traceback in the output")
    if b"\x1b" in text:
        problems.append("raw terminal escape (\\x1b) in the " + ("stderr" if b"\x1b" in res.err else "stdout"))
    if res.rss_kb > MAX_RSS_KB:
        problems.append(f"peak RSS {res.rss_kb / 1048576:.2f} GB (more than 2 GB)")
    lines = res.err.decode("utf-8", "replace").strip().splitlines()
    one_error = res.rc == 2 and len(lines) == 1 and lines[0].startswith("cycnn: error: ")
    if res.timed_out:
        pass
    elif expect == "ok" and res.rc != 0:
        problems.append(f"expected exit 0, got {res.rc}")
    elif expect == "error" and not one_error:
        problems.append(f"expected exit 2 and one line 'cycnn: error: ...', got exit {res.rc} and "
                        f"{len(lines)} stderr line(s)")
    elif expect == "either" and res.rc != 0 and not one_error:
        problems.append(f"expected exit 0, or exit 2 and one line 'cycnn: error: ...'; got exit {res.rc} and "
                        f"{len(lines)} stderr line(s)")
    elif expect == "help" and (res.rc not in (0, 2) or b"Usage" not in res.out):
        problems.append(f"expected the help text (exit 0 or 2), got exit {res.rc}")
    elif expect == "interrupt" and res.rc is not None and res.rc < 0:
        problems.append(f"killed by signal {-res.rc} ({signal.Signals(-res.rc).name}) without a line: no handler at "
                        f"that moment ({len(res.out)} bytes of stdout were written)")
    elif expect == "interrupt":
        ok = res.rc == 130 and len(lines) == 1 and (INTERRUPT_LINE.match(lines[0]) or lines[0] == "cycnn: interrupted")
        if not ok and res.rc != 0:  # exit 0: the command ended before (or as) the signal came
            problems.append(f"expected exit 130 and one interruption line, got exit {res.rc} and {len(lines)} "
                            "stderr line(s)")
    return problems


def execute(case, index, keep):
    slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{case.cat}-{case.name}")[:60].strip("-")
    case_dir = CASES / f"{index:04d}-{slug}"
    work, outside = case_dir / "work", case_dir / "outside"
    work.mkdir(parents=True)
    outside.mkdir()
    (outside / "victim.txt").write_text("must stay as it is\n")
    if case.runner is not None:
        try:
            rows = case.runner(case_dir)
        except Exception:
            rows = [Row(case.cat, case.name, "(runner)", None, "", ["the sweep's runner failed: "
                                                                    + traceback.format_exc(limit=3)])]
        if rows:
            rows[-1].problems += WATCH.check()
        if not keep:
            shutil.rmtree(case_dir, ignore_errors=True)
        return rows
    try:
        for need in case.needs:
            source, name = SHARED_FILES[need]
            if source.is_dir():
                shutil.copytree(source, work / name)
            else:
                shutil.copy(source, work / name)
        ctx = case.setup(work, outside) if case.setup else {}
        ctx = ctx or {}
    except Exception:
        return [Row(case.cat, case.name, "(setup)", None, "", ["the sweep's setup failed: "
                                                             + traceback.format_exc(limit=4)])]
    if ctx.get("skip"):
        shutil.rmtree(case_dir, ignore_errors=True)
        return [Row(case.cat, case.name, "", None, "", [], skipped=ctx["skip"])]
    argv = case.argv(ctx) if callable(case.argv) else [a(ctx) if callable(a) else a for a in case.argv]
    before_work, before_outside = snapshot(work), snapshot(outside)
    during = (lambda proc: case.during(proc, work, ctx)) if case.during else None
    res = run_cycnn(argv, work, case.timeout, case.env, during)
    problems = judge(case.expect, res, case.timeout)
    # Nothing outside the case's work directory, in its own directory or anywhere else.
    after_outside = snapshot(outside)
    if after_outside != before_outside:
        changed = sorted(k for k in set(before_outside) | set(after_outside)
                         if before_outside.get(k) != after_outside.get(k))
        problems.append(f"changed outside its work directory: {', '.join('outside/' + c for c in changed[:5])}")
    strays = sorted(set(_listdir(case_dir)) - {"work", "outside"})
    if strays:
        problems.append(f"wrote beside its work directory: {', '.join(printable(s, 60) for s in strays[:5])}")
    after_work = snapshot(work)
    protect = set(ctx.get("protect", ()))
    may_change = set(ctx.get("may_change", ()))
    for rel, info in before_work.items():
        special = info[0] in SPECIAL
        kept_file = case.expect == "error" and info[0] == stat.S_IFREG and rel not in may_change
        if (special or kept_file or rel in protect) and after_work.get(rel) != info:
            now = after_work.get(rel)
            what = "removed" if now is None else ("replaced by a " + KIND.get(now[0], "?")) if now[0] != info[0] \
                else "replaced or rewritten"
            problems.append(f"{KIND.get(info[0], '?')} {printable(rel, 80)} {what}")
    for path in ctx.get("absent", ()):
        if os.path.lexists(path):
            problems.append(f"a file appeared at a crafted path: {printable(str(path).replace(str(case_dir), '$CASE'))}")
    if case.check is not None and not res.timed_out:
        try:
            problems += case.check(res, work, outside, ctx) or []
        except Exception:
            problems.append("the sweep's check failed: " + traceback.format_exc(limit=3))
    problems += WATCH.check()
    if ctx.get("cleanup"):
        ctx["cleanup"]()
    accepted = res.rc == 0 and case.expect == "either"
    row = Row(case.cat, case.name, command_text(argv, case_dir), res.rc, printable(res.err, 50000), problems,
              accepted, seconds=res.seconds, rss_kb=res.rss_kb, out=printable(res.out[:2000]))
    if not keep and not problems:
        shutil.rmtree(case_dir, ignore_errors=True)
    return [row]


# --- shared files ------------------------------------------------------------------------------------------------

def idx_bytes(array, code=0x08):
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    array = np.asarray(array)
    return (bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
            + np.ascontiguousarray(array, dtype=dtype).tobytes())


NAMES = {"xtr": "train-images-idx3-ubyte", "ytr": "train-labels-idx1-ubyte",
         "xte": "t10k-images-idx3-ubyte", "yte": "t10k-labels-idx1-ubyte"}


def write_dataset(directory, replace=None):
    """The tiny dataset (MNIST's first 256 training and 64 test images) in ``directory``; ``replace`` maps
    xtr/ytr/xte/yte to bytes (or None to leave the file out)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    replace = replace or {}
    arrays = {"xtr": TINY[0], "ytr": TINY[1], "xte": TINY[2], "yte": TINY[3]}
    for key, name in NAMES.items():
        if key in replace:
            if replace[key] is not None:
                (directory / name).write_bytes(replace[key])
        else:
            (directory / name).write_bytes(idx_bytes(arrays[key]))
    return directory


def digit_image(size=56, invert=True):
    """MNIST's first test image, scaled up, dark ink on light paper (as a photo would be)."""
    pixels = TINY[2][0]
    img = Image.fromarray(255 - pixels if invert else pixels).resize((size, size))
    return img


def read_zip_header(data):
    z = zipfile.ZipFile(io.BytesIO(data))
    return json.loads(np.load(io.BytesIO(z.read("header.npy"))).tobytes())


def npy_bytes(array, allow_pickle=False):
    raw = io.BytesIO()
    np.save(raw, array, allow_pickle=allow_pickle)
    return raw.getvalue()


def rebuild(original, edit=None, arrays=None, drop=(), add=None, header_bytes=None, compression=zipfile.ZIP_STORED):
    """An archive like ``original`` (bytes) with its JSON header edited (``edit(header)``, or ``header_bytes``
    for the raw JSON), members replaced (``arrays``: name -> ndarray or raw .npy bytes), dropped or added (``add``:
    member file name -> bytes). Zip CRCs are recomputed; the SHA-256 entries stay as they were."""
    source = zipfile.ZipFile(io.BytesIO(original))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as target:
        for info in source.infolist():
            name = info.filename[:-len(".npy")]
            if name in drop:
                continue
            if name == "header" and (edit is not None or header_bytes is not None):
                if header_bytes is None:
                    header = json.loads(np.load(io.BytesIO(source.read(info))).tobytes())
                    edit(header)
                    raw = json.dumps(header).encode()
                else:
                    raw = header_bytes
                target.writestr(info.filename, npy_bytes(np.frombuffer(raw, dtype=np.uint8)))
            elif arrays and name in arrays:
                value = arrays[name]
                target.writestr(info.filename, value if isinstance(value, bytes) else
                                npy_bytes(value, allow_pickle=value.dtype.hasobject))
            else:
                target.writestr(info.filename, source.read(info))
        for member, content in (add or {}).items():
            target.writestr(member, content)
    return out.getvalue()


def set_key(path, value):
    def edit(header):
        node = header
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


def del_key(path):
    def edit(header):
        node = header
        for key in path[:-1]:
            node = node[key]
        node.pop(path[-1], None)
    return edit


def sha_zeros(nbytes):
    h = hashlib.sha256()
    chunk = bytes(1 << 22)
    left = nbytes
    while left:
        n = min(left, len(chunk))
        h.update(chunk[:n])
        left -= n
    return h.hexdigest()


def prepare_shared(root):
    """The tiny dataset, a small model and its log, a checkpoint to resume, a digit image: made once."""
    global TINY
    sys.path[:0] = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    from cycnn.data.idx import load_idx_dataset
    x_train, y_train, x_test, y_test = load_idx_dataset()
    TINY = (x_train[:256], y_train[:256].astype(np.uint8), x_test[:64], y_test[:64].astype(np.uint8))
    shared = root / "shared"
    shared.mkdir()
    write_dataset(shared / "data")
    digit_image().save(shared / "digit.png")
    res = run_cycnn(["train", "--data-dir", "data", "--epochs", "1", "--val-split", "0", "--conv", "2", "--dense", "8",
                     "--quiet", "--out", "model.npz", "--log-every", "1"], shared)
    if res.rc != 0:
        sys.exit(f"sweep: could not train the small model:\n{printable(res.err)}")
    res = run_cycnn(["train", "--data-dir", "data", "--epochs", "2", "--val-split", "0", "--conv", "2", "--dense", "8",
                     "--quiet", "--out", "run.npz"], shared)
    if res.rc != 0:
        sys.exit(f"sweep: could not train the checkpoint:\n{printable(res.err)}")

    def halfway(header):  # the run after its first epoch, so that a resume trains one more
        state = header["training"]["state"]
        state.update(epoch=1, step=0, history=state["history"][:1], epoch_seen=0, epoch_correct=0, epoch_loss_sum=0.0)
    (shared / "resume.ckpt.npz").write_bytes(rebuild((shared / "run.ckpt.npz").read_bytes(), halfway))
    files = {"model": (shared / "model.npz", "m.npz"), "ckpt": (shared / "resume.ckpt.npz", "c.ckpt.npz"),
             "data": (shared / "data", "data"), "digit": (shared / "digit.png", "digit.png"),
             "log": (shared / "model.log.jsonl", "m.log.jsonl")}
    return files


# --- helpers for the case lists ----------------------------------------------------------------------------------

QUICK = {"--epochs": "1", "--limit-train": "64", "--val-split": "0", "--conv": "2", "--dense": "8"}


def train(over=None, extra=(), out="m.npz"):
    flags = dict(QUICK)
    flags.update(over or {})
    argv = ["train"]
    for key, value in flags.items():
        if value is not None:
            argv += [key, value]
    return argv + ["--quiet", *(["--out", out] if out is not None else []), *extra]


def fifo(path):
    os.mkfifo(path)
    return path


def chardev(path):
    """A character device like /dev/null (1, 3); None where mknod is not permitted."""
    try:
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        return path
    except (PermissionError, OSError):
        return None


def loads_as_model(path):
    try:
        from cycnn.io.model_file import load_model
        load_model(path)
        return None
    except Exception as exc:
        return f"{path} does not load as a model ({printable(str(exc), 200)})"


def loads_as_checkpoint(path):
    try:
        from cycnn.train.checkpoint import load_checkpoint
        load_checkpoint(path)
        return None
    except Exception as exc:
        return f"{path} does not load as a checkpoint ({printable(str(exc), 200)})"


# --- 1. flags ----------------------------------------------------------------------------------------------------

# Per numeric flag: empty, wrong type, negative, NaN, inf, a "32,,64" list, full-width digits (each flag adds its
# own out-of-range and 20-digit values).
INT_BAD = ["", "-1", "nan", "1,,2", "３"]  # (inf and "abc": refused as nan is, not integers)
FLOAT_BAD = ["", "abc", "nan", "inf", "1e400", "1,,2", "１"]
HUGE = "12345678901234567890"


def flag_cases():
    cases = []

    def add(name, argv, expect="error", **kw):
        cases.append(Case("flags", name, argv, expect, **kw))

    def values(bad, own):
        table = {v: "error" for v in bad}
        table.update(own)
        return table.items()

    # train: every numeric flag, the generic bad values and its own bounds.
    int_flags = {
        "--epochs": {"0": "error", "10001": "error", HUGE: "error", "2": "ok"},
        "--batch-size": {"0": "error", "65537": "error", HUGE: "error", "1": "ok"},
        "--seed": {str(2 ** 63): "error", HUGE: "error", str(2 ** 63 - 1): "ok"},
        "--threads": {"0": "error", "100000": "error", HUGE: "error", "1": "ok"},
        "--limit-train": {"0": "error", HUGE: "either", "1": "either"},
        "--padding": {"3000": "error", str(1 << 21): "error", HUGE: "error", "1": "ok"},
        "--pool": {"0": "error", "27": "error", HUGE: "error", "1": "either"},
        "--checkpoint-every": {str((1 << 31) + 1): "error", HUGE: "error", "1": "ok"},
        "--log-every": {"0": "error", str((1 << 31) + 1): "error", HUGE: "error", "1": "ok"},
    }
    for flag, own in int_flags.items():
        for value, expect in values(INT_BAD, own):
            add(f"train {flag} {value!r}", train({flag: value}), expect)
    for value, expect in values(INT_BAD, {"65536": "error", HUGE: "error", "0": "either"}):
        add(f"train --live --port {value!r}", train(extra=["--live", "--port", value]), expect)

    def port_in_use(work, outside):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        return {"port": str(sock.getsockname()[1]), "cleanup": sock.close}
    add("train --live --port (a port in use)", train(extra=["--live", "--port", lambda c: c["port"]]),
        setup=port_in_use)
    float_flags = {
        "--lr": {"0": "error", "-1": "error", "1e-400": "error", HUGE: "either", "100": "either"},
        "--val-split": {"1": "error", "-0.1": "error", HUGE: "error", "0.999": "either"},
        "--target-accuracy": {"0": "error", "1.5": "error", "-1": "error", HUGE: "error", "1": "either"},
    }
    for flag, own in float_flags.items():
        for value, expect in values(FLOAT_BAD, own):
            add(f"train {flag} {value!r}", train({flag: value}), expect)
    live = ["--live", "--port", "0"]
    for value, expect in values(["", "abc", "nan", "inf", "1,,2"], {"inf": "either", "0": "error", "-1": "error",
                                                                   "1e-9": "either"}):
        add(f"train --live --live-interval {value!r}", train(extra=[*live, "--live-interval", value]), expect)
    list_bad = {"32,,64": "error", "-2": "error", HUGE: "error", "３２": "error", "0": "error", "": "either"}
    lists = {
        "--conv": {"100000": "error", "2,2,2,2,2": "error", " 2 , 4 ": "either"},
        "--kernel": {"29": "error", "20000": "error", "3,3": "either"},
        "--dense": {"2000000": "error", "999999999": "error", "8,8": "either"},
        "--dropout": {"1": "error", "-0.1": "error", "1e400": "error", "inf": "error", "0.999": "either", "0": "ok"},
    }
    for flag, own in lists.items():
        table = dict(list_bad)
        table.update(own)
        for value, expect in table.items():
            add(f"train {flag} {value!r}", train({flag: value}), expect)
    # Large but plausible: refused for memory, quickly, without taking it.
    memory = [
        ("--conv 100000", {"--conv": "100000"}),
        ("--padding 150 --batch-size 8 (reference layers)", {"--conv": None, "--dense": None, "--padding": "150",
                                                             "--batch-size": "8"}),
        ("--dense 2000000", {"--dense": "2000000"}),
        ("--conv 4096,4096 --batch-size 1024", {"--conv": "4096,4096", "--batch-size": "1024"}),
        ("--batch-size 65536 --conv 512", {"--batch-size": "65536", "--conv": "512"}),
        ("--kernel 1 --padding 5000 --conv 8", {"--kernel": "1", "--padding": "5000", "--conv": "8"}),
    ]
    for name, over in memory:
        add(f"memory: train {name}", train(over), "error", timeout=30)
    # Choices and combinations.
    for name, argv, expect, needs in [
        ("--optimizer adamw", train(extra=["--optimizer", "adamw"]), "error", ()),
        ("--lr-schedule linear", train(extra=["--lr-schedule", "linear"]), "error", ()),
        ("--dataset bogus", train(extra=["--dataset", "bogus"]), "error", ()),
        ("--dataset fashion-mnist", train(extra=["--dataset", "fashion-mnist"]), "either", ()),
        ("--dataset ''", train(extra=["--dataset", ""]), "error", ()),
        ("--dataset with --data-dir", train(extra=["--dataset", "mnist", "--data-dir", "data"]), "error", ("data",)),
        ("--arch with --conv", train(extra=["--arch", "a.json"]), "error", ()),
        ("--dense '' --dropout 0.3", train({"--dense": ""}, ["--dropout", "0.3"]), "error", ()),
        ("--resume with --epochs", ["train", "--resume", "c.ckpt.npz", "--data-dir", "data", "--epochs", "3"],
         "error", ("ckpt", "data")),
        ("--resume with --checkpoint", ["train", "--resume", "c.ckpt.npz", "--data-dir", "data", "--checkpoint",
                                        "x.npz"], "error", ("ckpt", "data")),
        ("--resume ''", ["train", "--resume", ""], "error", ()),
        ("--resume missing", ["train", "--resume", "nothing.npz"], "error", ()),
        ("--resume a model, not a checkpoint", ["train", "--resume", "m.npz"], "error", ("model",)),
        ("--out equals --checkpoint", train(extra=["--checkpoint", "m.npz"]), "either", ()),
        ("--epochs missing its value", ["train", "--epochs"], "error", ()),
        ("-q -v --json", train(extra=["-v", "--json"]), "ok", ()),
    ]:
        add(f"train {name}", argv, expect, needs=needs)
    # Unknown options, missing and extra arguments, for every command.
    for command, base, needs in [("train", [], ()), ("evaluate", ["m.npz"], ("model",)),
                                 ("predict", ["m.npz", "digit.png"], ("model", "digit")),
                                 ("summary", ["m.npz"], ("model",)),
                                 ("export", ["m.npz", "o.onnx"], ("model",)),
                                 ("visualize", ["m.npz", "--out", "pics"], ("model",)),
                                 ("report", ["m.npz", "--out", "r.html"], ("model",))]:
        add(f"{command} --bogus", [command, *base, "--bogus"], needs=needs)
        if command in ("train", "evaluate", "report"):
            add(f"{command} --ｅｐｏｃｈｓ (full-width option)", [command, *base, "--ｅｐｏｃｈｓ", "1"], needs=needs)
        if command in ("train", "evaluate", "visualize"):
            add(f"{command} --help", [command, "--help"], "ok")
        if command != "train":
            add(f"{command} with no arguments", [command], needs=needs)
    for name, argv, needs in [
        ("evaluate: an extra argument", ["evaluate", "m.npz", "extra"], ("model",)),
        ("predict: no image", ["predict", "m.npz"], ("model",)),
        ("visualize: no --out", ["visualize", "m.npz"], ("model",)),
        ("train: a positional argument", ["train", "extra"], ()),
        ("an unknown command", ["bogus"], ()),
        ("--version", ["--version"], ()),
        ("evaluate --dataset bogus", ["evaluate", "m.npz", "--dataset", "bogus"], ("model",)),
        ("evaluate --data-dir missing", ["evaluate", "m.npz", "--data-dir", "nothing"], ("model",)),
        ("evaluate --data-dir a file", ["evaluate", "m.npz", "--data-dir", "m.npz"], ("model",)),
    ]:
        add(name, argv, needs=needs)
    add("bare cycnn", [], "help")
    # evaluate --threads, export --opset, visualize/report --count and --index.
    for value, expect in values(INT_BAD, {"0": "error", "100000": "error", HUGE: "error", "1": "ok"}):
        add(f"evaluate --threads {value!r}", ["evaluate", "m.npz", "--data-dir", "data", "--threads", value], expect,
            needs=("model", "data"))
    for value, expect in values(INT_BAD, {"12": "error", "99999": "error", HUGE: "error", str(1 << 63): "error",
                                          "13": "ok"}):
        add(f"export --opset {value!r}", ["export", "m.npz", "o.onnx", "--opset", value], expect, needs=("model",))
    for command in ("visualize", "report"):
        out = ["--out", "pics" if command == "visualize" else "r.html"]
        bad = ["", "-1", "３", "nan"] if command == "visualize" else ["", "-1"]
        for value, expect in values(bad, {"0": "error", "401": "error", HUGE: "error"}):
            add(f"{command} --count {value!r}", [command, "m.npz", *out, "--data-dir", "data", "--count", value],
                expect, needs=("model", "data"))
        for value, expect in values(bad, {"64": "error", HUGE: "error", "-" + HUGE: "error"}):
            add(f"{command} --index {value!r}", [command, "m.npz", *out, "--data-dir", "data", "--index", value],
                expect, needs=("model", "data"))
    add("visualize --count 400 --index 63 (the largest)", ["visualize", "m.npz", "--out", "pics", "--data-dir", "data",
                                                           "--count", "400", "--index", "63"], "either",
        needs=("model", "data"))
    return cases


# --- 2. output paths ---------------------------------------------------------------------------------------------

def output_targets(kind):
    """(name, setup(work) -> (target, ctx), expect, check) for an output that is a file (or a directory)."""
    directory = kind == "dir"

    def simple(target, **ctx):
        return lambda work: (target, ctx)

    def mk_dir(work):
        (work / "adir").mkdir()
        (work / "adir" / "inside.txt").write_text("keep")
        return "adir", {"protect": ["adir/inside.txt"]}

    def mk_fifo(work):
        fifo(work / "pipe")
        return "pipe", {}

    def mk_dev(work):
        if chardev(work / "dev") is None:
            return None, {"skip": "mknod is not permitted here"}
        return "dev", {}

    def mk_link_file(work):
        (work / "real").mkdir()
        (work / "real" / "target.bin").write_bytes(b"old content")
        os.symlink("real/target.bin", work / "link")
        return "link", {"link": "link", "target": work / "real" / "target.bin"}

    def mk_link_dangling(work):
        (work / "real").mkdir()
        os.symlink("real/new.bin", work / "link")
        return "link", {"link": "link", "target": work / "real" / "new.bin", "dangling": True}

    def mk_link_dir(work):
        (work / "real").mkdir()
        os.symlink("real", work / "link")
        return "link", {}

    def mk_link(to):
        def setup(work):
            os.symlink(to, work / "link")
            return "link", {}
        return setup

    def mk_loop(work):
        os.symlink("loop-b", work / "loop-a")
        os.symlink("loop-a", work / "loop-b")
        return "loop-a", {}

    def mk_parent_file(work):
        (work / "afile").write_text("a file, not a directory")
        return "afile/x.out", {}

    def mk_readonly(work):
        if IS_ROOT:
            return None, {"skip": "running as root: permissions do not stop root"}
        (work / "ro").mkdir()
        os.chmod(work / "ro", 0o500)
        return "ro/x.out", {"cleanup": lambda: os.chmod(work / "ro", 0o700)}

    def check_link(res, work, outside, ctx):
        problems = []
        if not os.path.islink(work / ctx["link"]):
            problems.append("the symlink was replaced (it must be followed and kept)")
        if res.rc == 0 and "target" in ctx:
            target = Path(ctx["target"])
            if not target.exists() or (not directory and target.read_bytes() == b"old content"):
                problems.append("the symlink's target was not written")
            elif ctx.get("validate") and target.is_file():
                problem = ctx["validate"](target)
                if problem:
                    problems.append(problem)
        return problems

    targets = [
        ("''", simple(""), "either" if directory else "error", None),
        ("'.'", simple("."), "either" if directory else "error", None),
        ("an existing directory", mk_dir, "ok" if directory else "error", None),
        ("'sub/' (a trailing slash)", simple("sub/"), "either" if directory else "error", None),
        ("a FIFO", mk_fifo, "error", None),
        ("a character device", mk_dev, "error", None),
        ("a symlink to a file", mk_link_file, "error" if directory else "ok", check_link),
        ("a dangling symlink", mk_link_dangling, "either", check_link),
        ("a symlink to a directory", mk_link_dir, "ok" if directory else "error", None),
        ("a symlink to /proc/self/fd/1", mk_link("/proc/self/fd/1"), "either", None),
        ("a symlink to /dev/null", mk_link("/dev/null"), "error", None),
        ("a symlink loop", mk_loop, "error", None),
        ("a 300-character name", simple("n" * 300 + (".out" if not directory else "")), "error", None),
        ("a 5000-character path", simple("/".join(["d" * 200] * 25) + "/x.out"), "error", None),
        ("a path under a regular file", mk_parent_file, "error", None),
        ("a directory without write permission", mk_readonly, "error", None),
        ("/dev/full", simple("/dev/full"), "error", None),
        ("/proc/version", simple("/proc/version"), "error", None),
        ("/proc/self/fd/1", simple("/proc/self/fd/1"), "either", None),
    ]
    if not directory:
        targets.append(("'/'", simple("/"), "error", None))
    return targets


def output_cases():
    cases = []

    def validate_model(path):
        return loads_as_model(path)

    def validate_log(path):
        return None if path.read_bytes().startswith(b'{"type": "run"') else f"{path} is not a training log"

    def validate_html(path):
        return None if b"<html" in path.read_bytes()[:2000].lower() else f"{path} is not an HTML page"

    def validate_onnx(path):
        try:
            import onnx
            onnx.load(str(path))
        except ImportError:
            return None
        except Exception as exc:
            return f"{path} is not an ONNX model ({exc})"

    commands = [
        ("train --out", lambda t: train(out=t), (), validate_model, "file"),
        ("train --checkpoint", lambda t: train(extra=["--checkpoint", t]), (), loads_as_checkpoint, "file"),
        ("train --log", lambda t: train(extra=["--log", t]), (), validate_log, "file"),
        ("report --out", lambda t: ["report", "m.npz", "--data-dir", "data", "--count", "1", "--out", t],
         ("model", "data"), validate_html, "file"),
        ("export OUT", lambda t: ["export", "m.npz", t], ("model",), validate_onnx, "file"),
        ("visualize --out", lambda t: ["visualize", "m.npz", "--data-dir", "data", "--count", "1", "--out", t],
         ("model", "data"), None, "dir"),
    ]
    # report and visualize draw every picture before they write: the slow ones get the main targets only.
    slow_subset = ("''", "an existing directory", "'sub/' (a trailing slash)", "a FIFO", "a character device",
                   "a symlink to a file", "a symlink loop", "a 300-character name", "a 5000-character path",
                   "a path under a regular file", "a symlink to /dev/null", "a dangling symlink")
    for command, make, needs, validate, kind in commands:
        for name, setup, expect, check in output_targets(kind):
            if command.startswith(("report", "visualize", "train --checkpoint", "train --log")) \
                    and name not in slow_subset:
                continue
            if kind == "dir" and name == "/proc/self/fd/1":
                continue

            def case_setup(work, outside, setup=setup, validate=validate):
                target, ctx = setup(work)
                ctx = dict(ctx)
                ctx["out"] = target
                ctx["validate"] = validate
                return ctx
            cases.append(Case("outputs", f"{command} {name}", lambda ctx, make=make: make(ctx["out"]), expect,
                              needs, case_setup, check))
    # visualize --out '/' would write its PNG files into / (it takes a directory): not run.
    fake = SWEEP_ROOT / "no-onnx"
    (fake / "onnx").mkdir(parents=True, exist_ok=True)
    (fake / "onnx" / "__init__.py").write_text("raise ImportError('simulated: no onnx package')\n")
    env = dict(ENV, PYTHONPATH=os.pathsep.join([str(fake), ENV.get("PYTHONPATH", "")]))
    for name, argv, needs in [("export without onnx", ["export", "m.npz", "o.onnx"], ("model",)),
                              ("export without onnx, missing model", ["export", "none.npz", "o.onnx"], ()),
                              ("export without onnx, OUT ''", ["export", "m.npz", ""], ("model",)),
                              ("export without onnx, --opset 1", ["export", "m.npz", "o.onnx", "--opset", "1"],
                               ("model",))]:
        cases.append(Case("outputs", name, argv, "error", needs, env=env))
    return cases


# --- 3. crafted files --------------------------------------------------------------------------------------------

class Boom:
    """Unpickling this creates a directory: the proof that a file was unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def model_variants(good):
    """(name, bytes or builder(work, outside) -> bytes, expect) for crafted model files."""
    w = np.load(io.BytesIO(zipfile.ZipFile(io.BytesIO(good)).read("param.3.W.npy")))
    v = []

    def key(path, value, expect="error", label=None):
        v.append((label or f"{'.'.join(map(str, path))} = {printable(repr(value), 60)}",
                  rebuild(good, set_key(path, value)), expect))

    for value in (True, 1.0):
        key(["version"], value)
    key(["kind"], "weights")
    key(["kind"], "checkpoint", "either")
    key(["arrays"], 5)
    for value in ([-1], [2 ** 62, 2 ** 62]):
        key(["arrays", "param.0.W", "shape"], value)
    for value in ("object", "float16"):
        key(["arrays", "param.0.W", "dtype"], value)
    key(["arrays", "param.0.W", "sha256"], 5)
    layers = ["architecture", "layers"]
    for value in (None, {"layers": "x"}):
        key(["architecture"], value)
    key(layers, [])
    for i, k, value in [(0, "type", "\x1b[31mConv2D"), (3, "in_features", 10 ** 10), (3, "in_features", True),
                        (3, "in_features", 10 ** 400), (0, "kernel_size", [0, 0]), (0, "kernel_size", [3, 3, 3]),
                        (0, "stride", 0), (0, "padding", 10 ** 9), (0, "activation", "\x1b[2J"),
                        (4, "p", float("nan")), (1, "pool_size", [10 ** 9, 10 ** 9]), (0, "__init__", 1)]:
        key([*layers, i, k], value)
    v.append(("huge declared layers the weights do not match",
              rebuild(rebuild(good, set_key([*layers, 3, "out_features"], 1 << 20)),
                      set_key([*layers, 5, "in_features"], 1 << 20)), "error"))
    v.append(("100000 declared layers", rebuild(good, set_key(layers, [{"type": "ReLU"}] * 100000)), "error"))
    for value in ([True, 28, 28], [1, 28], [1, 2 ** 21, 28], [1.0, 28, 28]):
        key(["architecture", "input_shape"], value)
    names = [str(i) for i in range(10)]
    for label, value in [("an escape", ["\x1b[31mred"] + names[1:]), ("a newline", ["a\nb"] + names[1:]),
                         ("RTL override", ["\u202e0"] + names[1:]), ("1000 characters", ["x" * 1000] + names[1:]),
                         ("numbers", list(range(10))), ("11 names", names + ["10"]), ("duplicates", ["0"] * 10),
                         ("a blank name", ["   "] + names[1:]), ("a C1 control", ["\x9b31m"] + names[1:])]:
        v.append((f"class_names with {label}", rebuild(good, set_key(["architecture", "class_names"], value)),
                  "either" if label == "duplicates" else "error"))
    key(["metadata"], [1], "either")
    key(["metadata"], {"test_accuracy": "\x1b[31m", "train": {"epochs": "\x1b[2J"}}, "either",
        "metadata with escapes")
    key(["metadata"], {"history": ["x" * 1000] * 10000}, "either", "10 MB of metadata")
    v.append(("header not UTF-8", rebuild(good, header_bytes=b'{"format": "\xff\xfe"}'), "error"))
    v.append(("header not JSON", rebuild(good, header_bytes=b"{not json"), "error"))
    v.append(("header nested 100000 deep", rebuild(good, header_bytes=b"[" * 100000 + b"]" * 100000), "error"))
    v.append(("header of 17 MB", rebuild(good, header_bytes=b'{"pad": "' + b"x" * (17 << 20) + b'"}'), "error"))
    v.append(("Fortran-order weight", rebuild(good, arrays={"param.3.W": np.asfortranarray(w)}), "error"))
    v.append(("big-endian weight", rebuild(good, arrays={"param.3.W": w.astype(">f4")}), "either"))
    raw = bytearray(npy_bytes(w))
    raw[6] = 3  # .npy version 3.0
    v.append((".npy version 3.0", rebuild(good, arrays={"param.3.W": bytes(raw)}), "error"))
    v.append((".npy header lying about its shape", rebuild(good, arrays={"param.3.W": npy_bytes(w)[:128].replace(
        b"(338, 8)", b"(8, 338)") + npy_bytes(w)[128:]}), "error"))
    nan = w.copy()
    nan.flat[0] = np.nan
    v.append(("NaN weight with a matching checksum",
              rebuild(rebuild(good, arrays={"param.3.W": nan}),
                      set_key(["arrays", "param.3.W", "sha256"], hashlib.sha256(nan.astype("<f4").tobytes()).hexdigest())),
              "error"))
    v.append(("tampered weight", rebuild(good, arrays={"param.3.W": w + 1}), "error"))
    v.append(("missing weight", rebuild(good, drop={"param.3.W"}), "error"))
    v.append(("duplicate member", rebuild(good, add={"param.3.W.npy": npy_bytes(w)}), "error"))
    v.append(("a ../../ member name", rebuild(good, add={"../../escape.npy": npy_bytes(w)}), "error"))
    for label, method in (("deflate", zipfile.ZIP_DEFLATED), ("lzma", zipfile.ZIP_LZMA)):
        v.append((f"{label}-compressed members", rebuild(good, set_key(["metadata"], {}), compression=method),
                  "either"))
    v.append(("an encrypted member (flag bit set)", _patch_flag(good, "param.3.W.npy", encrypted=True), "error"))
    v.append(("unknown compression method 99", _patch_flag(good, "param.3.W.npy", method=99), "error"))
    for cut in (10, len(good) // 2, len(good) - 1):
        v.append((f"truncated to {cut} bytes", good[:cut], "error"))
    v.append(("trailing junk after the archive", good + b"junk" * 100, "either"))
    v.append(("an empty zip", _empty_zip(), "error"))
    v.append(("empty file", b"", "error"))
    v.append(("random bytes", random.Random(0).randbytes(5000), "error"))
    v.append(("a PNG", _png_bytes(digit_image()), "error"))
    v.append(("a bare .npy", npy_bytes(w), "error"))
    return v


def _patch_flag(data, member, encrypted=False, method=None):
    """The archive with one member's general-purpose flag (encryption bit) or compression method rewritten, in
    both its local header and the central directory."""
    data = bytearray(data)
    z = zipfile.ZipFile(io.BytesIO(bytes(data)))
    info = z.getinfo(member)
    local = info.header_offset
    positions = [local + 6]
    pos = 0
    while True:
        pos = data.find(b"PK\x01\x02", pos)
        if pos < 0:
            break
        name_len = struct.unpack("<H", data[pos + 28:pos + 30])[0]
        if data[pos + 46:pos + 46 + name_len] == member.encode():
            positions.append(pos + 8)
        pos += 4
    for p in positions:
        flags, comp = struct.unpack("<HH", data[p:p + 4])
        if encrypted:
            flags |= 1
        if method is not None:
            comp = method
        data[p:p + 4] = struct.pack("<HH", flags, comp)
    return bytes(data)


def _empty_zip():
    out = io.BytesIO()
    zipfile.ZipFile(out, "w").close()
    return out.getvalue()


def _savez():
    out = io.BytesIO()
    np.savez(out, weights=np.ones(3))
    return out.getvalue()


def _png_bytes(img, **kw):
    out = io.BytesIO()
    img.save(out, format="PNG", **kw)
    return out.getvalue()


def zip_bomb(path, good, nbytes, declared_size=None, store_data=True):
    """A model file whose first weight is a .npy of ``nbytes`` zero bytes (float32), deflated (about 1000:1), with
    the JSON header describing it (shape and SHA-256) so that only size checks can refuse it. ``declared_size``
    overrides the size in the zip directory (a member declared small, or huge with no data behind it)."""
    n = nbytes // 4
    header = read_zip_header(good)
    header["arrays"]["param.0.W"] = {"shape": [n], "dtype": "float32",
                                     "sha256": sha_zeros(n * 4) if store_data else "0" * 64}
    npy_head = io.BytesIO()
    np.lib.format.write_array_header_1_0(npy_head, {"descr": "<f4", "fortran_order": False, "shape": (n,)})
    source = zipfile.ZipFile(io.BytesIO(good))
    with zipfile.ZipFile(path, "w") as target:
        for info in source.infolist():
            if info.filename == "header.npy":
                target.writestr("header.npy", npy_bytes(np.frombuffer(json.dumps(header).encode(), np.uint8)))
            elif info.filename == "param.0.W.npy":
                member = zipfile.ZipInfo("param.0.W.npy", date_time=(2024, 1, 1, 0, 0, 0))
                member.compress_type = zipfile.ZIP_DEFLATED if store_data else zipfile.ZIP_STORED
                with target.open(member, "w", force_zip64=True) as fh:
                    fh.write(npy_head.getvalue())
                    if store_data:
                        chunk = bytes(1 << 24)
                        left = n * 4
                        while left:
                            fh.write(chunk[:min(left, len(chunk))])
                            left -= min(left, len(chunk))
            else:
                target.writestr(info, source.read(info))
    if declared_size is not None:
        _rewrite_sizes(path, "param.0.W.npy", declared_size)


def _rewrite_sizes(path, member, size):
    """Set the uncompressed size (and, for a stored member, the compressed size) that the zip directory and the
    local header declare for ``member``, including their zip64 extra fields."""
    data = bytearray(Path(path).read_bytes())
    z = zipfile.ZipFile(io.BytesIO(bytes(data)))
    info = z.getinfo(member)
    stored = info.compress_type == zipfile.ZIP_STORED

    def patch_extra(start, length, sizes_first):
        end = start + length
        while start + 4 <= end:
            tag, ln = struct.unpack("<HH", data[start:start + 4])
            if tag == 1 and ln >= 16:
                data[start + 4:start + 12] = struct.pack("<Q", size)
                if stored:
                    data[start + 12:start + 20] = struct.pack("<Q", size)
            start += 4 + ln
    lo = info.header_offset
    name_len, extra_len = struct.unpack("<HH", data[lo + 26:lo + 30])
    small = min(size, 0xFFFFFFFF)
    if struct.unpack("<I", data[lo + 22:lo + 26])[0] != 0xFFFFFFFF:
        data[lo + 22:lo + 26] = struct.pack("<I", small)
        if stored:
            data[lo + 18:lo + 22] = struct.pack("<I", small)
    patch_extra(lo + 30 + name_len, extra_len, True)
    pos = 0
    while True:
        pos = data.find(b"PK\x01\x02", pos)
        if pos < 0:
            break
        n_len, e_len = struct.unpack("<HH", data[pos + 28:pos + 32])
        if data[pos + 46:pos + 46 + n_len] == member.encode():
            if struct.unpack("<I", data[pos + 24:pos + 28])[0] != 0xFFFFFFFF:
                data[pos + 24:pos + 28] = struct.pack("<I", small)
                if stored:
                    data[pos + 20:pos + 24] = struct.pack("<I", small)
            patch_extra(pos + 46 + n_len, e_len, True)
        pos += 4
    Path(path).write_bytes(bytes(data))


def checkpoint_variants(good, outside):
    """(name, bytes, expect, absent paths) for crafted checkpoints (resumed with --data-dir data)."""
    v = []
    s, st, op = ["training", "settings"], ["training", "state"], ["training", "optimizer"]

    def key(path, value, expect="error", absent=(), label=None):
        v.append((label or f"{'.'.join(map(str, path[1:]))} = {printable(repr(value), 60)}",
                  rebuild(good, set_key(path, value)), expect, absent))
    nan = float("nan")
    # training.settings: every field, a wrong type and a wrong value (and a plausible value, which may be taken).
    for field_name, bad_values, plausible in [
        ("epochs", (0, "2"), 3), ("batch_size", (10 ** 9,), None), ("optimizer", ("\x1b[31madam",), "sgd"),
        ("lr", (nan, "0.1"), None), ("lr_schedule", ("x",), None), ("seed", (2 ** 64,), None),
        ("augment", ("yes",), None), ("max_degrees", (nan,), None), ("max_shift", (-1,), None),
        ("data_dir", (5, "\x1b[31mdata"), str(outside / "data")), ("dataset", ("\x1b[2J",), None),
        ("limit_train", (0,), 10 ** 30), ("val_split", (1,), None), ("data_sha256", ("0" * 64,), None),
        ("checkpoint_every", (-1,), None), ("log_every", (0,), None), ("out", (5,), "\x1b[2Jm.npz"),
        ("checkpoint", (5,), None), ("log", ("\n",), "/proc/self/fd/1"),
    ]:
        for value in bad_values:
            key([*s, field_name], value)
        if plausible is not None:
            key([*s, field_name], plausible, "either")
    # Paths: wherever a checkpoint says, cycnn writes only beside the checkpoint or where the flags say.
    for field_name, target in [("out", outside / "victim.npz"), ("out", "../outside/victim2.npz"),
                               ("checkpoint", outside / "victim.ckpt.npz"), ("log", outside / "victim.log")]:
        absent = [] if str(target).endswith("victim.txt") else [outside / Path(target).name]
        key([*s, field_name], str(target), "either", absent, label=f"{field_name} = a path outside ({Path(target).name})")
    key([*s, "evil"], 1, label="an unknown setting")
    key(s, [])
    # training.state
    for field_name, bad_values, plausible in [
        ("epoch", (-1, 999), 2), ("step", (-1,), 10 ** 12), ("global_step", (-1,), None),
        ("train_seconds", (nan, "x"), None), ("history", ("x", [{}] * 5), None),
        ("epoch_seen", (-1,), None), ("epoch_loss_sum", (nan,), None),
    ]:
        for value in bad_values:
            key([*st, field_name], value)
        if plausible is not None:
            key([*st, field_name], plausible, "either")
    key([*st, "history"], [{"epoch": "\x1b[2J", "train_loss": "x"}], "either", label="history with escapes")
    key([*st, "evil"], 1, label="an unknown state field")
    key(st, None)
    v.append(("state missing", rebuild(good, del_key(st)), "error", ()))
    # training.optimizer
    for field_name, bad_values in [("name", ("adamw", "sgd")), ("lr", (nan,)), ("beta1", (1.5,)),
                                   ("eps", (0,)), ("t", (-1, True))]:
        for value in bad_values:
            key([*op, field_name], value)
    key([*op, "t"], 2 ** 70, "either")
    key([*op, "evil"], 1, "either", label="an unknown optimizer field")
    v.append(("optimizer missing", rebuild(good, del_key(op)), "error", ()))
    v.append(("training missing", rebuild(good, del_key(["training"])), "error", ()))
    key(["kind"], "model", label="kind = 'model'")
    z = zipfile.ZipFile(io.BytesIO(good))
    m = np.load(io.BytesIO(z.read("opt.m:3.W.npy")))
    v.append(("an optimizer slot missing", rebuild(good, drop={"opt.m:3.W"}), "error", ()))
    bad = m.copy()
    bad.flat[0] = np.inf
    digest = hashlib.sha256(bad.astype("<f4").tobytes()).hexdigest()
    v.append(("an infinite optimizer slot (checksum matched)",
              rebuild(rebuild(good, arrays={"opt.m:3.W": bad}), set_key(["arrays", "opt.m:3.W", "sha256"], digest)),
              "error", ()))
    extra = npy_bytes(m)
    hdr = read_zip_header(good)
    hdr["arrays"]["opt.w:3.W"] = dict(hdr["arrays"]["opt.m:3.W"])
    v.append(("an unknown optimizer slot", rebuild(good, header_bytes=json.dumps(hdr).encode(),
                                                   add={"opt.w:3.W.npy": extra}), "error", ()))
    short = m[:10]
    v.append(("an optimizer slot of the wrong shape",
              rebuild(rebuild(good, arrays={"opt.m:3.W": short}),
                      lambda h: h["arrays"].update({"opt.m:3.W": {"shape": list(short.shape), "dtype": "float32",
                                                                  "sha256": hashlib.sha256(short.tobytes()).hexdigest()}})),
              "error", ()))
    return v


def crafted_cases():
    cases = []
    good_model = SHARED_FILES["model"][0].read_bytes()
    good_ckpt = SHARED_FILES["ckpt"][0].read_bytes()

    def writer(content, name):
        def setup(work, outside):
            (work / name).write_bytes(content(work, outside) if callable(content) else content)
            marker = work / "UNPICKLED"
            return {"absent": [marker], "may_change": []}
        return setup

    for name, content, expect in model_variants(good_model):
        cmd = ["summary", "x.npz"]
        cases.append(Case("crafted", f"model: {name} (summary)", cmd, expect, (), writer(content, "x.npz")))
        if "class_names" in name or "escape" in name:
            for cmd, needs in ((["predict", "x.npz", "digit.png"], ("digit",)),
                               (["evaluate", "x.npz", "--data-dir", "data"], ("data",)))[:2 if "an escape" in name else 1]:
                cases.append(Case("crafted", f"model: {name} ({cmd[0]})", cmd, expect, needs, writer(content, "x.npz")))
    for cmd, needs in ((["evaluate", "x.npz", "--data-dir", "data"], ("data",)), (["predict", "x.npz", "digit.png"],
                                                                                  ("digit",)),
                       (["export", "x.npz", "o.onnx"], ()), (["train", "--resume", "x.npz"], ())):
        cases.append(Case("crafted", f"model: truncated ({cmd[0]})", cmd, "error", needs,
                          writer(good_model[:len(good_model) // 2], "x.npz")))
    # Pickles: never unpickled (a marker directory would appear).
    for label, content in [
        ("a pickle (protocol 2)", lambda w, o: pickle.dumps(Boom(str(w / "UNPICKLED")), protocol=2)),
        ("a pickle (protocol 0, text)", lambda w, o: pickle.dumps(Boom(str(w / "UNPICKLED")), protocol=0)),
        ("an object array member", lambda w, o: rebuild(good_model, arrays={
            "param.0.W": np.array([Boom(str(w / "UNPICKLED"))], dtype=object)})),
        ("a pickled header.npy", lambda w, o: rebuild(good_model, header_bytes=None, arrays={
            "header": np.array([Boom(str(w / "UNPICKLED"))], dtype=object)})),
        ("an object .npy", lambda w, o: npy_bytes(np.array([Boom(str(w / "UNPICKLED"))], dtype=object), True)),
        ("a zip of a pickle", lambda w, o: _zip_of({"header.npy": pickle.dumps(Boom(str(w / "UNPICKLED")))})),
    ]:
        for cmd, needs in ((["summary", "x.npz"], ()), (["train", "--resume", "x.npz"], ())):
            cases.append(Case("crafted", f"pickle: {label} ({cmd[0]})", cmd, "error", needs, writer(content, "x.npz")))
    # Zip bombs.
    bombs = SWEEP_ROOT / "bombs"
    bombs.mkdir(exist_ok=True)

    def bomb(name, **kw):
        def setup(work, outside):
            path = bombs / name
            with BOMB_LOCK:
                if not path.exists():
                    zip_bomb(path, good_model, **kw)
            os.symlink(path, work / "x.npz")
            return {}
        return setup
    for name, kw in [("deflated 1.2 GB of zeros, sizes declared honestly", dict(nbytes=1_200_000_000)),
                     ("1 GB shape, member declared 1 kB", dict(nbytes=1 << 30, declared_size=1024)),
                     ("3.9 GB shape, stored, no data behind it", dict(nbytes=3_900_000_000, declared_size=3_900_000_128,
                                                                      store_data=False))]:
        slug = re.sub(r"[^a-z0-9]+", "-", name)[:40] + ".npz"
        for cmd in (["summary", "x.npz"], ["train", "--resume", "x.npz"])[:2 if "stored" in name else 1]:
            cases.append(Case("crafted", f"zip bomb: {name} ({cmd[0]})", cmd, "error", (), bomb(slug, **kw),
                              timeout=60))
    # Checkpoints, resumed: nothing appears at the crafted paths.
    resume = ["train", "--resume", "c.ckpt.npz", "--data-dir", "data", "--quiet"]
    cases.append(Case("crafted", "checkpoint: unmodified (control)", resume, "ok", ("data",),
                      writer(good_ckpt, "c.ckpt.npz"), check=_check_resumed))
    for name, content, expect, absent in checkpoint_variants(good_ckpt, Path("$OUTSIDE")):
        def setup(work, outside, content=content, absent=absent, expect=expect):
            data = content
            if b"$OUTSIDE" in content:  # a path outside: the header is rebuilt with the case's real directory
                data = rebuild(content, header_bytes=_header_raw(content).replace(b"$OUTSIDE", str(outside).encode()))
            (work / "c.ckpt.npz").write_bytes(data)
            write_dataset(outside / "data")
            return {"absent": [Path(str(p).replace("$OUTSIDE", str(outside))) for p in absent],
                    "may_change": ["c.ckpt.npz"] if expect != "error" else []}
        cases.append(Case("crafted", f"checkpoint: {name}", resume, expect, ("data",), setup))
    for label, field_path in [("escape in settings.out (evaluate)", ["training", "settings", "out"])]:
        cases.append(Case("crafted", f"checkpoint: {label}", ["evaluate", "c.ckpt.npz", "--data-dir", "data"],
                          "ok", ("data",), writer(rebuild(good_ckpt, set_key(field_path, "\x1b[2J")), "c.ckpt.npz")))
    cases += architecture_cases()
    cases += log_cases()
    cases += special_input_cases()
    return cases


def _header_raw(data):
    z = zipfile.ZipFile(io.BytesIO(data))
    return np.load(io.BytesIO(z.read("header.npy"))).tobytes()


def _zip_of(members):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, content in members.items():
            z.writestr(name, content)
    return out.getvalue()


def _check_resumed(res, work, outside, ctx):
    if res.rc != 0:
        return []
    return [p for p in (loads_as_model(work / "c.npz"),) if p] if (work / "c.npz").exists() else \
        ["the resumed run saved no model beside the checkpoint (c.npz)"]


def architecture_cases():
    cases = []
    ref = {"input_shape": [1, 28, 28], "layers": [
        {"type": "Conv2D", "in_channels": 1, "out_channels": 2, "kernel_size": 3, "activation": "relu"},
        {"type": "MaxPool2D", "pool_size": 2}, {"type": "Flatten"},
        {"type": "Dense", "in_features": 338, "out_features": 10}]}

    def with_layer(i, **kw):
        spec = json.loads(json.dumps(ref))
        spec["layers"][i].update(kw)
        return json.dumps(spec).encode()
    deep = 100_000
    files = [
        ("a valid JSON architecture (control)", "a.json", json.dumps(ref).encode(), "ok"),
        ("a valid TOML architecture (control)", "a.toml", b'input_shape = [1, 28, 28]\n[[layers]]\ntype = "Flatten"\n'
                                                          b'[[layers]]\ntype = "Dense"\nin_features = 784\n'
                                                          b'out_features = 10\n', "ok"),
        ("JSON arrays nested 100000 deep", "a.json", b"[" * deep + b"]" * deep, "error"),
        ("JSON nested 100000 deep inside a layer", "a.json",
         b'{"layers": [{"type": "Dense", "in_features": ' + b"[" * deep + b"]" * deep + b"}]}", "error"),
        ("TOML arrays nested 100000 deep", "a.toml", b"a = " + b"[" * deep + b"]" * deep + b"\n", "error"),
        ("TOML inline tables nested 50000 deep", "a.toml", b"a = " + b"{b = " * 50000 + b"1" + b"}" * 50000 + b"\n",
         "error"),
        ("TOML dotted key 100000 parts", "a.toml", b".".join([b"a"] * deep) + b" = 1\n", "error"),
        ("TOML table header 20000 parts", "a.toml", b"[" + b".".join([b"a"] * 20000) + b"]\nx = 1\n", "error"),
        ("a 5000-digit integer", "a.json", with_layer(3, out_features="BIG").replace(b'"BIG"', b"9" * 5000), "error"),
        ("in_features 10**400", "a.json", with_layer(3, in_features=10 ** 400), "error"),
        ("out_features 1e999 (inf)", "a.json", with_layer(3, out_features=float("inf")), "error"),
        ("out_channels -1", "a.json", with_layer(0, out_channels=-1), "error"),
        ("kernel_size [3, 3, 3]", "a.json", with_layer(0, kernel_size=[3, 3, 3]), "error"),
        ("kernel_size 29 (larger than the input)", "a.json", with_layer(0, kernel_size=29), "error"),
        ("Dense 2^20 x 2^19 (2 TB of weights)", "a.json",
         json.dumps({"input_shape": [1, 32, 32768], "layers": [{"type": "Flatten"},
                                                               {"type": "Dense", "in_features": 1 << 20,
                                                                "out_features": 1 << 19}]}).encode(), "either"),
        ("Dense 2^30 x 2^30", "a.json", json.dumps({"layers": [{"type": "Flatten"}, {"type": "Dense", "in_features": 784,
                                                                                     "out_features": 1 << 30}, {
            "type": "Dense", "in_features": 1 << 30, "out_features": 1 << 30}]}).encode(), "error"),
        ("20000 ReLU layers", "a.json", json.dumps({"layers": [{"type": "ReLU"}] * 20000}).encode(), "either"),
        ("a file of 2 MB", "a.json", json.dumps(ref).encode() + b" " * (2 << 20), "error"),
        ("binary garbage", "a.json", random.Random(1).randbytes(4000), "error"),
        ("UTF-8 BOM", "a.json", b"\xef\xbb\xbf" + json.dumps(ref).encode(), "either"),
        ("no layers", "a.json", b'{"input_shape": [1, 28, 28]}', "error"),
        ("class_names with an escape", "a.json", json.dumps({**ref, "class_names": ["\x1b[31m"] + list("123456789")}
                                                            ).encode(), "error"),
        ("input_shape [true, 28, 28]", "a.json", json.dumps({**ref, "input_shape": [True, 28, 28]}).encode(), "error"),
        ("input_shape [1, 28]", "a.json", json.dumps({**ref, "input_shape": [1, 28]}).encode(), "error"),
        ("an unknown key with an escape", "a.json", with_layer(0, **{"\x1b[2Jevil": 1}), "error"),
        ("a layer type with an escape", "a.json", with_layer(0, type="\x1b[31mConv2D"), "error"),
        ("invalid TOML", "a.toml", b"layers = [[[\n", "error"),
        ("TOML with nan and inf", "a.toml", b'[[layers]]\ntype = "Dense"\nin_features = nan\nout_features = inf\n',
         "error"),
    ]
    for name, fname, content, expect in files:
        def setup(work, outside, fname=fname, content=content):
            (work / fname).write_bytes(content)
            return {}
        cases.append(Case("crafted", f"architecture: {name} (summary)", ["summary", fname], expect, (), setup,
                          timeout=30))
        if name.startswith(("a valid", "JSON arrays", "TOML arrays", "Dense 2^20", "class_names", "a file of",
                            "kernel_size 29", "input_shape [true")):
            train_expect = "error" if name.startswith("Dense 2^20") else expect
            cases.append(Case("crafted", f"architecture: {name} (train --arch)",
                              train({"--conv": None, "--dense": None}, ["--arch", fname]), train_expect, (), setup,
                              timeout=30))
    return cases


def log_cases():
    """Training logs given to report and visualize (--log)."""
    good = SHARED_FILES["log"][0].read_text().splitlines()
    run = json.loads(good[0])
    cases = []
    logs = [
        ("an empty log", b"", "error"),
        ("binary bytes", random.Random(2).randbytes(3000), "error"),
        ("a run record whose train is a number", json.dumps({**run, "train": 5}).encode() + b"\n", "either"),
        ("a run record without train_images", json.dumps({k: x for k, x in run.items() if k != "train_images"}
                                                         ).encode() + b"\n", "either"),
        ("train_images a string", json.dumps({**run, "train_images": "many"}).encode() + b"\n", "either"),
        ("a first line nested 100000 deep", b"[" * 100000 + b"]" * 100000 + b"\n", "error"),
        ("step records with string figures", ("\n".join([good[0]] + [json.dumps({**json.loads(line), "loss": "x",
                                                                                 "interval_loss": "x", "lr": "x"})
                                                                     for line in good[1:]]) + "\n").encode(), "either"),
        ("step records without fields", ("\n".join([good[0]] + ['{"type": "step"}', '{"type": "epoch"}']) + "\n"
                                         ).encode(), "either"),
        ("step records with escapes in layer names", ("\n".join([json.dumps({**run, "layer_names": ["\x1b[31m"] * 6})]
                                                               + good[1:]) + "\n").encode(), "either"),
        ("step numbers as strings", ("\n".join([good[0]] + [json.dumps({**json.loads(line), "step": "x"})
                                                            for line in good[1:]]) + "\n").encode(), "either"),
        ("NaN and Infinity figures", ("\n".join([good[0]] + [json.dumps({**json.loads(line), "interval_loss": float(
            "nan"), "lr": float("inf")}) for line in good[1:]]) + "\n").encode(), "either"),
    ]
    for name, content, expect in logs:
        def setup(work, outside, content=content):
            (work / "x.log.jsonl").write_bytes(content)
            return {}
        for command in ("report", "visualize") if "step" in name else ("report",):
            out = "r.html" if command == "report" else "pics"
            cases.append(Case("crafted", f"log: {name} ({command})",
                              [command, "m.npz", "--data-dir", "data", "--count", "1", "--log", "x.log.jsonl",
                               "--out", out], expect, ("model", "data"), setup))
    return cases


def special_input_cases():
    """FIFOs, devices and directories where a file is read."""
    cases = []

    def make(kind, name):
        def setup(work, outside):
            path = work / name
            if kind == "fifo":
                fifo(path)
            elif kind == "dir":
                path.mkdir()
            elif kind == "loop":
                os.symlink(name, path)
            else:
                os.symlink(kind, path)
            return {}
        return setup
    inputs = [
        ("evaluate MODEL", lambda n: ["evaluate", n], ("data",)),
        ("summary MODEL", lambda n: ["summary", n], ()),
        ("predict MODEL", lambda n: ["predict", n, "digit.png"], ("digit",)),
        ("export MODEL", lambda n: ["export", n, "o.onnx"], ()),
        ("train --resume", lambda n: ["train", "--resume", n], ()),
        ("visualize MODEL", lambda n: ["visualize", n, "--out", "pics"], ()),
    ]
    for kind, label in [("fifo", "a FIFO"), ("/dev/zero", "a symlink to /dev/zero"), ("dir", "a directory"),
                        ("loop", "a symlink loop"), ("/proc/self/mem", "/proc/self/mem")]:
        for command, argv, needs in inputs if kind == "fifo" else inputs[:2]:
            cases.append(Case("crafted", f"{command} is {label}", argv("x.npz"), "error", needs, make(kind, "x.npz"),
                              timeout=FIFO_TIMEOUT))
        for command, argv, needs in [
            ("summary ARCH.json", lambda n: ["summary", n], ()),
            ("train --arch", lambda n: train({"--conv": None, "--dense": None}, ["--arch", n]), ()),
            ("predict IMAGE", lambda n: ["predict", "m.npz", n], ("model",)),
            ("report --log", lambda n: ["report", "m.npz", "--log", n, "--out", "r.html"], ("model",)),
            ("visualize --log", lambda n: ["visualize", "m.npz", "--log", n, "--out", "pics"], ("model",)),
            ("visualize --image", lambda n: ["visualize", "m.npz", "--image", n, "--out", "pics"], ("model",)),
            ("train --data-dir", lambda n: train(extra=["--data-dir", n]), ()),
            ("evaluate --data-dir", lambda n: ["evaluate", "m.npz", "--data-dir", n], ("model",)),
        ]:
            if kind == "dir" and command.endswith("--data-dir"):
                continue  # an empty directory: a data-directory case of its own
            if kind != "fifo" and command not in ("summary ARCH.json", "predict IMAGE", "report --log") + (
                    ("visualize --log", "train --data-dir") if kind == "/dev/zero" else ()):
                continue
            name = "x.json" if "ARCH" in command or "--arch" in command else "x.png" if "IMAGE" in command \
                or "--image" in command else "x.log.jsonl" if "--log" in command else "x"
            cases.append(Case("crafted", f"{command} is {label}", argv(name), "error", needs, make(kind, name),
                              timeout=FIFO_TIMEOUT))
    return cases


# --- 4. IDX datasets and images ----------------------------------------------------------------------------------

def data_cases():
    cases = []
    xtr, ytr, xte, yte = TINY
    labels = ytr.astype(np.int64)

    def ds(replace=None, extra=None):
        def setup(work, outside):
            write_dataset(work / "d", replace() if callable(replace) else replace)
            if extra:
                extra(work / "d")
            return {}
        return setup
    idx = idx_bytes
    header = bytes([0, 0, 8, 3])
    variants = [
        ("train images: 3 bytes", {"xtr": b"\0\0\x08"}, "error"),
        ("train images: dimensions cut short", {"xtr": header + (256).to_bytes(4, "big") + (28).to_bytes(4, "big")},
         "error"),
        ("train images: wrong magic", {"xtr": b"\x01" + idx(xtr)[1:]}, "error"),
        ("train images: magic of a gzip but not gzip", {"xtr": b"\x1f\x8b" + idx(xtr)[2:]}, "error"),
        ("train images: unknown type 0x07", {"xtr": b"\0\0\x07\x03" + idx(xtr)[4:]}, "error"),
        ("train images: zero dimensions", {"xtr": b"\0\0\x08\x00"}, "error"),
        ("train images: dimensions 2^32-1 each", {"xtr": header + b"\xff\xff\xff\xff" * 3 + b"\0" * 100}, "error"),
        ("train images: declares 60000, holds 256", {"xtr": header + (60000).to_bytes(4, "big") + idx(xtr)[8:]},
         "error"),
        ("train images: a zero dimension", {"xtr": header + (0).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2},
         "error"),
        ("train images: trailing data", {"xtr": idx(xtr) + b"extra"}, "error"),
        ("train images: int16", {"xtr": idx(xtr.astype(np.int16), 0x0B)}, "error"),
        ("train images: 2-D", {"xtr": idx(xtr.reshape(256, 784))}, "error"),
        ("train images: 1x1 pixels", {"xtr": idx(xtr[:, :1, :1]), "xte": idx(xte[:, :1, :1])}, "error"),
        ("train images: 200x3 pixels", {"xtr": idx(np.zeros((256, 200, 3), np.uint8)),
                                        "xte": idx(np.zeros((64, 200, 3), np.uint8))}, "error"),
        ("train images: an empty file", {"xtr": b""}, "error"),
        ("test images: 14x14 while train is 28x28", {"xte": idx(xte[:, :14, :14])}, "error"),
        ("labels: all one class", {"ytr": idx(np.zeros(256, np.uint8)), "yte": idx(np.zeros(64, np.uint8))}, "either"),
        ("labels: a stray 255", {"ytr": idx(np.where(np.arange(256) == 7, 255, ytr).astype(np.uint8))}, "either"),
        ("labels: a stray 65535 (int32)", {"ytr": idx(np.where(np.arange(256) == 7, 65535, labels), 0x0C)}, "either"),
        ("labels: a stray 65536 (int32)", {"ytr": idx(np.where(np.arange(256) == 7, 65536, labels), 0x0C)}, "error"),
        ("labels: a negative label (int8)", {"ytr": idx(np.where(np.arange(256) == 7, -1, labels), 0x09)}, "error"),
        ("labels: float32", {"ytr": idx(labels.astype(np.float32), 0x0D)}, "error"),
        ("labels: one fewer than images", {"ytr": idx(ytr[:255])}, "error"),
        ("test labels: a class the training set lacks", {"yte": idx(np.full(64, 9, np.uint8)),
                                                         "ytr": idx((labels % 9).astype(np.uint8))}, "either"),
        ("test labels missing", {"yte": None}, "error"),
        ("all four files missing but one", {"xtr": None, "ytr": None, "xte": None}, "error"),
        ("gzip train images", {"xtr": gzip.compress(idx(xtr))}, "ok"),
        ("gzip truncated", {"xtr": gzip.compress(idx(xtr))[:200]}, "error"),
        ("gzip with a bad CRC", {"xtr": gzip.compress(idx(xtr))[:-8] + b"\0" * 8}, "error"),
        ("gzip with garbage after the magic", {"xtr": b"\x1f\x8b" + random.Random(3).randbytes(500)}, "error"),
        ("gzip bomb: 10 images declared, 200 MB of zeros", {"xtr": _gzip_zeros(header + (10).to_bytes(4, "big")
                                                                                + (28).to_bytes(4, "big") * 2,
                                                                                200 << 20)}, "error"),
        ("gzip bomb: 2.7 GB declared", {"xtr": gzip.compress(header + (2700).to_bytes(4, "big")
                                                              + (1000).to_bytes(4, "big") * 2 + bytes(1 << 20))},
         "error"),
    ]
    for name, replace, expect in variants:
        cases.append(Case("data", f"IDX: {name} (train)", train({"--limit-train": None}, ["--data-dir", "d"]), expect,
                          (), ds(replace), timeout=40))
        if name.startswith(("test", "labels: a stray 255", "train images: 1x1", "gzip train")):
            cases.append(Case("data", f"IDX: {name} (evaluate)", ["evaluate", "m.npz", "--data-dir", "d"],
                              "ok" if expect == "ok" else "error" if "stray" not in name and "lacks" not in name
                              else "either", ("model",), ds(replace)))

    def special(kind):
        def extra(d):
            path = d / NAMES["ytr"]
            path.unlink()
            if kind == "dir":
                path.mkdir()
            elif kind == "fifo":
                fifo(path)
            elif kind == "loop":
                os.symlink(path.name, path)
            else:
                os.symlink(kind, path)
        return extra
    for kind, label in [("dir", "a directory"), ("fifo", "a FIFO"), ("loop", "a symlink loop"),
                        ("/dev/zero", "a symlink to /dev/zero"), ("/dev/stdin", "/dev/stdin")]:
        cases.append(Case("data", f"IDX: train labels are {label} (train)", train(extra=["--data-dir", "d"]), "error",
                          (), ds(None, special(kind)), timeout=FIFO_TIMEOUT))
    cases.append(Case("data", "IDX: an empty data directory", train(extra=["--data-dir", "d"]), "error", (),
                      lambda w, o: (w / "d").mkdir() or {}))
    cases.append(Case("data", "IDX: --data-dir /dev/null", train(extra=["--data-dir", "/dev/null"]), "error"))
    cases.append(Case("data", "IDX: --data-dir /proc", train(extra=["--data-dir", "/proc"]), "error"))

    # Image folders.
    def folder(layout):
        def setup(work, outside):
            for rel, content in layout(work).items():
                path = work / "f" / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                if content == "fifo":
                    fifo(path)
                elif content == "dir":
                    path.mkdir(exist_ok=True)
                else:
                    path.write_bytes(content)
            return {}
        return setup
    digit = _png_bytes(digit_image())
    two = lambda extra: (lambda work: {"zero/a.png": digit, "zero/b.png": digit, "one/a.png": digit,
                                       "one/b.png": digit, **extra})
    for name, layout, expect in [
        ("a valid two-class folder (control)", two({}), "ok"),
        ("a class named with an escape", two({"\x1b[31mred/a.png": digit, "\x1b[31mred/b.png": digit}), "error"),
        ("a class named with a newline", two({"new\nline/a.png": digit, "new\nline/b.png": digit}), "error"),
        ("a class name of 100 characters", two({"c" * 100 + "/a.png": digit, "c" * 100 + "/b.png": digit}), "error"),
        ("one class only", lambda w: {"zero/a.png": digit, "zero/b.png": digit}, "error"),
        ("a class without images", two({"empty/readme.txt": b"x"}), "error"),
        ("a damaged PNG", two({"zero/c.png": digit[:50]}), "error"),
        ("an empty PNG", two({"zero/c.png": b""}), "error"),
        ("a text file named .png", two({"zero/c.png": b"hello"}), "error"),
        ("a FIFO named .png", two({"zero/c.png": "fifo"}), "either"),
        ("a directory named .png", two({"zero/c.png": "dir"}), "either"),
        ("train/ without test/", lambda w: {"train/zero/a.png": digit, "train/one/a.png": digit}, "error"),
        ("a test class not in train/", lambda w: {"train/zero/a.png": digit, "train/one/a.png": digit,
                                                  "test/two/a.png": digit}, "error"),
        ("200 classes of one image", lambda w: {f"c{i}/a.png": digit for i in range(200)}, "error"),
    ]:
        cases.append(Case("data", f"image folder: {name} (train)", train({"--limit-train": None},
                                                                         ["--data-dir", "f"]), expect, (),
                          folder(layout), timeout=FIFO_TIMEOUT if "FIFO" in name else TIMEOUT))
    cases += image_cases()
    return cases


def _gzip_zeros(head, nbytes):
    comp = zlib.compressobj(1, zlib.DEFLATED, 31)
    parts = [comp.compress(head)]
    chunk = bytes(1 << 20)
    for _ in range(nbytes >> 20):
        parts.append(comp.compress(chunk))
    parts.append(comp.flush())
    return b"".join(parts)


def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_header_only(width, height, extra=b""):
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + extra
            + _png_chunk(b"IDAT", zlib.compress(b"\0" * 100)) + _png_chunk(b"IEND", b""))


def _gif_huge_screen():
    """A GIF whose logical screen is 65535x65535 with one 1x1 frame."""
    return (b"GIF89a" + struct.pack("<HHBBB", 65535, 65535, 0, 0, 0)
            + b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00" + b"\x3b")


def _img(save):
    out = io.BytesIO()
    save(out)
    return out.getvalue()


def image_files():
    """(name, file name, bytes or a setup function, expect) for predict."""
    d = digit_image()
    png = _png_bytes(d)
    arr = np.asarray(d, dtype=np.float32)
    nan = arr.copy()
    nan[3, 3] = np.nan
    inf = arr.copy()
    inf[3, 3] = -np.inf
    frames = [d, d.rotate(10)]
    bad_crc = bytearray(png)
    bad_crc[png.find(b"IDAT") + 10] ^= 0xFF
    jpg = _img(lambda o: d.convert("RGB").save(o, "JPEG"))
    ztxt = _png_chunk(b"zTXt", b"comment\0\0" + zlib.compress(b"x" * (100 << 20), 9))
    exif = Image.Exif()
    exif[0x0112] = 9  # an orientation that does not exist
    big_l = Image.new("L", (7000, 7000), 255)
    ImageDraw.Draw(big_l).ellipse((2000, 1500, 5000, 5500), outline=0, width=400)
    files = [
        ("a PNG digit (control)", "a.png", png, "ok"),
        ("an empty file", "a.png", b"", "error"),
        ("a PNG cut in half", "a.png", png[:len(png) // 2], "error"),
        ("a PNG with a bad CRC", "a.png", bytes(bad_crc), "error"),
        ("a text file", "a.png", b"not an image\n", "error"),
        ("an SVG named .png", "a.png", b'<svg xmlns="http://www.w3.org/2000/svg"><circle r="5"/></svg>', "error"),
        ("a PNG header of 100000x100000", "a.png", _png_header_only(100000, 100000), "error"),
        ("a PNG header of 8000x7000", "a.png", _png_header_only(8000, 7000), "error"),
        ("a GIF with a 65535x65535 screen", "a.gif", _gif_huge_screen(), "error"),
        ("a 7000x7000 PNG (just under the pixel limit)", "a.png", _png_bytes(big_l), "either"),
        ("a 60000x1 PNG", "a.png", _png_bytes(Image.new("L", (60000, 1), 0)), "either"),
        ("a zTXt chunk of 100 MB", "a.png", _png_header_only(28, 28, ztxt), "either"),
        ("a float TIFF with a NaN", "a.tif", _img(lambda o: Image.fromarray(nan).save(o, "TIFF")), "error"),
        ("a float TIFF digit", "a.tif", _img(lambda o: Image.fromarray(arr * 1e30).save(o, "TIFF")), "ok"),
        ("an animated GIF", "a.gif", _img(lambda o: frames[0].save(o, "GIF", save_all=True, append_images=frames[1:])),
         "error"),
        ("a two-page TIFF", "a.tif", _img(lambda o: frames[0].save(o, "TIFF", save_all=True,
                                                                  append_images=frames[1:])), "error"),
        ("a 16-bit PNG", "a.png", _png_bytes(Image.fromarray((np.asarray(d, np.uint16) * 257).astype(np.uint16))),
         "ok"),
        ("a CMYK JPEG", "a.jpg", _img(lambda o: d.convert("CMYK").save(o, "JPEG")), "ok"),
        ("a JPEG cut in half", "a.jpg", jpg[:len(jpg) // 2], "either"),
        ("a blank white image", "a.png", _png_bytes(Image.new("L", (28, 28), 255)), "error"),
        ("a 1x1 image", "a.png", _png_bytes(Image.new("L", (1, 1), 0)), "error"),
        ("a fully transparent RGBA", "a.png", _png_bytes(Image.new("RGBA", (28, 28), (0, 0, 0, 0))), "error"),
        ("a palette PNG with transparency", "a.png", _png_bytes(d.convert("P"), transparency=0), "either"),
        ("a 32-bit integer TIFF, all equal", "a.tif", _img(lambda o: Image.fromarray(np.full((28, 28), 5, np.int32))
                                                           .save(o, "TIFF")), "error"),
        ("a WebP", "a.webp", _img(lambda o: d.save(o, "WEBP")) if _has_webp() else png, "ok"),
        ("a name with a terminal escape", "\x1b[31mred.png", png, "ok"),
        ("a name with a terminal escape (--json)", "\x1b[31mred.png", png, "ok"),
        ("a missing file whose name has an escape", None, "\x1b[2Jgone.png", "error"),
        ("a missing file whose name has a newline", None, "no\nsuch.png", "error"),
        ("a damaged file whose name has a newline", "bad\nname.png", png[:30], "error"),
        ("a missing file", None, "nothing.png", "error"),
    ]
    return files


def _has_webp():
    try:
        from PIL import features
        return bool(features.check("webp"))
    except Exception:
        return False


def image_cases():
    cases = []
    for name, fname, content, expect in image_files():
        if fname is None:  # a missing file: ``content`` is its name
            cases.append(Case("data", f"image: {name} (predict)", ["predict", "m.npz", content], expect, ("model",)))
            continue

        def setup(work, outside, fname=fname, content=content):
            (work / fname).write_bytes(content)
            return {}
        extra = ["--json"] if "--json" in name else []
        cases.append(Case("data", f"image: {name} (predict)", ["predict", "m.npz", fname, *extra], expect, ("model",),
                          setup))
        if name in ("a float TIFF with a NaN", "an animated GIF", "a PNG header of 100000x100000"):
            cases.append(Case("data", f"image: {name} (visualize --image)",
                              ["visualize", "m.npz", "--data-dir", "data", "--count", "1", "--image", fname, "--out",
                               "pics"], expect, ("model", "data"), setup))
    # Many images at once, and one bad image among good ones.

    def many(work, outside):
        png = (SHARED_FILES["digit"][0]).read_bytes()
        for i in range(300):
            (work / f"d{i}.png").write_bytes(png)
        (work / "bad.png").write_bytes(b"")
        return {}
    cases.append(Case("data", "image: 300 digits (predict)", ["predict", "m.npz", *[f"d{i}.png" for i in range(300)]],
                      "ok", ("model",), many))
    cases.append(Case("data", "image: 300 digits and one empty file (predict)",
                      ["predict", "m.npz", *[f"d{i}.png" for i in range(300)], "bad.png"], "error", ("model",), many))
    cases.append(Case("data", "image: report --image a digit", ["report", "m.npz", "--data-dir", "data", "--count", "1",
                                                                "--image", "digit.png", "--out", "r.html"], "ok",
                      ("model", "data", "digit")))
    return cases


# --- 5. signals --------------------------------------------------------------------------------------------------

SIGNAL_TRAIN = ["train", "--epochs", "3", "--limit-train", "10000", "--val-split", "0", "--conv", "8", "--dense", "32",
                "--batch-size", "16", "--checkpoint-every", "5", "--quiet", "--out", "s.npz"]


def signal_cases():
    rng = random.Random(20240601)
    cases = []
    resumes = {"left": 6}
    lock = threading.Lock()
    names = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}

    def during(first, delay, second=None, gap=0.0):
        def act(proc, work, ctx):
            time.sleep(max(0.0, delay - (time.monotonic() - proc.started)))
            ctx["ckpt_before"] = (work / "s.ckpt.npz").exists()
            ctx["sent"] = proc.send(first)
            if second is not None and ctx["sent"]:
                time.sleep(gap)
                proc.send(second)
        return act

    def check(res, work, outside, ctx):
        problems = []
        ckpt, model = work / "s.ckpt.npz", work / "s.npz"
        if not ctx.get("sent"):
            return [] if res.rc == 0 else [f"finished before the signal with exit {res.rc}"]
        lines = res.err.decode("utf-8", "replace").strip().splitlines()
        line = lines[-1] if lines else ""
        hint = INTERRUPT_LINE.match(line)
        if res.rc == 0:
            return []  # the run ended as the signal came
        if ckpt.exists() and not hint and not model.exists():
            problems.append("a checkpoint exists but the interruption line does not say how to resume")
        if ckpt.exists():
            problem = loads_as_checkpoint(ckpt)
            if problem:
                problems.append(problem)
        if hint:
            if not ckpt.exists():
                problems.append("the line says how to resume but there is no checkpoint")
            with lock:
                go = resumes["left"] > 0
                resumes["left"] -= go
            if go:
                words = shlex.split(hint.group(2))[1:]
                again = run_cycnn(words, work)
                if again.rc != 0 or not model.exists():
                    problems.append(f"the resume hint ({printable(hint.group(2))}) failed: exit {again.rc}, "
                                    f"{printable(again.err, 300)}")
                else:
                    with lock:
                        RESUMED.append(hint.group(2))
        return problems
    for i in range(26):
        delay = rng.uniform(0.05, 3.0)
        sig = rng.choice([signal.SIGINT, signal.SIGTERM])
        cases.append(Case("signals", f"train, {names[sig]} after {delay:.2f} s", SIGNAL_TRAIN, "interrupt",
                          during=during(sig, delay), check=check))
    for i in range(6):
        delay = rng.uniform(0.05, 3.0)
        first, second = rng.choice([(signal.SIGINT, signal.SIGINT), (signal.SIGINT, signal.SIGTERM),
                                    (signal.SIGTERM, signal.SIGTERM), (signal.SIGTERM, signal.SIGINT)])
        gap = rng.choice([0.0, 0.001, 0.01, 0.05, 0.2])
        cases.append(Case("signals", f"train, {names[first]} after {delay:.2f} s then {names[second]} {gap:.3f} s later",
                          SIGNAL_TRAIN, "interrupt", during=during(first, delay, second, gap), check=check))
    for i in range(4):
        delay = rng.uniform(0.05, 2.5)
        sig = rng.choice([signal.SIGINT, signal.SIGTERM])
        cases.append(Case("signals", f"train --resume, {names[sig]} after {delay:.2f} s",
                          ["train", "--resume", "c.ckpt.npz", "--data-dir", "data", "--quiet"], "interrupt",
                          ("ckpt", "data"), during=during(sig, delay), check=_resume_signal_check))
    for command, argv, needs in [("evaluate", ["evaluate", "m.npz"], ("model",)),
                                 ("visualize", ["visualize", "m.npz", "--out", "pics"], ("model",)),
                                 ("report", ["report", "m.npz", "--out", "r.html"], ("model",)),
                                 ("predict", ["predict", "m.npz", "digit.png"], ("model", "digit")),
                                 ("export", ["export", "m.npz", "o.onnx"], ("model",)),
                                 ("summary", ["summary", "m.npz"], ("model",))]:
        for _ in range(1):
            delay = rng.uniform(0.05, 2.0)
            sig = rng.choice([signal.SIGINT, signal.SIGTERM])
            cases.append(Case("signals", f"{command}, {names[sig]} after {delay:.2f} s", argv, "interrupt", needs,
                              during=during(sig, delay), check=_plain_signal_check))
    return cases


def _resume_signal_check(res, work, outside, ctx):
    if not ctx.get("sent"):
        return [] if res.rc == 0 else [f"finished before the signal with exit {res.rc}"]
    problems = []
    if res.rc == 0:
        return []
    problem = loads_as_checkpoint(work / "c.ckpt.npz")
    if problem:
        problems.append(problem)
    return problems


def _plain_signal_check(res, work, outside, ctx):
    if not ctx.get("sent"):
        return [] if res.rc == 0 else [f"finished before the signal with exit {res.rc}"]
    return []


# --- 6. a full file system ---------------------------------------------------------------------------------------

def fullfs_cases():
    def mount(work, outside, fill=0):
        full = work / "full"
        full.mkdir()
        try:
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(full)],
                                  capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return {"skip": f"cannot mount a tmpfs ({exc})"}
        if done.returncode != 0:
            return {"skip": f"mounting a tmpfs is not permitted here ({done.stderr.strip()[:120]})"}
        if fill:
            with open(full / "filler", "wb") as fh:
                try:
                    fh.write(bytes(fill))
                except OSError:
                    pass
        MOUNTS.append(full)
        return {"cleanup": lambda: _umount(full), "full": full}

    def setup_for(fill=0):
        return lambda work, outside: mount(work, outside, fill)

    def check(res, work, outside, ctx):
        problems = []
        full = ctx["full"]
        for path in sorted(full.iterdir()):
            if path.name == "filler":
                continue
            if path.name.endswith(".tmp"):
                problems.append(f"a temporary file was left on the full disk: {path.name}")
            elif path.name.endswith(".ckpt.npz"):
                problem = loads_as_checkpoint(path)
                problems += [problem] if problem else []
            elif path.name.endswith(".npz"):
                problem = loads_as_model(path)
                problems += [problem] if problem else []
        for path in work.glob("*.npz"):
            problem = loads_as_checkpoint(path) if path.name.endswith(".ckpt.npz") else loads_as_model(path)
            problems += [problem] if problem else []
        return problems
    base = ["--epochs", "2", "--limit-train", "2000", "--val-split", "0", "--conv", "2", "--quiet"]
    cases = [
        Case("fullfs", "out, log and checkpoint on a full 600 kB tmpfs (dense 256: the checkpoint does not fit)",
             ["train", *base, "--dense", "256", "--out", "full/m.npz", "--log", "full/m.log.jsonl", "--checkpoint",
              "full/m.ckpt.npz"], "error", (), setup_for(), check),
        Case("fullfs", "only the log on the tmpfs, a record every step",
             ["train", *base, "--dense", "8", "--batch-size", "4", "--log-every", "1", "--out", "m.npz", "--log",
              "full/m.log.jsonl"], "error", (), setup_for(), check),
        Case("fullfs", "only the model on a nearly full tmpfs",
             ["train", *base, "--dense", "64", "--out", "full/m.npz", "--checkpoint", "c.ckpt.npz", "--log",
              "m.log.jsonl"], "error", (), setup_for(560 << 10), check),
        Case("fullfs", "only the checkpoint on a nearly full tmpfs",
             ["train", *base, "--dense", "64", "--checkpoint-every", "3", "--out", "m.npz", "--checkpoint",
              "full/c.ckpt.npz"], "error", (), setup_for(560 << 10), check),
        Case("fullfs", "everything on a completely full tmpfs",
             ["train", *base, "--dense", "8", "--out", "full/m.npz"], "error", (), setup_for(1 << 20), check),
        Case("fullfs", "report --out on a completely full tmpfs",
             ["report", "m.npz", "--data-dir", "data", "--count", "1", "--out", "full/r.html"], "error",
             ("model", "data"), setup_for(1 << 20), check),
        Case("fullfs", "export on a completely full tmpfs", ["export", "m.npz", "full/o.onnx"], "error", ("model",),
             setup_for(1 << 20), check),
        Case("fullfs", "visualize --out on a completely full tmpfs",
             ["visualize", "m.npz", "--data-dir", "data", "--count", "1", "--out", "full/pics"], "error",
             ("model", "data"), setup_for(1 << 20), check),
    ]
    return cases


MOUNTS = []
BOMB_LOCK = threading.Lock()
RESUMED = []  # resume hints of interrupted runs that were followed (and finished)
NOTES = []  # observations that are not failures


def _umount(path):
    subprocess.run(["umount", str(path)], capture_output=True, timeout=20)
    if path in MOUNTS:
        MOUNTS.remove(path)


# --- 7. the live server ------------------------------------------------------------------------------------------

def http(port, raw, timeout=5.0, read=True, linger_rst=False):
    """Send ``raw`` bytes to 127.0.0.1:port; returns the reply (up to 4 MB) or an exception's name."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            if raw:
                conn.sendall(raw)
            if linger_rst:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return b""
            if not read:
                return b""
            chunks, total = [], 0
            while total < (4 << 20):
                data = conn.recv(65536)
                if not data:
                    break
                chunks.append(data)
                total += len(data)
            return b"".join(chunks)
    except OSError as exc:
        return type(exc).__name__.encode()


def split_reply(reply):
    head, _, body = reply.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    parts = status.split()
    code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    return code, body


def live_runner(case_dir):
    work = case_dir / "work"
    rows = []
    argv = ["train", "--live", "--port", "0", "--keep-serving", "--epochs", "2", "--limit-train", "6000",
            "--val-split", "0", "--conv", "4", "--dense", "16", "--quiet", "--out", "m.npz"]
    state = {"url": None}
    page = {}
    results = []

    def probes(proc):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and state["url"] is None and proc.alive():
            time.sleep(0.05)
        if state["url"] is None:
            return
        port = int(state["url"].rstrip("/").rsplit(":", 1)[1])
        results.extend(live_probes(port, page))
        time.sleep(0.2)
        state["stopped_at"] = time.monotonic()
        proc.send(signal.SIGINT)

    res = _run_live(argv, work, state, probes)
    cmd = command_text(argv)
    if state["url"] is None:
        return [Row("live", "the live view prints its URL", cmd, res.rc, printable(res.err, 2000),
                    ["no 'live view: URL' line on stdout within 30 s"])]
    for name, problems, detail in results:
        rows.append(Row("live", name, f"{detail}  (against: {cmd})", None, "", problems))
    console = judge("either", res, 120)
    extra = [line for line in res.err.decode("utf-8", "replace").strip().splitlines()
             if not line.startswith(("training done; the live view stays", "cycnn: interrupted"))]
    if extra:
        console.append(f"unexpected console lines: {printable(' | '.join(extra), 300)}")
    if res.rc not in (0, 130):
        console.append(f"exit {res.rc} after SIGINT")
    if "stopped_at" in state and res.seconds > 0 and res.timed_out:
        console.append("did not stop after SIGINT")
    rows.append(Row("live", "the console shows no traceback and the server stops on SIGINT", cmd, res.rc,
                    printable(res.err, 2000), console))
    return rows


def _run_live(argv, work, state, probes):
    """run_cycnn, watching stdout for the URL as it comes."""
    parent_rss = _own_rss()
    popen = subprocess.Popen([sys.executable, "-m", "cycnn", *argv], cwd=work, env=ENV, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    proc = Proc(popen)
    out, err = [], []
    polled = 0

    def watch_stdout():
        buffer = b""
        while True:
            data = popen.stdout.read1(65536)
            if not data:
                break
            out.append(data)
            buffer += data
            match = re.search(rb"live view: (http://127\.0\.0\.1:\d+/)", buffer)
            if match and state["url"] is None:
                state["url"] = match.group(1).decode()
    readers = [threading.Thread(target=watch_stdout, daemon=True),
               threading.Thread(target=_drain, args=(popen.stderr, err), daemon=True)]
    for t in readers:
        t.start()
    helper = threading.Thread(target=_guarded, args=(probes, proc), daemon=True)
    helper.start()
    deadline, timed_out = time.monotonic() + 150, False
    while True:
        with proc.lock:
            polled = max(polled, _vm_hwm(popen.pid))
            pid, status, usage = os.wait4(popen.pid, os.WNOHANG)
            if pid:
                proc.done = True
                break
        if not timed_out and (time.monotonic() > deadline or (
                "stopped_at" in state and time.monotonic() > state["stopped_at"] + 20)):
            timed_out = True
            os.killpg(popen.pid, signal.SIGKILL)
        time.sleep(0.02)
    popen.returncode = os.waitstatus_to_exitcode(status)
    for t in readers:
        t.join(5)
    helper.join(10)
    return Result(popen.returncode, b"".join(out), b"".join(err), time.monotonic() - proc.started,
                  peak_rss(polled, usage, parent_rss), timed_out)


def live_probes(port, page):
    """(name, problems, what was sent) for each bad client; after each, /data.json must still answer JSON."""
    results = []

    def healthy():
        code, body = split_reply(http(port, b"GET /data.json HTTP/1.0\r\n\r\n", timeout=10))
        try:
            json.loads(body)
            return code == 200
        except ValueError:
            return False

    def allowed(reply):
        """A reply that serves nothing but the page or the snapshot (or refuses)."""
        code, body = split_reply(reply)
        problems = []
        if b"root:x:" in body or b"root:*:" in body:
            problems.append("served /etc/passwd content")
        if code == 200:
            is_json = True
            try:
                json.loads(body)
            except ValueError:
                is_json = False
            if not is_json and body != page.get("html"):
                problems.append(f"served something other than the page or /data.json: {printable(body[:80])}")
        return problems

    code, body = split_reply(http(port, b"GET / HTTP/1.0\r\n\r\n"))
    page["html"] = body
    results.append(("GET / serves the page", [] if code == 200 and b"<" in body[:100] else [f"GET / gave {code}"],
                    "GET /"))
    results.append(("GET /data.json is JSON", [] if healthy() else ["GET /data.json did not answer JSON"],
                    "GET /data.json"))
    paths = ["/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2f..%2fetc%2fpasswd",
             "/%252e%252e/%252e%252e/etc/passwd", "//etc/passwd", "/etc/passwd", "/static/../../../../etc/passwd",
             "/data.json/../../../../etc/passwd", "/./data.json", "/\\..\\..\\etc\\passwd", "/live.html",
             "/static/live.html", "/index.html/../../etc/passwd", "/%00", "/data.json%00.html",
             "/?file=/etc/passwd", "/data.json?../../etc/passwd", "/" + "a" * 60000, "/\xff\xfe".encode("latin-1")
             .decode("latin-1"), "http://127.0.0.1/../../etc/passwd", "file:///etc/passwd", "*",
             "/....//....//etc/passwd", "/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd"]
    for path in paths:
        raw = b"GET " + path.encode("latin-1") + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        reply = http(port, raw)
        problems = allowed(reply)
        if not healthy():
            problems.append("GET /data.json stopped answering afterwards")
        results.append((f"GET {printable(path, 60)}", problems, f"GET {printable(path, 60)}"))
    rng = random.Random(7)
    raws = [
        ("random bytes", rng.randbytes(4096)),
        ("NUL bytes", b"\0" * 2000),
        ("not HTTP", b"HELLO\r\n\r\n"),
        ("HTTP/0.9", b"GET /\r\n"),
        ("HTTP/9.9", b"GET / HTTP/9.9\r\n\r\n"),
        ("a 70000-byte header line", b"GET / HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n"),
        ("200 headers", b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n"),
        ("a Host header with escapes", b"GET / HTTP/1.1\r\nHost: \x1b[2J\r\n\r\n"),
        ("POST /data.json", b"POST /data.json HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"),
        ("PUT /x", b"PUT /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"),
        ("DELETE /data.json", b"DELETE /data.json HTTP/1.1\r\n\r\n"),
        ("HEAD /", b"HEAD / HTTP/1.1\r\n\r\n"),
        ("OPTIONS *", b"OPTIONS * HTTP/1.1\r\n\r\n"),
        ("CONNECT", b"CONNECT 127.0.0.1:22 HTTP/1.1\r\n\r\n"),
        ("a huge Content-Length", b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"),
        ("chunked junk", b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzzzz\r\n"),
        ("a request line of invalid UTF-8", b"GET /\xc3\x28 HTTP/1.1\r\n\r\n"),
        ("keep-alive with two requests", b"GET /data.json HTTP/1.1\r\nHost: x\r\n\r\nGET /etc/passwd HTTP/1.1\r\n"
                                         b"Host: x\r\nConnection: close\r\n\r\n"),
    ]
    for name, raw in raws:
        reply = http(port, raw)
        problems = allowed(reply)
        if not healthy():
            problems.append("GET /data.json stopped answering afterwards")
        results.append((f"raw request: {name}", problems, name))
    # Clients that hang up early.
    for name, kwargs in [("connect and close", dict(raw=b"", read=False)),
                         ("a request, closed before the reply", dict(raw=b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                                                                     read=False)),
                         ("a request, then a reset (SO_LINGER 0)", dict(raw=b"GET /data.json HTTP/1.1\r\n\r\n",
                                                                       linger_rst=True)),
                         ("half a request, closed", dict(raw=b"GET /da", read=False))]:
        for _ in range(20):
            http(port, **kwargs)
        results.append((f"20 clients: {name}", [] if healthy() else ["GET /data.json stopped answering"], name))
    # A slow partial request (held open while others are served), then 50 of them at once.
    slow = socket.create_connection(("127.0.0.1", port), timeout=10)
    slow.sendall(b"GET /data.json HTTP/1.1\r\nHost: x\r\n")
    ok_meanwhile = healthy()
    time.sleep(2)
    slow.sendall(b"\r\n")
    try:
        code, body = split_reply(slow.recv(1 << 20))
    except OSError:
        code = None
    slow.close()
    problems = [] if ok_meanwhile else ["GET /data.json was not served while a slow request was open"]
    if code not in (200, None):
        problems.append(f"the slow request got {code}")
    results.append(("a slow partial request held 2 s", problems, "GET /data.json sent in two parts, 2 s apart"))
    held = []
    for _ in range(50):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET / HTTP/1.1\r\n")
            held.append(s)
        except OSError:
            break
    problems = [] if healthy() else ["GET /data.json not served while 50 partial requests were open"]
    for s in held:
        s.close()
    results.append(("50 partial requests held open (slowloris)", problems, "50 x 'GET / HTTP/1.1\\r\\n' held open"))
    # 200 concurrent requests, bounded in time.
    outcomes, waits, reasons = [], [], {}
    olock = threading.Lock()

    def one():
        begun = time.monotonic()
        reply = http(port, b"GET /data.json HTTP/1.0\r\n\r\n", timeout=20)
        code, body = split_reply(reply)
        try:
            json.loads(body)
            good = code == 200
        except ValueError:
            good = False
        with olock:
            outcomes.append(good)
            waits.append(time.monotonic() - begun)
            if not good:
                why = reply.decode("latin-1") if len(reply) < 40 and b" " not in reply else f"HTTP {code}"
                reasons[why or "connection closed without a reply"] = reasons.get(why or "connection closed "
                                                                                  "without a reply", 0) + 1
    threads = [threading.Thread(target=one, daemon=True) for _ in range(200)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.1, 40 - (time.monotonic() - started)))
    failed = 200 - sum(outcomes)
    waits.sort()
    spread = (f"answers after a median {waits[len(waits) // 2]:.1f} s, the slowest {waits[-1]:.1f} s"
              if waits else "no answers")
    # Handled means the server survives the burst and keeps answering; connections beyond its listen backlog wait
    # for the client's SYN retries (1, 3, 7, 15 s...), so some of a burst may time out: reported as a note.
    problems = [] if sum(outcomes) else ["none of 200 concurrent GET /data.json was answered"]
    if not healthy():
        problems.append("GET /data.json stopped answering afterwards")
    if failed:
        NOTES.append(f"live: {failed} of 200 simultaneous GET /data.json got no reply within 20 s ("
                     + ", ".join(f"{n} {why}" for why, n in sorted(reasons.items())) + f"; {spread}); the server "
                     "kept answering afterwards (a burst beyond the listen backlog waits for SYN retries)")
    results.append(("200 concurrent GET /data.json", problems, f"200 threads, {spread}"))
    return results


# --- the sweep ---------------------------------------------------------------------------------------------------

def all_cases(only):
    makers = {"flags": flag_cases, "outputs": output_cases, "crafted": crafted_cases, "data": data_cases,
              "signals": signal_cases, "fullfs": fullfs_cases,
              "live": lambda: [Case("live", "the live server", runner=live_runner)]}
    cases = []
    for cat in CATEGORIES:
        if cat in only:
            cases += makers[cat]()
    return cases


def main():
    global ENV, CASES, SHARED_FILES, SWEEP_ROOT, WATCH
    warnings.filterwarnings("ignore", "Duplicate name")  # the crafted archive with a member twice
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(CATEGORIES), help="comma-separated categories: "
                                                                     + ", ".join(CATEGORIES))
    parser.add_argument("--jobs", type=int, default=3, help="cases run at once (default 3: on 2 cores a third keeps "
                                                             "them busy while a case sleeps before its signal)")
    parser.add_argument("--keep", action="store_true", help="keep every case's directory (default: only failures)")
    parser.add_argument("--match", default="", help="only cases whose name contains this text")
    parser.add_argument("--verbose", action="store_true", help="print every case's outcome as it ends")
    args = parser.parse_args()
    only = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = set(only) - set(CATEGORIES)
    if unknown:
        parser.error(f"unknown categories {sorted(unknown)}")
    # Every child inherits this address-space limit: a runaway allocation fails instead of exhausting the machine
    # (the 2 GB peak-RSS check still flags it).
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = 8 << 30
    if soft == resource.RLIM_INFINITY or soft > limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    ENV = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "CLICOLOR_FORCE", "PY_COLORS")}
    ENV["PYTHONDONTWRITEBYTECODE"] = "1"
    SWEEP_ROOT = Path(tempfile.mkdtemp(prefix="cycnn-hostile-"))
    ENV["MPLCONFIGDIR"] = str(SWEEP_ROOT / "mplconfig")
    ENV["TMPDIR"] = str(SWEEP_ROOT / "tmp")
    (SWEEP_ROOT / "tmp").mkdir()
    CASES = SWEEP_ROOT / "cases"
    CASES.mkdir()
    started = time.monotonic()
    print(f"hostile sweep of cycnn in {SWEEP_ROOT} ({sys.executable}, PYTHONPATH={ENV.get('PYTHONPATH', '')})",
          flush=True)
    SHARED_FILES = prepare_shared(SWEEP_ROOT)
    WATCH = GlobalWatch(ignore=[SWEEP_ROOT])
    cases = [c for c in all_cases(only) if args.match in c.name]
    # The slow ones first, so that two workers finish together.
    order = sorted(range(len(cases)), key=lambda i: (cases[i].cat not in ("live", "signals"), i))
    print(f"{len(cases)} cases in {len(set(c.cat for c in cases))} categories, {args.jobs} at a time", flush=True)
    rows = []
    done = 0
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(execute, cases[i], i, args.keep): i for i in order}
        for future in as_completed(futures):
            for row in future.result():
                rows.append(row)
                if args.verbose:
                    first = row.err.strip().splitlines()[:1]
                    print(f"  {'BAD ' if row.problems else 'ok  '}[{row.cat}] {printable(row.name, 70)} -> exit {row.rc}"
                          f" {row.seconds:.1f}s {row.rss_kb // 1024}MB {printable(first[0], 150) if first else ''}"
                          + (f" SKIPPED: {row.skipped}" if row.skipped else ""), flush=True)
            done += 1
            if done % 50 == 0:
                print(f"  {done}/{len(cases)} cases, {time.monotonic() - started:.0f} s", flush=True)
    for path in list(MOUNTS):
        _umount(path)
    report(rows, only, time.monotonic() - started, SWEEP_ROOT, args.keep)
    bad = [r for r in rows if r.problems and not r.skipped]
    if not bad and not args.keep:
        shutil.rmtree(SWEEP_ROOT, ignore_errors=True)
    sys.exit(1 if bad else 0)


def report(rows, only, seconds, root, keep):
    tried = [r for r in rows if not r.skipped]
    bad = [r for r in tried if r.problems]
    order = {cat: i for i, cat in enumerate(CATEGORIES)}
    print()
    if bad:
        print(f"NOT HANDLED ({len(bad)}):")
        for r in sorted(bad, key=lambda r: (order[r.cat], r.name)):
            print(f"\n[{r.cat}] {printable(r.name)}")
            print(f"  $ {r.cmd}")
            print(f"  exit {r.rc}; {r.seconds:.1f} s; peak RSS {r.rss_kb / 1024:.0f} MB")
            for p in r.problems:
                print(f"  - {printable(p, 500)}")
            lines = r.err.strip().splitlines()
            if "Traceback (most recent call last):" in lines:  # the frames in cycnn and the exception
                start = lines.index("Traceback (most recent call last):")
                frames = [i for i, line in enumerate(lines) if line.strip().startswith("File ") and "/cycnn/" in line]
                shown = lines[:start + 1] + (["  ..."] + lines[frames[-1]:frames[-1] + 2] if frames else []) \
                    + ["  ..."] + lines[-2:]
            else:
                shown = lines[:6] + ([f"... ({len(lines) - 6} more lines)"] if len(lines) > 6 else [])
            for line in shown:
                print(f"  | {printable(line, 300)}")
            if any("stdout" in p for p in r.problems):
                for line in [x for x in r.out.splitlines() if "\\x1b" in x][:2]:
                    print(f"  stdout> {printable(line, 300)}")
    skipped = [r for r in rows if r.skipped]
    if skipped:
        print(f"\nskipped ({len(skipped)}):")
        for r in skipped:
            print(f"  [{r.cat}] {printable(r.name)}: {r.skipped}")
    print("\nnotes: visualize --out '/' is not run (it would write PNG files into /); a directory without write "
          "permission is " + ("skipped (running as root)" if IS_ROOT else "tried"))
    for note in NOTES:
        print(printable(note))
    if "signals" in only:
        print(f"signals: {len(RESUMED)} interrupted runs were resumed with the command their line gave, and finished")
    accepted = [r for r in tried if r.accepted and not r.problems]
    if accepted:
        print(f"accepted (exit 0) where a refusal was also acceptable: {len(accepted)} cases, e.g. "
              + "; ".join(printable(r.name, 60) for r in accepted[:8]))
    slowest = max(tried, key=lambda r: r.seconds, default=None)
    heaviest = max(tried, key=lambda r: r.rss_kb, default=None)
    if slowest:
        print(f"slowest case: {printable(slowest.name)} ({slowest.seconds:.1f} s); largest peak RSS: "
              f"{printable(heaviest.name)} ({heaviest.rss_kb / 1024:.0f} MB)")
    print(f"\n{'category':<10} {'tried':>6} {'handled':>8} {'not handled':>12} {'skipped':>8}")
    for cat in CATEGORIES:
        if cat not in only:
            continue
        t = [r for r in tried if r.cat == cat]
        b = [r for r in t if r.problems]
        s = [r for r in skipped if r.cat == cat]
        print(f"{cat:<10} {len(t):>6} {len(t) - len(b):>8} {len(b):>12} {len(s):>8}")
    print(f"{'total':<10} {len(tried):>6} {len(tried) - len(bad):>8} {len(bad):>12} {len(skipped):>8}")
    print(f"\n{seconds:.0f} s" + (f"; case directories kept in {root}" if bad or keep else ""))


ENV = dict(os.environ)
CASES = SWEEP_ROOT = WATCH = None
SHARED_FILES = {}
TINY = None

if __name__ == "__main__":
    main()
