#!/usr/bin/env python
"""Benchmark cycnn against PyTorch on the reference network, in one process, on the same MNIST batches.

    python scripts/bench.py                 # 2 threads, 5 alternating rounds of each comparison
    python scripts/bench.py --threads 1,2   # both thread counts, plus cycnn's 1->2 thread training speedup
    python scripts/bench.py --quick --json  # a smoke run; the last stdout line is one JSON object

What it measures (see scripts/README.md): training throughput at batch 64 and 128 (Adam, lr 1e-3), batch-1000
inference throughput, single-image latency, peak RSS of a training run (each framework in its own child process),
cycnn's per-layer step breakdown, and cycnn's effective GFLOP/s against numpy's float32 matmul rate.

Every cycnn/PyTorch ratio comes from rounds that alternate the two (A B, then B A, ...), so that the drift of a
shared machine hits both alike; the ratio of each round is reported with the median and the min-max spread.
PyTorch is optional: without it, cycnn alone is measured and the comparative targets read "n/a".
"""
import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

# cycnn's import sets GOMP_SPINCOUNT (unless the OpenMP wait is set already); the RSS children get the environment
# as it was.
ORIGINAL_ENV = dict(os.environ)

import numpy as np  # noqa: E402

TARGETS = {"train": 1.5, "infer": 2.0, "latency": 0.75, "rss_mb": 400.0, "thread_speedup": 1.7}
TRAIN_BATCHES = (64, 128)
INFER_BATCH = 1000
DATA_SEED = 0
MB = 1e6  # peak RSS is reported in decimal megabytes


# --- settings -------------------------------------------------------------------------------------------------
class Settings:
    """How much work each measurement does; --quick shrinks everything to a smoke run."""

    def __init__(self, quick=False, rounds=None, steps=None):
        self.rounds = rounds or (2 if quick else 5)
        self.steps = steps or (5 if quick else 60)            # training steps per framework per round
        self.warmup = 2 if quick else 10                      # training steps before the first round
        self.infer_batches = 1 if quick else 3                # batches of 1000 per framework per round
        self.latency_calls = max(200, math.ceil(1000 / self.rounds))  # >= 1000 calls per framework in all
        self.rss_steps = 10 if quick else 100                 # training steps in each RSS child
        self.matmul_repeats = 2 if quick else 5

    def to_dict(self):
        return dict(vars(self))


# --- small helpers --------------------------------------------------------------------------------------------
def progress(message):
    """Progress goes to stderr so that stdout holds only the report (and the JSON line)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def spread(values):
    """median, min and max of a list of per-round figures."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "rounds": list(values)}


def alternate(rounds, runners, label):
    """Run each of ``runners`` ({name: fn(round) -> measurement}) once per round, in the given order on even
    rounds and reversed on odd ones, so that a steady drift of the machine's speed hits every runner alike.
    Returns {name: [measurement of each round]}."""
    results = {name: [] for name in runners}
    names = list(runners)
    for r in range(rounds):
        progress(f"{label}: round {r + 1}/{rounds}")
        for name in (names if r % 2 == 0 else names[::-1]):
            results[name].append(runners[name](r))
    return results


def read_proc_status(field):
    """A memory figure of this process from /proc/self/status, in bytes (None where there is no /proc)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss_bytes():
    """The peak resident set size so far: VmHWM, or ru_maxrss (KiB on Linux) where /proc is missing."""
    hwm = read_proc_status("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def batch_plan(n_images, batch_size, count, seed=DATA_SEED):
    """``count`` index batches in a shuffled order (a fresh seeded permutation per epoch), the same for both
    frameworks and every run of this script."""
    rng = np.random.default_rng(seed)
    per_epoch = n_images // batch_size
    batches = []
    while len(batches) < count:
        order = rng.permutation(n_images)
        batches += [order[i * batch_size:(i + 1) * batch_size] for i in range(per_epoch)]
    return batches[:count]


# --- frameworks -----------------------------------------------------------------------------------------------
def import_torch():
    """PyTorch if it is installed, else None (then cycnn is measured alone)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def set_threads(n, torch=None):
    """n threads for cycnn's kernels and BLAS (threadpoolctl applies its limit at once) and, when given, for
    PyTorch."""
    from cycnn.nn import runtime
    runtime.set_threads(n)
    if torch is not None:
        torch.set_num_threads(n)


def torch_twin(torch):
    """The reference network in PyTorch: the same layers as cycnn.io.architecture.reference()."""
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10))


