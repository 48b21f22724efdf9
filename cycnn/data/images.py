"""Turn a photo or scan of a digit into a 28x28 MNIST-style image.

MNIST's own recipe: light ink on a dark background, the digit cropped to its ink, scaled to fit a 20x20 box
keeping its aspect ratio (anti-aliased), then placed in a 28x28 frame so that its centre of mass is at the centre.
Photos are usually dark ink on light paper, so an image whose border is brighter than its middle is inverted.
Two steps MNIST did not need serve photos of the learner's own digits: the ink's contrast is stretched (pencil on
grey paper would otherwise come out faint), and ruled lines of a notebook are removed before cropping (they would
stretch the crop to the page's width and squash the digit).
"""
import io
import os
import stat
import warnings

import numpy as np
from PIL import Image, ImageOps

from cycnn.errors import ImageError

MAX_PIXELS = 50_000_000  # refuse larger images before decoding them (decompression bombs)
MAX_SIDE = 2048  # larger images are scaled down to this before they are prepared
INK_THRESHOLD = 0.2  # fraction of the ink's range that counts as ink when cropping
NOISE_SIGMAS = 4  # ink within this many standard deviations of the paper's grain is taken for paper
INK_PERCENTILE = 60  # the ink level stretched to 1: the stroke's typical level (specks should not set it)
BLANK_CONTRAST = 0.05  # ink standing out from the paper by less than this (of black to white) is no digit
LINE_COVERAGE = 0.8  # a row (column) inked over this fraction of the width (height) may be a ruled line ...
LINE_THICKNESS = 0.04  # ... if its band is at most this fraction of the height (width) thick, or 2 pixels


def load_image(path_or_bytes, name=None):
    """Open and decode an image file into a float grayscale array in [0, 1] (H, W); ImageError if it can't."""
    return _decode(path_or_bytes, name, _to_gray)


def load_rgb(path_or_bytes, name=None):
    """Open and decode an image file into a float RGB array in [0, 1] (H, W, 3) (grayscale files as three equal
    channels); ImageError if it can't."""
    return _decode(path_or_bytes, name, _to_rgb)


def _decode(path_or_bytes, name, convert):
    """The checks every decoded image passes (size before decoding, one frame, EXIF rotation, a bounded side), then
    ``convert(img, name)``."""
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
                img = ImageOps.exif_transpose(img)  # phone photos are often stored rotated
                if max(img.size) > MAX_SIDE:  # a digit ends up 20 pixels tall: spare the float copies of 49 Mpx
                    img.thumbnail((MAX_SIDE, MAX_SIDE))
                return convert(img, name)
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


