"""The live view of a training run: a page on 127.0.0.1 that redraws itself while the model trains.

``LiveView`` is a training callback. Every few seconds (and at the start, at each epoch's end and at the end) it
takes a snapshot in the training thread: the loss and accuracy curves, the first conv layer's kernels, the feature
maps and dense activations of a fixed probe image and the predictions on a fixed probe batch. It encodes the
snapshot to JSON once; ``LiveServer`` (the standard library's HTTP server, in a background thread) only hands out
the latest encoded snapshot at ``/data.json`` and the page at ``/``. Training pays for one small forward pass per
snapshot and nothing per request.

The page is ``static/live.html`` with its style sheet and scripts put inline (see ``assets``), so that it is
self-contained: drawn on canvases, nothing loaded from elsewhere. It polls ``/data.json`` every second and keeps
showing the last state once the run has ended and the server is gone.
"""
import json
import threading
import time

import numpy as np

from cycnn.data.datasets import to_input
from cycnn.errors import CycnnError
from cycnn.io.architecture import build
from cycnn.nn.layers import Conv2D, Dense, Dropout, MaxPool2D
from cycnn.train.callbacks import Callback
from cycnn.train.controls import ControlConflict, TrainingControls
from cycnn.train.log import quantize_maps
from cycnn.viz import assets
from cycnn.viz.explore.analysis import b64
from cycnn.viz.explore.api import Explorer
from cycnn.viz.explore.shared import SharedModel
from cycnn.viz.explore.testset import TestSet
from cycnn.viz.server import ApiError, JsonServer, Route
from cycnn.viz.vitals import Vitals, probe_gradients

DEFAULT_PORT = 8765
DEFAULT_INTERVAL = 2.0  # seconds between snapshots
MAX_CURVE_POINTS = 1000  # beyond this, neighbouring points are merged (the curve keeps its whole length)
MAX_MAPS = 64  # channels of a layer shown on the page


class LiveServer:
    """Serves the page and the latest snapshot on ``host:port`` (port 0: any free port) from a daemon thread."""

    def __init__(self, port=DEFAULT_PORT, host="127.0.0.1", routes=None):
        self.page = assets.inline_page("live.html").encode("utf-8")
        self.snapshot, self.version, self.served_version = b'{"status": "starting", "step": 0, "version": 0}', 0, -1
        self.served = threading.Condition()
        self.server = JsonServer({**(routes or {}), ("GET", "/"): Route(self._page),
                                  ("GET", "/index.html"): Route(self._page), ("GET", "/data.json"): Route(self._data)},
                                 port, host, what="the live view")
        self.host, self.port = self.server.host, self.server.port

    @property
    def url(self):
        return self.server.url

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
        self.server.stop()

    def _page(self, request):
        return self.page, "text/html; charset=utf-8"

    def _data(self, request):
        with self.served:
            body, version = self.snapshot, self.version
            self.served_version = version  # (counted as seen when handed out: the write follows at once)
            self.served.notify_all()
        return body, "application/json"


