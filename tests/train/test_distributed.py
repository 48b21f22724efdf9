"""Data-parallel training over MPI (``cycnn.train.distributed``, ``world``, ``agreement``): N ranks compute what one
process computes (up to the order of float32 sums), hold bit-identical weights, print and write once, refuse ranks
that disagree, and end together on a NaN, on Ctrl-C, and when a rank dies or hangs.

The tests that start ranks need Open MPI's mpirun (apt-get install openmpi-bin libopenmpi-dev) and mpi4py
(pip install 'cycnn[mpi]'); without them they skip and say why. The fast ones take a few seconds each; whole runs
with faults are in the slow tier.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from cycnn.data.augment import random_affine
from cycnn.errors import ConfigError
from cycnn.io import architecture
from cycnn.io.model_file import load_model
from cycnn.nn.layers import Dropout
from cycnn.train import agreement
from cycnn.train.checkpoint import load_checkpoint
from cycnn.train.distributed import GradientBuffer, ShareDraws
from cycnn.train.world import launched_size, share_bounds
from cycnn.version import __version__

from cli_runner import run_cli  # tests/cli_runner.py

MPIRUN = shutil.which("mpirun")


def _mpi_problem():
    if MPIRUN is None:
        return "mpirun is not installed (apt-get install openmpi-bin libopenmpi-dev)"
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install 'cycnn[mpi]')"
    version = subprocess.run([MPIRUN, "--version"], capture_output=True, text=True).stdout
    return None if "Open MPI" in version else "these tests drive Open MPI's mpirun, and this one is another"


MPI_PROBLEM = _mpi_problem()
needs_mpi = pytest.mark.skipif(MPI_PROBLEM is not None, reason=MPI_PROBLEM or "")
# 1 thread per rank, as 2 ranks on 2 cores run; the subprocesses run the cycnn this test process imports.
ROOT = ["--allow-run-as-root"] if os.geteuid() == 0 else []
TINY = ["--conv", "4", "--dense", "16", "--val-split", "0.1", "--batch-size", "32", "--seed", "3", "--augment",
        "--threads", "1", "--optimizer", "sgd", "--lr", "0.02"]


def mpirun(args, n=2, cwd=None, env=None, **popen):
    """``mpirun -np N python ARGS`` (or an MPMD command line when ``args`` holds ":"), from ``cwd``."""
    command = [MPIRUN, *ROOT, "--oversubscribe", "-np", str(n)]
    for i, part in enumerate(" ".join(map(str, args)).split(" : ")):
        command += ([":", "-np", "1"] if i else []) + [sys.executable, *part.split()]
    environ = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen(command, cwd=cwd, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen)


def finish(process, timeout=180):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def cycnn_lines(err):
    """cycnn's own lines on stderr: mpirun adds its banners between dashed lines, and Open MPI's components their
    "[host:pid] ..." notes."""
    lines, banner = [], False
    for line in err.splitlines():
        if line.startswith("-----"):
            banner = not banner
        elif not banner and line.strip() and not re.match(r"\[[^]\s]+:\d+\]", line):
            lines.append(line)
    return lines


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, mnist):
    """960 MNIST training and 300 test images as IDX files: runs of a few seconds."""
    return _idx_dir(tmp_path_factory.mktemp("mnist-960"), mnist, 960, 300)


def _idx_dir(directory, mnist, n_train, n_test, flip_label=None):
    x_train, y_train, x_test, y_test = mnist
    y_train = y_train[:n_train].copy()
    if flip_label is not None:
        y_train[flip_label] = (y_train[flip_label] + 1) % 10
    for prefix, images, labels in (("train", x_train[:n_train], y_train), ("t10k", x_test[:n_test], y_test[:n_test])):
        (directory / f"{prefix}-images-idx3-ubyte").write_bytes(b"\0\0\x08\x03" + b"".join(
            d.to_bytes(4, "big") for d in images.shape) + images.tobytes())
        (directory / f"{prefix}-labels-idx1-ubyte").write_bytes(b"\0\0\x08\x01" + len(labels).to_bytes(4, "big")
                                                                 + labels.astype(np.uint8).tobytes())
    return directory


def weights(path):
    return {key: param for key, param, _ in load_model(path).parameters()}


# --- without MPI: the pieces -------------------------------------------------------------------------------------
@pytest.mark.parametrize("total,size", [(64, 2), (37, 2), (1, 2), (10, 3), (7, 8), (4096, 32)])
def test_shares_are_contiguous_cover_the_batch_and_differ_by_at_most_one(total, size):
    bounds = [share_bounds(total, rank, size) for rank in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == total
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


@pytest.mark.parametrize("flip", [False, True])
def test_a_share_is_augmented_as_its_rows_of_the_whole_batch(flip, mnist):
    """Each rank draws the whole batch's rotations, shifts (and flips) and keeps its rows: the same pixels as
    one process augmenting the whole batch."""
    x = mnist[0][:37, None].astype(np.float32) / 255

    def rng():
        return np.random.default_rng([5, 0, 3, 1])
    whole = random_affine(x, rng(), 10.0, 2.0, flip)
    for lo, hi in (share_bounds(37, r, 3) for r in range(3)):
        part = random_affine(x[lo:hi], ShareDraws(rng(), 37, lo, hi), 10.0, 2.0, flip)
        assert np.array_equal(part, whole[lo:hi])


def test_a_share_gets_its_rows_of_the_whole_batch_dropout_masks():
    x = np.ones((37, 128), dtype=np.float32)
    layer = Dropout(0.3)
    layer.training = True
    layer.reseed([1, 2, 3])
    whole = layer.forward(x)
    for lo, hi in ((0, 19), (19, 37)):
        layer.reseed([1, 2, 3])
        layer.rng = ShareDraws(layer.rng, 37, lo, hi)
        assert np.array_equal(layer.forward(x[lo:hi]), whole[lo:hi])


def test_a_draw_that_is_not_per_image_is_refused():
    draws = ShareDraws(np.random.default_rng(0), 10, 0, 5)
    with pytest.raises(ValueError, match="per-image draw"):
        draws.random(3)
    with pytest.raises(AttributeError, match="random\\(\\) and uniform\\(\\) only"):
        draws.normal(0, 1, 5)


def test_the_gradient_buffer_holds_every_gradient_contiguously_and_gives_views_back():
    model = architecture.build(architecture.reference(), seed=0)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        layer.grads = {name: rng.standard_normal(p.shape).astype(p.dtype) for name, p in layer.params.items()}
    expected = {key: grad.copy() for key, _, grad in model.parameters()}
    buffer = GradientBuffer(model)
    assert buffer.array.size == model.parameter_count + 3 and buffer.array.dtype == np.float32
    buffer.pack(model)
    buffer.array *= 2  # what a sum over two identical ranks gives
    buffer.unpack(model)
    for key, _, grad in model.parameters():
        assert np.shares_memory(grad, buffer.array) and np.array_equal(grad, 2 * expected[key])
    buffer.clear()
    assert not buffer.array.any()


@pytest.mark.parametrize("environ,expected", [
    ({}, (1, 0)), ({"OMPI_COMM_WORLD_SIZE": "1", "OMPI_COMM_WORLD_RANK": "0"}, (1, 0)),
    ({"OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_RANK": "3"}, (4, 3)),
    ({"PMI_SIZE": "2", "PMI_RANK": "1"}, (2, 1)), ({"SLURM_STEP_NUM_TASKS": "8", "SLURM_PROCID": "5"}, (8, 5)),
    ({"SLURM_NTASKS": "8", "SLURM_PROCID": "0"}, (1, 0)),  # a batch script itself is one process
])
def test_a_launcher_is_recognized_by_its_variables(environ, expected):
    assert launched_size(environ) == expected


class FakeWorld:
    """What agreement needs of a World, with the other ranks' answers given."""

    def __init__(self, answers, rank=0):
        self.rank, self.size, self.host, self.answers = rank, len(answers), "here", answers
        self.peers, self.agreed, self.start_timeout = None, False, 1.0

    def allgather_json(self, value, what, timeout=None):
        return [value if rank == self.rank else answer for rank, answer in enumerate(self.answers)]