def _to_rgb(img, name):
    """Any mode to RGB in [0, 1] (H, W, 3); transparency shows as white, 16-bit and float images are stretched to
    their own range as in ``_to_gray`` (one channel, repeated)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F", "L", "1", "LA", "La") or (img.mode == "P" and _gray_palette(img)):
        gray = _to_gray(img, name)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode in ("P", "PA", "RGBA", "RGBa") or "transparency" in img.info:
        img = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img)
    return np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0


def _gray_palette(img):
    palette = img.getpalette() or []
    return all(palette[k] == palette[k + 1] == palette[k + 2] for k in range(0, len(palette) - 2, 3))


def mnist_style(gray, name="image", stretch=True):
    """A grayscale image in [0, 1] (H, W) -> a 28x28 float32 image in [0, 1], white digit on black, MNIST-style.
    ``stretch=False`` scales the ink by its darkest pixel instead of stretching its contrast (the old recipe)."""
    ink = ink_image(gray, name, stretch)
    top, bottom, left, right = ink_box(ink)
    crop = ink[top:bottom, left:right]
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


def ink_image(gray, name="image", stretch=True):
    """The ink, light on black in [0, 1], at the image's size: the paper made black (inverted if it is light),
    ruled lines removed, and the contrast stretched so that faint pencil on grey paper reaches 1 like a pen.

    The paper's noise is measured on the pixels lighter than the paper (ink only ever darkens it); what stays
    within ``NOISE_SIGMAS`` of it is paper (black), the strokes' typical level becomes 1, and ink that stands out
    from the paper less than the noise itself does is refused as a blank image, so that grain is never stretched
    into a digit.
    """
    gray = np.asarray(gray, dtype=np.float64)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = np.median(border)
    if background > 0.5:  # dark ink on light paper: make the ink bright
        gray, background = 1.0 - gray, 1.0 - background
    ink = gray - background
    paper = ink[ink <= 0]
    noise = 1.4826 * np.median(-paper) if paper.size else 0.0  # robust standard deviation of the paper's grain
    floor = NOISE_SIGMAS * noise
    inked = max(2 * noise, INK_THRESHOLD * _strong(ink, floor))
    ink = _remove_lines(_remove_lines(ink, inked).T, inked).T  # rows, then columns
    if not stretch:
        ink = np.clip(ink, 0, None)
        peak = ink.max()
        if peak <= BLANK_CONTRAST:
            raise ImageError(f"{name}: the image is blank (no digit found)")
        return ink / peak
    strong = _strong(ink, floor)
    level = ink[ink > max(floor, strong / 2)]  # the strokes, without the faint grain a JPEG leaves around them
    high = np.percentile(level, INK_PERCENTILE) if level.size else floor
    if high - floor <= max(BLANK_CONTRAST, 3 * noise):
        raise ImageError(f"{name}: the image is blank (no digit found)")
    return np.clip((ink - floor) / (high - floor), 0, 1)


def _strong(ink, floor):
    """The level of the darkest ink, but for the darkest 1% (specks): what the ink thresholds are relative to."""
    above = ink[ink > floor]
    return np.percentile(above, 99) if above.size else floor


def _remove_lines(ink, inked):
    """Ruled lines painted over: a band of rows above the level ``inked`` over ``LINE_COVERAGE`` of the width and
    at most ``LINE_THICKNESS`` of the height thick takes, with a row more on each side for its blurred edges, the
    darker of the rows just above and below it. A stroke that crosses the line is kept (it is ink on both sides); one
    that ends on it loses at most the line's thickness, rather than being stretched along it."""
    height = ink.shape[0]
    lined = np.flatnonzero((ink > inked).mean(axis=1) >= LINE_COVERAGE)
    if not lined.size:
        return ink
    thickest = max(2, round(LINE_THICKNESS * height))
    ink = ink.copy()
    for band in np.split(lined, np.flatnonzero(np.diff(lined) > 1) + 1):
        above, below = band[0] - 2, band[-1] + 2
        if len(band) > thickest or (above < 0 and below >= height):
            continue  # a thick band is not a ruled line (a dark edge, a digit's bar, a page all ink)
        beside = [ink[r] for r in (above, below) if 0 <= r < height]
        ink[max(above + 1, 0):below] = np.minimum.reduce(beside)
    return ink


def ink_box(ink):
    """The digit's box in an ``ink_image``: (top, bottom, left, right), bottom and right exclusive."""
    rows = np.flatnonzero((ink > INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((ink > INK_THRESHOLD).any(axis=0))
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def _shift(image, dr, dc):
    """Shift by whole pixels, filling with 0 (never wrapping ink round to the other side)."""
    out = np.zeros_like(image)
    h, w = image.shape
    src_r, dst_r = slice(max(0, -dr), min(h, h - dr)), slice(max(0, dr), min(h, h + dr))
    src_c, dst_c = slice(max(0, -dc), min(w, w - dc)), slice(max(0, dc), min(w, w + dc))
    out[dst_r, dst_c] = image[src_r, src_c]
    return out


def prepare_digit(source, name=None):
    """An image file (a path, or its bytes) preprocessed the MNIST way: (28, 28) float32 in [0, 1]."""
    name = name or ("image" if isinstance(source, (bytes, bytearray)) else os.fspath(source))
    return mnist_style(load_image(source, name), name=name)