def copy_weights(torch, cycnn_model, net):
    """Give the PyTorch twin cycnn's weights, so both start from the same point (cycnn's Dense W is (in, out),
    PyTorch's Linear weight is (out, in); convolution weights are (out, in, kh, kw) in both)."""
    cy_layers = [layer for layer in cycnn_model.layers if "W" in layer.params]
    torch_layers = [m for m in net if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    if len(cy_layers) != len(torch_layers):
        raise RuntimeError(f"cycnn's reference network has {len(cy_layers)} weighted layers, the PyTorch twin "
                           f"{len(torch_layers)}: the twin no longer matches")
    with torch.no_grad():
        for layer, module in zip(cy_layers, torch_layers):
            w = layer.params["W"]
            w = w.T if isinstance(module, torch.nn.Linear) else w
            if tuple(w.shape) != tuple(module.weight.shape):
                raise RuntimeError(f"weight shape {w.shape} does not fit {module} in the PyTorch twin")
            module.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
            module.bias.copy_(torch.from_numpy(layer.params["b"]))


def new_reference_model():
    """cycnn's reference network, seeded as the issue asks."""
    from cycnn.io.architecture import build, reference
    return build(reference(), seed=0)


# --- FLOPs ----------------------------------------------------------------------------------------------------
def forward_flops_per_layer(model):
    """Multiply-adds x 2 of each Conv2D and Dense layer for one image, from the layer shapes."""
    flops = []
    shape = model.input_shape
    for layer, out_shape in zip(model.layers, model.output_shapes):
        name = type(layer).__name__
        if name == "Conv2D":
            kh, kw = layer.kernel_size
            flops.append(2 * int(np.prod(out_shape)) * shape[0] * kh * kw)
        elif name == "Dense":
            flops.append(2 * layer.in_features * layer.out_features)
        else:
            flops.append(0)
        shape = out_shape
    return flops


def reference_flops(model):
    """(forward, training) FLOPs per image. Training counts the usual three products per layer (forward, weight
    gradient, input gradient) = 3x forward; both frameworks skip the first layer's input gradient, which makes the
    work actually done about 2.5% less (the rates below are model-FLOP rates, as is customary)."""
    forward = sum(forward_flops_per_layer(model))
    return forward, 3 * forward


def matmul_gflops(m, k, n, repeats):
    """numpy float32 (m x k) @ (k x n) rate at the current BLAS thread limit, best of ``repeats``."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    out = np.empty((m, n), dtype=np.float32)
    np.matmul(a, b, out=out)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2.0 * m * k * n / best / 1e9


# --- training -------------------------------------------------------------------------------------------------
class CycnnTraining:
    """cycnn's training loop on given index batches, as Trainer.fit runs it (gather, to_input, train_step), with
    each step's time split into layers (a LayerTimer on the model's hooks), loss, optimizer, data conversion and
    the rest."""

    def __init__(self, x, y, batch_size):
        from cycnn.data.datasets import to_input
        from cycnn.nn.hooks import LayerTimer
        from cycnn.nn.optim import Adam
        from cycnn.train.settings import RunSettings
        from cycnn.train.trainer import Trainer
        self.x, self.y, self.to_input = x, y, to_input
        self.model = new_reference_model()
        self.timer = LayerTimer().attach(self.model)
        self.trainer = Trainer(self.model, Adam(lr=1e-3), RunSettings(batch_size=batch_size, lr=1e-3))
        self.step_index = 0
        self.recording = False
        n = len(self.model.layers)
        self.totals = {"forward": [0.0] * n, "backward": [0.0] * n, "loss": 0.0, "optimizer": 0.0, "data": 0.0,
                       "step": 0.0, "steps": 0}
        # Trainer.train_step reports no split of its own: time the loss and the optimizer by wrapping them.
        loss_fn, optimizer = self.trainer.loss_fn, self.trainer.optimizer
        loss_fn.forward = self._timed(loss_fn.forward, "loss")
        loss_fn.backward = self._timed(loss_fn.backward, "loss")
        optimizer.step = self._timed(optimizer.step, "optimizer")

    def _timed(self, fn, key):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if self.recording:
                    self.totals[key] += time.perf_counter() - start
        return timed

    def run(self, batches, record=True):
        """Train on ``batches`` (index arrays); returns the wall time in seconds."""
        self.recording = record
        totals, timer = self.totals, self.timer
        start = time.perf_counter()
        for idx in batches:
            t0 = time.perf_counter()
            xb, yb = self.to_input(self.x[idx]), self.y[idx]
            t1 = time.perf_counter()
            self.trainer.train_step(xb, yb, 0, self.step_index)
            t2 = time.perf_counter()
            self.step_index += 1
            if record:
                totals["data"] += t1 - t0
                totals["step"] += t2 - t0
                totals["steps"] += 1
                for i, (f, b) in enumerate(zip(timer.forward, timer.backward)):
                    totals["forward"][i] += f
                    totals["backward"][i] += b
        return time.perf_counter() - start

    def breakdown(self):
        """Mean milliseconds per step: one row per layer (forward, backward), then loss, optimizer, data and the
        rest of the step (dropout seeding, accuracy count, Python), and the step total."""
        t = self.totals
        steps = max(t["steps"], 1)
        ms = 1000.0 / steps
        fused_into = self.model.fused_into  # {second layer: first layer} of fused pairs
        fused_firsts = {first: second for second, first in fused_into.items()}
        rows = []
        for i in range(len(self.model.layers)):
            if i in fused_into:
                rows.append({"part": f"{layer_label(self.model, i)} (fused: counted in {fused_into[i]})"})
                continue
            label = layer_label(self.model, i) + (f" + {fused_firsts[i]} (fused)" if i in fused_firsts else "")
            rows.append({"part": label, "forward_ms": t["forward"][i] * ms, "backward_ms": t["backward"][i] * ms})
        layers_s = sum(t["forward"]) + sum(t["backward"])
        other_s = t["step"] - layers_s - t["loss"] - t["optimizer"] - t["data"]
        rows += [{"part": "loss (softmax cross-entropy, fwd+bwd)", "total_ms": t["loss"] * ms},
                 {"part": "optimizer (Adam step)", "total_ms": t["optimizer"] * ms},
                 {"part": "data (gather batch + to_input)", "total_ms": t["data"] * ms},
                 {"part": "rest of train_step (dropout seeding, accuracy, Python)", "total_ms": other_s * ms}]
        for row in rows:
            if "forward_ms" in row:
                row["total_ms"] = row["forward_ms"] + row["backward_ms"]
        return {"steps": t["steps"], "rows": rows, "step_ms": t["step"] * ms}


def layer_label(model, i):
    """The layer's name and output shape, e.g. "2: Conv2D (relu) -> 64x11x11"."""
    return f"{model.layer_names()[i]} -> {'x'.join(map(str, model.output_shapes[i]))}"


