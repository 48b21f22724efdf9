#!/usr/bin/env python
"""cycnn against PyTorch on a matrix of networks a user builds, and against ONNX Runtime at answering.

    python scripts/bench_matrix.py                      # 2 threads, batches 64 and 128, every network
    python scripts/bench_matrix.py --threads 1,2        # both thread counts
    python scripts/bench_matrix.py --only lenet5,strided --quick

Training: each network of NETWORKS is built in cycnn and as its PyTorch twin with the same weights, and both train
on the same random batches (float32, Adam, lr 1e-3) in alternating rounds in this one process (A B, then B A, ...);
the figure is the median of the per-round ratios cycnn/PyTorch (images/s). Both run with glibc's allocator tuned
(GLIBC_TUNABLES below: no mmap per large array, no trimming; the script re-executes itself with it when it is not
set), which is PyTorch's best case.

Inference: each network is exported with cycnn's own ONNX exporter and run by ONNX Runtime (when installed) with
intra-op threads = cycnn's threads; single-image latency is the median of every call (>= 1000 per framework, in
alternating rounds), batch-1000 throughput the median of the per-round ratios. Each round starts after a pause of
SETTLE_SECONDS, so that neither framework's spinning threads are billed to the other. cycnn answers through
``Sequential.predict_proba`` (its inference plan). The data are random pixels in [0, 1): speed does not depend on
them.
"""
import argparse
import json
import os
import statistics
import sys
import time

TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295"
if os.environ.get("GLIBC_TUNABLES") != TUNABLES and __name__ == "__main__":
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "GLIBC_TUNABLES": TUNABLES})

import numpy as np  # noqa: E402


def conv(c, f, k, stride=1, padding=0, relu=True):
    return {"type": "Conv2D", "in_channels": c, "out_channels": f, "kernel_size": k, "stride": stride,
            "padding": padding, "activation": "relu" if relu else None}


def pool(size=2, stride=None):
    return {"type": "MaxPool2D", "pool_size": size, "stride": stride or size}


def dense(i, o, relu=True):
    return {"type": "Dense", "in_features": i, "out_features": o, "activation": "relu" if relu else None}


FLAT, DROP = {"type": "Flatten"}, {"type": "Dropout", "p": 0.2}