class LiveView(Callback):
    """Publishes snapshots of the run to ``server`` every ``interval`` seconds of training.

    ``probe_images`` (uint8 (N, H, W) or model inputs) and ``probe_labels`` are a fixed batch whose predictions
    the page shows; the first image is the probe whose feature maps, activations and gradients it shows. With
    ``controls`` (a ``TrainingControls``) the snapshots say when the run is paused and what was changed; with
    ``shared`` (an explorer's ``SharedModel``) every snapshot also puts a copy of the weights there, for the
    explorer panel to answer with.
    """

    def __init__(self, server, probe_images, probe_labels, interval=DEFAULT_INTERVAL, curve_every=5, title="",
                 controls=None, shared=None):
        if not interval > 0:
            raise CycnnError(f"the live view's interval must be a positive number of seconds, received {interval!r}")
        self.server, self.interval, self.curve_every, self.title = server, float(interval), curve_every, title
        probe_images = np.asarray(probe_images)
        self.probe = to_input(probe_images) if probe_images.dtype == np.uint8 else probe_images
        self.probe_labels = [int(v) for v in probe_labels]
        shown = self.probe if self.probe.shape[1] == 3 else self.probe.mean(axis=1, keepdims=True)
        self.probe_pixels = b64(np.round(np.clip(shown, 0, 1) * 255))  # (N, 1 or 3, H, W): gray or colour
        self.curve, self.epochs, self.events = [], [], []
        self.controls, self.shared, self.vitals = controls, shared, Vitals()
        self.status = "starting"
        self.extra = {}
        self._measuring = False

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
        self.vitals.observe(trainer)
        if self._measuring:
            self._measuring = False
            self.vitals.after_step(trainer)
            self.publish(trainer)
        elif self.controls is not None and self.controls.paused:  # a single step of a paused run: show it
            self.publish(trainer)

    def on_step_begin(self, trainer, info):
        """A snapshot is due: measure this step (the weights before it, and every layer's output unless a recent
        step recorded them)."""
        if time.perf_counter() - self._published >= self.interval:
            self._measuring = True
            self.vitals.before_step(trainer.model)
            if self.vitals.needs_activations(trainer.state.global_step):
                trainer.observe_next_step()

    def on_change(self, trainer, event):
        self.events.append(event)
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
        with np.errstate(all="ignore"):  # after a divergence the probe's numbers are NaN: shown, not warned about
            self.publish(trainer)

    # --- snapshots ------------------------------------------------------------------------------------------
    def publish(self, trainer):
        twin = weights_copy(trainer.model)  # the weights now, for the probe and then for the explorer
        self.server.publish(self.snapshot(trainer, twin))
        if self.shared is not None:
            self.shared.replace(twin, step=trainer.state.global_step,
                                epoch=min(trainer.state.epoch + 1, trainer.settings.epochs))
        self._published = time.perf_counter()

    def snapshot(self, trainer, twin=None):
        """The run now, as the page draws it; the probe's numbers come from ``twin`` (a copy of the weights, see
        ``weights_copy``), whose compiled inference plan answers the probe batch (no hook of the training's
        observers sees it) and whose traced pass gives the first probe image's maps and gradients."""
        model, state = trainer.model, trainer.state
        twin = twin or weights_copy(model)
        outputs, caches = twin.trace(self.probe[:1].astype(twin.dtype, copy=False))
        probs = twin.predict_proba(self.probe)
        maps = []
        for i, layer in enumerate(model.layers):
            if isinstance(layer, (Conv2D, MaxPool2D)):
                levels, signed, limit = quantize_maps(outputs[i][0][:MAX_MAPS])
                maps.append({"layer": model.layer_names()[i], "channels": int(outputs[i].shape[1]),
                             "shown": int(levels.shape[0]), "h": int(levels.shape[1]), "w": int(levels.shape[2]),
                             "signed": signed, "limit": float(f"{limit:.4g}"), "data": b64(levels)})
        last = len(model.layers) - 1
        dense = [{"layer": model.layer_names()[i], "probabilities": False,
                  "values": [round(float(v), 4) for v in outputs[i][0]]}
                 for i, layer in enumerate(model.layers) if isinstance(layer, Dense) and i != last]
        dense.append({"layer": model.layer_names()[last], "probabilities": True,
                      "values": [round(float(v), 4) for v in probs[0]]})
        kernels = None
        conv = next((layer for layer in model.layers if isinstance(layer, Conv2D)), None)
        if conv is not None:
            full = np.asarray(conv.params["W"], dtype=np.float64)
            weights = full.sum(axis=1)
            kernels = {"count": int(weights.shape[0]), "h": int(weights.shape[1]), "w": int(weights.shape[2]),
                       "in_channels": conv.in_channels, "values": [round(float(v), 4) for v in weights.ravel()]}
            if conv.in_channels == 3:  # a colour kernel is drawn as a colour picture: its channels too
                kernels["rgb"] = [round(float(v), 4) for v in full.ravel()]
        elapsed = time.perf_counter() - self.started
        paused = self.controls is not None and self.controls.paused and self.status == "training"
        return {
            "title": self.title, "status": "paused" if paused else self.status, "events": self.events,
            "controls": self.controls is not None, "vitals": self.vitals.history,
            "probe_gradients": probe_gradients(twin, outputs, caches, self.probe_labels[0]),
            "dropout": next((layer.p for layer in model.layers if isinstance(layer, Dropout)), None),
            "delay": self.controls.delay if self.controls is not None else 0.0,
            "step": state.global_step, "steps_total": self.steps_total,
            "epoch": min(state.epoch + 1, trainer.settings.epochs), "epochs": trainer.settings.epochs,
            "elapsed_s": round(elapsed, 2), "lr": trainer.optimizer.lr,
            "images_per_s": round(self._images / self._seconds, 1) if self._seconds else None,
            "parameters": model.parameter_count, "layers": model.layer_names(),
            "curve": self.curve, "epoch_records": self.epochs, "kernels": kernels, "maps": maps, "dense": dense,
            "class_names": model.class_names,
            "probe": {"h": int(self.probe.shape[2]), "w": int(self.probe.shape[3]), "count": len(self.probe),
                      "channels": 3 if self.probe.shape[1] == 3 else 1,
                      "pixels": self.probe_pixels, "labels": self.probe_labels,
                      "predicted": [int(p.argmax()) for p in probs],
                      "confidence": [round(float(p.max()), 4) for p in probs]},
            **self.extra}

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


def weights_copy(model):
    """A model of the same architecture holding a copy of ``model``'s weights now (for the explorer to answer with
    while the training goes on changing the original)."""
    twin = build(model.get_config(), initialize=False)
    for layer, source in zip(twin.layers, model.layers):
        if source.params:
            layer.load_params({name: np.array(value) for name, value in source.params.items()})
    return twin.eval()


MAX_COMMAND = 4096  # bytes of a control command


def control_route(controls):
    """``POST /api/control``: a JSON command for ``controls`` (a ``TrainingControls``); 400 for a bad one, 409 for
    one the run cannot take now, and the run goes on either way."""

    def handle(request):
        if request.content_type != "application/json":
            raise ApiError(415, 'send the command as application/json, e.g. {"action": "pause"}')
        command = request.json("the command")
        try:
            return controls.request(command)
        except ControlConflict as exc:
            raise ApiError(409, str(exc)) from None

    return Route(handle, MAX_COMMAND)


def serve(model, test_images, test_labels, port=DEFAULT_PORT, interval=DEFAULT_INTERVAL, title="", step=0):
    """Everything ``cycnn train --live`` serves for ``model``: the page, its controls and the explorer (on a copy
    of the weights, refreshed at every snapshot; its test-set panels on ``test_images``). Returns the
    ``TrainingControls`` and the ``LiveView``, the two callbacks to add, in that order, to the run (a paused step
    waits before the view measures it); ``view.server`` is the server."""
    controls = TrainingControls(model)
    shared = SharedModel(weights_copy(model), step=step)
    explorer = Explorer(shared, TestSet(shared, test_images, test_labels, "the run's test set"), live=True,
                        title="the model being trained")
    server = LiveServer(port, routes={**explorer.routes(page_paths=("/explore",)),
                                      ("POST", "/api/control"): control_route(controls)})
    view = LiveView(server, test_images[:16], test_labels[:16], interval=interval, title=title, controls=controls,
                    shared=shared)
    return controls, view
