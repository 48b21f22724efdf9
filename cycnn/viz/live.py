"""The live view of a training run: a page on 127.0.0.1 that redraws itself while the model trains.

``LiveView`` is a training callback. Every few seconds (and at the start, at each epoch's end and at the end) it
takes a snapshot in the training thread: the loss and accuracy curves, the first conv layer's kernels, the feature
maps and dense activations of a fixed probe image and the predictions on a fixed probe batch. It encodes the
snapshot to JSON once; ``LiveServer`` (the standard library's HTTP server, in a background thread) only hands out
the latest encoded snapshot at ``/data.json`` and the page at ``/``. Training pays for one small forward pass per
snapshot and nothing per request.

The page is self-contained (inline style and script, drawn on canvases, nothing loaded from elsewhere): it polls
``/data.json`` every second and keeps showing the last state once the run has ended and the server is gone.
"""
import base64
import json
import threading
import time
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from cycnn.data.datasets import to_input
from cycnn.errors import CycnnError
from cycnn.nn.layers import Conv2D, Dense, MaxPool2D
from cycnn.nn.losses import softmax
from cycnn.train.callbacks import Callback

DEFAULT_PORT = 8765
DEFAULT_INTERVAL = 2.0  # seconds between snapshots
MAX_CURVE_POINTS = 1000  # beyond this, neighbouring points are merged (the curve keeps its whole length)
MAX_MAPS = 64  # channels of a layer shown on the page


class LiveServer:
    """Serves the page and the latest snapshot on ``host:port`` (port 0: any free port) from a daemon thread."""

    def __init__(self, port=DEFAULT_PORT, host="127.0.0.1"):
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise CycnnError(f"--port must be a port number from 0 to 65535, received {port!r}")
        try:
            self.httpd = ThreadingHTTPServer((host, port), partial(_Handler, self))
        except OSError as exc:
            raise CycnnError(f"cannot serve the live view on {host}:{port} ({exc.strerror}); "
                             "choose another --port (0 picks a free one)") from None
        self.httpd.daemon_threads = True
        self.host, self.port = host, self.httpd.server_address[1]
        self.snapshot, self.version, self.served_version = b'{"status": "starting", "step": 0, "version": 0}', 0, -1
        self.served = threading.Condition()
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.1,), name="cycnn-live", daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://{self.host}:{self.port}/"

    def publish(self, snapshot):
        """Make ``snapshot`` (a dict) what ``/data.json`` returns."""
        with self.served:
            self.version += 1
            self.snapshot = json.dumps({**snapshot, "version": self.version}).encode("utf-8")

    def wait_until_seen(self, timeout):
        """Give a page that has been polling up to ``timeout`` seconds to fetch the latest snapshot."""
        with self.served:
            if self.served_version >= 0:
                self.served.wait_for(lambda: self.served_version == self.version, timeout)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    def __init__(self, server_state, *args, **kwargs):
        self.live = server_state
        super().__init__(*args, **kwargs)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/data.json":
            with self.live.served:
                body, version = self.live.snapshot, self.live.version
            self._send(body, "application/json")
            with self.live.served:
                self.live.served_version = version
                self.live.served.notify_all()
        elif path in ("/", "/index.html"):
            self._send(PAGE.encode("utf-8"), "text/html; charset=utf-8")
        else:
            self.send_error(404, "not found: the live view serves / and /data.json")

    def _send(self, body, content_type):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass  # no line per request on the training console


def _b64(array):
    return base64.b64encode(np.ascontiguousarray(array, dtype=np.uint8).tobytes()).decode("ascii")


def _quantize(maps):
    """Float maps -> (uint8 levels, signed): 0..max onto 0..255, or -m..m onto 0..255 if any value is negative."""
    maps = np.asarray(maps, dtype=np.float64)
    if maps.min() < 0:
        limit = max(float(np.abs(maps).max()), 1e-12)
        return np.round((maps / limit + 1) * 127.5).astype(np.uint8), True
    return np.round(maps / max(float(maps.max()), 1e-12) * 255).astype(np.uint8), False