# name -> (input shape, layers): together kernel sizes 1, 3, 5, 7 and a non-square one; padding 0, 1, 2; stride 1
# and 2; no pooling, 2x2 and overlapping 3x3/2 pooling; 1 to 4 conv layers; 1 and 3 input channels; 28x28, 32x32
# and 64x64 inputs; 4 to 256 channels; 0 to 3 hidden dense layers; dropout after conv layers.
NETWORKS = {
    "reference": ((1, 28, 28), [conv(1, 32, 3), pool(), conv(32, 64, 3), pool(), FLAT, dense(1600, 128), DROP,
                                dense(128, 10, False)]),
    "lenet5": ((1, 28, 28), [conv(1, 6, 5, padding=2), pool(), conv(6, 16, 5), pool(), FLAT, dense(400, 120),
                             dense(120, 84), dense(84, 10, False)]),
    "conv-no-pool": ((1, 28, 28), [conv(1, 16, 3), conv(16, 32, 3), FLAT, dense(32 * 24 * 24, 10, False)]),
    "strided": ((1, 28, 28), [conv(1, 32, 3, 2, 1), conv(32, 64, 3, 2, 1), FLAT, dense(64 * 7 * 7, 128),
                              dense(128, 10, False)]),
    "one-conv-5x5-s2": ((1, 28, 28), [conv(1, 32, 5, 2), FLAT, dense(32 * 12 * 12, 10, False)]),
    "3-blocks-padded": ((1, 28, 28), [conv(1, 32, 3, padding=1), pool(), conv(32, 64, 3, padding=1), pool(),
                                      conv(64, 128, 3, padding=1), pool(), FLAT, dense(128 * 9, 10, False)]),
    "wide-64-128": ((1, 28, 28), [conv(1, 64, 3), pool(), conv(64, 128, 3), pool(), FLAT, dense(3200, 256),
                                  dense(256, 10, False)]),
    "colour-32": ((3, 32, 32), [conv(3, 32, 3, padding=1), pool(), conv(32, 64, 3, padding=1), pool(), FLAT,
                                dense(4096, 128), dense(128, 10, False)]),
    "5x5-padded": ((1, 28, 28), [conv(1, 32, 5, padding=2), pool(), conv(32, 64, 5, padding=2), pool(), FLAT,
                                 dense(3136, 10, False)]),
    "7x7-overlap-pool": ((1, 28, 28), [conv(1, 16, 7, padding=3), pool(3, 2), conv(16, 32, 3), pool(), FLAT,
                                       dense(32 * 5 * 5, 10, False)]),
    "1x1-bottleneck": ((3, 32, 32), [conv(3, 32, 3, padding=1), conv(32, 16, 1), pool(), conv(16, 64, 3), pool(),
                                     FLAT, dense(64 * 7 * 7, 10, False)]),
    "non-square": ((1, 28, 28), [conv(1, 16, [3, 5]), pool(), conv(16, 32, [5, 3]), pool(), FLAT,
                                 dense(32 * 4 * 5, 64), dense(64, 10, False)]),
    "tiny-4-8": ((1, 28, 28), [conv(1, 4, 3), pool(), conv(4, 8, 3), pool(), FLAT, dense(200, 10, False)]),
    "colour-64-4conv": ((3, 64, 64), [conv(3, 16, 3, padding=1), pool(), conv(16, 32, 3, padding=1), pool(),
                                      conv(32, 64, 3, padding=1), pool(), conv(64, 128, 3, padding=1), pool(), FLAT,
                                      dense(2048, 128), dense(128, 10, False)]),
    "conv-dropout": ((1, 28, 28), [conv(1, 32, 3), pool(), DROP, conv(32, 64, 3), pool(), DROP, FLAT,
                                   dense(1600, 128), dense(128, 10, False)]),
    "256-channels": ((1, 28, 28), [conv(1, 64, 3), pool(), conv(64, 256, 3), pool(), FLAT,
                                   dense(256 * 25, 10, False)]),
    "3-hidden-dense": ((1, 28, 28), [conv(1, 16, 3), pool(), FLAT, dense(16 * 13 * 13, 256), dense(256, 128),
                                     dense(128, 64), dense(64, 10, False)]),
}


def progress(message):
    print(f"[bench_matrix] {message}", file=sys.stderr, flush=True)


def build(name):
    from cycnn.io import architecture
    shape, layers = NETWORKS[name]
    return architecture.build({"input_shape": list(shape), "layers": layers}, seed=0)


def torch_twin(torch, model):
    """The same layers in PyTorch, with cycnn's weights (Dense W is (in, out) in cycnn, (out, in) in PyTorch)."""
    nn, modules = torch.nn, []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            m = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding)
        elif kind == "Dense":
            m = nn.Linear(layer.in_features, layer.out_features)
        elif kind == "MaxPool2D":
            modules.append(nn.MaxPool2d(layer.pool_size, layer.stride))
            continue
        else:
            modules.append({"Flatten": nn.Flatten, "ReLU": nn.ReLU}[kind]() if kind != "Dropout"
                           else nn.Dropout(layer.p))
            continue
        with torch.no_grad():
            w = layer.params["W"]
            m.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T if kind == "Dense" else w)))
            m.bias.copy_(torch.from_numpy(layer.params["b"]))
        modules.append(m)
        if layer.activation == "relu":
            modules.append(nn.ReLU())
    return nn.Sequential(*modules)


class CycnnLoop:
    """A bare training loop: forward, softmax cross-entropy, backward, Adam."""

    def __init__(self, name):
        from cycnn.nn import Adam, SoftmaxCrossEntropy
        self.model = build(name).train()
        self.loss, self.optimizer = SoftmaxCrossEntropy(), Adam(lr=1e-3)

    def run(self, batches):
        start = time.perf_counter()
        for xb, yb in batches:
            self.loss(self.model(xb), yb)
            self.model.backward(self.loss.backward())
            self.optimizer.step(self.model.parameters())
        return time.perf_counter() - start


