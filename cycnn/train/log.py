"""The training log: one JSON object per line, written while a run trains, read back to plot it (``read_log``
skips, with a warning, the broken lines that two runs writing one log leave).

Every record has a ``type``:

- ``run``, the first record: the architecture, the optimizer, the training configuration, the seed and the versions
  of cycnn, numpy and Python (and whatever the caller adds, such as the data used).
- ``step``, every ``every`` steps (and on the first and on each epoch's last): the step's loss and batch
  accuracy, the mean loss and accuracy since the previous step record, the learning rate, images/s; per layer the
  mean forward and backward time in ms over the ``timed_steps`` steps since the previous record (the logged step
  itself also runs an extra layer-by-layer pass to record every output, so it is left out unless it is the only
  one) and the mean and the fraction of zeros of its output for the first ``OBSERVED_IMAGES`` (16) images of this
  step's batch (recorded in eval mode, so without dropout); per parameter tensor the gradient norm, the weight norm
  and the update-to-weight ratio ||W_after - W_before|| / ||W_before||.
- ``epoch``: train and validation loss and accuracy, and the epoch's wall time; with a probe image, under
  ``probe`` its class probabilities and the feature maps of the first conv block (the first conv layer, or the
  ReLU and pooling layers right after it) for it: the first ``PROBE_CHANNELS`` (16) channels as uint8 levels in
  base64 with the scale that decodes them (``decode_maps``), a few kB per epoch, so that a picture can show the
  same image's answer and maps change epoch by epoch. It costs one forward pass of one image, once per epoch
  (about 5 ms for the reference network, most of it in its first dense layer).

The costly figures (a copy of the weights, every layer's output) are only taken on the logged steps, so logging
at the default interval costs about 2% of the training throughput (see the README).
"""
import base64
import json
import os
import platform
import stat
import time
import warnings

import numpy as np

from cycnn.errors import CycnnError, DataError, OutputError
from cycnn.nn.layers import Conv2D, MaxPool2D, ReLU
from cycnn.nn.losses import softmax
from cycnn.train.callbacks import Callback
from cycnn.version import __version__

DEFAULT_EVERY = 50
PROBE_CHANNELS = 16  # feature maps kept per epoch: enough to see them change, small enough for a small log


def _norm(array):
    return float(np.linalg.norm(array.ravel()))


def probe_layer(model):
    """The index of the first conv block's output: the first conv layer, or the ReLU and pooling layers that
    directly follow it; None for a network without a conv layer."""
    first = next((i for i, layer in enumerate(model.layers) if isinstance(layer, Conv2D)), None)
    if first is None:
        return None
    while first + 1 < len(model.layers) and isinstance(model.layers[first + 1], (ReLU, MaxPool2D)):
        first += 1
    return first


def quantize_maps(maps):
    """Float maps -> (uint8 levels, signed, scale): 0..scale onto 0..255, or -scale..scale onto 0..255 when a
    value is negative (the live page's quantization): a quarter of the float32 size, within scale/255."""
    maps = np.asarray(maps, dtype=np.float64)
    if maps.min() < 0:
        scale = max(float(np.abs(maps).max()), 1e-12)
        return np.round((maps / scale + 1) * 127.5).astype(np.uint8), True, scale
    scale = max(float(maps.max()), 1e-12)
    return np.round(maps / scale * 255).astype(np.uint8), False, scale


def decode_maps(record):
    """The float maps (C, H, W) of a probe record's ``maps``."""
    levels = np.frombuffer(base64.b64decode(record["data"]), dtype=np.uint8).reshape(record["shape"])
    if record["signed"]:
        return (levels / 127.5 - 1) * record["scale"]
    return levels / 255 * record["scale"]


