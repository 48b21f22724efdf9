"""What a deeper channel detects: the test-image patches that excite it most.

A deep layer's kernels act on other channels, not on pixels, so drawing their weights shows little. What does
show is the input each channel responds to: every position of a map sees one box of input pixels, its receptive
field (``receptive_field``, from the kernel sizes, strides, padding and pooling of the layers up to it). For each
channel, ``top_patches`` finds the images whose largest value in that channel's map is largest and cuts out the box
that value saw; ``top_patches_figure`` lays those patches out, a row per channel.
"""
import math
from dataclasses import dataclass

import numpy as np
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from cycnn.nn.layers import Conv2D, MaxPool2D
from cycnn.viz.drawing import hide_axes, mosaic

OUTSIDE = "#c9d1d9"  # the part of a receptive field that lies outside the image (in the padding)
SILENT = "#eaeef2"  # the patches of a channel that never fired on the sample
GAPS = "#afb8c1"  # the lines between patches, which frame each one


@dataclass(frozen=True)
class Field:
    """The input box that position (y, x) of a map sees: rows ``start[0] + y * jump[0]`` onwards, ``size[0]`` of
    them, and the same for columns (``start`` is negative where the box begins in the padding)."""

    size: tuple
    jump: tuple
    start: tuple

    def box(self, y, x, shape):
        """The box of input pixels (top, left, bottom, right; bottom and right excluded) that position (y, x) sees,
        clipped to an image of ``shape`` (h, w)."""
        top, left = self.start[0] + y * self.jump[0], self.start[1] + x * self.jump[1]
        return (max(top, 0), max(left, 0), min(top + self.size[0], shape[0]), min(left + self.size[1], shape[1]))


def _geometry(layer):
    """(kernel, stride, padding) per axis of a layer that slides a window over the map, None for one that acts on
    each value alone (ReLU, dropout)."""
    if isinstance(layer, Conv2D):
        return layer.kernel_size, (layer.stride, layer.stride), (layer.padding, layer.padding)
    if isinstance(layer, MaxPool2D):
        return layer.pool_size, layer.stride, (0, 0)
    return None


def receptive_field(model, index):
    """The receptive field of the output of map layer ``index`` (a conv or pooling layer)."""
    size, jump, start = [1, 1], [1, 1], [0, 0]
    for layer in model.layers[:index + 1]:
        geometry = _geometry(layer)
        if geometry is None:
            continue
        kernel, stride, padding = geometry
        for axis in (0, 1):
            start[axis] -= padding[axis] * jump[axis]
            size[axis] += (kernel[axis] - 1) * jump[axis]
            jump[axis] *= stride[axis]
    return Field(tuple(size), tuple(jump), tuple(start))


@dataclass
class TopPatches:
    """Per channel, the images that excite it most, strongest first: ``images`` (channels, k) their numbers,
    ``values`` (channels, k) the channel's largest value in each, ``positions`` (channels, k, 2) the map position
    (y, x) of that value and ``field`` the receptive field it sees."""

    images: np.ndarray
    values: np.ndarray
    positions: np.ndarray
    field: Field

    def boxes(self, shape):
        """(channels, k, 4): each patch's box of input pixels, clipped to images of ``shape`` (h, w)."""
        return np.array([[self.field.box(y, x, shape) for y, x in row] for row in self.positions])


def top_patches(model, index, images, per_channel=6, channels=64, batch_size=100):
    """For the first ``channels`` channels of map layer ``index``, the ``per_channel`` images (of the model inputs
    ``images``) whose largest value in that channel's map is largest, with where that value is."""
    peaks, where, width = [], [], None
    for start in range(0, len(images), batch_size):
        batch = np.asarray(images[start:start + batch_size], dtype=model.dtype)
        maps = model.layer_outputs(batch)[index][:, :channels]
        width = maps.shape[3]
        flat = maps.reshape(len(maps), maps.shape[1], -1)
        where.append(flat.argmax(axis=2))
        peaks.append(flat.max(axis=2))
    peaks, where = np.concatenate(peaks).T, np.concatenate(where).T  # (channels, images)
    order = np.argsort(-peaks, axis=1, kind="stable")[:, :per_channel]
    found = np.take_along_axis(where, order, axis=1)
    return TopPatches(order, np.take_along_axis(peaks, order, axis=1), np.stack(divmod(found, width), axis=-1),
                      receptive_field(model, index))