def test_ranks_of_another_cycnn_version_are_refused_before_anything_else():
    other = {"said": {"the cycnn version": "0.0.9", "resuming a checkpoint (--resume)": False, "--live": False},
             "host": "there", "cpus": [0]}
    world = FakeWorld([None, other])
    with pytest.raises(ConfigError) as refused:
        agreement.hello(world, None, live=False)
    assert world.agreed and str(refused.value) == (
        f"the ranks disagree on the cycnn version: rank 1 (there) has \"0.0.9\", rank 0 has \"{__version__}\"; every "
        "rank must run the same command on the same data with the same cycnn")


def test_a_rank_that_could_not_build_its_run_is_named_by_every_rank(monkeypatch):
    monkeypatch.setattr(agreement, "fingerprint", lambda run: {"--lr": 0.1})
    world = FakeWorld([None, {"error": "/data: no such data directory"}])
    world.peers = [{"host": "here"}, {"host": "there"}]
    with pytest.raises(ConfigError, match=r"^rank 1 \(there\): /data: no such data directory$"):
        agreement.start(world, SimpleNamespace)
    assert world.agreed


BLOCK_MPI4PY = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "mpi4py" or name.startswith("mpi4py."):
            raise ImportError("blocked for the test")
sys.meta_path.insert(0, Block())
from cycnn.cli import main
main(sys.argv[1:])
"""


@pytest.mark.slow  # (starts mpirun or whole CLI runs: seconds each)
@pytest.mark.parametrize("rank", [0, 1])
def test_without_mpi4py_rank_0_says_what_to_install_and_the_others_are_silent(rank, tmp_path):
    environ = {**os.environ, "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": str(rank)}
    done = subprocess.run([sys.executable, "-c", BLOCK_MPI4PY, "train", "--epochs", "1"], cwd=tmp_path,
                          env=environ, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and not done.stdout
    if rank == 0:
        assert done.stderr.strip().splitlines() == [
            "cycnn: error: this is one of 2 processes an MPI launcher started, but mpi4py is not installed: pip "
            "install 'cycnn[mpi]' on every host (or run a single process)"]
    else:
        assert done.stderr == ""
    assert not list(tmp_path.iterdir())


# --- 2 ranks against 1 process, through the library ----------------------------------------------------------------
HELPER = r'''
"""Run under mpirun (or alone): experiments on the data-parallel trainer, each rank writing what it saw."""
import json, sys
import numpy as np
from cycnn.data.idx import load_idx_dataset
from cycnn.errors import CycnnError
from cycnn.io import architecture
from cycnn.nn.optim import make_optimizer
from cycnn.nn.runtime import set_threads
from cycnn.train.callbacks import Callback
from cycnn.train.distributed import DistributedTrainer, weights_digest
from cycnn.train.settings import RunSettings
from cycnn.train.trainer import Trainer
from cycnn.train.world import launched

out = sys.argv[1]
set_threads(1)
world = launched()
rank = world.rank if world else 0
x, y, _, _ = load_idx_dataset()
report = {}

def trainer(settings, callbacks=()):
    model = architecture.build(architecture.reference(), seed=0)
    optimizer = make_optimizer(settings.optimizer, settings.lr)
    if world is None:
        return Trainer(model, optimizer, settings, callbacks)
    return DistributedTrainer(world, model, optimizer, settings, callbacks)

# 1. one SGD step on one global batch of 37 images (shares of 19 and 18), with augmentation and dropout
one = trainer(RunSettings(epochs=1, batch_size=37, optimizer="sgd", lr=0.1, augment=True, seed=4))
one.fit(x[:37], y[:37])
np.savez(f"{out}/one-step-{rank}.npz", **{k: p for k, p, _ in one.model.parameters()})
report["one_step_loss"] = one.state.history[0]["train_loss"]

# 2. two epochs: every rank's digest of its weights and optimizer state at each epoch's end
class Digests(Callback):
    def __init__(self):
        self.seen = []
    def on_epoch_end(self, trainer, record):
        self.seen.append(weights_digest(trainer.model, trainer.optimizer).hex())
digests = Digests()
two = trainer(RunSettings(epochs=2, batch_size=50, lr=2e-3, augment=True, seed=1), [digests])
two.fit(x[:500], y[:500], x[500:600], y[500:600])
report["digests"] = digests.seen
report["history"] = two.state.history

# 3. rank 1's weights become NaN before step 3: every rank stops at that step, with the same error
class Poison(Callback):
    def on_step_begin(self, trainer, info):
        if info["step"] == 2 and rank == 1:
            trainer.model.layers[-1].params["b"][0] = np.nan
if world is not None:
    poisoned = trainer(RunSettings(epochs=1, batch_size=32, seed=2), [Poison()])
    try:
        poisoned.fit(x[:320], y[:320])
    except CycnnError as exc:
        report["nan"] = [type(exc).__name__, str(exc), world.agreed, poisoned.state.step]
    world.agreed = False

# 4. rank 1's weights drift after epoch 1: the epoch's closing exchange finds it on every rank
class Drift(Callback):
    def on_epoch_end(self, trainer, record):
        if rank == 1:
            trainer.model.layers[-1].params["b"][0] += 1e-3
if world is not None:
    drifting = trainer(RunSettings(epochs=2, batch_size=64, seed=2), [Drift()])
    try:
        drifting.fit(x[:128], y[:128])
    except CycnnError as exc:
        report["drift"] = [type(exc).__name__, str(exc), world.agreed, drifting.state.epoch]
    world.agreed = False

with open(f"{out}/report-{rank}.json", "w") as fh:
    json.dump(report, fh)
'''


@pytest.fixture(scope="module")
def helper_runs(tmp_path_factory):
    """The helper's experiments on 2 ranks and in 1 process: {"mpi": directory, "single": directory}."""
    if MPI_PROBLEM is not None:
        pytest.skip(MPI_PROBLEM)
    base = tmp_path_factory.mktemp("helper")
    script = base / "helper.py"
    script.write_text(HELPER)
    runs = {name: base / name for name in ("mpi", "single")}
    for directory in runs.values():
        directory.mkdir()
    started = time.monotonic()
    job = mpirun([script, runs["mpi"]], cwd=base)
    single = subprocess.run([sys.executable, script, runs["single"]], cwd=base, capture_output=True, text=True,
                            timeout=300)
    code, out, err = finish(job)
    assert code == 0 and single.returncode == 0, (err, single.stderr)
    assert time.monotonic() - started < 120
    return runs