class RunLog(Callback):
    """Writes the JSON-lines log of a run to ``path``; ``append`` continues the log of a resumed run.

    ``probe`` is (index, image, label): test image number ``index`` as a model input (C, H, W) and its class,
    whose probabilities and first feature maps each epoch record then holds (none without a probe).
    """

    def __init__(self, path, every=DEFAULT_EVERY, run_info=None, append=False, probe=None):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise CycnnError(f"the log interval must be a positive number of steps, received {every!r}")
        self.path, self.every, self.run_info, self.append = os.fspath(path), every, dict(run_info or {}), append
        self.probe = probe
        self.file = None
        self._before = None

    def logs_step(self, global_step, last_of_epoch=False):
        """Whether step number ``global_step`` (counting from 1) gets a step record."""
        return global_step == 1 or global_step % self.every == 0 or last_of_epoch

    # --- callback hooks -------------------------------------------------------------------------------------
    def on_train_begin(self, trainer):
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)  # as the model's save does
            self.file = open(self.path, "a" if self.append else "w", encoding="utf-8")
        except OSError as exc:
            raise CycnnError(f"{self.path}: cannot write the training log ({exc.strerror})") from None
        if self.probe is not None:  # a probe that does not fit the model: said now, not after the first epoch
            trainer.model.check_input(np.asarray(self.probe[1])[None])
        self._started = time.perf_counter()
        self._reset_interval(len(trainer.model.layers))
        self.write({"type": "run", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "resumed_at_step": trainer.state.global_step if self.append else None,
                    "architecture": trainer.model.get_config(), "layer_names": trainer.model.layer_names(),
                    "parameters": trainer.model.parameter_count, "optimizer": trainer.optimizer.get_config(),
                    "train": trainer.settings.to_dict(), "seed": trainer.settings.seed, "log_every": self.every,
                    "versions": {"cycnn": __version__, "numpy": np.__version__,
                                 "python": platform.python_version()},
                    **self.run_info})

    def on_step_begin(self, trainer, info):
        if self.logs_step(trainer.state.global_step + 1, info["step"] == info["steps"] - 1):
            self._before = {key: param.copy() for key, param, _ in trainer.model.parameters()}
            trainer.observe_next_step()

    def on_step_end(self, trainer, info):
        timer = trainer.timer
        if trainer.step_observed:  # a step that also ran layer by layer to record the outputs: not typical
            self._kept_timings = (list(timer.forward), list(timer.backward))
        else:
            for i, (f, b) in enumerate(zip(timer.forward, timer.backward)):
                self._forward[i] += f
                self._backward[i] += b
            self._timed_steps += 1
        self._images += info["batch_size"]
        self._seconds += info["seconds"]
        self._loss += info["loss"] * info["batch_size"]
        self._correct += info["accuracy"] * info["batch_size"]
        if self._before is not None:
            self.write(self.step_record(trainer, info))
            self._before = None
            self._reset_interval(len(trainer.model.layers))

    def on_epoch_end(self, trainer, record):
        probe = self.probe_record(trainer.model) if self.probe is not None else None
        self.write({"type": "epoch", "step": trainer.state.global_step, **record,
                    **({"probe": probe} if probe is not None else {})})

    def on_train_end(self, trainer):
        self.close()

    def on_change(self, trainer, event):
        self.write({"type": "event", **event})

    # --- records --------------------------------------------------------------------------------------------
    def step_record(self, trainer, info):
        model = trainer.model
        if self._timed_steps:
            ms = 1000.0 / self._timed_steps
            forward, backward = [f * ms for f in self._forward], [b * ms for b in self._backward]
        else:
            forward, backward = ([t * 1000.0 for t in times] for times in self._kept_timings)
        activations = (trainer.activations.outputs if trainer.step_observed else None) or [None] * len(model.layers)
        layers = []
        for i, (name, out) in enumerate(zip(model.layer_names(), activations)):
            entry = {"layer": name, "forward_ms": forward[i], "backward_ms": backward[i]}
            if i in model.fused_into:
                entry["timed_with"] = model.fused_into[i]
            if out is not None:
                entry["activation_mean"] = float(out.mean(dtype=np.float64))
                entry["activation_zeros"] = 1.0 - np.count_nonzero(out) / out.size
            layers.append(entry)
        params = {}
        for key, param, grad in model.parameters():
            before = self._before[key]
            before_norm = _norm(before)
            params[key] = {"grad_norm": None if grad is None else _norm(grad), "weight_norm": _norm(param),
                           "update_ratio": _norm(param - before) / before_norm if before_norm > 0 else None}
        return {"type": "step", "step": trainer.state.global_step, "epoch": info["epoch"] + 1,
                "epoch_step": info["step"] + 1, "steps_per_epoch": info["steps"], "loss": info["loss"],
                "accuracy": info["accuracy"], "interval_loss": self._loss / self._images,
                "interval_accuracy": self._correct / self._images, "lr": info["lr"],
                "images_per_s": self._images / max(self._seconds, 1e-9),
                "elapsed_s": time.perf_counter() - self._started, "timed_steps": self._timed_steps,
                "layers": layers, "params": params}

    def probe_record(self, model):
        """The probe image's class probabilities and first feature maps now; None once the outputs are not
        finite (a diverged run, which the divergence check reports)."""
        index, image, label = self.probe
        outputs = model.layer_outputs(np.asarray(image, dtype=model.dtype)[None])
        probs = softmax(np.asarray(outputs[-1], dtype=np.float64))[0]
        if not np.isfinite(probs).all():
            return None
        record = {"index": int(index), "label": int(label), "probabilities": [round(float(p), 6) for p in probs]}
        layer = probe_layer(model)
        if layer is not None and np.isfinite(outputs[layer]).all():
            maps = outputs[layer][0]
            levels, signed, scale = quantize_maps(maps[:PROBE_CHANNELS])
            record["maps"] = {"layer": model.layer_names()[layer], "channels": int(maps.shape[0]),
                              "shape": list(levels.shape), "signed": signed, "scale": scale,
                              "data": base64.b64encode(levels.tobytes()).decode("ascii")}
        return record

    def write(self, record):
        try:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        except OSError as exc:  # a full disk, a removed mount: a one-line error (the run adds its checkpoint)
            raise OutputError(f"{self.path}: cannot write the training log ({exc.strerror or exc})") from None

    def close(self):
        if self.file is not None:
            self.file.close()
            self.file = None

    def _reset_interval(self, n_layers):
        self._forward, self._backward = [0.0] * n_layers, [0.0] * n_layers
        self._timed_steps = self._images = 0
        self._seconds = self._loss = self._correct = 0.0