def patch(image, position, field):
    """The receptive field of map position (y, x) cut from ``image`` (C, H, W) as RGB (size_h, size_w, 3): ink on
    paper (or the image's own colours), and ``OUTSIDE`` where the field reaches past the image's edge."""
    top, left = (field.start[a] + position[a] * field.jump[a] for a in (0, 1))
    clipped = field.box(*position, image.shape[1:])
    cut = np.clip(np.asarray(image[:, clipped[0]:clipped[2], clipped[1]:clipped[3]], dtype=np.float64), 0, 1)
    pixels = cut.transpose(1, 2, 0) if cut.shape[0] == 3 else 1 - cut.mean(axis=0)[..., None]
    out = np.empty((*field.size, 3))
    out[:] = to_rgb(OUTSIDE)
    out[clipped[0] - top:clipped[2] - top, clipped[1] - left:clipped[3] - left] = pixels
    return out


def _rgb_mosaic(tiles, columns, factor):
    """RGB tiles (n, h, w, 3) enlarged ``factor`` times in rows of ``columns`` (``mosaic`` per colour channel),
    the thin gaps in ``GAPS``. Returns (image, positions)."""
    tiles = tiles.repeat(factor, axis=1).repeat(factor, axis=2)
    planes = [mosaic(tiles[..., c], columns) for c in range(3)]
    image = np.stack([plane for plane, _ in planes], axis=-1)
    return np.where(np.isnan(image), np.array(to_rgb(GAPS)), image), planes[0][1]


def top_patches_figure(model, index, images, per_channel=6, channels=64):
    """A row of patches per channel of conv layer ``index`` (the first ``channels``): the receptive fields of its
    strongest values in the ``per_channel`` images of ``images`` that excite it most, four channels a row."""
    found = top_patches(model, index, images, per_channel, channels)
    shown, field = len(found.images), found.field
    blank, silent = np.ones((*field.size, 3)), np.empty((*field.size, 3))
    silent[:] = to_rgb(SILENT)
    tiles = []
    for c in range(shown):
        tiles.append(blank)  # the cell that holds the channel's number
        tiles += [patch(images[i], p, field) if found.values[c, 0] > 0 else silent
                  for i, p in zip(found.images[c], found.positions[c])]
    blocks = min(4, shown)
    factor = math.ceil(24 / max(field.size))
    image, positions = _rgb_mosaic(np.array(tiles), blocks * (per_channel + 1), factor)
    height, width = image.shape[:2]
    scale = min(12 / width, 8.5 / height)
    figure = Figure(figsize=(max(width * scale, 5) + 0.4, max(height * scale, 2) + 1.1), layout="constrained")
    ax = figure.add_subplot()
    ax.imshow(image, interpolation="nearest")
    cell_h, cell_w = field.size[0] * factor, field.size[1] * factor
    font = min(10, 0.5 * cell_h * scale * 72)
    for c in range(shown):
        top, left = positions[c * (per_channel + 1)]
        ax.text(left + cell_w - factor, top + cell_h / 2 - 0.5, str(c), ha="right", va="center",
                fontsize=font, color="#8c959f" if found.values[c, 0] <= 0 else "black")
    hide_axes(ax)
    total = model.layers[index].out_channels
    silent_count = int(np.sum(found.values[:, 0] <= 0))
    ax.set_title(f"What the channels of layer {model.layer_names()[index]} respond to"
                 f"{f' (the first {shown} of {total})' if shown < total else ''}: each row, after the channel's "
                 f"number, the {found.images.shape[1]} of {len(images):,} test images\nthat excite it most, cut to "
                 f"the {field.size[0]}×{field.size[1]} input pixels its strongest value sees (darker grey: beyond "
                 "the image's edge" + (f"; {silent_count} channels never fired: blank" if silent_count else "")
                 + ")", fontsize=11)
    return figure