@needs_mpi
@pytest.mark.slow  # (they share one mpirun run of about 10 s)
def test_one_sgd_step_on_2_ranks_gives_the_weights_of_1_process(helper_runs):
    """Shares of 19 and 18 images, augmentation and dropout: within float32 rounding of one process's step, and
    bit for bit the same on both ranks."""
    single = np.load(helper_runs["single"] / "one-step-0.npz")
    ranks = [np.load(helper_runs["mpi"] / f"one-step-{r}.npz") for r in (0, 1)]
    start = {k: p for k, p, _ in architecture.build(architecture.reference(), seed=0).parameters()}
    moved = max(float(np.abs(single[k] - start[k]).max()) for k in start)
    assert moved > 1e-3  # the step changed the weights, so agreeing means something
    for key in single.files:
        assert np.array_equal(ranks[0][key], ranks[1][key]), key
        assert np.abs(ranks[0][key] - single[key]).max() < 1e-5, key
    reports = [json.loads((helper_runs[name] / "report-0.json").read_text()) for name in ("mpi", "single")]
    assert reports[0]["one_step_loss"] == pytest.approx(reports[1]["one_step_loss"], rel=1e-6)


@needs_mpi
@pytest.mark.slow  # (they share one mpirun run of about 10 s)
def test_the_ranks_hold_bit_identical_weights_at_every_epoch_end(helper_runs):
    reports = [json.loads((helper_runs["mpi"] / f"report-{r}.json").read_text()) for r in (0, 1)]
    assert len(reports[0]["digests"]) == 2 and reports[0]["digests"] == reports[1]["digests"]
    assert reports[0]["digests"][0] != reports[0]["digests"][1]  # the weights did change between the two
    # ... and train as one process does (the validation loss of two epochs, up to float32 summation order)
    single = json.loads((helper_runs["single"] / "report-0.json").read_text())["history"]
    for mine, theirs in zip(reports[0]["history"], single):
        assert mine["val_loss"] == pytest.approx(theirs["val_loss"], rel=1e-3)
        assert abs(mine["val_accuracy"] - theirs["val_accuracy"]) <= 0.02


