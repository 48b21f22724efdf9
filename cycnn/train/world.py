"""The processes of an MPI run (``mpirun -np N cycnn train``, ``srun cycnn train``): who they are, and the
collectives they meet in, each one watched so that no rank waits forever for a rank that died.

cycnn runs under MPI when a launcher started it as one of several processes (the variables of
``LAUNCHER_VARIABLES`` say so); mpi4py is imported only then, so a single process never loads MPI.

Every collective runs under a watchdog thread. It ends the job, with one line on rank 0 and exit code 2, when a
collective has not completed ``CYCNN_MPI_TIMEOUT`` seconds (default 30) after it began (a rank hangs, or its host
is unreachable), or ``GRACE`` seconds after a SIGTERM or SIGINT arrived while it waited (the launcher ends the job
because a rank died: Open MPI's mpirun sends SIGTERM to the others about a second after a rank's death, and SIGKILL
a second later). The collectives themselves are MPI's blocking ones (they progress fastest); the watchdog sees the
signal through Python's wakeup file descriptor, since the main thread's signal handler cannot run while MPI holds
it.
"""
import atexit
import json
import os
import select
import signal
import sys
import threading
import time

import numpy as np

from cycnn.errors import ConfigError, CycnnError, Interrupted, TrainingInterrupted

# (world size, rank) variables of the launchers: Open MPI, MPICH and Intel MPI (Hydra) and Slurm's PMI2, MVAPICH,
# and srun's own (a job step's tasks; a batch script alone has no SLURM_STEP_NUM_TASKS).
LAUNCHER_VARIABLES = (("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"), ("PMI_SIZE", "PMI_RANK"),
                      ("MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_RANK"), ("SLURM_STEP_NUM_TASKS", "SLURM_PROCID"))
DEFAULT_TIMEOUT = 30.0  # seconds a collective may wait during training
START_TIMEOUT = 300.0  # ... at the start, where one host may load its data much more slowly than another
GRACE = 0.5  # seconds a collective may still take after a SIGTERM or SIGINT (mpirun kills 1 s after its SIGTERM)
EXIT_LOST = 2
WATCH_INTERVAL = 0.1


class RankLost(CycnnError):
    """A collective did not complete: another rank died, hangs or cannot be reached."""


def launched_size(environ=os.environ):
    """(processes, this one's rank) as the launcher says; (1, 0) when no launcher started several."""
    for size_name, rank_name in LAUNCHER_VARIABLES:
        size = environ.get(size_name, "")
        if size.isdigit() and int(size) > 1:
            rank = environ.get(rank_name, "0")
            return int(size), int(rank) if rank.isdigit() else 0
    return 1, 0


def launched(environ=os.environ):
    """The ``World`` of this process when an MPI launcher started several, else None (a single process)."""
    size, rank = launched_size(environ)
    if size == 1:
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        raise ConfigError(f"this is one of {size} processes an MPI launcher started, but mpi4py is not installed: "
                          "pip install 'cycnn[mpi]' on every host (or run a single process)") from None
    if MPI.COMM_WORLD.Get_size() != size:
        raise ConfigError(f"the launcher started {size} processes but MPI sees {MPI.COMM_WORLD.Get_size()}: mpi4py is "
                          "built for another MPI than the launcher's (under Slurm: srun --mpi=pmix, or mpirun)")
    return World(MPI, MPI.COMM_WORLD, _seconds(environ, "CYCNN_MPI_TIMEOUT", DEFAULT_TIMEOUT),
                 _seconds(environ, "CYCNN_MPI_START_TIMEOUT", START_TIMEOUT))


def _seconds(environ, name, default):
    text = environ.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 86400:
        raise ConfigError(f"{name} must be a number of seconds from 0 to 86400, received {text!r:.40}")
    return value


