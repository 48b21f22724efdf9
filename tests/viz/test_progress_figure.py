"""The epoch-by-epoch probe picture: one row per logged epoch (at most MAX_ROWS, evenly chosen), in the set of
pictures only when the training log holds probe records."""
import base64

import numpy as np
import pytest

from cycnn.data.datasets import to_input
from cycnn.io import architecture
from cycnn.train.log import quantize_maps
from cycnn.viz import progress
from cycnn.viz.figures import pictures, png_bytes

TINY = architecture.stack([4], [3], 2, [8], [0], input_shape=(1, 28, 28), num_classes=10)


def _records(epochs, maps=True, label=7):
    """A log's run record and ``epochs`` epoch records whose probe moves from a wrong answer to the right one."""
    rng = np.random.default_rng(0)
    records = [{"type": "run"}]
    for e in range(1, epochs + 1):
        probs = np.full(10, 0.02)
        probs[label if e > 1 else 3] = 0.82
        probe = {"index": 0, "label": label, "probabilities": list(probs)}
        if maps:
            levels, signed, scale = quantize_maps(rng.random((4, 13, 13)) * e)
            probe["maps"] = {"layer": "1: MaxPool2D", "channels": 32, "shape": list(levels.shape),
                             "signed": signed, "scale": scale, "data": base64.b64encode(levels.tobytes()).decode()}
        records.append({"type": "epoch", "step": 10 * e, "epoch": e, "train_accuracy": 0.5, "probe": probe})
    return records


def _epoch_labels(figure):
    return [t.get_text().split("\n")[0] for ax in figure.axes for t in ax.texts if t.get_text().startswith("epoch")]


@pytest.mark.slow
@pytest.mark.parametrize("epochs, shown", [(3, [1, 2, 3]), (20, [1, 3, 4, 6, 8, 10, 11, 13, 15, 17, 18, 20])])
def test_one_row_per_epoch_at_most_twelve_evenly_chosen(epochs, shown):
    figure = progress.progress_figure(_records(epochs), [str(c) for c in range(10)], np.zeros((1, 28, 28)))
    assert _epoch_labels(figure) == [f"epoch {e}" for e in shown]
    assert len(figure.axes) == 3 * (len(shown) + 1)  # header row, then per epoch: label, bars, maps
    assert png_bytes(figure).startswith(b"\x89PNG")


def test_without_stored_maps_the_rows_hold_the_probabilities_only():
    figure = progress.progress_figure(_records(2, maps=False))
    assert _epoch_labels(figure) == ["epoch 1", "epoch 2"] and len(figure.axes) == 2 * 3
    assert png_bytes(figure).startswith(b"\x89PNG")


def _names(model, records, mnist):
    _, _, xt, yt = mnist
    images = to_input(xt[:20])
    probs = np.full((20, 10), 0.1)
    return [p.name for p in pictures(model, images, yt[:20], probs, [], records, count=4)]


@pytest.mark.slow
def test_the_picture_is_in_the_set_only_with_probe_records(mnist):
    model = architecture.build(TINY, seed=0)
    label = int(mnist[3][0])
    assert "progress_probe" in _names(model, _records(2, label=label), mnist)
    without = [{k: v for k, v in r.items() if k != "probe"} for r in _records(2)]
    assert "progress_probe" not in _names(model, without, mnist)
    assert "progress_probe" not in _names(model, None, mnist)
