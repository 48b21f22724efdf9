"""The inference plan: a model's forward pass compiled once per batch size and thread count, run in one call.

Answering one image layer by layer costs more in Python (each layer's checks, arrays, calls) than in arithmetic:
about 66 us for the reference network, of which the vector units need under 15. ``compile_plan`` turns a
Sequential into the operations of ``src_ext/plan.h`` (each convolution with its bias, ReLU and a following
max-pool fused; Winograd F(2x2, 3x3) and the direct kernel where the training path uses them; dense layers in
cycnn's own vector kernel), allocates every buffer once, and ``InferencePlan.predict_proba`` runs the whole
network in C: the threads share one image and meet at a barrier between operations, or, for batches, take blocks
of images each (the dense layers then multiply a whole block at once).

The plan reads the weights in place, so training between two answers is seen: each call checks that the layers
still hold the same arrays (a replaced array, e.g. after ``astype`` or ``load_params``, compiles a new plan), and
the C side re-derives the transposed or Winograd-transformed copies whose source changed (src_ext/plan.pyx).
``Sequential.predict_proba`` answers through ``answer`` when the model has no hooks; the layers' own path stays
what training, ``forward``/``backward``, ``trace`` and ``layer_outputs`` use.
"""
import threading
import time
import weakref

import numpy as np

from cycnn.errors import ConfigError
from cycnn.nn import _parallel, _plan
from cycnn.nn.functional import direct_applies
from cycnn.nn.fused import DIRECT_FEW_TAPS, WINOGRAD_CHANNEL_MULTIPLE
from cycnn.nn.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
from cycnn.nn.losses import softmax

# Larger inputs run through the plan this many images per call (a signal is handled between two calls).
CHUNK = 1024
# Images per block for a batch: each dense layer's weights are read once per block. Weights larger than
# STREAMED_BYTES come from L3 each time, so larger blocks pay for them, up to STREAMED_BLOCK images and as long as
# the block's activations fit in SLOTS_BYTES (half the L2 cache: beyond it, blocks measured slower).
BLOCK, STREAMED_BLOCK, STREAMED_BYTES, SLOTS_BYTES = 16, 64, 1 << 20, 1 << 20
# A single image is answered EXPLORE_CALLS times the other way (threads sharing it, or one thread), then
# EXPLORE_CALLS times the chosen way; those calls are timed (each burst's first call, which wakes the other threads
# or lets them fall asleep, is not) and the way with the fastest call is chosen (a single call that the system
# delayed would otherwise decide, and under smoothing across comparisons it decided for hundreds of calls). The
# next comparison comes EXPLORE_EVERY calls later, twice as many each time the choice stands (up to
# EXPLORE_MOST_EVERY): each costs the slower way's time.
EXPLORE_EVERY, EXPLORE_MOST_EVERY = 64, 1024
EXPLORE_CALLS = 4
ALIGN = _plan.ALIGN_BYTES

_plans = weakref.WeakKeyDictionary()  # model -> {threads: (the arrays it was compiled from, plan or None)}
_lock = threading.Lock()


