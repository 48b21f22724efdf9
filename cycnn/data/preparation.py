"""How an image file becomes a model input, recorded in the model file so that ``predict``, ``evaluate``,
``explore`` and ``visualize`` prepare a new file exactly as the training images were prepared.

Two recipes:

- ``digit``: MNIST's (``cycnn.data.images.mnist_style``): gray, ink made light on black, cropped to the ink, fitted
  in 20x20 and centred by mass in 28x28 (then resized, for digit data of another size). For 1-channel digit data:
  IDX files, and image folders of gray pictures.
- ``resize``: the whole picture, centre-cropped to the input's aspect ratio (nothing is squashed: a picture of
  another shape loses its edges, not its proportions) and resized (Lanczos) to the input size, in colour (3
  channels; a gray file becomes three equal channels) or in gray (1; a colour file is converted). For image folders
  of anything else: photos of leaves, bricks, signs.
"""
import os
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from cycnn.data.images import load_image, load_rgb, mnist_style
from cycnn.errors import ConfigError

RECIPES = ("digit", "resize")
DEFAULT_SIZE = (32, 32)  # a resized picture's size unless --image-size says otherwise
MIN_SIDE, MAX_SIDE = 4, 1024
COLOUR_SPREAD = 8 / 255  # a picture whose channels differ by more than this somewhere is in colour


@dataclass(frozen=True)
class Preparation:
    recipe: str = "digit"
    channels: int = 1
    height: int = 28
    width: int = 28

    def __post_init__(self):
        if self.recipe not in RECIPES:
            raise ConfigError(f"unknown preparation {self.recipe!r:.40}; choose {' or '.join(RECIPES)}")
        if isinstance(self.channels, bool) or not isinstance(self.channels, int) or self.channels not in (1, 3):
            raise ConfigError(f"a prepared image has 1 (gray) or 3 (colour) channels, not {self.channels!r:.40}")
        for name in ("height", "width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not MIN_SIDE <= value <= MAX_SIDE:
                raise ConfigError(f"the image {name} must be a whole number from {MIN_SIDE} to {MAX_SIDE}, "
                                  f"received {value!r:.40}")
        if self.recipe == "digit" and self.channels != 1:
            raise ConfigError("the digit preparation makes 1-channel images; use --prepare resize for colour")

    @property
    def input_shape(self):
        return (self.channels, self.height, self.width)

    def prepare(self, source, name=None):
        """An image file (a path, or its bytes) as a model input (C, H, W), float32 in [0, 1]."""
        name = name or ("image" if isinstance(source, (bytes, bytearray)) else os.fspath(source))
        if self.recipe == "digit":
            digit = mnist_style(load_image(source, name), name=name)
            return digit[None] if digit.shape == (self.height, self.width) else resize(digit[..., None], self.height,
                                                                                       self.width)
        picture = load_rgb(source, name) if self.channels == 3 else load_image(source, name)[..., None]
        return resize(picture, self.height, self.width)

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, data, source="the model"):
        if not isinstance(data, dict) or set(data) != {"recipe", "channels", "height", "width"}:
            raise ConfigError(f"{source}: the image preparation must be a table of recipe, channels, height, width")
        try:
            return cls(**data)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None


DIGIT = Preparation()


def resize(picture, height, width):
    """A float picture (H, W, C) in [0, 1], centre-cropped to height:width and resized: (C, height, width)."""
    h, w = picture.shape[:2]
    if h * width > w * height:  # taller than the target: cut rows
        keep = max(1, round(w * height / width))
        top = (h - keep) // 2
        picture = picture[top:top + keep]
    else:
        keep = max(1, round(h * width / height))
        left = (w - keep) // 2
        picture = picture[:, left:left + keep]
    channels = [Image.fromarray(np.rint(picture[..., c] * 255).astype(np.uint8), mode="L")
                .resize((width, height), Image.Resampling.LANCZOS) for c in range(picture.shape[2])]
    return np.stack([np.asarray(c, dtype=np.float32) / 255 for c in channels])


def is_colour(picture):
    """Whether a float RGB picture (H, W, 3) holds any colour (a gray photo saved as RGB does not)."""
    return float(np.ptp(picture, axis=2).max()) > COLOUR_SPREAD


def for_model(model):
    """The preparation a model was trained with (its file's ``preparation``), or for a model without one (trained
    before it was recorded, on digits) the default for its input: the digit recipe for one channel, a plain resize
    for three."""
    stored = model.metadata.get("preparation") if isinstance(model.metadata, dict) else None
    if stored is not None:
        preparation = Preparation.from_dict(stored)
        if preparation.input_shape == tuple(model.input_shape):
            return preparation
        raise ConfigError(f"the model's image preparation makes {preparation.input_shape} inputs, but the model "
                          f"takes {tuple(model.input_shape)}")
    c, h, w = model.input_shape
    if c == 1:
        return Preparation("digit", 1, h, w)
    if c != 3:
        raise ConfigError(f"image files cannot be prepared for a model with {c} input channels (1 or 3)")
    return Preparation("resize", c, h, w)


def channel_statistics(images):
    """Per-channel mean and standard deviation of uint8 images (N, H, W) or (N, C, H, W), on the [0, 1] scale of
    the model input (std at least 1e-3, so that a flat channel does not divide by zero)."""
    x = np.asarray(images)
    x = x[:, None] if x.ndim == 3 else x
    mean, square = np.zeros(x.shape[1]), np.zeros(x.shape[1])
    for start in range(0, len(x), 1024):  # in slices: a float copy of a large dataset would double its memory
        chunk = x[start:start + 1024].astype(np.float64) / 255
        mean += chunk.sum(axis=(0, 2, 3))
        square += (chunk ** 2).sum(axis=(0, 2, 3))
    count = len(x) * x.shape[2] * x.shape[3]
    mean, square = mean / count, square / count
    std = np.sqrt(np.maximum(square - mean ** 2, 0))
    return [round(float(m), 6) for m in mean], [round(float(max(s, 1e-3)), 6) for s in std]