class LiveView(Callback):
    """Publishes snapshots of the run to ``server`` every ``interval`` seconds of training.

    ``probe_images`` (uint8 (N, H, W) or model inputs) and ``probe_labels`` are a fixed batch whose predictions
    the page shows; the first image is the probe whose feature maps and activations it shows.
    """

    def __init__(self, server, probe_images, probe_labels, interval=DEFAULT_INTERVAL, curve_every=5, title=""):
        if not interval > 0:
            raise CycnnError(f"the live view's interval must be a positive number of seconds, received {interval!r}")
        self.server, self.interval, self.curve_every, self.title = server, float(interval), curve_every, title
        probe_images = np.asarray(probe_images)
        self.probe = to_input(probe_images) if probe_images.dtype == np.uint8 else probe_images
        self.probe_labels = [int(v) for v in probe_labels]
        shown = np.clip(self.probe, 0, 1).mean(axis=1) if self.probe.shape[1] != 1 else self.probe[:, 0]
        self.probe_pixels = _b64(np.round(shown * 255))
        self.curve, self.epochs = [], []
        self.status = "starting"
        self.extra = {}

    # --- callback hooks -------------------------------------------------------------------------------------
    def on_train_begin(self, trainer):
        self.started = time.perf_counter()
        self.steps_total = None
        self._reset_point()
        self._images = 0
        self._seconds = 0.0
        self.status = "training"
        self.publish(trainer)

    def on_step_end(self, trainer, info):
        self.steps_total = info["steps"] * trainer.settings.epochs
        self._point_steps += 1
        self._point_loss += info["loss"] * info["batch_size"]
        self._point_correct += info["accuracy"] * info["batch_size"]
        self._point_images += info["batch_size"]
        self._images += info["batch_size"]
        self._seconds += info["seconds"]
        if self._point_steps >= self.curve_every:
            self._add_point(trainer.state.global_step)
        if time.perf_counter() - self._published >= self.interval:
            self.publish(trainer)

    def on_epoch_end(self, trainer, record):
        if self._point_steps:
            self._add_point(trainer.state.global_step)
        self.epochs.append({"step": trainer.state.global_step, **record})
        self.publish(trainer)

    def on_train_end(self, trainer):
        if self._point_steps:
            self._add_point(trainer.state.global_step)
        self.status = "finished" if trainer.state.epoch >= trainer.settings.epochs else "stopped"
        self.publish(trainer)

    def finish(self, trainer, status=None, **extra):
        """Publish the final state, with figures the caller adds (the test accuracy) or another status."""
        self.extra.update(extra)
        if status:
            self.status = status
        self.publish(trainer)

    # --- snapshots ------------------------------------------------------------------------------------------
    def publish(self, trainer):
        self.server.publish(self.snapshot(trainer))
        self._published = time.perf_counter()

    def snapshot(self, trainer):
        model, state = trainer.model, trainer.state
        outputs, probs = self._probe(model)
        maps = []
        for i, layer in enumerate(model.layers):
            if isinstance(layer, (Conv2D, MaxPool2D)):
                levels, signed = _quantize(outputs[i][0][:MAX_MAPS])
                maps.append({"layer": model.layer_names()[i], "channels": int(outputs[i].shape[1]),
                             "shown": int(levels.shape[0]), "h": int(levels.shape[1]), "w": int(levels.shape[2]),
                             "signed": signed, "data": _b64(levels)})
        last = len(model.layers) - 1
        dense = [{"layer": model.layer_names()[i], "probabilities": False,
                  "values": [round(float(v), 4) for v in outputs[i][0]]}
                 for i, layer in enumerate(model.layers) if isinstance(layer, Dense) and i != last]
        dense.append({"layer": model.layer_names()[last], "probabilities": True,
                      "values": [round(float(v), 4) for v in probs[0]]})
        kernels = None
        conv = next((layer for layer in model.layers if isinstance(layer, Conv2D)), None)
        if conv is not None:
            weights = np.asarray(conv.params["W"], dtype=np.float64).sum(axis=1)
            kernels = {"count": int(weights.shape[0]), "h": int(weights.shape[1]), "w": int(weights.shape[2]),
                       "in_channels": conv.in_channels, "values": [round(float(v), 4) for v in weights.ravel()]}
        elapsed = time.perf_counter() - self.started
        return {
            "title": self.title, "status": self.status, "step": state.global_step, "steps_total": self.steps_total,
            "epoch": min(state.epoch + 1, trainer.settings.epochs), "epochs": trainer.settings.epochs,
            "elapsed_s": round(elapsed, 2), "lr": trainer.optimizer.lr,
            "images_per_s": round(self._images / self._seconds, 1) if self._seconds else None,
            "parameters": model.parameter_count, "layers": model.layer_names(),
            "curve": self.curve, "epoch_records": self.epochs, "kernels": kernels, "maps": maps, "dense": dense,
            "class_names": model.class_names,
            "probe": {"h": int(self.probe.shape[2]), "w": int(self.probe.shape[3]), "count": len(self.probe),
                      "pixels": self.probe_pixels, "labels": self.probe_labels,
                      "predicted": [int(p.argmax()) for p in probs],
                      "confidence": [round(float(p.max()), 4) for p in probs]},
            **self.extra}

    def _probe(self, model):
        """Every layer's output for the probe batch in eval mode (layer by layer, so no hook of the training's
        observers sees it), leaving the model in the mode training left it."""
        outputs = model.layer_outputs(self.probe.astype(model.dtype, copy=False))
        return outputs, softmax(np.asarray(outputs[-1], dtype=np.float64))

    def _add_point(self, step):
        self.curve.append([step, round(self._point_loss / self._point_images, 5),
                           round(self._point_correct / self._point_images, 5)])
        self._reset_point()
        if len(self.curve) > MAX_CURVE_POINTS:  # merge neighbours: half the points, the same span
            merged = []
            for a, b in zip(self.curve[0::2], self.curve[1::2]):
                merged.append([b[0], round((a[1] + b[1]) / 2, 5), round((a[2] + b[2]) / 2, 5)])
            if len(self.curve) % 2:
                merged.append(self.curve[-1])
            self.curve = merged
            self.curve_every *= 2

    def _reset_point(self):
        self._point_steps = self._point_images = 0
        self._point_loss = self._point_correct = 0.0


PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cycnn live</title>
<style>
  body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; padding: 12px 20px 32px;
         color: #1f2328; background: #f6f8fa; }
  header { display: flex; align-items: baseline; gap: 16px; flex-wrap: wrap; }
  h1 { font-size: 20px; margin: 4px 0 8px; }
  h2 { font-size: 14px; margin: 0 0 6px; color: #31373d; }
  #status { font-size: 14px; color: #59636e; }
  .badge { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-size: 12px;
           background: #0969da; margin-right: 8px; }
  .badge.finished { background: #1a7f37; } .badge.stopped { background: #9a6700; }
  .badge.failed { background: #cf222e; }
  #bar { height: 4px; background: #d0d7de; border-radius: 2px; margin: 2px 0 12px; }
  #bar div { height: 4px; background: #0969da; border-radius: 2px; width: 0; }
  .grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 12px; }
  .panel { background: #fff; border: 1px solid #d0d7de; border-radius: 6px; padding: 10px 12px; }
  .wide { grid-column: 1 / -1; }
  canvas { display: block; width: 100%; }
  .note { font-size: 12px; color: #59636e; margin: 4px 0 0; }
  .maps { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
  .maps figure { margin: 0; }
  .maps figcaption { font-size: 12px; color: #59636e; }
</style>
</head>
<body>
<header><h1>cycnn live: <span id="title">a CNN learning</span></h1><div id="status">connecting...</div>
  <div id="conn" class="note"></div></header>
<div id="bar"><div></div></div>
<div class="grid">
  <div class="panel"><h2>Loss (cross-entropy, log scale)</h2><canvas id="loss" height="260"></canvas>
    <p class="note">blue: training, mean over the steps since the last point; red: validation at each epoch's end
    </p></div>
  <div class="panel"><h2>Accuracy</h2><canvas id="accuracy" height="260"></canvas>
    <p class="note">blue: training batches; red: validation</p></div>
  <div class="panel"><h2 id="kernels-title">First-layer kernels</h2><canvas id="kernels" height="180"></canvas>
    <p class="note">red: the output rises with the pixel's brightness, blue: it falls</p></div>
  <div class="panel"><h2>Predictions on a fixed batch of test images</h2><canvas id="batch" height="180"></canvas>
    <p class="note">the predicted class and its probability; red frame: wrong (with the true class)</p></div>
  <div class="panel wide"><h2>Feature maps of the probe image</h2><div class="maps" id="maps"></div>
    <p class="note">each layer's channels on one colour scale: bright where the channel's pattern was found</p></div>
  <div class="panel wide"><h2>Dense layers for the probe image</h2><div id="dense"></div></div>
</div>
<script>
"use strict";
const MAGMA = [[0,0,4],[28,16,68],[79,18,123],[129,37,129],[181,54,122],[229,80,100],[251,135,97],[254,194,135],
               [252,253,191]];
const RDBU = [[5,48,97],[33,102,172],[67,147,195],[146,197,222],[209,229,240],[247,247,247],[253,219,199],
              [244,165,130],[214,96,77],[178,24,43],[103,0,31]];
const BLUE = "#0969da", RED = "#cf222e", GREEN = "#1a7f37", GREY = "#8c959f";
let lastVersion = -1, last = null;

function colour(map, t) {  // t in [0, 1]
  t = Math.min(1, Math.max(0, t)) * (map.length - 1);
  const i = Math.min(map.length - 2, Math.floor(t)), f = t - i;
  return map[i].map((v, k) => Math.round(v + f * (map[i + 1][k] - v)));
}
function bytes(b64) { const s = atob(b64), out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i); return out; }
function fit(canvas) {  // size the drawing buffer to the displayed size
  const ratio = window.devicePixelRatio || 1, w = canvas.clientWidth, h = canvas.clientHeight;
  canvas.width = Math.round(w * ratio); canvas.height = Math.round(h * ratio);
  const ctx = canvas.getContext("2d"); ctx.setTransform(ratio, 0, 0, ratio, 0, 0); ctx.clearRect(0, 0, w, h);
  return [ctx, w, h];
}
function tile(ctx, values, w, h, x, y, scale, lut) {  // draw w x h values (0..255 levels) as pixels
  const img = new ImageData(w, h);
  for (let i = 0; i < w * h; i++) { const c = lut[values[i]];
    img.data[4 * i] = c[0]; img.data[4 * i + 1] = c[1]; img.data[4 * i + 2] = c[2]; img.data[4 * i + 3] = 255; }
  const off = document.createElement("canvas"); off.width = w; off.height = h;
  off.getContext("2d").putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = false; ctx.drawImage(off, x, y, w * scale, h * scale);
}
const LUTS = { magma: [...Array(256).keys()].map(v => colour(MAGMA, v / 255)),
               rdbu: [...Array(256).keys()].map(v => colour(RDBU, v / 255)),
               ink: [...Array(256).keys()].map(v => [255 - v, 255 - v, 255 - v]) };

function ticks(lo, hi, n) {
  const span = hi - lo || 1, raw = span / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map(m => m * mag).find(s => span / s <= n) || 10 * mag;
  const out = []; for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(+v.toFixed(10));
  return out;
}
function logTicks(lo, hi) {  // 1, 2 and 5 times the powers of ten between 10^lo and 10^hi
  const out = [];
  for (let k = Math.floor(lo); k <= Math.ceil(hi); k++)
    for (const m of [1, 2, 5]) { const v = +(m * Math.pow(10, k)).toPrecision(1);
      if (Math.log10(v) >= lo - 1e-9 && Math.log10(v) <= hi + 1e-9) out.push(v); }
  return out;
}
function chart(canvas, series, opts) {
  const [ctx, W, H] = fit(canvas), L = 52, R = 12, T = 8, B = 28;
  const pts = series.flatMap(s => s.points);
  if (!pts.length) { ctx.font = "13px system-ui, sans-serif"; ctx.fillStyle = GREY;
    ctx.fillText("waiting for the first steps...", L, H / 2); return; }
  // on a log scale (opts.log) the axis runs over log10 of the values
  const f = opts.log ? v => Math.log10(Math.max(v, 1e-4)) : v => v;
  let xmax = Math.max(opts.xmax || 0, ...pts.map(p => p[0])), ymin = opts.ymin, ymax = opts.ymax;
  if (ymin === undefined) ymin = Math.min(...pts.map(p => f(p[1])));
  if (ymax === undefined) ymax = Math.max(...pts.map(p => f(p[1])));
  if (ymax <= ymin) ymax = ymin + (opts.log ? 0.5 : 1);
  const room = 0.05 * (ymax - ymin);  // space above the highest point and below the lowest
  if (opts.ymax === undefined) ymax += room;
  if (opts.ymin === undefined) ymin -= room;
  const X = x => L + (W - L - R) * x / Math.max(xmax, 1);
  const Y = y => T + (H - T - B) * (1 - (f(y) - ymin) / (ymax - ymin));
  ctx.font = "11px system-ui, sans-serif"; ctx.strokeStyle = "#d0d7de"; ctx.fillStyle = "#59636e"; ctx.lineWidth = 1;
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  const yTicks = opts.log ? logTicks(ymin, ymax) : ticks(ymin, ymax, 5);
  for (const v of yTicks) { ctx.beginPath(); ctx.moveTo(L, Y(v)); ctx.lineTo(W - R, Y(v)); ctx.stroke();
    ctx.fillText(opts.percent ? Math.round(v * 100) + "%" : String(v), L - 6, Y(v)); }
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  for (const v of ticks(0, xmax, 6)) ctx.fillText(String(v), X(v), H - B + 6);
  ctx.fillText("step", W - R - 14, H - 12);
  for (const e of opts.epochEnds || []) { ctx.strokeStyle = "#afb8c1"; ctx.setLineDash([3, 3]);
    ctx.beginPath(); ctx.moveTo(X(e), T); ctx.lineTo(X(e), H - B); ctx.stroke(); ctx.setLineDash([]); }
  ctx.strokeStyle = "#8c959f"; ctx.strokeRect(L, T, W - L - R, H - T - B);
  for (const s of series) {
    ctx.strokeStyle = ctx.fillStyle = s.colour; ctx.lineWidth = 2; ctx.beginPath();
    s.points.forEach((p, i) => i ? ctx.lineTo(X(p[0]), Y(p[1])) : ctx.moveTo(X(p[0]), Y(p[1])));
    if (s.points.length > 1) ctx.stroke();
    if (s.dots || s.points.length === 1) for (const p of s.points) { ctx.beginPath();
      ctx.arc(X(p[0]), Y(p[1]), 4.5, 0, 2 * Math.PI); ctx.fill(); ctx.strokeStyle = "#fff"; ctx.lineWidth = 1.5;
      ctx.stroke(); }
  }
}

function drawKernels(d) {
  const k = d.kernels, canvas = document.getElementById("kernels");
  if (!k) { const [ctx] = fit(canvas); ctx.fillText("this model has no convolution layer", 10, 20); return; }
  document.getElementById("kernels-title").textContent =
    `First-layer kernels: ${k.count} of ${k.h}×${k.w}` + (k.in_channels > 1 ? " (summed over input channels)" : "");
  const cols = Math.min(k.count, k.count <= 32 ? 8 : 16), rows = Math.ceil(k.count / cols);
  canvas.style.height = "auto";
  const W = canvas.clientWidth, scale = Math.max(2, Math.min(20, Math.floor((W - 8 * cols) / cols / k.w)));
  canvas.style.height = (rows * (k.h * scale + 4)) + "px";
  const [ctx] = fit(canvas), limit = Math.max(1e-12, ...k.values.map(Math.abs));
  for (let c = 0; c < k.count; c++) {
    const levels = k.values.slice(c * k.h * k.w, (c + 1) * k.h * k.w).map(v => Math.round((v / limit + 1) * 127.5));
    tile(ctx, levels, k.w, k.h, (c % cols) * (k.w * scale + 8), Math.floor(c / cols) * (k.h * scale + 4), scale,
         LUTS.rdbu);
  }
}
function drawBatch(d) {
  const p = d.probe, canvas = document.getElementById("batch"), pixels = bytes(p.pixels), n = p.count;
  const cols = Math.min(n, 8), rows = Math.ceil(n / cols), W = canvas.clientWidth;
  const cell = Math.floor(W / cols), scale = Math.max(1, Math.min(3, Math.floor((cell - 12) / p.w)));
  const rowHeight = p.h * scale + 36;
  canvas.style.height = rows * rowHeight + "px";
  const [ctx] = fit(canvas); ctx.font = "12px system-ui, sans-serif"; ctx.textAlign = "center";
  for (let i = 0; i < n; i++) {
    const x = (i % cols) * cell + (cell - p.w * scale) / 2, y = Math.floor(i / cols) * rowHeight + 16;
    tile(ctx, pixels.subarray(i * p.h * p.w, (i + 1) * p.h * p.w), p.w, p.h, x, y, scale, LUTS.ink);
    const right = p.predicted[i] === p.labels[i];
    ctx.strokeStyle = ctx.fillStyle = right ? GREEN : RED; ctx.lineWidth = right ? 1 : 3;
    ctx.strokeRect(x, y, p.w * scale, p.h * scale);
    ctx.fillText(`${d.class_names[p.predicted[i]]}  ${Math.round(100 * p.confidence[i])}%`, x + p.w * scale / 2, y - 4);
    if (!right) ctx.fillText(`true ${d.class_names[p.labels[i]]}`, x + p.w * scale / 2, y + p.h * scale + 14);
  }
}
function drawMaps(d) {
  const box = document.getElementById("maps"); box.replaceChildren();
  const p = d.probe, fig = document.createElement("figure"), c = document.createElement("canvas");
  c.style.width = (p.w * 4) + "px"; c.style.height = (p.h * 4) + "px"; fig.append(c);
  const cap = document.createElement("figcaption");
  cap.textContent = `probe: test image (label ${d.class_names[p.labels[0]]})`;
  fig.append(cap); box.append(fig);
  const [ctx] = fit(c); tile(ctx, bytes(p.pixels).subarray(0, p.h * p.w), p.w, p.h, 0, 0, 4, LUTS.ink);
  for (const m of d.maps) {
    const f = document.createElement("figure"), canvas = document.createElement("canvas"), data = bytes(m.data);
    const cols = Math.ceil(Math.sqrt(m.shown * 2)), rows = Math.ceil(m.shown / cols);
    const scale = Math.max(1, Math.round(40 / Math.max(m.h, m.w)));
    canvas.style.width = cols * (m.w * scale + 2) + "px"; canvas.style.height = rows * (m.h * scale + 2) + "px";
    f.append(canvas); const caption = document.createElement("figcaption");
    caption.textContent = `${m.layer}: ${m.channels} × ${m.h}×${m.w}` +
      (m.shown < m.channels ? ` (first ${m.shown})` : "");
    f.append(caption); box.append(f);
    const [ctx] = fit(canvas);
    for (let k = 0; k < m.shown; k++) tile(ctx, data.subarray(k * m.h * m.w, (k + 1) * m.h * m.w), m.w, m.h,
      (k % cols) * (m.w * scale + 2), Math.floor(k / cols) * (m.h * scale + 2), scale,
      m.signed ? LUTS.rdbu : LUTS.magma);
  }
}
function drawDense(d) {
  const box = document.getElementById("dense"); box.replaceChildren();
  for (const layer of d.dense) {
    const title = document.createElement("h2"), canvas = document.createElement("canvas");
    const v = layer.values, n = v.length, best = v.indexOf(Math.max(...v));
    title.textContent = layer.probabilities
      ? `${layer.layer} → softmax: predicted ${d.class_names[best]} (${(100 * v[best]).toFixed(1)}%)`
      : `${layer.layer}: ${n} units, ${Math.round(100 * v.filter(x => x > 0).length / n)}% active`;
    canvas.style.height = "110px"; box.append(title, canvas);
    const [ctx, W, H] = fit(canvas), top = Math.max(1e-12, ...v.map(Math.abs)), bw = (W - 8) / n;
    ctx.font = "11px system-ui, sans-serif"; ctx.textAlign = "center";
    const base = layer.probabilities ? H - 16 : H - 4, height = base - 14;
    for (let i = 0; i < n; i++) {
      const h = (layer.probabilities ? v[i] : Math.abs(v[i]) / top) * height;
      ctx.fillStyle = layer.probabilities ? (i === best ? GREEN : GREY) : (v[i] >= 0 ? BLUE : RED);
      const width = layer.probabilities ? bw * 0.6 : Math.max(1, bw - 1);
      ctx.fillRect(4 + i * bw + (layer.probabilities ? bw * 0.2 : 0), base - h, width, h);
      if (layer.probabilities) { ctx.fillStyle = "#31373d"; ctx.fillText(d.class_names[i], 4 + (i + 0.5) * bw, H - 3);
        if (v[i] >= 0.01) ctx.fillText(Math.round(100 * v[i]) + "%", 4 + (i + 0.5) * bw, base - h - 3); }
    }
    ctx.strokeStyle = "#8c959f"; ctx.beginPath(); ctx.moveTo(0, base + 0.5); ctx.lineTo(W, base + 0.5); ctx.stroke();
  }
}
function draw(d) {
  document.getElementById("title").textContent = d.title || "a CNN learning";
  const pct = d.steps_total ? Math.min(100, 100 * d.step / d.steps_total) : 0;
  document.querySelector("#bar div").style.width = pct + "%";
  let text = `step ${d.step}` + (d.steps_total ? ` of ${d.steps_total}` : "") + `, epoch ${d.epoch} of ${d.epochs}`;
  if (d.images_per_s) text += `, ${Math.round(d.images_per_s).toLocaleString()} images/s`;
  text += `, ${d.elapsed_s.toFixed(0)} s, ${d.parameters.toLocaleString()} parameters`;
  if (d.test_accuracy !== undefined) text += `; test accuracy ${(100 * d.test_accuracy).toFixed(2)}%`;
  document.getElementById("status").innerHTML = `<span class="badge ${d.status}">${d.status}</span>`;
  document.getElementById("status").append(text);
  const ends = d.epoch_records.map(e => e.step), xmax = d.steps_total || 0;
  const val = d.epoch_records.filter(e => e.val_loss !== undefined);
  chart(document.getElementById("loss"), [
    { colour: BLUE, points: d.curve.map(p => [p[0], p[1]]) },
    { colour: RED, dots: true, points: val.map(e => [e.step, e.val_loss]) }], { log: true, xmax, epochEnds: ends });
  chart(document.getElementById("accuracy"), [
    { colour: BLUE, points: d.curve.map(p => [p[0], p[2]]) },
    { colour: RED, dots: true, points: val.map(e => [e.step, e.val_accuracy]) }],
    { ymin: Math.max(0, Math.floor(10 * Math.min(1, ...d.curve.map(p => p[2]), ...val.map(e => e.val_accuracy))) / 10),
      ymax: 1, percent: true, xmax, epochEnds: ends });
  drawKernels(d); drawBatch(d); drawMaps(d); drawDense(d);
  document.title = `cycnn live: step ${d.step} (${d.status})`;
  document.body.dataset.drawnStep = d.step;
  document.body.dataset.status = d.status;
}
async function poll() {
  let wait = 1000;
  try {
    const response = await fetch("data.json", { cache: "no-store" });
    const d = await response.json();
    document.getElementById("conn").textContent = "";
    if (!d.curve) document.getElementById("status").textContent = "the run is starting...";
    else if (d.version !== lastVersion) { lastVersion = d.version; last = d; draw(d); }
    if (d.status === "finished" || d.status === "stopped" || d.status === "failed") wait = 3000;
  } catch (e) {
    if (last) document.getElementById("conn").textContent = "the run's server has stopped: this is its last state";
    else document.getElementById("status").textContent = "waiting for the training run...";
    wait = 5000;
  }
  setTimeout(poll, wait);
}
window.addEventListener("resize", () => { if (last) draw(last); });
poll();
</script>
</body>
</html>
"""