@needs_mpi
@pytest.mark.slow  # (they share one mpirun run of about 10 s)
def test_a_nan_on_one_rank_stops_every_rank_at_the_same_step(helper_runs):
    reports = [json.loads((helper_runs["mpi"] / f"report-{r}.json").read_text()) for r in (0, 1)]
    for report in reports:
        kind, message, agreed, step = report["nan"]
        assert kind == "TrainingDiverged" and agreed and step == 2
        assert message == "the loss became nan at epoch 1, step 3; try a lower learning rate"


@needs_mpi
@pytest.mark.slow  # (they share one mpirun run of about 10 s)
def test_ranks_whose_weights_drift_apart_are_stopped_at_the_epoch_end(helper_runs):
    for rank in (0, 1):
        kind, message, agreed, epoch = json.loads((helper_runs["mpi"] / f"report-{rank}.json").read_text())["drift"]
        assert kind == "RanksDiverged" and agreed and epoch == 1
        assert message.startswith("after epoch 1 the weights of rank(s) 1 differ from rank 0's")


# --- 2 ranks through the command line ----------------------------------------------------------------------------
@needs_mpi
@pytest.mark.slow  # (starts mpirun or whole CLI runs: seconds each)
def test_a_2_rank_run_prints_once_writes_once_and_tests_as_1_process(data_dir, tmp_path, capsys):
    args = ["train", *TINY, "--epochs", "2", "--data-dir", data_dir, "--json"]
    job = mpirun(["-m", "cycnn", *args, "--out", tmp_path / "mpi" / "m.npz"], cwd=tmp_path)
    code, out, err = finish(job)
    assert code == 0, err
    single_code, single_out, _ = run_cli([*args, "--out", tmp_path / "one" / "m.npz"], capsys)
    assert single_code == 0
    lines = out.strip().splitlines()
    assert sum(line.startswith("epoch 1/2") for line in lines) == 1 and lines[0].startswith("cycnn ")
    result = json.loads(lines[-1])  # one JSON object, last
    assert sum(line.startswith("{") for line in lines) == 1
    assert result["ranks"] == 2 and result["allreduce_ms_per_step"] > 0 and result["epochs"] == 2
    single = json.loads(single_out.strip().splitlines()[-1])
    assert abs(result["test_accuracy"] - single["test_accuracy"]) <= 0.01
    assert result["history"][0]["train_loss"] == pytest.approx(single["history"][0]["train_loss"], rel=1e-4)
    # the model, the checkpoint and the log, each written once (by rank 0): one run record in the log
    assert sorted(p.name for p in (tmp_path / "mpi").iterdir()) == ["m.ckpt.npz", "m.log.jsonl", "m.npz"]
    records = [json.loads(line) for line in (tmp_path / "mpi" / "m.log.jsonl").read_text().splitlines()]
    assert [r["type"] for r in records].count("run") == 1 and records[0]["ranks"] == 2
    assert [r["epoch"] for r in records if r["type"] == "epoch"] == [1, 2]
    assert load_model(tmp_path / "mpi" / "m.npz").metadata["test_accuracy"] == result["test_accuracy"]