class TorchTraining:
    """The same loop in PyTorch: gather, to_input, zero_grad, forward, loss, backward, Adam step, and the loss
    value and accuracy count that cycnn's train_step also returns."""

    def __init__(self, torch, x, y, batch_size):
        from cycnn.data.datasets import to_input
        self.torch, self.x, self.y, self.to_input = torch, x, y, to_input
        self.net = torch_twin(torch)
        copy_weights(torch, new_reference_model(), self.net)
        self.net.train()
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        self.loss_fn = torch.nn.CrossEntropyLoss()

    def run(self, batches, record=True):
        torch = self.torch
        start = time.perf_counter()
        for idx in batches:
            xb, yb = torch.from_numpy(self.to_input(self.x[idx])), torch.from_numpy(self.y[idx])
            self.optimizer.zero_grad()
            logits = self.net(xb)
            loss = self.loss_fn(logits, yb)
            loss.backward()
            self.optimizer.step()
            loss.item(), int((logits.argmax(dim=1) == yb).sum())
        return time.perf_counter() - start


def measure_training(data, torch, batch_size, settings, threads):
    """Alternating rounds of cycnn and PyTorch training at ``batch_size`` on the same batches; images/s."""
    x, y = data[0], data[1]
    batches = batch_plan(len(x), batch_size, settings.warmup + settings.rounds * settings.steps)
    warm, rest = batches[:settings.warmup], batches[settings.warmup:]
    per_round = [rest[r * settings.steps:(r + 1) * settings.steps] for r in range(settings.rounds)]
    runs = {"cycnn": CycnnTraining(x, y, batch_size)}
    if torch is not None:
        runs["torch"] = TorchTraining(torch, x, y, batch_size)
    for run in runs.values():
        run.run(warm, record=False)
    seconds = alternate(settings.rounds, {name: (lambda r, run=run: run.run(per_round[r])) for name, run in
                                          runs.items()}, f"{threads} thread(s), training batch {batch_size}")
    images = settings.steps * batch_size
    result = comparison({name: [images / s for s in secs] for name, secs in seconds.items()}, higher_is_better=True)
    result["breakdown"] = runs["cycnn"].breakdown()
    return result


def comparison(per_round, higher_is_better):
    """Per-framework medians and the per-round cycnn/PyTorch ratios (cycnn's figure over PyTorch's)."""
    result = {"cycnn": spread(per_round["cycnn"])}
    if "torch" in per_round:
        result["torch"] = spread(per_round["torch"])
        result["ratio"] = spread([c / t for c, t in zip(per_round["cycnn"], per_round["torch"])])
    result["higher_is_better"] = higher_is_better
    return result


# --- inference ------------------------------------------------------------------------------------------------
def inference_models(torch):
    """cycnn's reference model in eval mode and, if PyTorch is there, its twin with the same weights."""
    model = new_reference_model().eval()
    net = None
    if torch is not None:
        net = torch_twin(torch)
        copy_weights(torch, model, net)
        net.eval()
    return model, net


def torch_predict_proba(torch, net, x):
    """PyTorch's equivalent of cycnn's predict_proba: numpy in, softmax probabilities out."""
    with torch.inference_mode():
        return torch.softmax(net(torch.from_numpy(x)), dim=1).numpy()


def twin_check(torch, model, net, x):
    """How closely the twin's probabilities follow cycnn's on the same weights (proof the twin is the same net)."""
    p_cycnn = model.predict_proba(x)
    p_torch = torch_predict_proba(torch, net, x)
    return {"images": len(x), "max_abs_prob_diff": float(np.max(np.abs(p_cycnn - p_torch))),
            "argmax_agreement": float(np.mean(p_cycnn.argmax(1) == p_torch.argmax(1)))}