def read_log(path):
    """The records of a log file. Where a resumed run logged a step again, the later record wins.

    The first line must be a run record. A broken line after it (two runs wrote the log at once, or a kill cut a
    line before a resume appended more) is skipped with one ``UserWarning`` saying how many were; a cut last line,
    which a run that is still writing leaves, is skipped silently.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the read, /dev/zero never end it
            raise DataError(f"{path}: not a regular file (a device, FIFO or socket), not a training log")
        with open(path, encoding="utf-8") as fh:
            lines = fh.readlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the training log ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a training log (not UTF-8 text)") from None
    records, skipped = [], 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            problem = _record_problem(record)
        except (ValueError, RecursionError):
            problem = "is not JSON"
        if problem is None:
            records.append(record)
        elif not records:
            raise DataError(f"{path}: line {number} {problem}; is this a cycnn training log?")
        elif number < len(lines):
            skipped += 1
    if not records or records[0]["type"] != "run":
        raise DataError(f"{path}: does not start with a run record; is this a cycnn training log?")
    if skipped:
        warnings.warn(f"{path}: skipped {skipped} broken line{'s' if skipped > 1 else ''} (not JSON, or not a "
                      "record cycnn writes); did two runs write this log?", stacklevel=2)
    return records


# The fields the pictures read, with their types: a record whose fields are of other types is a broken line.
_NUMBER = (int, float)
_FIELDS = {"run": {"train": dict, "train_images": int, "layer_names": list, "seed": int},
           "step": {"step": int, "epoch": int, "loss": _NUMBER, "accuracy": _NUMBER, "lr": _NUMBER,
                    "layers": list, "params": dict},
           "epoch": {"epoch": int, "step": int, "train_loss": _NUMBER, "train_accuracy": _NUMBER,
                     "val_loss": _NUMBER, "val_accuracy": _NUMBER, "wall_s": _NUMBER},
           "event": {"step": int, "epoch": int, "change": str}}


def _record_problem(record):
    """Why ``record`` is not one the pictures can read, or None; names shown on pictures must be printable."""
    if not isinstance(record, dict) or record.get("type") not in _FIELDS:
        return "has no record type"
    for name, kind in _FIELDS[record["type"]].items():
        value = record.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
            return f"has a {name} that is not a {getattr(kind, '__name__', 'number')}"
    names = [entry.get("layer") if isinstance(entry, dict) else None for entry in record.get("layers") or []]
    names += record.get("layer_names") or []
    if not all(isinstance(n, str) and n.isprintable() for n in names):
        return "has a layer name that is not printable text"
    return None


def latest(records, kind):
    """The records of one type, in order of their step, keeping only the last record written for each step."""
    key = "step" if kind == "step" else "epoch"
    by_key = {r[key]: r for r in records if r["type"] == kind and key in r}
    return [by_key[k] for k in sorted(by_key)]