class _Arena:
    """Offsets (in elements) handed out in one flat buffer, each rounded up to a whole vector."""

    def __init__(self, itemsize):
        self.size, self.step = 0, ALIGN // itemsize

    def take(self, count):
        at = self.size
        self.size += -(-count // self.step) * self.step
        return at


def _conv_op(conv, pool, shape, at, slot, dtype, derived):
    """The operation of a Conv2D (and the MaxPool2D after it, or None) on an input of ``shape`` at ``at``."""
    W, b = conv.params["W"], conv.params["b"]
    c, h, w = shape
    f, _, kh, kw = W.shape
    out_shape = conv.output_shape(shape)
    op = {"C": c, "H": h, "W": w, "F": f, "KH": kh, "KW": kw, "stride": conv.stride, "pad": conv.padding,
          "OH": out_shape[1], "OW": out_shape[2], "relu": conv.activation == "relu", "in": at, "bias": b}
    if pool is not None:
        (ph, pw), (sh, sw) = pool.pool_size, pool.stride
        out_shape = pool.output_shape(out_shape)
        op.update(pool=True, ph=ph, pw=pw, sh=sh, sw=sw, PH=out_shape[1], PW=out_shape[2])
    scratch = _Arena(dtype.itemsize)
    lanes = WINOGRAD_CHANNEL_MULTIPLE[dtype]
    if (pool is not None and op["relu"] and (kh, kw) == (3, 3) and conv.stride == 1 and c * 9 > DIRECT_FEW_TAPS
            and (ph, pw, sh, sw) == (2, 2, 2, 2) and f % lanes == 0):
        hp, wp = h + 2 * conv.padding, w + 2 * conv.padding
        U = np.zeros((16, c, f), dtype=dtype)
        derived.append((_plan.DERIVE_WINOGRAD, W, np.empty_like(W), U))
        op.update(kind="conv_winograd", weight=U, padded=scratch.take(c * hp * wp if conv.padding else 0),
                  tiles=scratch.take(16 * op["PW"] * c), products=scratch.take(16 * op["PW"] * f))
    else:
        taps, pixels, fp = c * kh * kw, op["OH"] * op["OW"], -(-f // lanes) * lanes
        Wt = np.zeros((taps, fp), dtype=dtype)
        derived.append((_plan.DERIVE_TRANSPOSE, W, np.empty_like(W), Wt))
        op.update(weight=Wt, Fp=fp)
        # The direct kernel wherever training uses it: strided layers too, since its blocks of pixels run across
        # the ends of rows (1.2-1.6x im2col's tiles per image and in batches on stride-2 layers of 144-432 taps).
        if direct_applies(W):
            hp, wp = h + 2 * conv.padding, w + 2 * conv.padding
            op.update(kind="conv_direct", padded=scratch.take(c * hp * wp), rows=scratch.take(pixels * fp))
        else:
            op.update(kind="conv_gemm", cols=scratch.take(taps * pixels), rows=scratch.take(pixels * fp))
    op["out"] = slot.take(int(np.prod(out_shape)))
    return op, out_shape, scratch.size


def compile_ops(model, dtype):
    """(operations, derived weights, slot size, scratch size, logits offset) of ``model``, or None when a layer
    is of a kind the plan does not run (or its weights are not plain arrays of ``dtype``)."""
    layers, shape, at = model.layers, model.input_shape, -1
    slot, ops, derived, scratch_size, i = _Arena(dtype.itemsize), [], [], 0, 0
    for layer in layers:
        if type(layer) not in (Conv2D, Dense, MaxPool2D, ReLU, Flatten, Dropout):
            return None
        if any(p.dtype != dtype or not p.flags.c_contiguous for p in layer.params.values()):
            return None
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, Conv2D):
            pool = layers[i + 1] if i + 1 < len(layers) and isinstance(layers[i + 1], MaxPool2D) else None
            op, shape, scratch = _conv_op(layer, pool, shape, at, slot, dtype, derived)
            scratch_size = max(scratch_size, scratch)
            i += 1 if pool is None else 2
        elif isinstance(layer, (MaxPool2D, ReLU, Dense)):
            op, shape = _simple_op(layer, shape, at, slot, derived)
            i += 1
        else:  # Flatten and Dropout (the identity at inference) leave the numbers where they are
            shape = layer.output_shape(shape)
            i += 1
            continue
        ops.append(op)
        at = op["out"]
    if at < 0:
        return None
    _channels_last_links(ops, WINOGRAD_CHANNEL_MULTIPLE[dtype])
    return ops, derived, slot.size, scratch_size, at


def _channels_last_links(ops, lanes):
    """A pooled convolution whose map goes into a Winograd convolution (the next operation, its only reader) hands
    it over channels-last (whole vectors of channels): its pooling then stores vectors, and Winograd transforms a
    vector of channels at a time (src_ext/plan.h)."""
    for producer, consumer in zip(ops, ops[1:]):
        if (consumer["kind"] == "conv_winograd" and consumer["in"] == producer["out"] and producer.get("pool")
                and producer["F"] % lanes == 0):
            producer["hwc_out"] = consumer["hwc_in"] = True


def _simple_op(layer, shape, at, slot, derived):
    if isinstance(layer, Dense):
        W, f = layer.params["W"], layer.out_features
        lanes = WINOGRAD_CHANNEL_MULTIPLE[W.dtype]
        fp = -(-f // lanes) * lanes
        if f % lanes:  # the kernel takes whole vectors of columns: a copy padded with zero columns (checked per call)
            padded = np.zeros((layer.in_features, fp), dtype=W.dtype)
            derived.append((_plan.DERIVE_PAD_COLUMNS, W, np.empty_like(W), padded))
            W = padded
        # Blocks of images read the weights a panel at a time: a copy laid out panel after panel.
        panels = np.zeros((layer.in_features, fp), dtype=W.dtype)
        derived.append((_plan.DERIVE_PANELS, layer.params["W"], np.empty_like(layer.params["W"]), panels))
        op = {"kind": "dense", "C": layer.in_features, "H": 1, "W": 1, "F": f, "Fp": fp,
              "relu": layer.activation == "relu", "weight": W, "panels": panels, "bias": layer.params["b"]}
    elif isinstance(layer, ReLU):
        size = int(np.prod(shape))
        op = {"kind": "relu", "C": size, "H": 1, "W": 1, "F": 0, "weight": np.zeros(0, layer.dtype)}
    else:
        (ph, pw), (sh, sw) = layer.pool_size, layer.stride
        c, h, w = shape
        out = layer.output_shape(shape)
        op = {"kind": "pool", "C": c, "H": h, "W": w, "ph": ph, "pw": pw, "sh": sh, "sw": sw, "PH": out[1],
              "PW": out[2], "weight": np.zeros(0, layer.dtype)}
        shape = out
    if isinstance(layer, Dense):
        shape = layer.output_shape(shape)
    op["in"] = at
    op["out"] = slot.take(op.get("Fp", int(np.prod(shape))))
    return op, shape


def _block(ops, slot_bytes):
    """Images per block for a batch (see BLOCK)."""
    if not any(op["kind"] == "dense" and op["weight"].nbytes > STREAMED_BYTES for op in ops):
        return BLOCK
    return max(BLOCK, min(STREAMED_BLOCK, SLOTS_BYTES // slot_bytes))


def _arrays(model):
    """What a plan is compiled from: every layer, parameter name and array (the plan is valid while the layers
    hold these very objects)."""
    return [(layer, name, array) for layer in model.layers for name, array in layer.params.items()]


class InferencePlan:
    """``model``'s forward pass on ``threads`` threads, compiled once, for any number of images."""

    def __init__(self, model, threads):
        self.dtype = np.dtype(model.dtype)
        compiled = compile_ops(model, self.dtype)
        if compiled is None:
            raise ValueError("this model has layers the inference plan does not run")
        ops, derived, slot_size, scratch_size, logits_at = compiled
        self.threads, self.classes = threads, model.num_classes
        self.image_size = int(np.prod(model.input_shape))
        self.kernel = _plan.Plan(ops, derived, self.dtype, self.image_size, slot_size, scratch_size, logits_at,
                                 self.classes, threads, _block(ops, slot_size * self.dtype.itemsize))
        self.lock = threading.Lock()
        # One image: the threads share it (split) or one thread runs it alone. Sharing is faster for a large
        # network on an idle machine, but each barrier between operations costs microseconds and waits for the
        # slowest thread, which a busy machine deschedules for milliseconds: both are timed as they run (a few calls
        # in a row the other way, now and then) and the faster one answers. The numbers are the same bits either
        # way.
        self.seconds = {True: float("inf"), False: float("inf")}
        self.split, self.phase, self.countdown, self.every = threads > 1, 0, 0, EXPLORE_EVERY

    def _single(self, x, probs):
        if self.threads == 1:
            return self.kernel.run(x, probs, None, False)
        if self.countdown > 0:
            self.countdown -= 1
            return self.kernel.run(x, probs, None, self.split)
        phase, self.phase = self.phase, self.phase + 1
        if phase == 0:
            self.seconds = {True: float("inf"), False: float("inf")}
        split = self.split != (phase < EXPLORE_CALLS)
        start = time.perf_counter()
        finite = self.kernel.run(x, probs, None, split)
        spent = time.perf_counter() - start
        if phase % EXPLORE_CALLS:  # the fastest call of each way: a descheduled thread only ever adds time
            self.seconds[split] = min(self.seconds[split], spent)
        if phase == 2 * EXPLORE_CALLS - 1:
            choice = self.seconds[True] <= self.seconds[False]
            self.every = min(2 * self.every, EXPLORE_MOST_EVERY) if choice == self.split else EXPLORE_EVERY
            self.split, self.phase, self.countdown = choice, 0, self.every
        return finite

    def predict_proba(self, x):
        """Probabilities (N, classes) float64 for x (N, C, H, W) of the model's input shape; None when another
        thread is running this plan (the caller takes the layers' path).

        One image's softmax is computed in C; a batch's is numpy's softmax of the logits, as the layers' path
        computes it (the plan's logits are the layers' own, bit for bit, wherever these use cycnn's kernels)."""
        n = len(x)
        x = np.ascontiguousarray(x, dtype=self.dtype).reshape(n, self.image_size)
        probs = np.empty((n, self.classes), dtype=np.float64) if n == 1 else None
        logits = None if n == 1 else np.empty((n, self.classes), dtype=self.dtype)
        if not self.lock.acquire(blocking=False):
            return None
        try:
            if n == 1:
                finite = self._single(x, probs)
            else:
                finite = self.kernel.run(x, None, logits, False, min(self.kernel.block, -(-n // self.threads)))
        finally:
            self.lock.release()
        if not finite:
            raise ConfigError("the images hold NaN or infinite pixels; no prediction is meaningful for them")
        return probs if n == 1 else softmax(logits.astype(np.float64))


def plan_for(model, threads=None):
    """The model's plan for ``threads`` threads (default: the kernels' thread count), compiled on first use and
    again when the layers' arrays were replaced; None when the plan does not run this model."""
    threads = threads or _parallel.get_num_threads()
    plans = _plans.get(model)
    if plans is None:
        with _lock:
            plans = _plans.setdefault(model, {})
    arrays, plan = plans.get(threads, (None, None))
    if arrays is None or not _plan.holds(arrays):
        arrays = _arrays(model)
        try:
            plan = InferencePlan(model, threads)
        except ValueError:
            plan = None
        plans[threads] = (arrays, plan)
    return plan


def answer(model, x):
    """``model.predict_proba(x)`` through the plan, or None when the plan does not apply (hooks to call, no
    images, a model the plan does not run, another thread running the plan): the caller then takes the layers'
    path."""
    if model._pre_hooks or model._step_hooks or len(x) == 0:
        return None
    x = model.check_input(x)
    plan = plan_for(model)
    if plan is None:
        return None
    if len(x) <= CHUNK:
        return plan.predict_proba(x)
    parts = [plan.predict_proba(x[start:start + CHUNK]) for start in range(0, len(x), CHUNK)]
    return None if any(p is None for p in parts) else np.concatenate(parts)