@needs_mpi
@pytest.mark.slow  # (starts mpirun or whole CLI runs: seconds each)
def test_ranks_started_with_different_flags_are_refused_in_one_line(data_dir, tmp_path):
    args = f"-m cycnn train {' '.join(TINY)} --epochs 1 --data-dir {data_dir} --out {tmp_path / 'm.npz'}"
    job = mpirun([f"{args} --lr 0.02 : {args} --lr 0.01"], n=1, cwd=tmp_path)
    code, out, err = finish(job, timeout=120)
    assert code == 2 and out == ""
    assert cycnn_lines(err) == [f"cycnn: error: the ranks disagree on --lr: rank 1 ({os.uname().nodename}) has "
                                "0.01, rank 0 has 0.02; every rank must run the same command on the same data with "
                                "the same cycnn"]
    assert not (tmp_path / "m.npz").exists() and not (tmp_path / "m.ckpt.npz").exists()


@needs_mpi
@pytest.mark.slow
def test_a_nan_on_every_rank_ends_the_run_in_one_line(data_dir, tmp_path):
    job = mpirun(["-m", "cycnn", "train", *TINY, "--lr", "1e30", "--epochs", "1", "--data-dir", data_dir,
                  "--out", tmp_path / "m.npz"], cwd=tmp_path)
    code, out, err = finish(job, timeout=120)
    assert code == 2
    [line] = cycnn_lines(err)
    assert re.fullmatch(r"cycnn: error: the (loss became nan|loss exploded to .*) at epoch 1, step \d+; try a lower "
                        r"learning rate; (no checkpoint was written before it|the last good checkpoint is .*)", line)
    assert not (tmp_path / "m.npz").exists()