class TorchLoop:
    def __init__(self, torch, name):
        self.torch = torch
        self.net = torch_twin(torch, build(name)).train()
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        self.loss = torch.nn.CrossEntropyLoss()

    def run(self, batches):
        torch = self.torch
        start = time.perf_counter()
        for xb, yb in batches:
            self.optimizer.zero_grad()
            self.loss(self.net(torch.from_numpy(xb)), torch.from_numpy(yb)).backward()
            self.optimizer.step()
        return time.perf_counter() - start


def random_batches(shape, batch, count, seed):
    rng = np.random.default_rng(seed)
    return [(rng.random((batch, *shape), dtype=np.float32), rng.integers(0, 10, batch)) for _ in range(count)]


# Before each round, a pause: the previous framework's idle threads still spin for tens of milliseconds (ONNX
# Runtime's pool measured up to 50 ms) and would take a core from the next round's framework.
SETTLE_SECONDS = 0.2


def alternate(rounds, runners):
    """{name: [seconds of each round]}, running the runners in order on even rounds and reversed on odd ones."""
    results = {name: [] for name in runners}
    names = list(runners)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            time.sleep(SETTLE_SECONDS)
            results[name].append(runners[name](r))
    return results


def ratio_figure(ours, theirs, higher_is_better=True):
    ratios = [a / b for a, b in zip(ours, theirs)]
    return {"cycnn": statistics.median(ours), "other": statistics.median(theirs), "ratio": statistics.median(ratios),
            "min": min(ratios), "max": max(ratios), "higher_is_better": higher_is_better}


def measure_training(torch, name, batch, settings):
    shape = NETWORKS[name][0]
    warm = random_batches(shape, batch, 3, 1)
    per_round = [random_batches(shape, batch, settings.steps, 10 + r) for r in range(settings.rounds)]
    runs = {"cycnn": CycnnLoop(name), "torch": TorchLoop(torch, name)}
    for run in runs.values():
        run.run(warm)
    seconds = alternate(settings.rounds, {k: (lambda r, run=run: run.run(per_round[r])) for k, run in runs.items()})
    rates = {k: [settings.steps * batch / s for s in v] for k, v in seconds.items()}
    return ratio_figure(rates["cycnn"], rates["torch"])


def onnx_session(ort, model, threads):
    from cycnn.io.onnx_export import to_onnx
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return ort.InferenceSession(to_onnx(model).SerializeToString(), options, providers=["CPUExecutionProvider"])


def measure_inference(ort, name, threads, settings):
    """Single-image latency (us, median of all calls) and batch-1000 throughput (images/s), cycnn against ONNX
    Runtime on cycnn's export, alternated."""
    model = build(name).eval()
    session = onnx_session(ort, model, threads)
    rng = np.random.default_rng(7)
    image = rng.random((1, *model.input_shape), dtype=np.float32)
    batch = rng.random((1000, *model.input_shape), dtype=np.float32)
    answer = {"cycnn": model.predict_proba, "ort": lambda x: session.run(None, {"image": x})[0]}
    diff = float(np.max(np.abs(answer["cycnn"](batch[:50]) - answer["ort"](batch[:50]))))

    def calls(fn):
        times = []
        for _ in range(settings.latency_calls):
            start = time.perf_counter()
            fn(image)
            times.append(time.perf_counter() - start)
        return times

    def throughput(fn):
        start = time.perf_counter()
        for _ in range(settings.infer_batches):
            fn(batch)
        return settings.infer_batches * len(batch) / (time.perf_counter() - start)

    for fn in answer.values():
        calls(fn)
        throughput(fn)
    lat = alternate(settings.rounds, {k: (lambda r, fn=fn: calls(fn)) for k, fn in answer.items()})
    latency = ratio_figure([statistics.median(t) * 1e6 for t in lat["cycnn"]],
                           [statistics.median(t) * 1e6 for t in lat["ort"]], higher_is_better=False)
    latency["cycnn_all_calls"] = statistics.median([t for r in lat["cycnn"] for t in r]) * 1e6
    latency["ort_all_calls"] = statistics.median([t for r in lat["ort"] for t in r]) * 1e6
    latency["calls"] = sum(len(r) for r in lat["cycnn"])
    rates = alternate(settings.rounds, {k: (lambda r, fn=fn: throughput(fn)) for k, fn in answer.items()})
    return {"latency": latency, "batch1000": ratio_figure(rates["cycnn"], rates["ort"]), "max_prob_diff": diff}


