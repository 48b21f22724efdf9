"""Generated colour datasets for the colour tests (an importable helper, as ``cli_runner`` is).

- ``colour_only``: discs and squares of three colours that have the same brightness as the grey background
  (Pillow's own RGB -> L conversion gives every colour the same gray level), so that a gray model sees the same
  flat picture for every class and cannot beat chance; only the colour tells the classes apart.
- ``shapes``: white-ish discs, squares and triangles on random dark colours, of mixed picture sizes: classes that
  differ in shape, which gray and colour models both learn.
"""
import numpy as np
from PIL import Image, ImageDraw

# Colours whose gray level (L = 299 R + 587 G + 114 B, / 1000, Pillow's) equals the background's, 120.
BACKGROUND = (120, 120, 120)
COLOURS = {"red": (255, 75, 1), "green": (0, 180, 126), "blue": (100, 104, 255)}
SIZES = [(40, 40), (48, 32), (32, 56), (64, 64), (36, 44)]


def _gray(rgb):
    return Image.new("RGB", (1, 1), rgb).convert("L").getpixel((0, 0))


assert {_gray(c) for c in [BACKGROUND, *COLOURS.values()]} == {120}, "the colours must share the background's gray"


def colour_only(directory, per_class=40, seed=0):
    """``directory/<colour>/*.png``: one coloured shape per picture at a random place and size."""
    rng = np.random.default_rng(seed)
    for name, rgb in COLOURS.items():
        (directory / name).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            width, height = SIZES[k % len(SIZES)]
            image = Image.new("RGB", (width, height), BACKGROUND)
            _shape(ImageDraw.Draw(image), ("disc", "square")[k % 2], width, height, rgb, rng)
            image.save(directory / name / f"{name}_{k:03d}.png")
    return directory


def shapes(directory, per_class=40, seed=0):
    """``directory/<shape>/*.png``: a light shape on a random dark colour, pictures of mixed sizes."""
    rng = np.random.default_rng(seed)
    for name in ("disc", "square", "triangle"):
        (directory / name).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            width, height = SIZES[(k + 2) % len(SIZES)]
            ground = tuple(int(v) for v in rng.integers(0, 90, 3))
            image = Image.new("RGB", (width, height), ground)
            ink = tuple(int(v) for v in rng.integers(170, 256, 3))
            _shape(ImageDraw.Draw(image), name, width, height, ink, rng)
            image.save(directory / name / f"{name}_{k:03d}.{'png' if k % 3 else 'jpg'}")
    return directory


def _shape(draw, kind, width, height, fill, rng):
    side = min(width, height)
    r = side * rng.uniform(0.22, 0.34)
    cx, cy = width / 2 + rng.uniform(-0.1, 0.1) * width, height / 2 + rng.uniform(-0.1, 0.1) * height
    if kind == "disc":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif kind == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
