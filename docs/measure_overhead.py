"""Measure what the training log and the live view cost in training throughput (the figures in the README).

Runs the same training (the reference network, batch 64, the first N MNIST images) alternately without and with
the watcher under test, in the order AB BA AB ..., so that the machine's load drifts over both alike, and reports
the ratio of the median times of ``Trainer.fit`` (callbacks included), in wall time and in the process's CPU time
(which other processes' load disturbs less). It also accounts for the cost inside the watched runs directly: the
time spent in the watcher's hooks, plus what the steps it asked to keep every activation (which run unfused) took
beyond a typical step, as a fraction of the run. Usage:

    python docs/measure_overhead.py log [--rounds 5] [--images 19200]
    python docs/measure_overhead.py live [--browser]   # --browser: a headless Chromium page polls the server

For the live view, one server and one open page (a headless Chromium page with --browser, else a thread that
fetches /data.json every second as a page does) stay up through all the runs; only the watched runs feed it.
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

from cycnn import architecture
from cycnn.datasets import load_idx_dataset
from cycnn.live import LiveServer, LiveView
from cycnn.optimizers import make_optimizer
from cycnn.runlog import DEFAULT_EVERY, RunLog
from cycnn.runtime import default_threads, keep_large_allocations_in_heap, set_threads
from cycnn.training import Callback, TrainConfig, Trainer


def poll(url, stop):
    while not stop.wait(1.0):
        with urllib.request.urlopen(url + "data.json", timeout=10) as response:
            response.read()


def open_page(url, browser, directory):
    """Keep the live page open for the whole measurement, in headless Chromium or as a thread fetching
    /data.json every second; returns the function that closes it."""
    if browser:
        page = subprocess.Popen([browser, "--headless", "--no-sandbox", "--disable-gpu",
                                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                                 "--no-first-run", "--remote-debugging-port=0", f"--user-data-dir={directory}",
                                 url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(5)  # let it start and draw before anything is timed
        return lambda: (page.terminate(), page.wait())
    stop = threading.Event()
    threading.Thread(target=poll, args=(url, stop), daemon=True).start()
    return stop.set


class Timed(Callback):
    """Runs ``inner``'s hooks and adds up the time they take; notes each step's time and whether it kept
    the activations."""

    def __init__(self, inner):
        self.inner, self.hook_seconds, self.steps = inner, 0.0, []

    def _timed(self, name, *args):
        start = time.perf_counter()
        getattr(self.inner, name)(*args)
        self.hook_seconds += time.perf_counter() - start

    def on_train_begin(self, trainer):
        self._timed("on_train_begin", trainer)

    def on_step_begin(self, trainer, info):
        self._timed("on_step_begin", trainer, info)

    def on_step_end(self, trainer, info):
        self.steps.append((info["seconds"], trainer.keep_activations))
        self._timed("on_step_end", trainer, info)

    def on_epoch_end(self, trainer, record):
        self._timed("on_epoch_end", trainer, record)

    def on_train_end(self, trainer):
        self._timed("on_train_end", trainer)

    def cost(self):
        """Seconds the watcher added: its hooks, and its unfused steps beyond the median step."""
        typical = statistics.median(s for s, kept in self.steps if not kept)
        return self.hook_seconds + sum(s - typical for s, kept in self.steps if kept)


def run(watcher, x, y):
    """(wall seconds, CPU seconds, seconds the watcher added) of one training run with ``watcher`` (or none)."""
    model = architecture.build(architecture.reference(), seed=0)
    callbacks = [Timed(watcher)] if watcher else []
    trainer = Trainer(model, make_optimizer("adam", 0.001), TrainConfig(epochs=1, batch_size=64), callbacks)
    start, cpu_start = time.perf_counter(), os.times()
    trainer.fit(x, y)
    seconds, cpu_end = time.perf_counter() - start, os.times()
    cpu = (cpu_end.user - cpu_start.user) + (cpu_end.system - cpu_start.system)
    return seconds, cpu, callbacks[0].cost() if callbacks else 0.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["log", "live"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=19200)
    parser.add_argument("--browser", action="store_true", help="with --live: a headless Chromium page polls")
    args = parser.parse_args()
    browser = shutil.which("chromium") if args.browser else None
    if args.browser and browser is None:
        parser.error("--browser needs chromium")
    keep_large_allocations_in_heap()
    limiter = set_threads(default_threads())
    x, y, xt, yt = load_idx_dataset()
    x, y = x[:args.images], y[:args.images]
    plain, watched = [], []
    with tempfile.TemporaryDirectory() as directory:
        if args.kind == "log":
            def watcher():
                return RunLog(f"{directory}/run.jsonl", DEFAULT_EVERY)
            close = None
        else:  # one server and one open page for all runs; only the watched runs publish snapshots to it
            server = LiveServer(port=0)
            close = open_page(server.url, browser, directory)

            def watcher():
                return LiveView(server, xt[:16], yt[:16])
        run(watcher(), x[:640], y[:640])  # warm-up
        for i in range(args.rounds):
            for with_watcher in ((False, True) if i % 2 == 0 else (True, False)):  # ABBA: no order bias
                result = run(watcher() if with_watcher else None, x, y)
                (watched if with_watcher else plain).append(result)
            print(f"round {i + 1}: without {plain[-1][0]:.2f} s ({plain[-1][1]:.2f} s CPU), with "
                  f"{watched[-1][0]:.2f} s ({watched[-1][1]:.2f} s CPU) of which {watched[-1][2]:.3f} s added by "
                  f"the watcher ({100 * watched[-1][2] / watched[-1][0]:.2f}%)", flush=True)
        if close:
            close()
            server.stop()
    name = args.kind + (" + browser" if browser else "")
    for label, k in (("wall", 0), ("CPU", 1)):
        a, b = statistics.median(r[k] for r in plain), statistics.median(r[k] for r in watched)
        print(f"{name}: median {label} time {a:.2f} s without, {b:.2f} s with: {100 * (b / a - 1):+.1f}%")
    print(f"{name}: cost inside the watched runs: median "
          f"{100 * statistics.median(r[2] / r[0] for r in watched):.2f}% of the run")
    del limiter


if __name__ == "__main__":
    main()
