"""The explorer's "what if": rotate, shift, scale, thicken or thin, and add noise to model inputs.

The sliders apply them to the drawn image after it has been prepared, and the robustness curves to a sample of
the test set: both go through ``apply``, which works on a batch (N, C, H, W) with numpy, so a curve of 1,000
images at a dozen settings takes a fraction of a second. Geometry is a bilinear warp about the image's centre
with black (no ink) outside; thickness is a grey dilation (erosion) by a 3x3 cross per step; noise is Gaussian
from a fixed seed, so the same slider position always gives the same picture.
"""
import math

import numpy as np

from cycnn.errors import ConfigError

# name -> (least, most, neutral value): the range each transform takes (a flag, a slider, a query parameter)
RANGES = {"rotate": (-180.0, 180.0, 0.0), "shift_x": (-14.0, 14.0, 0.0), "shift_y": (-14.0, 14.0, 0.0),
          "scale": (0.25, 3.0, 1.0), "thickness": (-3.0, 3.0, 0.0), "noise": (0.0, 1.0, 0.0)}
NOISE_SEED = 20261202


def check(settings):
    """``settings`` (name -> number) validated against ``RANGES``; unknown names and bad values are refused."""
    checked = {}
    for name, value in settings.items():
        if name not in RANGES:
            raise ConfigError(f"unknown transform {name!r}; known: {', '.join(RANGES)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                isinstance(value, float) and not math.isfinite(value):  # a huge int fails the range check below
            raise ConfigError(f"transform {name} must be a finite number, received {value!r}")
        least, most, _ = RANGES[name]
        if not least <= value <= most:
            raise ConfigError(f"transform {name} must be from {least:g} to {most:g}, received {str(value)[:40]}")
        if name == "thickness" and value != int(value):
            raise ConfigError(f"transform thickness takes whole steps, received {str(value)[:40]}")
        checked[name] = float(value)
    return checked


def is_identity(settings):
    return all(value == RANGES[name][2] for name, value in settings.items())


def apply(images, rotate=0.0, shift_x=0.0, shift_y=0.0, scale=1.0, thickness=0.0, noise=0.0):
    """The transformed copy of a float batch (N, C, H, W) in [0, 1]."""
    out = np.asarray(images, dtype=np.float32)
    if rotate or shift_x or shift_y or scale != 1:
        out = warp(out, rotate, shift_x, shift_y, scale)
    for _ in range(abs(int(thickness))):
        out = _morph(out, np.maximum if thickness > 0 else np.minimum)
    if noise:
        out = np.clip(out + np.random.default_rng(NOISE_SEED).normal(0, noise, out.shape).astype(np.float32), 0, 1)
    return out


def warp(images, rotate, shift_x, shift_y, scale):
    """Rotate by ``rotate`` degrees (counter-clockwise), scale, then shift (pixels, +x right, +y down), bilinear."""
    n, c, h, w = images.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    # Each output pixel samples the input at the inverse transform of its own position.
    y, x = (rows - cy - shift_y) / scale, (cols - cx - shift_x) / scale
    angle = math.radians(rotate)
    sy = cy + y * math.cos(angle) + x * math.sin(angle)  # rows run down: counter-clockwise on the screen
    sx = cx - y * math.sin(angle) + x * math.cos(angle)
    y0, x0 = np.floor(sy).astype(np.int64), np.floor(sx).astype(np.int64)
    fy, fx = (sy - y0).astype(np.float32), (sx - x0).astype(np.float32)
    out = np.zeros_like(images)
    for dy, dx, weight in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        yy, xx = y0 + dy, x0 + dx
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        out += images[:, :, np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)] * (weight * inside)
    return np.clip(out, 0, 1)


def _morph(images, combine):
    """One step of grey dilation (``np.maximum``) or erosion (``np.minimum``) by a 3x3 cross."""
    padded = np.pad(images, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = images.copy()
    h, w = images.shape[2:]
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        combine(out, padded[:, :, dy:dy + h, dx:dx + w], out=out)
    return out