def measure_inference(data, torch, settings, threads):
    """Alternating rounds of batch-1000 inference (eval mode, softmax probabilities); images/s."""
    from cycnn.data.datasets import to_input
    x_test = data[2]
    batches = [to_input(x_test[i:i + INFER_BATCH]) for i in range(0, len(x_test) - INFER_BATCH + 1, INFER_BATCH)]
    model, net = inference_models(torch)
    check = twin_check(torch, model, net, batches[0]) if net is not None else None
    k = settings.infer_batches

    def round_batches(r):
        return [batches[(r * k + j) % len(batches)] for j in range(k)]

    def run_cycnn(r):
        start = time.perf_counter()
        for xb in round_batches(r):
            model.predict_proba(xb)
        return time.perf_counter() - start

    def run_torch(r):
        start = time.perf_counter()
        for xb in round_batches(r):
            torch_predict_proba(torch, net, xb)
        return time.perf_counter() - start

    runners = {"cycnn": run_cycnn}
    if net is not None:
        runners["torch"] = run_torch
    for run in runners.values():  # warm-up
        run(0)
    seconds = alternate(settings.rounds, runners, f"{threads} thread(s), inference batch {INFER_BATCH}")
    result = comparison({name: [k * INFER_BATCH / s for s in secs] for name, secs in seconds.items()},
                        higher_is_better=True)
    result["twin_check"] = check
    return result


def measure_latency(data, torch, settings, threads):
    """Alternating rounds of single-image predictions (one 1x1x28x28 image, probabilities out); the median of
    each round's calls, in microseconds."""
    from cycnn.data.datasets import to_input
    image = to_input(data[2][:1])
    model, net = inference_models(torch)
    calls = settings.latency_calls

    def timed_calls(predict):
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            predict(image)
            times.append(time.perf_counter() - start)
        return times

    runners = {"cycnn": lambda r: timed_calls(model.predict_proba)}
    if net is not None:
        runners["torch"] = lambda r: timed_calls(lambda x: torch_predict_proba(torch, net, x))
    for run in runners.values():  # warm-up
        run(0)
    samples = alternate(settings.rounds, runners, f"{threads} thread(s), single-image latency")
    result = comparison({name: [statistics.median(t) * 1e6 for t in rounds] for name, rounds in samples.items()},
                        higher_is_better=False)
    for name, rounds in samples.items():
        every_call = [t for r in rounds for t in r]
        result[name]["all_calls_median"] = statistics.median(every_call) * 1e6
        result[name]["calls"] = len(every_call)
    return result


