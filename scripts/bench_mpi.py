#!/usr/bin/env python
"""Data-parallel training on this machine, measured, and on a cluster, modelled.

    python scripts/bench_mpi.py                     # batch 64 and 256, 5 alternating rounds
    python scripts/bench_mpi.py --rounds 3 --steps 40 --batches 64,256,1024
    python scripts/bench_mpi.py --json              # the last stdout line is one JSON object

Measured: the reference network's training step (Adam, augmentation and dropout, as ``cycnn train``) in one
process with 2 threads against ``mpirun -np 2`` with 1 thread per rank (each bound to a core), alternated round by
round (1P then 2R, 2R then 1P, ...): images/s, ms per step, and the ms per step spent in the gradients' allreduce
(which includes waiting for the slower rank). Then one process with 2 threads at the share sizes a cluster's
ranks would get (8 to 4,096 images per step), for the model's compute time.

Modelled: N machines like this one (one rank of 2 threads each) on 10 and 25 Gbit/s links, the gradient (225,034
floats, 0.9 MB) summed by a ring allreduce: 2(N-1)/N x 0.9 MB / bandwidth + 2(N-1) x latency, added to the
measured step time of the N-th share of the global batch. With bucketed overlap (PyTorch DDP's idea), the dense
layers' gradients (91.6% of the bytes, ready first in the backward pass) are summed while the convolutions'
backward runs (49% of a step's compute, from the README's step breakdown); only what does not fit under it, and
the last bucket, are waited for.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

GRADIENT_FLOATS = 225_034
LINKS = {"10 Gbit/s": 10e9 / 8, "25 Gbit/s": 25e9 / 8}  # bytes/s
LATENCY = 25e-6  # s per message: MPI over TCP on an ordinary Ethernet switch
MACHINES = (2, 4, 8, 16, 32)
GLOBAL_BATCHES = (256, 1024, 4096)
SHARES = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
OVERLAP_BYTES = 0.916  # the two Dense layers' share of the gradient (206,218 of 225,034 floats)
OVERLAP_COMPUTE = 0.49  # the convolutions' backward pass: 2.95 of a 6.05 ms step (README, batch 64, 2 threads)


def progress(message):
    print(f"[bench_mpi] {message}", file=sys.stderr, flush=True)


# --- the measuring child: one process, or every rank of an mpirun ----------------------------------------------
def overlapping_trainer(*args):
    """A DistributedTrainer whose step sums the dense layers' gradients (the first ready in the backward pass)
    with a non-blocking allreduce started as soon as they are ready, progressed between the convolutions' backward
    steps, and the rest with a second allreduce at the end: the bucketed overlap, as an experiment."""
    import numpy as np

    from cycnn.train.distributed import CORRECT, LOSS, DistributedTrainer

    class Overlapping(DistributedTrainer):
        def __init__(self, *args):
            super().__init__(*args)
            buffer = self.gradients
            dense = [i for i, (layer, _, _, _) in enumerate(buffer.slots) if layer >= 4]
            self.split = buffer.slots[dense[0]][2]  # the dense layers' gradients are the buffer's last ones
            self.first_dense = min(buffer.slots[i][0] for i in dense)
            self.request = None
            self.model.register_step_hook(self._hook)

        def _hook(self, direction, first, count, seconds):
            if direction != "backward":
                return
            if self.request is None and first <= self.first_dense and self._packing:
                buffer = self.gradients
                for (index, name, offset, shape), view in zip(buffer.slots, buffer.views):
                    if index >= self.first_dense:
                        view[...] = self.model.layers[index].grads[name]
                tail = buffer.array[self.split:buffer.array.size - len(buffer.extras)]
                self.request = self.world.comm.Iallreduce(self.world.mpi.IN_PLACE, tail, op=self.world.mpi.SUM)
            elif self.request is not None:
                self.request.Test()

        def train_step(self, xb, yb, epoch, step):
            lo, hi, total = self._share
            buffer = self.gradients
            logits, loss = self.forward_step(xb, yb, epoch, step)
            right = int((logits.argmax(axis=1) == yb).sum())
            self._packing, self.request = True, None
            self.model.backward(self.loss_fn.backward() * ((hi - lo) / total))
            self._packing = False
            for (index, name, offset, shape), view in zip(buffer.slots, buffer.views):
                if index < self.first_dense:
                    view[...] = self.model.layers[index].grads[name]
            head = np.concatenate([buffer.array[:self.split], [loss * (hi - lo) / total, right, 0.0]]).astype(
                buffer.array.dtype)
            wait = time.perf_counter()
            self.world.comm.Allreduce(self.world.mpi.IN_PLACE, head, op=self.world.mpi.SUM)
            self.request.Wait()
            self.allreduce_seconds += time.perf_counter() - wait
            buffer.array[:self.split] = head[:self.split]
            buffer.unpack(self.model)
            self.optimizer.step(self.model.parameters())
            return float(head[self.split + LOSS]), int(head[self.split + CORRECT])

    return Overlapping(*args)


def measure(batch, steps, warmup, threads, overlap=False):
    """Train ``warmup + steps`` steps at global batch ``batch``; rank 0 returns its figures (None elsewhere)."""
    import numpy as np

    from cycnn.data.idx import load_idx_dataset
    from cycnn.io import architecture
    from cycnn.nn.optim import make_optimizer
    from cycnn.nn.runtime import set_threads
    from cycnn.train.distributed import DistributedTrainer
    from cycnn.train.settings import RunSettings
    from cycnn.train.trainer import Trainer
    from cycnn.train.world import launched

    world = launched()
    set_threads(threads)
    x, y, _, _ = load_idx_dataset()
    settings = RunSettings(epochs=1, batch_size=batch, lr=2e-3, augment=True, seed=0)
    model = architecture.build(architecture.reference(), seed=0)
    optimizer = make_optimizer("adam", settings.lr)
    trainer = Trainer(model, optimizer, settings) if world is None else \
        (overlapping_trainer if overlap else DistributedTrainer)(world, model, optimizer, settings)
    order = np.concatenate([trainer.batch_indices(e, len(x)) for e in range(1 + (steps + warmup) * batch // len(x))])
    model.train()
    for step in range(warmup + steps):
        if step == warmup:
            if world is not None:
                world.allreduce(np.zeros(1), "the start of the timing")
                trainer.allreduce_seconds = 0.0
            started = time.perf_counter()
        trainer.train_step(*trainer.batch(x, y, order[step * batch:(step + 1) * batch]), 0, step)
    seconds = time.perf_counter() - started
    allreduce = alone = 0.0
    if world is not None:  # then the allreduce alone, back to back: the transfer without the wait for a rank
        allreduce = trainer.allreduce_seconds
        world.allreduce(np.zeros(1), "the start of the timing")
        alone = time.perf_counter()
        for _ in range(steps):
            world.allreduce(trainer.gradients.array)
        alone = time.perf_counter() - alone
        if world.rank:
            return None
    return {"batch": batch, "ranks": 1 if world is None else world.size, "threads": threads, "overlap": overlap,
            "images_per_s": batch * steps / seconds, "step_ms": 1000 * seconds / steps,
            "allreduce_ms": 1000 * allreduce / steps, "allreduce_alone_ms": 1000 * alone / steps}


def child(args):
    for batch in args.batches:
        figures = measure(batch, args.steps, args.warmup, args.threads, args.overlap)
        if figures is not None:
            print(json.dumps(figures), flush=True)


# --- the parent: alternated rounds, then the model --------------------------------------------------------------
def run_child(args, batches, ranks, threads, steps, overlap=False):
    command = [sys.executable, os.path.abspath(__file__), "--child", "--threads", str(threads), "--steps",
               str(steps), "--warmup", str(args.warmup), "--batches", ",".join(map(str, batches)),
               *(["--overlap"] if overlap else [])]
    if ranks > 1:
        root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
        command = [shutil.which("mpirun"), *root, "-np", str(ranks), "--bind-to", "core", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"bench_mpi: the {ranks}-rank child failed:\n{done.stderr}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


SETUPS = {"1P": (1, 2, False), "2R": (2, 1, False), "2R+overlap": (2, 1, True)}  # ranks, threads, overlap


def measured(args):
    """{batch: {"1P": [figures per round], "2R": [...], ...}}, alternating the order of the setups."""
    setups = [name for name in SETUPS if args.overlap or name != "2R+overlap"]
    results = {b: {name: [] for name in setups} for b in args.batches}
    for round_ in range(args.rounds):
        for setup in (setups if round_ % 2 == 0 else setups[::-1]):
            ranks, threads, overlap = SETUPS[setup]
            for figures in run_child(args, args.batches, ranks, threads, args.steps, overlap):
                results[figures["batch"]][setup].append(figures)
        progress(f"round {round_ + 1}/{args.rounds} done (load average {os.getloadavg()[0]:.2f})")
    return results


def ring_allreduce(machines, bandwidth, fraction=1.0):
    if machines == 1:
        return 0.0
    size = fraction * GRADIENT_FLOATS * 4
    return 2 * (machines - 1) / machines * size / bandwidth + 2 * (machines - 1) * LATENCY


def fit(step_ms):
    """(fixed s per step, s per image): the least-squares line through the measured step times of the shares, a
    steadier base for the model than each noisy point (the fixed part is the optimizer's update, Python, and the
    kernels' lower efficiency on small batches)."""
    import numpy as np
    sizes = np.array(sorted(step_ms), dtype=float)
    seconds = np.array([step_ms[s] / 1000 for s in sorted(step_ms)])
    slope, intercept = np.polyfit(sizes, seconds, 1, w=1 / seconds)  # relative errors: small shares count too
    return max(float(intercept), 0.0), float(slope)


def model(step):
    """The modelled speedups: {link: {global batch: {machines: (plain, overlapped)}}}, from ``step(images)``, the
    seconds of one step of that many images on one machine."""
    out = {}
    for link, bandwidth in LINKS.items():
        out[link] = {}
        for batch in GLOBAL_BATCHES:
            one = step(batch)
            out[link][batch] = {}
            for n in MACHINES:
                compute = step(batch / n)
                plain = compute + ring_allreduce(n, bandwidth)
                dense = ring_allreduce(n, bandwidth, OVERLAP_BYTES)
                tail = ring_allreduce(n, bandwidth, 1 - OVERLAP_BYTES)
                overlapped = compute + max(0.0, dense - OVERLAP_COMPUTE * compute) + tail
                out[link][batch][n] = (one / plain, one / overlapped)
    return out


def stops_paying(row):
    """The most machines worth having: the last N whose doubling still gained 10% (plain allreduce)."""
    best = 1
    previous = 1.0
    for n, (plain, _) in row.items():
        if plain < 1.1 * previous:
            break
        best, previous = n, plain
    return best


def report(args, results, step_ms, fixed, per_image, speedups):
    median = statistics.median
    print(f"\nMeasured: 1 process x 2 threads (1P) against mpirun -np 2 x 1 thread (2R; +overlap: the dense layers' "
          f"gradients summed during the convolutions' backward), reference network, Adam, augmentation; "
          f"{args.rounds} rounds of {args.steps} steps, medians")
    print(f"{'batch':>6}  {'setup':<11}{'images/s':>10}{'ms/step':>9}{'allreduce ms/step':>19}{'alone':>7}"
          "  / 1P, per round: median (range)")
    for batch, runs in results.items():
        for setup, rows in runs.items():
            line = (f"{batch:>6}  {setup:<11}{median(r['images_per_s'] for r in rows):>10,.0f}"
                    f"{median(r['step_ms'] for r in rows):>9.2f}{median(r['allreduce_ms'] for r in rows):>19.2f}"
                    f"{median(r['allreduce_alone_ms'] for r in rows):>7.2f}")
            if setup != "1P":
                ratios = [b["images_per_s"] / a["images_per_s"] for a, b in zip(runs["1P"], rows)]
                line += f"  {median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
            print(line)
    print("\nOne process x 2 threads, ms per step by images per step (the model's compute time per share):")
    print("  " + "  ".join(f"{s}: {step_ms[s]:.2f}" for s in SHARES))
    print(f"  fitted: {fixed * 1e3:.2f} ms per step + {per_image * 1e6:.1f} us per image")
    print(f"\nModelled speedup over one machine (ring allreduce of 0.9 MB, {LATENCY * 1e6:.0f} us per message); "
          "plain / with bucketed overlap:")
    for link, table in speedups.items():
        print(f"  {link}")
        print(f"  {'global batch':>12}" + "".join(f"{n:>16}" for n in MACHINES))
        for batch, row in table.items():
            print(f"  {batch:>12}" + "".join(f"{p:>9.1f}/{o:<6.1f}" for p, o in row.values())
                  + f"  worth up to {stops_paying(row)} machines")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--batches", type=lambda s: [int(b) for b in s.split(",")], default=[64, 256])
    parser.add_argument("--json", action="store_true", help="end with one JSON line of every figure")
    parser.add_argument("--overlap", action="store_true", help="also measure 2 ranks with the bucketed overlap")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    if shutil.which("mpirun") is None:
        raise SystemExit("bench_mpi: mpirun is not installed (apt-get install openmpi-bin libopenmpi-dev)")
    progress(f"load average at the start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    results = measured(args)
    progress("one process at the share sizes")
    shares = run_child(args, SHARES, 1, 2, max(6, args.steps // 4))
    step_ms = {f["batch"]: f["step_ms"] for f in shares}
    fixed, per_image = fit(step_ms)
    speedups = model(lambda images: fixed + per_image * images)
    report(args, results, step_ms, fixed, per_image, speedups)
    progress(f"load average at the end: {os.getloadavg()[0]:.2f}")
    if args.json:
        print(json.dumps({"measured": results, "share_step_ms": step_ms, "latency_s": LATENCY,
                          "fixed_s": fixed, "per_image_s": per_image,
                          "speedups": {link: {str(b): {str(n): v for n, v in row.items()} for b, row in t.items()}
                                       for link, t in speedups.items()}}))


if __name__ == "__main__":
    main()
