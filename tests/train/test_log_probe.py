"""The training log's probe records: one per epoch, holding the probe image's probabilities and its first conv
block's feature maps (capped, quantized) exactly as the model computed them at that epoch's end; none without a
probe; and cheap enough to take once per epoch."""
import base64
import time

import numpy as np
import pytest

from cycnn.data.datasets import to_input
from cycnn.errors import ConfigError
from cycnn.io import architecture
from cycnn.nn.losses import softmax
from cycnn.nn.optim import make_optimizer
from cycnn.train.callbacks import Callback
from cycnn.train.log import PROBE_CHANNELS, RunLog, decode_maps, latest, probe_layer, quantize_maps, read_log
from cycnn.train.settings import RunSettings
from cycnn.train.trainer import Trainer

from cli_runner import run_cli  # tests/cli_runner.py

WIDE = architecture.stack([18], [3], 2, [16], [0.5], input_shape=(1, 28, 28), num_classes=10)  # 18 > the cap


class EpochOutputs(Callback):
    """Every layer's output for the probe at each epoch's end, computed beside the log."""

    def __init__(self, image):
        self.image, self.outputs = image, []

    def on_epoch_end(self, trainer, record):
        self.outputs.append(trainer.model.layer_outputs(self.image[None]))


def _train(mnist, tmp_path, probe, epochs=3):
    x, y, xt, yt = mnist
    model = architecture.build(WIDE, seed=4)
    path = tmp_path / "run.jsonl"
    spy = EpochOutputs(to_input(xt[:1])[0])
    trainer = Trainer(model, make_optimizer("adam", 0.01), RunSettings(epochs=epochs, batch_size=32, lr=0.01, seed=2),
                      [RunLog(path, every=5, probe=probe), spy])
    trainer.fit(x[:160], y[:160], xt[:64], yt[:64])
    return model, read_log(path), spy.outputs


def test_each_epoch_records_the_probe_as_the_model_saw_it(mnist, tmp_path):
    _, _, xt, yt = mnist
    model, records, outputs = _train(mnist, tmp_path, (0, to_input(xt[:1])[0], int(yt[0])))
    epochs = latest(records, "epoch")
    assert [r["epoch"] for r in epochs] == [1, 2, 3] and all("probe" in r for r in epochs)
    assert not any("probe" in r for r in records if r["type"] != "epoch")
    layer = probe_layer(model)
    assert model.layer_names()[layer] == "1: MaxPool2D"
    for record, out in zip(epochs, outputs):
        probe = record["probe"]
        assert probe["index"] == 0 and probe["label"] == int(yt[0])
        assert sum(probe["probabilities"]) == pytest.approx(1, abs=1e-5)
        np.testing.assert_allclose(probe["probabilities"], softmax(out[-1].astype(np.float64))[0], atol=1e-6)
        maps = probe["maps"]
        assert maps["layer"] == "1: MaxPool2D" and maps["channels"] == 18 and not maps["signed"]
        assert maps["shape"] == [PROBE_CHANNELS, 13, 13]
        want = out[layer][0][:PROBE_CHANNELS]
        assert maps["scale"] == pytest.approx(float(want.max()))
        np.testing.assert_allclose(decode_maps(maps), want, atol=maps["scale"] / 255 / 2 + 1e-6)
    # the maps changed with training: the log shows change, not one state repeated
    assert epochs[0]["probe"]["maps"]["data"] != epochs[-1]["probe"]["maps"]["data"]


def test_a_log_without_a_probe_writes_none(mnist, tmp_path):
    _, records, _ = _train(mnist, tmp_path, None, epochs=2)
    epochs = latest(records, "epoch")
    assert len(epochs) == 2 and not any("probe" in r for r in records)


def test_a_probe_that_does_not_fit_the_model_is_refused_before_training(mnist, tmp_path):
    with pytest.raises(ConfigError, match="expects inputs"):
        _train(mnist, tmp_path, (0, np.zeros((1, 20, 20), np.float32), 3), epochs=1)


def test_signed_maps_decode_within_the_quantization_step():
    maps = np.random.default_rng(0).normal(size=(3, 5, 5))
    levels, signed, scale = quantize_maps(maps)
    record = {"shape": list(levels.shape), "signed": signed, "scale": scale,
              "data": base64.b64encode(levels.tobytes()).decode()}
    assert signed and levels.dtype == np.uint8
    np.testing.assert_allclose(decode_maps(record), maps, atol=scale / 127.5 / 2 + 1e-12)


def test_a_probe_record_costs_a_few_milliseconds(mnist, tmp_path):
    _, _, xt, yt = mnist
    model = architecture.build(architecture.stack(), seed=1)  # the reference network
    log = RunLog(tmp_path / "unused.jsonl", probe=(0, to_input(xt[:1])[0], int(yt[0])))
    log.probe_record(model)
    started = time.perf_counter()
    for _ in range(20):
        log.probe_record(model)
    assert (time.perf_counter() - started) / 20 < 0.02  # measured about 5 ms; generous for a shared machine


@pytest.mark.slow
def test_cycnn_train_probes_the_first_test_image(mnist, tmp_path, capsys):
    code, _, err = run_cli(["train", "--epochs", "2", "--limit-train", "200", "--batch-size", "32", "--conv", "4",
                            "--kernel", "3", "--dense", "16", "--out", tmp_path / "m.npz", "--quiet"], capsys)
    assert code == 0, err
    epochs = latest(read_log(tmp_path / "m.log.jsonl"), "epoch")
    assert [(r["probe"]["index"], r["probe"]["label"]) for r in epochs] == [(0, int(mnist[3][0]))] * 2
    assert epochs[0]["probe"]["maps"]["shape"] == [4, 13, 13]