# --- faults: whole runs --------------------------------------------------------------------------------------------
FAULT_RUN = ["-m", "cycnn", "train", "--conv", "8", "--dense", "32", "--batch-size", "32", "--threads", "1",
             "--seed", "5", "--optimizer", "sgd", "--lr", "0.02"]


def rank_pid(job, rank):
    """The process id of rank ``rank`` among mpirun's children."""
    for _ in range(100):
        for child in Path(f"/proc/{job.pid}/task/{job.pid}/children").read_text().split():
            try:
                if f"OMPI_COMM_WORLD_RANK={rank}".encode() in Path(f"/proc/{child}/environ").read_bytes().split(b"\0"):
                    return int(child)
            except OSError:
                continue
        time.sleep(0.1)
    raise AssertionError(f"rank {rank} not found")


def wait_for(path, timeout=120):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def big_data(tmp_path_factory, mnist):
    """6,000 training images: a 4-epoch run lasts long enough to be interrupted mid-epoch."""
    return _idx_dir(tmp_path_factory.mktemp("mnist-6000"), mnist, 6000, 300)


@needs_mpi
@pytest.mark.slow
@pytest.mark.parametrize("fault", ["kill", "stop"])
def test_a_rank_that_dies_or_hangs_ends_the_job_in_bounded_time_with_a_checkpoint_that_resumes(fault, big_data,
                                                                                              tmp_path):
    """SIGKILL on rank 1 (mpirun notices and ends the job: rank 0 sees its SIGTERM), or SIGSTOP (nobody notices
    but rank 0's deadline, here CYCNN_MPI_TIMEOUT=3): one line on rank 0, a non-zero exit, a checkpoint that
    resumes to the end."""
    out = tmp_path / "m.npz"
    job = mpirun([*FAULT_RUN, "--epochs", "4", "--checkpoint-every", "5", "--data-dir", big_data, "--out", out],
                 cwd=tmp_path, env={"CYCNN_MPI_TIMEOUT": "3"})
    wait_for(tmp_path / "m.ckpt.npz")
    time.sleep(0.3)
    victim = rank_pid(job, 1)
    started = time.monotonic()
    os.kill(victim, signal.SIGKILL if fault == "kill" else signal.SIGSTOP)
    code, _, err = finish(job, timeout=90)
    elapsed = time.monotonic() - started
    assert code != 0 and elapsed < 60, (elapsed, err)
    [line] = cycnn_lines(err)
    why = "the launcher is ending the job" if fault == "kill" else "no answer for 3 s"
    _, _, state, _ = load_checkpoint(tmp_path / "m.ckpt.npz")
    assert state.epoch < 4 and state.global_step > 0
    checkpoint = re.escape(str(tmp_path / "m.ckpt.npz"))
    assert re.fullmatch(rf"cycnn: error: lost the other ranks during step {state.step + 1} of epoch {state.epoch + 1}: "
                        rf"{why} .*; saved a checkpoint at epoch {state.epoch + 1}, step {state.step} to {checkpoint}; "
                        rf"resume with: cycnn train --resume {checkpoint} --data-dir {re.escape(str(big_data))}",
                        line), line
    code, _, _ = run_cli(["train", "--resume", tmp_path / "m.ckpt.npz", "--data-dir", big_data, "--threads", "1",
                          "--quiet"])
    assert code == 0 and load_model(out).metadata["history"][-1]["epoch"] == 4
    print(f"{fault}: the job ended {elapsed:.1f} s after the fault")


