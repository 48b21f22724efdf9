#!/usr/bin/env python
"""How fast ``cycnn explore`` answers: the analyses in the server, and the HTTP round trip a script or the page sees.

    python scripts/bench_explore.py                  # a model trained here for one epoch; 2 threads
    python scripts/bench_explore.py --model m.npz    # your model
    python scripts/bench_explore.py --calls 2000 --json

In one process: the explorer's server on 127.0.0.1 (a free port) in its own threads, and a client that posts the
same 280x280 PNG drawing a page would send. Reported as medians (and 90th percentiles) in milliseconds:
- in the server: every layer's output for one image (``analysis.respond``), that plus the backward pass for the
  saliency map and Grad-CAM (``explain``), and occlusion (145 masked copies through the fused path);
- round trips of ``POST /api/predict``: the PNG alone (what the page sends while a stroke goes on), with
  ``explain=1`` and with ``explain=1&occlusion=1`` (what it sends when the stroke ends), and JSON pixels;
- eight clients posting at once: the round trip each sees, and the requests per second served.
"""
import argparse
import http.client
import io
import json
import statistics
import sys
import threading
import time

import numpy as np
from PIL import Image, ImageDraw

from cycnn.data.datasets import load_data, to_input
from cycnn.io.architecture import build, reference
from cycnn.io.model_file import load_model
from cycnn.nn.runtime import set_threads
from cycnn.train.fit import fit
from cycnn.viz.explore import analysis
from cycnn.viz.explore.api import Explorer
from cycnn.viz.explore.shared import SharedModel
from cycnn.viz.explore.testset import TestSet
from cycnn.viz.server import JsonServer


def drawing():
    """A "7" as the page sends it: a 280x280 PNG, black ink on white."""
    image = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(image).line([(70, 60), (210, 60), (120, 230)], fill=0, width=20, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def timed(function, calls):
    """Milliseconds of each of ``calls`` calls, after a few to warm up."""
    for _ in range(5):
        function()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    return times


def summary(times):
    ordered = sorted(times)
    return {"median_ms": round(statistics.median(ordered), 3),
            "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 3), "calls": len(ordered)}


class Client:
    """One keep-alive connection to the server."""

    def __init__(self, port):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post(self, path, body, content_type):
        self.connection.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = self.connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status} {data[:200]!r}")
        return data


def concurrent(port, png, clients, calls):
    """``clients`` threads posting ``calls`` requests each, all at once: every round trip, and requests/s."""
    times, barrier = [], threading.Barrier(clients + 1)

    def work():
        client = Client(port)
        barrier.wait()
        times.extend(timed(lambda: client.post("/api/predict", png, "image/png"), calls))

    threads = [threading.Thread(target=work) for _ in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return {**summary(times), "requests_per_s": round(len(times) / (time.perf_counter() - start), 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a model file (default: the reference network trained here for 1 epoch)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=1000, help="calls per measurement")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of every figure")
    args = parser.parse_args()
    set_threads(args.threads)
    data = load_data()
    if args.model:
        model = load_model(args.model)
    else:
        print("training the reference network for one epoch...", file=sys.stderr)
        model = build(reference(), seed=0)
        fit(model, data.x_train, data.y_train, epochs=1)
    shared = SharedModel(model)
    server = JsonServer(Explorer(shared, TestSet(shared, data.x_test, data.y_test, "MNIST")).routes(), 0)
    png, x = drawing(), to_input(data.x_test[:1])[0]
    pixels = json.dumps({"pixels": x[0].round(4).tolist()}).encode()
    client = Client(server.port)
    figures = {
        "server: every layer's output": summary(timed(lambda: analysis.respond(model, x), args.calls)),
        "server: + saliency and Grad-CAM": summary(timed(lambda: analysis.respond(model, x, explain=True),
                                                         args.calls)),
        "server: occlusion": summary(timed(lambda: analysis.occlusion(shared, x, 7), max(100, args.calls // 10))),
        "round trip: PNG": summary(timed(lambda: client.post("/api/predict", png, "image/png"), args.calls)),
        "round trip: PNG, explain=1": summary(timed(
            lambda: client.post("/api/predict?explain=1", png, "image/png"), args.calls)),
        "round trip: PNG, explain=1&occlusion=1": summary(timed(
            lambda: client.post("/api/predict?explain=1&occlusion=1", png, "image/png"), max(100, args.calls // 5))),
        "round trip: JSON pixels": summary(timed(
            lambda: client.post("/api/predict", pixels, "application/json"), args.calls)),
        "8 clients at once: PNG": concurrent(server.port, png, 8, max(25, args.calls // 8)),
    }
    server.stop()
    width = max(map(len, figures))
    print(f"{'':{width}}  median ms   p90 ms   calls" + " " * 4 + f"({args.threads} threads, {model.parameter_count:,} "
          "parameters)")
    for name, f in figures.items():
        extra = f"   {f['requests_per_s']:.0f} requests/s" if "requests_per_s" in f else ""
        print(f"{name:{width}}  {f['median_ms']:9.2f}  {f['p90_ms']:7.2f}  {f['calls']:6d}{extra}")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
