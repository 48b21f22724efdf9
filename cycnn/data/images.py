"""Turn a photo or scan of a digit into a 28x28 MNIST-style image.

MNIST's own recipe: light ink on a dark background, the digit cropped to its ink, scaled to fit a 20x20 box
keeping its aspect ratio (anti-aliased), then placed in a 28x28 frame so that its centre of mass is at the centre.
Photos are usually dark ink on light paper, so an image whose border is brighter than its middle is inverted.
"""
import io
import os
import stat
import warnings

import numpy as np
from PIL import Image, ImageOps

from cycnn.errors import ImageError

MAX_PIXELS = 50_000_000  # refuse larger images before decoding them (decompression bombs)
INK_THRESHOLD = 0.2  # fraction of the ink's range that counts as ink when cropping


def load_image(path_or_bytes, name=None):
    """Open and decode an image file into a float grayscale array in [0, 1] (H, W); ImageError if it can't."""
    in_memory = isinstance(path_or_bytes, (bytes, bytearray))
    name = name or ("image" if in_memory else os.fspath(path_or_bytes))
    source = io.BytesIO(path_or_bytes) if in_memory else path_or_bytes
    try:
        if (len(path_or_bytes) if in_memory else _file_size(source, name)) == 0:
            raise ImageError(f"{name}: empty file, not an image")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's notes on damaged metadata: the result or the error says enough
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                width, height = img.size
                if width * height > MAX_PIXELS:
                    raise ImageError(f"{name}: image is {width}x{height}, larger than the {MAX_PIXELS:,}-pixel limit")
                if getattr(img, "n_frames", 1) > 1:
                    raise ImageError(f"{name}: animated image with {img.n_frames} frames; give a single image")
                img.load()
                return _to_gray(ImageOps.exif_transpose(img), name)  # phone photos are often stored rotated
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file (or a format Pillow cannot read)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{name}: refused as a possible decompression bomb ({exc})") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError, TypeError, IndexError, KeyError,
            ZeroDivisionError, OverflowError, RuntimeError) as exc:
        raise ImageError(f"{name}: cannot decode image ({type(exc).__name__}: {exc})") from None


def _file_size(path, name):
    """The size of a regular file, checked before opening it: reading a FIFO or a device may block or never end."""
    info = os.stat(path)
    if stat.S_ISDIR(info.st_mode):
        raise ImageError(f"{name}: is a directory, not an image")
    if not stat.S_ISREG(info.st_mode):
        raise ImageError(f"{name}: not a regular file (a FIFO, socket or device), not an image")
    return info.st_size


def _to_gray(img, name):
    """Any mode (palette, alpha, 16-bit, CMYK...) to grayscale in [0, 1]; transparency shows as white paper.
    A float image with NaN or infinite pixels is refused: any digit read from it would be a guess."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # Stretched to their own range: 16-bit files often hold 10- or 12-bit data, and float files any range.
        data = np.asarray(img, dtype=np.float64)
        bad = data.size - np.count_nonzero(np.isfinite(data))
        if bad:
            raise ImageError(f"{name}: {bad:,} of its {data.size:,} pixels are NaN or infinite, not an image of a "
                             "digit")
        low, high = float(data.min()), float(data.max())
        return (data - low) / (high - low) if high > low else np.zeros_like(data)
    if img.mode == "P" or img.mode in ("LA", "PA", "RGBA", "La", "RGBa") or "transparency" in img.info:
        img = img.convert("RGBA")
        paper = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(paper, img)
    return np.asarray(img.convert("L"), dtype=np.float64) / 255.0


def mnist_style(gray, name="image"):
    """A grayscale image in [0, 1] (H, W) -> a 28x28 float32 image in [0, 1], white digit on black, MNIST-style."""
    gray = np.asarray(gray, dtype=np.float64)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = np.median(border)
    if background > 0.5:  # dark ink on light paper: make the ink bright
        gray, background = 1.0 - gray, 1.0 - background
    gray = np.clip(gray - background, 0, None)
    peak = gray.max()
    if peak <= 0.05:
        raise ImageError(f"{name}: the image is blank (no digit found)")
    gray /= peak
    rows = np.flatnonzero((gray > INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((gray > INK_THRESHOLD).any(axis=0))
    crop = gray[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    ch, cw = crop.shape
    scale = 20.0 / max(ch, cw)
    size = (max(1, round(cw * scale)), max(1, round(ch * scale)))
    small = Image.fromarray((crop * 255).astype(np.uint8), mode="L").resize(size, Image.Resampling.LANCZOS)
    digit = np.asarray(small, dtype=np.float64) / 255.0
    frame = np.zeros((28, 28))
    top, left = (28 - digit.shape[0]) // 2, (28 - digit.shape[1]) // 2
    frame[top:top + digit.shape[0], left:left + digit.shape[1]] = digit
    # Centre by mass, as MNIST was: shift so the intensity-weighted centroid sits at (14, 14).
    total = frame.sum()
    r_idx, c_idx = np.indices(frame.shape)
    dr = int(round(13.5 - (r_idx * frame).sum() / total))
    dc = int(round(13.5 - (c_idx * frame).sum() / total))
    frame = _shift(frame, dr, dc)
    return frame.astype(np.float32)


def _shift(image, dr, dc):
    """Shift by whole pixels, filling with 0 (never wrapping ink round to the other side)."""
    out = np.zeros_like(image)
    h, w = image.shape
    src_r, dst_r = slice(max(0, -dr), min(h, h - dr)), slice(max(0, dr), min(h, h + dr))
    src_c, dst_c = slice(max(0, -dc), min(w, w - dc)), slice(max(0, dc), min(w, w + dc))
    out[dst_r, dst_c] = image[src_r, src_c]
    return out


def prepare_digit(path):
    """Load an image file and preprocess it the MNIST way: (28, 28) float32 in [0, 1]."""
    return mnist_style(load_image(path), name=os.fspath(path))


def prepare_for_model(path, input_shape):
    """An image file as one model input (C, H, W): the MNIST recipe for 28x28 grayscale models."""
    if tuple(input_shape) != (1, 28, 28):
        raise ImageError(f"{path}: this model takes {input_shape} inputs; image files are prepared for 1x28x28")
    return prepare_digit(path)[None]