@needs_mpi
@pytest.mark.slow
def test_interrupted_ranks_checkpoint_once_and_resume_on_2_ranks_or_1_process_as_the_uninterrupted_run(big_data,
                                                                                                      tmp_path):
    """SIGTERM on both ranks (what mpirun sends them on Ctrl-C): every rank stops after the same step, exit 130,
    rank 0 checkpoints. Resumed on 2 ranks, the run ends with the uninterrupted run's weights bit for bit; on 1
    process, with them up to the order of float32 sums, grown over the steps that follow: a ReLU or a pooling
    winner that flips on the way leaves up to about 1.5% of the distance the weights moved after the checkpoint (the
    uninterrupted run on 1 process is as far from the one on 2 ranks)."""
    args = ["-m", "cycnn", "train", "--batch-size", "256", "--epochs", "3", "--threads", "1", "--seed", "5",
            "--optimizer", "sgd", "--lr", "0.05", "--data-dir", big_data]
    whole = mpirun([*args, "--out", tmp_path / "whole.npz", "--checkpoint", tmp_path / "whole.ckpt.npz"],
                   cwd=tmp_path)
    job = mpirun([*args, "--out", tmp_path / "m.npz"], cwd=tmp_path)
    wait_for(tmp_path / "m.log.jsonl")
    time.sleep(0.3)
    for rank in (0, 1):
        os.kill(rank_pid(job, rank), signal.SIGTERM)
    code, _, err = finish(job)
    assert code == 130, err
    [line] = cycnn_lines(err)
    saved = tmp_path / "m.ckpt.npz"
    model, _, state, _ = load_checkpoint(saved)
    assert state.epoch < 3 and line == (f"interrupted at epoch {state.epoch + 1}, step {state.step}; resume with: "
                                        f"cycnn train --resume {saved} --data-dir {big_data}")
    whole_code, _, whole_err = finish(whole)
    assert whole_code == 0, whole_err
    shutil.copy(saved, tmp_path / "again.ckpt.npz")
    code, _, err = finish(mpirun(["-m", "cycnn", "train", "--resume", tmp_path / "again.ckpt.npz", "--data-dir",
                                  big_data, "--threads", "1", "--quiet"], cwd=tmp_path))
    assert code == 0, err
    code, _, _ = run_cli(["train", "--resume", saved, "--data-dir", big_data, "--threads", "1", "--quiet"])
    assert code == 0
    reference, on_2_ranks, on_1 = (weights(tmp_path / name) for name in ("whole.npz", "again.npz", "m.npz"))
    for key in reference:
        assert np.array_equal(on_2_ranks[key], reference[key]), key
    at_checkpoint = {key: param for key, param, _ in model.parameters()}
    drift = max(float(np.abs(on_1[k] - reference[k]).max()) for k in reference)
    travelled = max(float(np.abs(at_checkpoint[k] - reference[k]).max()) for k in reference)
    assert 0 < drift < 0.05 * travelled, (drift, travelled)
    accuracies = [load_model(tmp_path / name).metadata["test_accuracy"] for name in ("whole.npz", "m.npz")]
    assert abs(accuracies[0] - accuracies[1]) <= 0.01
    print(f"resumed at epoch {state.epoch + 1}, step {state.step}: on 1 process within {drift:.1e} of the weights, "
          f"which moved {travelled:.1e} after the checkpoint")


@needs_mpi
@pytest.mark.slow
def test_ctrl_c_on_mpirun_stops_every_rank_after_a_step_and_checkpoints(big_data, tmp_path):
    """SIGINT on mpirun: it sends SIGTERM to the ranks (and SIGKILL a second later); rank 0 writes the checkpoint
    and the one line. (Open MPI's mpirun itself exits 1 when interrupted, whatever the ranks' codes.)"""
    job = mpirun([*FAULT_RUN, "--epochs", "8", "--data-dir", big_data, "--out", tmp_path / "m.npz"], cwd=tmp_path)
    wait_for(tmp_path / "m.log.jsonl")
    time.sleep(0.3)
    job.send_signal(signal.SIGINT)
    code, _, err = finish(job, timeout=60)
    assert code != 0
    [line] = cycnn_lines(err)
    _, _, state, _ = load_checkpoint(tmp_path / "m.ckpt.npz")
    assert state.epoch < 8 and state.global_step > 0
    assert line.startswith(f"interrupted at epoch {state.epoch + 1}, step {state.step}; resume with: cycnn train "
                           "--resume "), err


@needs_mpi
@pytest.mark.slow
def test_ranks_on_different_data_are_refused(mnist, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    same, other = _idx_dir(tmp_path / "a", mnist, 960, 300), _idx_dir(tmp_path / "b", mnist, 960, 300, flip_label=17)
    args = f"-m cycnn train {' '.join(TINY)} --epochs 1 --out {tmp_path / 'm.npz'} --data-dir"
    code, out, err = finish(mpirun([f"{args} {same} : {args} {other}"], n=1, cwd=tmp_path), timeout=120)
    assert code == 2 and out == ""
    [line] = cycnn_lines(err)
    assert line.startswith(f"cycnn: error: the ranks disagree on the training data: rank 1 ({os.uname().nodename}) "
                           "has digest ")
