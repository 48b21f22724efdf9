"""Shared test settings: hypothesis profiles sized for a 2-core machine, and fixtures several test files use."""
import os

import pytest
from PIL import Image, ImageDraw

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # hypothesis is a test extra; tests that need it import it themselves
    settings = None

if settings is not None:
    # No deadlines: the machine is shared and timings vary by 30%, so a per-example deadline would make tests flaky.
    # HYPOTHESIS_PROFILE=thorough runs ten times as many examples.
    for name, examples in (("cycnn", 50), ("thorough", 500)):
        settings.register_profile(name, max_examples=examples, deadline=None,
                                  suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "cycnn"))


@pytest.fixture(scope="session")
def mnist():
    """The bundled MNIST (x_train, y_train, x_test, y_test), loaded and checksum-verified once per session."""
    from cycnn.data.idx import load_idx_dataset
    return load_idx_dataset()


def _draw_digit(shape="zero", size=(160, 200), ink=0, paper=255):
    """A dark-on-light handwritten-looking digit as an 8-bit grayscale (mode "L") Pillow image.

    "zero" is an ellipse, nearly symmetric so its centre of mass is its box's centre; "seven" is top-heavy.
    The digit is drawn off-centre on purpose, so that cropping and centring are exercised.
    """
    img = Image.new("L", size, paper)
    draw = ImageDraw.Draw(img)
    if shape == "zero":
        draw.ellipse((30, 40, 100, 160), outline=ink, width=14)
    elif shape == "seven":
        draw.line((25, 35, 115, 35), fill=ink, width=14)
        draw.line((115, 35, 55, 170), fill=ink, width=14)
    else:
        raise ValueError(shape)
    return img


@pytest.fixture(scope="session")
def draw_digit():
    """The digit-drawing function (a fixture, so test modules need not import conftest)."""
    return _draw_digit


@pytest.fixture
def digit_png(tmp_path):
    """Path of a PNG of a dark "0" drawn on light paper."""
    path = tmp_path / "zero.png"
    _draw_digit("zero").save(path)
    return path
