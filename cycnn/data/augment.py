"""Data augmentation: a random rotation and shift per image (the same for all of a colour image's channels), and
optionally a horizontal flip, applied to a whole batch by one Cython kernel."""
import numpy as np

from cycnn.data import _augment


def random_affine(x, rng, max_degrees=10.0, max_shift=2.0, flip=False):
    """Rotate each image of x (N, C, H, W) or (N, H, W) by up to ±max_degrees about its centre and shift it by up
    to ±max_shift pixels, with bilinear sampling, and with ``flip`` mirror half of them left to right; returns a new
    array of the same shape and dtype. One image's channels move together. Without ``flip`` the random numbers
    drawn are those of earlier versions (a resumed run continues exactly)."""
    x = np.ascontiguousarray(x)
    if not len(x):
        return x.copy()
    images = x.reshape(-1, x.shape[-2], x.shape[-1])
    channels = images.shape[0] // len(x)
    n, h, w = len(x), x.shape[-2], x.shape[-1]
    angle = np.deg2rad(rng.uniform(-max_degrees, max_degrees, n))
    shift = rng.uniform(-max_shift, max_shift, (n, 2))
    mirror = rng.random(n) < 0.5 if flip else np.zeros(n, dtype=bool)
    cos, sin = np.cos(angle), np.sin(angle)
    cr, cc = (h - 1) / 2.0, (w - 1) / 2.0
    # Inverse map: output pixel (r, c) samples the source at R^-1 ((r, c) - centre - shift) + centre.
    maps = np.empty((n, 2, 3))
    maps[:, 0, 0], maps[:, 0, 1] = cos, sin
    maps[:, 1, 0], maps[:, 1, 1] = -sin, cos
    dr, dc = -cr - shift[:, 0], -cc - shift[:, 1]
    maps[:, 0, 2] = cos * dr + sin * dc + cr
    maps[:, 1, 2] = -sin * dr + cos * dc + cc
    # A mirrored image samples column (w - 1 - c) of the source: its column coefficients change sign.
    maps[mirror, 1] = -maps[mirror, 1]
    maps[mirror, 1, 2] += w - 1
    out = np.empty_like(images)
    _augment.affine_warp(images, np.repeat(maps, channels, axis=0), out)
    return out.reshape(x.shape)