def share_bounds(total, rank, size):
    """The contiguous rows [lo, hi) of ``total`` that ``rank`` of ``size`` takes: shares as equal as they can
    be, the first ``total % size`` ranks one larger."""
    base, extra = divmod(total, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


class World:
    """This rank of an MPI run: ``rank``, ``size``, ``host``, and collectives watched by a deadline.

    ``agreed`` is set when the error about to end the run is one every rank raises at the same point (a NaN loss
    seen through the allreduce, a refusal at the start); any other error ends the job with MPI_Abort at exit, so
    that the other ranks never wait for this one. ``on_lost``, if set, is called before the job ends for a lost
    rank (rank 0 saves a checkpoint there) and returns a note for the line.
    """

    def __init__(self, mpi, comm, timeout=DEFAULT_TIMEOUT, start_timeout=START_TIMEOUT):
        self.mpi, self.comm = mpi, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.host = mpi.Get_processor_name()
        self.timeout, self.start_timeout = timeout, start_timeout
        self.agreed = False
        self.abort_code = None
        self.on_lost = None
        self.peers = None  # what every rank said at the start (hello)
        self._armed = None  # (started, deadline, what) while a collective runs
        self._signalled = None
        self._lost_lock = threading.Lock()
        self._abort_from_any_thread = mpi.Query_thread() == mpi.THREAD_MULTIPLE
        self._wake_read, wake_write = os.pipe()
        os.set_blocking(wake_write, False)
        signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)  # the watchdog reads the signals' numbers
        threading.Thread(target=self._watch, name="cycnn-mpi-watchdog", daemon=True).start()
        atexit.register(self._at_exit)

    # --- collectives ------------------------------------------------------------------------------------------
    def allreduce(self, array, what="the gradients", timeout=None):
        """Sum ``array`` over the ranks, in place (every rank gets the same sums)."""
        self._run(lambda: self.comm.Allreduce(self.mpi.IN_PLACE, array, op=self.mpi.SUM), what, timeout)
        return array

    def allgather_bytes(self, data, what, timeout=None):
        """Every rank's ``data`` (bytes), in rank order."""
        lengths = np.zeros(self.size, dtype=np.int64)
        self._run(lambda: self.comm.Allgather(np.array([len(data)], dtype=np.int64), lengths), what, timeout)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        out = np.empty(int(lengths.sum()), dtype=np.uint8)
        mine = np.frombuffer(bytes(data), dtype=np.uint8)
        self._run(lambda: self.comm.Allgatherv(mine, [out, lengths, offsets, self.mpi.BYTE]), what, timeout)
        return [out[o:o + n].tobytes() for o, n in zip(offsets, lengths)]

    def allgather_json(self, value, what, timeout=None):
        """Every rank's ``value`` (anything JSON holds), in rank order."""
        return [json.loads(b) for b in self.allgather_bytes(json.dumps(value).encode(), what, timeout)]

    def bcast_bytes(self, data, what, timeout=None):
        """Rank 0's ``data`` (bytes) on every rank (the others pass None)."""
        length = np.array([len(data) if self.rank == 0 else 0], dtype=np.int64)
        self._run(lambda: self.comm.Bcast(length, root=0), what, timeout)
        buffer = np.frombuffer(bytearray(data), dtype=np.uint8) if self.rank == 0 else \
            np.empty(int(length[0]), dtype=np.uint8)
        self._run(lambda: self.comm.Bcast(buffer, root=0), what, timeout)
        return buffer.tobytes()

    def _run(self, collective, what, timeout):
        started = time.monotonic()
        self._armed = (started, started + (timeout or self.timeout), what)
        try:
            collective()
        except self.mpi.Exception as exc:
            self.lost(what, f"MPI failed ({exc.Get_error_string().strip()})")
        finally:
            self._armed = None

    # --- threads, and the end of a run -------------------------------------------------------------------------
    def default_threads(self):
        """Threads for this rank when --threads is not given: its cores, shared with the ranks of its host whose
        cores overlap (mpirun binds 2 ranks to a core each; ranks it does not bind share them all)."""
        mine = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
        sharing = sum(1 for peer in self.peers or [] if peer["host"] == self.host and mine & set(peer["cpus"]))
        return max(1, len(mine) // max(sharing, 1))

    def ending(self, exc):
        """How an exception ends this rank: (exit code, agreed). An interruption, or an error every rank raised at
        the same point, ends every rank in step; any other makes this rank end the job with MPI_Abort at exit."""
        interrupted = isinstance(exc, (KeyboardInterrupt, Interrupted, TrainingInterrupted))
        code = 130 if interrupted else 2 if isinstance(exc, (CycnnError, MemoryError, OSError)) else 1
        agreed = interrupted or self.agreed
        if not agreed:
            self.abort_code = code
        return code, agreed

    def lost(self, what, why):
        """End the job: a collective could not complete. Rank 0 runs ``on_lost`` (a checkpoint) and prints one
        line; the process then ends at once (MPI_Abort, which ends the other ranks too)."""
        if not self._lost_lock.acquire(blocking=False):
            time.sleep(3600)  # the other thread is ending the process
        note = ""
        if self.on_lost is not None:
            try:
                note = self.on_lost() or ""
            except Exception as exc:  # noqa: BLE001 - the line must still be printed
                note = f"; no checkpoint could be saved ({exc})"
        if self.rank == 0:
            print(f"cycnn: error: lost the other ranks during {what}: {why}{note}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        if self._signalled is None and self._abort_from_any_thread:
            self.comm.Abort(EXIT_LOST)
        os._exit(EXIT_LOST)  # the launcher is ending the job already (or MPI may not be called from here)

    def _watch(self):
        """The watchdog: notes SIGINT and SIGTERM, and ends the job when a collective outlives its bound."""
        while True:
            ready, _, _ = select.select([self._wake_read], [], [], WATCH_INTERVAL)
            if ready and any(b in (signal.SIGINT, signal.SIGTERM) for b in os.read(self._wake_read, 512)):
                self._signalled = self._signalled or time.monotonic()
            armed, now = self._armed, time.monotonic()
            if armed is None:
                continue
            started, deadline, what = armed
            if self._signalled is not None and now - max(started, self._signalled) > GRACE:
                self.lost(what, f"the launcher is ending the job (a signal came, and they did not answer within "
                                f"{GRACE:g} s: a rank died or was stopped)")
            elif now > deadline:
                self.lost(what, f"no answer for {deadline - started:g} s (a rank died, hangs or cannot be reached; "
                                "CYCNN_MPI_TIMEOUT sets the bound)")

    def _at_exit(self):
        if self.abort_code is not None:
            sys.stdout.flush()
            sys.stderr.flush()
            self.comm.Abort(self.abort_code)
