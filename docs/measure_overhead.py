"""Measure what the training log and the live view cost in training throughput (the figures in the README).

One training run (the reference network, batch 64, MNIST) is cut into blocks of ``--block`` steps, and the watcher
under test (the log at its default interval, or the live view) is attached to every other block only. Blocks with
and without it interleave every second or so, and each watched block is compared with the mean of the two blocks
around it, so that a shared machine's drifting load cancels out; the cost is the median of those ratios (block
times: the steps and all the hooks, in wall clock and in process CPU time). It is also accounted for directly
inside the watched blocks: the time spent in the watcher's hooks plus what the steps it asked to keep every
activation (which also run an extra layer-by-layer pass) took beyond a typical step. Usage:

    python docs/measure_overhead.py log
    python docs/measure_overhead.py live [--browser]
    python docs/measure_overhead.py paused

For the live view (served as ``cycnn train --live`` serves it: with its controls and the explorer), a page stays
open through the run: headless Chromium with --browser, else a thread that fetches /data.json every second as the
page does. ``paused`` pauses a live run through its controls and measures the process's CPU time while it waits.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request

from cycnn.io import architecture
from cycnn.data.idx import load_idx_dataset
from cycnn.viz.live import serve
from cycnn.nn.optim import make_optimizer
from cycnn.train.log import DEFAULT_EVERY, RunLog
from cycnn.nn.runtime import default_threads, keep_large_allocations_in_heap, set_threads
from cycnn.train.callbacks import Callback
from cycnn.train.settings import RunSettings
from cycnn.train.trainer import Trainer


class EveryOtherBlock(Callback):
    """Passes the step hooks to ``watcher`` in every other block of ``block`` steps (the start, epoch and end
    hooks always), and times each block: wall and CPU seconds, and the seconds the watcher added."""

    def __init__(self, watcher, block):
        self.watcher, self.block = watcher, block
        self.blocks = {True: [], False: []}  # watched? -> [(wall, cpu, added)]

    def on_train_begin(self, trainer):
        self.watcher.on_train_begin(trainer)

    def on_step_begin(self, trainer, info):
        n = trainer.state.global_step
        self.on = (n // self.block) % 2 == 1
        if n % self.block == 0:
            self.start, self.cpu_start, self.added, self.steps = time.perf_counter(), os.times(), 0.0, []
        if self.on:
            start = time.perf_counter()
            self.watcher.on_step_begin(trainer, info)
            self.added += time.perf_counter() - start

    def on_step_end(self, trainer, info):
        self.steps.append((info["seconds"], trainer.step_observed))
        if self.on:
            start = time.perf_counter()
            self.watcher.on_step_end(trainer, info)
            self.added += time.perf_counter() - start
        if trainer.state.global_step % self.block == 0:
            wall, cpu = time.perf_counter() - self.start, os.times()
            cpu = (cpu.user - self.cpu_start.user) + (cpu.system - self.cpu_start.system)
            observed = [s for s, kept in self.steps if kept]
            if observed:  # the kept-activation steps' time beyond the block's typical step
                typical = statistics.median(s for s, kept in self.steps if not kept)
                self.added += sum(s - typical for s in observed)
            self.blocks[self.on].append((wall, cpu, self.added))

    def on_epoch_end(self, trainer, record):
        self.watcher.on_epoch_end(trainer, record)

    def on_train_end(self, trainer):
        self.watcher.on_train_end(trainer)


def poll(url, stop):
    while not stop.wait(1.0):
        with urllib.request.urlopen(url + "data.json", timeout=10) as response:
            response.read()


def open_page(url, browser, directory):
    """Keep the live page open, in headless Chromium or as a thread fetching /data.json every second; returns the
    function that closes it."""
    if browser:
        page = subprocess.Popen([browser, "--headless", "--no-sandbox", "--disable-gpu",
                                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                                 "--no-first-run", "--remote-debugging-port=0", f"--user-data-dir={directory}",
                                 url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(5)  # let it start before anything is timed
        return lambda: (page.terminate(), page.wait())
    stop = threading.Event()
    threading.Thread(target=poll, args=(url, stop), daemon=True).start()
    return stop.set


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["log", "live", "paused"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--block", type=int, default=100, help="steps per block")
    parser.add_argument("--browser", action="store_true", help="live: a headless Chromium page stays open")
    args = parser.parse_args()
    browser = shutil.which("chromium") if args.browser else None
    if args.browser and browser is None:
        parser.error("--browser needs chromium")
    keep_large_allocations_in_heap()
    limiter = set_threads(default_threads())
    x, y, xt, yt = load_idx_dataset()
    model = architecture.build(architecture.reference(), seed=0)
    if args.kind == "paused":
        return measure_paused(model, x, y, xt, yt, args.epochs)
    with tempfile.TemporaryDirectory() as directory:
        close, always = None, []
        if args.kind == "log":
            watcher = RunLog(f"{directory}/run.jsonl", DEFAULT_EVERY)
        else:
            controls, watcher = serve(model, xt, yt, port=0)
            always = [controls]  # a lock per step, in every block: what a run with --live pays for them
            close = open_page(watcher.server.url, browser, directory)
        timer = EveryOtherBlock(watcher, args.block)
        Trainer(model, make_optimizer("adam", 0.001), RunSettings(epochs=args.epochs, batch_size=64),
                [*always, timer]).fit(x, y)
        if close:
            close()
            watcher.server.stop()
    del limiter
    name = args.kind + (" + browser" if browser else "")
    plain, watched = timer.blocks[False], timer.blocks[True]  # watched block i lies between plain i and i + 1
    pairs = list(zip(watched, plain, plain[1:]))[1:]  # the first blocks warm up
    print(f"{name}: {len(pairs)} watched blocks of {args.block} steps, each between two plain ones")
    for label, k in (("wall", 0), ("CPU", 1)):
        ratios = [w[k] / ((a[k] + b[k]) / 2) for w, a, b in pairs]
        low, median, high = (100 * (q - 1) for q in statistics.quantiles(ratios))
        print(f"{name}: {label} time of a watched block against its neighbours: median {median:+.1f}% "
              f"(quartiles {low:+.1f}%, {high:+.1f}%)")
    print(f"{name}: added inside the watched blocks (hooks and observed steps): median "
          f"{100 * statistics.median(w[2] / w[0] for w, _, _ in pairs):.2f}% of the block's time")


def measure_paused(model, x, y, xt, yt, epochs, seconds=10.0):
    """Pause a live run after 200 steps, measure the process's CPU time over ``seconds``, then stop it."""
    controls, view = serve(model, xt, yt, port=0)
    trainer = Trainer(model, make_optimizer("adam", 0.001), RunSettings(epochs=epochs, batch_size=64),
                      [controls, view])
    worker = threading.Thread(target=trainer.fit, args=(x, y))
    worker.start()
    while trainer.state.global_step < 200:
        if not worker.is_alive():
            raise SystemExit("paused: the training thread ended before step 200 (see its error above)")
        time.sleep(0.05)
    controls.request({"action": "pause"})
    time.sleep(1.0)  # the step under way ends, the snapshot is published
    step, start, cpu = trainer.state.global_step, time.perf_counter(), os.times()
    time.sleep(seconds)
    used = os.times()
    used = (used.user - cpu.user) + (used.system - cpu.system)
    wall = time.perf_counter() - start
    moved = trainer.state.global_step - step
    trainer.stop_requested = True
    worker.join()
    view.server.stop()
    print(f"paused: {100 * used / wall:.2f}% of a core over {wall:.1f} s while paused (the step moved by {moved})")


if __name__ == "__main__":
    main()