class Settings:
    def __init__(self, quick):
        self.rounds = 2 if quick else 5
        self.steps = 3 if quick else 12
        self.latency_calls = 50 if quick else 200   # per round: >= 1000 calls per framework in all
        self.infer_batches = 1 if quick else 2


def median_line(label, figures):
    ratios = [f["ratio"] for f in figures.values()]
    if ratios:
        worst = min(figures, key=lambda k: figures[k]["ratio"] if figures[k]["higher_is_better"]
                    else -figures[k]["ratio"])
        print(f"{label}: median {statistics.median(ratios):.2f}x, worst {worst} {figures[worst]['ratio']:.2f}x, "
              f"range {min(ratios):.2f}-{max(ratios):.2f}")


def print_training(results, threads, batch):
    print(f"\n== training, batch {batch}, {threads} thread(s): images/s, ratio = median of per-round ratios ==")
    print(f"{'network':<20}{'cycnn':>10}{'PyTorch':>10}{'cycnn/PyTorch':>15}{'min-max':>12}")
    for name, f in results.items():
        print(f"{name:<20}{f['cycnn']:>10,.0f}{f['other']:>10,.0f}{f['ratio']:>14.2f}x"
              f"{f['min']:>7.2f}-{f['max']:.2f}")
    median_line(f"training batch {batch}, {threads} thread(s)", results)


def print_inference(results, threads):
    print(f"\n== inference against ONNX Runtime (cycnn's export), {threads} thread(s) ==")
    print(f"{'network':<20}{'cycnn us':>10}{'ORT us':>9}{'ratio':>8}   {'cycnn img/s':>12}{'ORT img/s':>11}"
          f"{'ratio':>8}{'max |dp|':>10}")
    for name, r in results.items():
        lat, thr = r["latency"], r["batch1000"]
        print(f"{name:<20}{lat['cycnn_all_calls']:>10.1f}{lat['ort_all_calls']:>9.1f}{lat['ratio']:>7.2f}x   "
              f"{thr['cycnn']:>12,.0f}{thr['other']:>11,.0f}{thr['ratio']:>7.2f}x{r['max_prob_diff']:>10.1e}")
    median_line(f"single-image latency cycnn/ORT (lower is better), {threads} thread(s)",
                {k: r["latency"] for k, r in results.items()})
    median_line(f"batch-1000 throughput cycnn/ORT, {threads} thread(s)",
                {k: r["batch1000"] for k, r in results.items()})


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", default="2", help="thread counts, e.g. 1,2")
    parser.add_argument("--batches", default="64,128", help="training batch sizes")
    parser.add_argument("--only", help="comma-separated network names (default: all)")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--skip-inference", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a smoke run: figures mean nothing")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of every figure")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from cycnn.nn import runtime
    import torch
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    names = args.only.split(",") if args.only else list(NETWORKS)
    settings, report = Settings(args.quick), {"training": {}, "inference": {}}
    print(f"cycnn vs PyTorch {torch.__version__} and ONNX Runtime {ort.__version__ if ort else '(not installed)'}; "
          f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES')}; load average {os.getloadavg()}")
    for threads in [int(t) for t in args.threads.split(",")]:
        runtime.set_threads(threads)
        torch.set_num_threads(threads)
        for batch in ([] if args.skip_training else [int(b) for b in args.batches.split(",")]):
            results = {}
            for name in names:
                progress(f"training {name}, batch {batch}, {threads} thread(s)")
                results[name] = measure_training(torch, name, batch, settings)
            report["training"][f"{threads}x{batch}"] = results
            print_training(results, threads, batch)
        if ort is not None and not args.skip_inference:
            results = {}
            for name in names:
                progress(f"inference {name}, {threads} thread(s)")
                results[name] = measure_inference(ort, name, threads, settings)
            report["inference"][str(threads)] = results
            print_inference(results, threads)
    print(f"\nload average at the end: {os.getloadavg()}")
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