# --- peak RSS: each framework's training in a child process of this script -----------------------------------
def rss_child(framework, batch_size, threads, steps):
    """Body of a child process: set up as `cycnn train` does (or PyTorch at its defaults), train ``steps`` steps,
    then run a validation pass over the test set at batch 1000 as `cycnn train` does after each epoch. Prints one
    JSON line with the memory figures and the throughput of this run. cycnn's child never imports torch."""
    torch = None
    if framework == "torch":
        torch = import_torch()  # before cycnn, so that PyTorch's OpenMP starts with the untouched environment
        torch.set_num_threads(threads)
    from cycnn.data.idx import load_idx_dataset
    from cycnn.data.datasets import to_input
    if framework == "cycnn":
        from cycnn.nn import runtime
        runtime.keep_large_allocations_in_heap()
        runtime.set_threads(threads)
    x, y, x_test, y_test = load_idx_dataset()
    rss_setup = read_proc_status("VmRSS")
    run = CycnnTraining(x, y, batch_size) if framework == "cycnn" else TorchTraining(torch, x, y, batch_size)
    batches = batch_plan(len(x), batch_size, steps)
    warm = min(10, steps // 5)
    run.run(batches[:warm], record=False)
    seconds = run.run(batches[warm:])
    peak_train = peak_rss_bytes()
    if framework == "cycnn":
        from cycnn.train.evaluation import evaluate
        evaluate(run.model, x_test, y_test, batch_size=INFER_BATCH)
    else:
        run.net.eval()
        for i in range(0, len(x_test), INFER_BATCH):
            torch_predict_proba(torch, run.net, to_input(x_test[i:i + INFER_BATCH]))
    print(json.dumps({"framework": framework, "batch_size": batch_size, "threads": threads, "steps": steps,
                      "rss_after_setup_mb": rss_setup / MB if rss_setup else None,
                      "peak_train_mb": peak_train / MB, "peak_run_mb": peak_rss_bytes() / MB,
                      "images_per_s": (steps - warm) * batch_size / seconds, "timed_steps": steps - warm,
                      "torch_imported": "torch" in sys.modules}))


def measure_rss(torch_available, settings, threads):
    """Peak RSS of a training run per framework and batch size, each in a fresh child process of this script."""
    results = {}
    frameworks = ["cycnn"] + (["torch"] if torch_available else [])
    for batch_size in TRAIN_BATCHES:
        for framework in frameworks:
            progress(f"{threads} thread(s), peak RSS: {framework} training child, batch {batch_size}")
            cmd = [sys.executable, os.path.abspath(__file__), "--rss-child", framework, "--rss-batch",
                   str(batch_size), "--threads", str(threads), "--steps", str(settings.rss_steps)]
            proc = subprocess.run(cmd, env=ORIGINAL_ENV, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"the {framework} RSS child failed:\n{proc.stderr}")
            child = json.loads(proc.stdout.strip().splitlines()[-1])
            if framework == "cycnn" and child["torch_imported"]:
                raise RuntimeError("the cycnn RSS child imported torch; its RSS would be inflated")
            results.setdefault(batch_size, {})[framework] = child
    return results


# --- one thread count -----------------------------------------------------------------------------------------
def run_suite(data, torch, settings, threads, flops):
    """Every measurement at one thread count."""
    set_threads(threads, torch)
    progress(f"{threads} thread(s): numpy matmul rate")
    suite = {"threads": threads,
             "matmul_gflops": {"2048^3": matmul_gflops(2048, 2048, 2048, settings.matmul_repeats),
                               "conv2 b128 15488x288x64": matmul_gflops(
                                   128 * 121, 288, 64, settings.matmul_repeats * 4)},
             "training": {b: measure_training(data, torch, b, settings, threads) for b in TRAIN_BATCHES},
             "inference": measure_inference(data, torch, settings, threads),
             "latency": measure_latency(data, torch, settings, threads)}
    suite["rss"] = measure_rss(torch is not None, settings, threads)
    forward, train = flops
    ceiling = suite["matmul_gflops"]["2048^3"]
    suite["gflops"] = {}
    for key, per_image, figure in [(f"training batch {b}", train, suite["training"][b]) for b in TRAIN_BATCHES] + [
            (f"inference batch {INFER_BATCH}", forward, suite["inference"])]:
        row = {name: figure[name]["median"] * per_image / 1e9 for name in ("cycnn", "torch") if name in figure}
        row["cycnn_fraction_of_matmul"] = row["cycnn"] / ceiling
        suite["gflops"][key] = row
    suite["matmul_ceiling_train_images_per_s"] = ceiling * 1e9 / train
    return suite


def measure_thread_scaling(data, thread_counts, settings):
    """cycnn training at each thread count, alternated round by round (threads switched before each run); the
    speedup of the largest over the smallest count, per round."""
    low, high = min(thread_counts), max(thread_counts)
    x, y = data[0], data[1]
    result = {}
    for batch_size in TRAIN_BATCHES:
        batches = batch_plan(len(x), batch_size, settings.warmup + settings.rounds * settings.steps)
        per_round = [batches[settings.warmup + r * settings.steps:settings.warmup + (r + 1) * settings.steps]
                     for r in range(settings.rounds)]
        runs = {n: CycnnTraining(x, y, batch_size) for n in (low, high)}

        def runner(n):
            def run_round(r):
                set_threads(n)
                return runs[n].run(per_round[r])
            return run_round

        for n, run in runs.items():
            set_threads(n)
            run.run(batches[:settings.warmup], record=False)
        seconds = alternate(settings.rounds, {n: runner(n) for n in (low, high)},
                            f"cycnn thread scaling {low}->{high}, batch {batch_size}")
        images = settings.steps * batch_size
        ips = {n: [images / s for s in secs] for n, secs in seconds.items()}
        result[batch_size] = {"low": spread(ips[low]), "high": spread(ips[high]),
                              "speedup": spread([h / l for h, l in zip(ips[high], ips[low])])}
    return {"from": low, "to": high, "batches": result}


# --- machine --------------------------------------------------------------------------------------------------
def machine_info(torch):
    """What the figures depend on: CPU, cores, BLAS and OpenMP libraries, versions, environment, load."""
    from threadpoolctl import threadpool_info
    import cycnn
    from cycnn.nn import _parallel
    cpu, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name") and cpu == "unknown":
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    try:
        with open("/proc/loadavg") as fh:
            load = " ".join(fh.read().split()[:3])
    except OSError:
        load = None
    pools = [{k: p.get(k) for k in ("internal_api", "version", "architecture", "threading_layer", "num_threads")}
             | {"library": os.path.basename(p["filepath"])} for p in threadpool_info()]
    info = {"cpu": cpu, "simd": [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags],
            "cores": os.cpu_count(), "cores_available": affinity, "load_average": load,
            "python": platform.python_version(), "numpy": np.__version__, "threadpools": pools,
            "cycnn": cycnn.__version__, "cycnn_source": cycnn_source(cycnn), "openmp": _parallel.openmp_enabled(),
            "torch": torch.__version__ if torch is not None else None,
            "env": {k: ORIGINAL_ENV.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS",
                                                      "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")},
            "omp_wait_in_effect": {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}}
    if torch is not None:
        info["torch_mkldnn"] = bool(torch.backends.mkldnn.is_available())
    return info


