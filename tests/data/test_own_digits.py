"""Photos of a learner's own digits (issue 16): faint pencil on grey paper is stretched to full contrast, and the
ruled lines of a notebook are removed before the crop, without grain ever being stretched into a digit."""
import numpy as np
import pytest
from PIL import Image, ImageDraw

import cycnn
from cycnn.data.images import ink_box, ink_image, mnist_style
from cycnn.errors import ImageError
from cycnn.io.architecture import build


def pencil(draw_digit, shape, seed=0):
    """``shape`` in grey pencil (170, with grain, and a few hard-pressed dark spots) on grey paper (200, grainy)."""
    rng = np.random.default_rng(seed)
    stroke = np.asarray(draw_digit(shape, ink=255, paper=0)) / 255.0
    paper = 200 + rng.normal(0, 3, stroke.shape)
    graphite = 170 + rng.normal(0, 6, stroke.shape)
    image = paper * (1 - stroke) + graphite * stroke
    image.flat[rng.choice(np.flatnonzero(stroke > 0.9), 15)] = 60
    return np.clip(image, 0, 255) / 255.0


@pytest.fixture(scope="module")
def briefly_trained(mnist):
    """A small CNN trained for two epochs on 3,000 MNIST digits (about 88% accurate)."""
    x_train, y_train = mnist[0][:3000], mnist[1][:3000]
    model = build({"input_shape": [1, 28, 28], "layers": [
        {"type": "Conv2D", "in_channels": 1, "out_channels": 8, "kernel_size": 3, "activation": "relu"},
        {"type": "MaxPool2D", "pool_size": 2}, {"type": "Flatten"},
        {"type": "Dense", "in_features": 8 * 13 * 13, "out_features": 10}]}, seed=0)
    cycnn.fit(model, x_train, y_train, epochs=2, lr=0.003)
    return model


@pytest.mark.slow
@pytest.mark.parametrize("shape, label", [("zero", 0), ("seven", 7)])
def test_faint_pencil_is_stretched_and_read_better(draw_digit, briefly_trained, shape, label):
    image = pencil(draw_digit, shape)
    stretched, unstretched = mnist_style(image), mnist_style(image, stretch=False)
    assert stretched.max() > 0.9 and unstretched.max() < 0.35  # the dark spots made the old scaling faint
    assert np.percentile(stretched[stretched > 0.05], 90) > 0.8  # the strokes, not only a few pixels
    clean = mnist_style(np.asarray(draw_digit(shape)) / 255.0)
    assert np.corrcoef(stretched.ravel(), clean.ravel())[0, 1] > 0.95
    right = [briefly_trained.predict_proba(x[None, None])[0][label] for x in (stretched, unstretched)]
    assert right[0] > right[1] + 0.2, right


def test_grain_is_paper_not_ink(draw_digit):
    """Grainy paper stays black around the digit, and grain alone is refused like a blank page."""
    image = pencil(draw_digit, "zero")
    ink = ink_image(image)
    assert ink[:20].max() == 0 and ink[:, :20].max() == 0
    rng = np.random.default_rng(1)
    for sigma in (1, 3, 8):
        with pytest.raises(ImageError, match="blank"):
            mnist_style(np.clip(200 + rng.normal(0, sigma, (160, 200)), 0, 255) / 255.0)


def ruled(image, spacing=32, width=3, ink=120, margin=12):
    """``image`` on notebook paper: horizontal lines every ``spacing`` rows and a vertical margin line."""
    lined = image.copy()
    draw = ImageDraw.Draw(lined)
    for y in range(15, image.height, spacing):
        draw.line((0, y, image.width - 1, y), fill=ink, width=width)
    draw.line((margin, 0, margin, image.height - 1), fill=ink + 20, width=2)
    return Image.fromarray(np.minimum(np.asarray(lined), np.asarray(image)))


@pytest.mark.parametrize("shape", ["zero", "seven"])
@pytest.mark.parametrize("pencilled", [False, True], ids=["pen", "pencil"])
def test_ruled_lines_are_removed_before_the_crop(draw_digit, shape, pencilled):
    plain = draw_digit(shape, size=(200, 240))
    if pencilled:
        plain = Image.fromarray(np.rint(pencil(lambda *a, **k: draw_digit(*a, size=(200, 240), **k), shape) * 255)
                                .astype(np.uint8))
    lined = ruled(plain)
    a, b = np.asarray(plain) / 255.0, np.asarray(lined) / 255.0
    assert ink_box(ink_image(b)) == ink_box(ink_image(a))  # the digit's box, not the page's
    assert np.corrcoef(mnist_style(a).ravel(), mnist_style(b).ravel())[0, 1] > 0.9


def test_a_digit_bar_that_spans_the_image_is_kept(draw_digit):
    """A tightly cropped 7 whose bar runs from edge to edge: the bar is thick, so it is not a ruled line."""
    seven = np.asarray(draw_digit("seven"))[20:180, 18:122] / 255.0
    assert (1 - seven)[15].mean() > 0.85  # the bar spans most of the width
    np.testing.assert_allclose(ink_image(seven), 1 - seven)  # and nothing was removed (nor stretched: pen on white)