def cycnn_source(cycnn):
    """The git commit of the cycnn being measured (with a mark if its code differs from it) and when its
    kernels were last built, since the kernels are rebuilt in place."""
    package = os.path.dirname(cycnn.__file__)
    root = os.path.dirname(package)
    text = "unknown"
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "cycnn", "src_ext"],
                               capture_output=True, text=True, check=True).stdout.strip()
        text = commit + (" + uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        pass
    built = [os.path.getmtime(os.path.join(package, f)) for f in os.listdir(package) if f.endswith(".so")]
    if built:
        text += ", kernels built " + time.strftime("%Y-%m-%d %H:%M", time.localtime(max(built)))
    return text


# --- report ---------------------------------------------------------------------------------------------------
def fmt(value, digits=0):
    return "-" if value is None else f"{value:,.{digits}f}"


def fmt_ratio(figure):
    r = figure.get("ratio")
    if r is None:
        return "-", "-"
    return f"{r['median']:.2f}x", f"{r['min']:.2f}-{r['max']:.2f}"


def print_machine(info, settings, torch_missing):
    print("== machine ==")
    print(f"cpu: {info['cpu']} ({', '.join(info['simd']) or 'no AVX2'}); cores: {info['cores']} "
          f"({info['cores_available']} available to this process); load average at start: {info['load_average']}")
    print(f"python {info['python']}, numpy {info['numpy']}, cycnn {info['cycnn']} ({info['cycnn_source']}; "
          f"OpenMP {'on' if info['openmp'] else 'off'}), torch {info['torch'] or 'NOT INSTALLED'}"
          + (f" (oneDNN {'on' if info.get('torch_mkldnn') else 'off'})" if info['torch'] else ""))
    for pool in info["threadpools"]:
        print(f"  {pool['internal_api']}: {pool['library']} {pool['version'] or ''} "
              f"{pool['architecture'] or ''} {pool['threading_layer'] or ''}".rstrip())
    env = info["env"]
    print("environment: " + ", ".join(f"{k}={'(not set)' if v is None else v}" for k, v in env.items()))
    wait = ", ".join(f"{k}={'(not set)' if v is None else v}" for k, v in info["omp_wait_in_effect"].items())
    print(f"OpenMP wait in this process: {wait} (cycnn's import sets GOMP_SPINCOUNT unless OMP_WAIT_POLICY is "
          "given; PyTorch shares the one OpenMP runtime, so it applies to both; the RSS children get the "
          "environment above)")
    print("this process calls cycnn.nn.runtime.keep_large_allocations_in_heap() (glibc mallopt, as `cycnn train` "
          "does); it is process-wide, so PyTorch's in-process figures benefit from it too")
    print(f"settings: {settings.rounds} rounds x {settings.steps} training steps per framework (after "
          f"{settings.warmup} warm-up steps), {settings.infer_batches} batch(es) of {INFER_BATCH} and "
          f"{settings.latency_calls} single-image calls per framework per round; order A B, B A, ...")
    if torch_missing:
        print("PyTorch is NOT installed: measuring cycnn only; ratios and the comparative targets are n/a "
              "(pip install torch==2.13.0 for the comparison)")
    print()


LABEL = 50  # width of the figure names in the tables


def table_line(label, cycnn="", torch="", ratio="", spread_text=""):
    print(f"{label:<{LABEL}} {cycnn:>10} {torch:>10} {ratio:>13} {spread_text:>11}".rstrip())


def print_suite(suite, flops):
    """The figures of one thread count: cycnn, PyTorch and their ratio on each line, then the per-round detail."""
    print(f"== cycnn vs PyTorch, {suite['threads']} thread(s) ==")
    table_line("figure", "cycnn", "PyTorch", "cycnn/PyTorch", "min-max")
    print("-" * (LABEL + 49))

    def compared(label, figure, digits=0):
        torch_value = figure["torch"]["median"] if "torch" in figure else None
        table_line(label, fmt(figure["cycnn"]["median"], digits), fmt(torch_value, digits), *fmt_ratio(figure))

    def single(label, c, t, digits=0, note=""):
        table_line(label, fmt(c, digits), fmt(t, digits), f"{c / t:.2f}x" if t else "-", note)

    for b in TRAIN_BATCHES:
        compared(f"training, batch {b} (images/s)", suite["training"][b])
    compared(f"inference, batch {INFER_BATCH} (images/s)", suite["inference"])
    lat = suite["latency"]
    compared("single-image latency, median of rounds (us)", lat, 1)
    single(f"  median of all {lat['cycnn']['calls']} calls (us)", lat["cycnn"]["all_calls_median"],
           lat["torch"]["all_calls_median"] if "torch" in lat else None, 1)
    for b in TRAIN_BATCHES:
        rss = suite["rss"][b]
        for key, label in (("peak_train_mb", f"peak RSS, training batch {b} (MB)"),
                           ("peak_run_mb", f"  same run + validation at batch {INFER_BATCH} (MB)"),
                           ("rss_after_setup_mb", "  RSS after imports + MNIST load (MB)")):
            single(label, rss["cycnn"][key], rss["torch"][key] if "torch" in rss else None, 0, "(1 run)")
    for key, row in suite["gflops"].items():
        single(f"effective GFLOP/s, {key}", row["cycnn"], row.get("torch"), 1)
    for key, rate in suite["matmul_gflops"].items():
        table_line(f"numpy matmul {key}, GFLOP/s", fmt(rate, 1))
    for key, row in suite["gflops"].items():
        table_line(f"cycnn {key} / matmul 2048^3 rate", f"{row['cycnn_fraction_of_matmul']:.1%}")
    table_line("training if every model FLOP ran at the 2048^3 matmul rate (images/s)",
               fmt(suite["matmul_ceiling_train_images_per_s"]))
    print(f"FLOPs per image, from the layer shapes: {flops[0] / 1e6:.2f} MFLOP forward, {flops[1] / 1e6:.2f} MFLOP "
          "training (3x forward); matmuls are float32, best of N.")
    print("These are model FLOPs (what a direct or im2col convolution multiplies). cycnn computes the same outputs "
          "with fewer:\nWinograd F(2x2, 3x3) for the second convolution (2.25x fewer multiplications) and backward "
          "passes from the pooling\nwinners only, so its model-FLOP rate can exceed the matmul rate.")
    print()
    print("standalone training (each framework alone in its RSS child, own environment, not alternated):")
    for b in TRAIN_BATCHES:
        rss = suite["rss"][b]
        parts = [f"{name} {rss[name]['images_per_s']:,.0f}" for name in ("cycnn", "torch") if name in rss]
        print(f"  batch {b}: " + ", ".join(parts) + f" images/s over {rss['cycnn']['timed_steps']} steps")
    print()
    print("per-round figures, in run order (cycnn, PyTorch, and their ratio per round):")
    per_round = [(f"training batch {b}", suite["training"][b], 0) for b in TRAIN_BATCHES]
    per_round += [(f"inference batch {INFER_BATCH}", suite["inference"], 0), ("latency (us)", lat, 1)]
    for label, figure, digits in per_round:
        line = f"  {label:<20} cycnn [{' '.join(fmt(v, digits) for v in figure['cycnn']['rounds'])}]"
        if "torch" in figure:
            line += (f"  PyTorch [{' '.join(fmt(v, digits) for v in figure['torch']['rounds'])}]"
                     f"  ratio [{' '.join(f'{v:.2f}' for v in figure['ratio']['rounds'])}]")
        print(line)
    check = suite["inference"].get("twin_check")
    if check:
        print(f"twin check (same weights, {check['images']} test images): max |p_cycnn - p_torch| = "
              f"{check['max_abs_prob_diff']:.1e}, same predicted class for {check['argmax_agreement']:.1%}")
    print()
    print_breakdown(suite)


def print_breakdown(suite):
    """cycnn's training step split into layers and the rest, per training batch size."""
    n = suite["threads"]
    parts = {b: suite["training"][b]["breakdown"] for b in TRAIN_BATCHES}
    print(f"== cycnn training step breakdown, {n} thread(s) (ms per step, mean over the measured steps) ==")
    head = f"{'part':<56}" + "".join(f"{'b' + str(b) + ' fwd':>9}{'bwd':>8}{'total':>8}{'%':>6}"
                                      for b in TRAIN_BATCHES)
    print(head)
    print("-" * len(head))
    first = parts[TRAIN_BATCHES[0]]
    for i in range(len(first["rows"])):
        line = f"{first['rows'][i]['part']:<56}"
        for b in TRAIN_BATCHES:
            r, total = parts[b]["rows"][i], parts[b]["step_ms"]
            if "total_ms" not in r:
                continue
            line += (f"{fmt(r.get('forward_ms'), 2) if 'forward_ms' in r else '':>9}"
                     f"{fmt(r.get('backward_ms'), 2) if 'backward_ms' in r else '':>8}"
                     f"{r['total_ms']:>8.2f}{r['total_ms'] / total:>6.1%}")
        print(line)
    print(f"{'step total (' + ', '.join(str(parts[b]['steps']) for b in TRAIN_BATCHES) + ' steps)':<56}"
          + "".join(f"{'':>9}{'':>8}{parts[b]['step_ms']:>8.2f}{1:>6.0%}" for b in TRAIN_BATCHES))
    print()


def evaluate_targets(suites, scaling):
    """Each target of the issue with the measured figure and met/missed, per thread count."""
    targets = []

    def ratio_target(name, figure, goal, higher, threads):
        r = figure.get("ratio")
        if r is None:
            targets.append({"target": name, "threads": threads, "goal": goal, "comparison": ">=" if higher else "<=",
                            "status": "n/a (no PyTorch)"})
            return
        met = r["median"] >= goal if higher else r["median"] <= goal
        targets.append({"target": name, "threads": threads, "goal": goal, "measured": r["median"],
                        "min": r["min"], "max": r["max"], "status": "met" if met else "MISSED",
                        "comparison": ">=" if higher else "<="})

    for suite in suites:
        n = suite["threads"]
        for b in TRAIN_BATCHES:
            ratio_target(f"training batch {b}, cycnn/PyTorch", suite["training"][b], TARGETS["train"], True, n)
        ratio_target(f"batch inference ({INFER_BATCH}), cycnn/PyTorch", suite["inference"], TARGETS["infer"], True, n)
        ratio_target("single-image latency, cycnn/PyTorch", suite["latency"], TARGETS["latency"], False, n)
        peak = max(suite["rss"][b]["cycnn"]["peak_run_mb"] for b in TRAIN_BATCHES)
        targets.append({"target": "peak RSS of cycnn training (MB)", "threads": n, "goal": TARGETS["rss_mb"],
                        "measured": peak, "comparison": "<=",
                        "status": "met" if peak <= TARGETS["rss_mb"] else "MISSED"})
    if scaling and (scaling["from"], scaling["to"]) == (1, 2):
        for b, s in scaling["batches"].items():
            sp = s["speedup"]
            targets.append({"target": f"1->2 thread training speedup, batch {b}", "threads": "1,2",
                            "goal": TARGETS["thread_speedup"], "measured": sp["median"], "min": sp["min"],
                            "max": sp["max"], "comparison": ">=",
                            "status": "met" if sp["median"] >= TARGETS["thread_speedup"] else "MISSED"})
    else:
        targets.append({"target": "1->2 thread training speedup", "threads": "1,2",
                        "goal": TARGETS["thread_speedup"], "status": "not measured (run with --threads 1,2)"})
    return targets


def print_scaling(scaling):
    print(f"== cycnn thread scaling {scaling['from']} -> {scaling['to']} threads (alternated per round) ==")
    for b, s in scaling["batches"].items():
        sp = s["speedup"]
        print(f"training batch {b}: {s['low']['median']:,.0f} -> {s['high']['median']:,.0f} images/s, speedup "
              f"{sp['median']:.2f}x (min-max {sp['min']:.2f}-{sp['max']:.2f}; rounds "
              + " ".join(f"{v:.2f}" for v in sp["rounds"]) + ")")
    print()


def print_targets(targets):
    print("== targets from the issue ==")
    for t in targets:
        goal = f"{t.get('comparison', '>=')} {t['goal']:g}" + ("" if "MB" in t["target"] else "x")
        measured = ""
        if "measured" in t:
            unit = " MB" if "MB" in t["target"] else "x"
            measured = f"{t['measured']:.2f}{unit}" if unit == "x" else f"{t['measured']:.0f}{unit}"
            if "min" in t:
                measured += f" (rounds {t['min']:.2f}-{t['max']:.2f})"
        print(f"{t['target'] + ' [' + str(t['threads']) + ' thr]':<52} {goal:>10}  {measured:<26} {t['status']}")


# --- main -----------------------------------------------------------------------------------------------------
def parse_threads(text):
    try:
        counts = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        counts = []
    if not counts or any(n < 1 for n in counts):
        raise argparse.ArgumentTypeError(f"--threads takes positive integers like 2 or 1,2, received {text!r}")
    return sorted(set(counts))


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}")
    return value


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Benchmark cycnn against PyTorch on the reference network.")
    parser.add_argument("--threads", type=parse_threads, default=[2],
                        help="thread count(s) for both frameworks: 2 (default), 1, or 1,2 (adds cycnn's 1->2 "
                             "thread training speedup)")
    parser.add_argument("--quick", action="store_true", help="a few steps only: a smoke run, not a measurement")
    parser.add_argument("--json", action="store_true", help="end stdout with one JSON line holding every figure")
    parser.add_argument("--rounds", type=positive_int, help="alternating rounds per comparison (default 5)")
    parser.add_argument("--steps", type=positive_int,
                        help="training steps per framework per round (default 60; in RSS children: total steps)")
    parser.add_argument("--rss-child", choices=("cycnn", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--rss-batch", type=positive_int, default=64, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.rss_child:
        rss_child(args.rss_child, args.rss_batch, args.threads[0], args.steps or 100)
        return
    settings = Settings(args.quick, args.rounds, args.steps)
    # cycnn first: its import sets GOMP_SPINCOUNT (unless the wait is given) before the OpenMP runtime loads, and
    # PyTorch, imported next, shares that runtime (one libgomp.so.1 per process), so one setting holds for both.
    from cycnn.nn import runtime
    from cycnn.data.idx import load_idx_dataset
    torch = import_torch()
    runtime.keep_large_allocations_in_heap()
    info = machine_info(torch)
    print_machine(info, settings, torch is None)
    progress("loading MNIST")
    data = load_idx_dataset()
    flops = reference_flops(new_reference_model())
    suites = [run_suite(data, torch, settings, n, flops) for n in args.threads]
    scaling = measure_thread_scaling(data, args.threads, settings) if len(args.threads) > 1 else None
    targets = evaluate_targets(suites, scaling)
    info["load_average_at_end"] = machine_info(torch)["load_average"]
    for suite in suites:
        print_suite(suite, flops)
    if scaling:
        print_scaling(scaling)
    print_targets(targets)
    print(f"\nload average at start: {info['load_average']}, at end: {info['load_average_at_end']} "
          f"(on {info['cores']} cores; a load above the core count means the figures are noisy)")
    if args.quick:
        print("(--quick: a smoke run; these figures are not measurements)")
    if args.json:
        report = {"machine": info, "settings": settings.to_dict(), "quick": args.quick,
                  "torch_available": torch is not None, "flops_per_image": {"forward": flops[0], "training": flops[1]},
                  "suites": {str(s["threads"]): s for s in suites}, "thread_scaling": scaling, "targets": targets}
        print(json.dumps(report, default=str))


if __name__ == "__main__":
    main()
