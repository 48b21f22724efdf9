"""The training log: its records against figures recomputed beside the trainer, its reader, and the CLI's --log,
--log-every and --verbose."""
import json
import warnings

import numpy as np
import pytest

from cycnn.io import architecture
from cycnn.errors import CycnnError, DataError
from cycnn.nn.optim import make_optimizer
from cycnn.train.callbacks import LayerTimes, timing_table
from cycnn.train.log import RunLog, latest, read_log
from cycnn.train.callbacks import Callback
from cycnn.train.settings import RunSettings
from cycnn.train.trainer import Trainer

from cli_runner import run_cli  # tests/cli_runner.py

SMALL = architecture.stack([4], [3], 2, [16], [0.5], input_shape=(1, 28, 28), num_classes=10)


class Spy(Callback):
    """Records, beside the log, what a logged step's figures must be: weights before the step, gradient and
    update norms, the activations' statistics, and whether activations were kept on the other steps."""

    def __init__(self):
        self.expected, self.kept = {}, {}

    def on_step_begin(self, trainer, info):
        self.before = {key: p.copy() for key, p, _ in trainer.model.parameters()}

    def on_step_end(self, trainer, info):
        model, step = trainer.model, trainer.state.global_step
        self.kept[step] = trainer.step_observed
        if not trainer.step_observed:
            return
        params = {}
        for key, p, g in model.parameters():
            b = self.before[key]
            params[key] = {"grad_norm": np.linalg.norm(g), "weight_norm": np.linalg.norm(p),
                           "update_ratio": np.linalg.norm(p - b) / np.linalg.norm(b) if np.any(b) else None}
        layers = [{"activation_mean": float(np.mean(a, dtype=np.float64)), "activation_zeros": float(np.mean(a == 0))}
                  for a in trainer.activations.outputs]
        self.expected[step] = {"params": params, "layers": layers, "loss": info["loss"]}


def _train(mnist, callbacks, epochs=2, optimizer="adam"):
    x, y, xt, yt = mnist
    model = architecture.build(SMALL, seed=3)
    config = RunSettings(epochs=epochs, batch_size=32, lr=0.01, seed=5)
    trainer = Trainer(model, make_optimizer(optimizer, 0.01), config, callbacks)
    trainer.fit(x[:320], y[:320], xt[:100], yt[:100])
    return model, trainer


def test_records_hold_the_run_steps_and_epochs(mnist, tmp_path):
    spy = Spy()
    path = tmp_path / "run.jsonl"
    model, _ = _train(mnist, [RunLog(path, every=3, run_info={"note": "x"}), spy])
    records = read_log(path)
    run = records[0]
    assert run["type"] == "run" and run["architecture"] == model.get_config()
    assert run["optimizer"]["name"] == "adam" and run["train"]["batch_size"] == 32 and run["seed"] == 5
    assert {"cycnn", "numpy", "python"} <= set(run["versions"]) and run["note"] == "x"
    steps = [r for r in records if r["type"] == "step"]
    # every 3 steps, the first step and each epoch's last (10 steps per epoch, 2 epochs)
    assert [r["step"] for r in steps] == [1, 3, 6, 9, 10, 12, 15, 18, 20]
    assert [r["epoch"] for r in steps] == [1, 1, 1, 1, 1, 2, 2, 2, 2]
    # activations are kept on the logged steps only
    assert {s for s, kept in spy.kept.items() if kept} == {r["step"] for r in steps}
    keys = [key for key, _, _ in model.parameters()]
    for record in steps:
        expected = spy.expected[record["step"]]
        assert record["loss"] == pytest.approx(expected["loss"])
        assert 0 <= record["accuracy"] <= 1 and record["images_per_s"] > 0 and record["lr"] == 0.01
        assert list(record["params"]) == keys
        for key in keys:
            for field in ("grad_norm", "weight_norm", "update_ratio"):
                want, got = expected["params"][key][field], record["params"][key][field]
                assert (got is None) if want is None else got == pytest.approx(want, rel=1e-4), (key, field)
        assert len(record["layers"]) == len(model.layers)
        for got, want in zip(record["layers"], expected["layers"]):
            assert got["forward_ms"] >= 0 and got["backward_ms"] >= 0
            assert got["activation_mean"] == pytest.approx(want["activation_mean"], rel=1e-5, abs=1e-9)
            assert got["activation_zeros"] == pytest.approx(want["activation_zeros"])
    # the outputs are recorded in eval mode: the dropout layer (p=0.5) passes its input through unchanged
    for record in steps:
        dense, dropout = record["layers"][3], record["layers"][4]
        assert "Dropout" in dropout["layer"] and "Dense" in dense["layer"]
        assert dropout["activation_zeros"] == dense["activation_zeros"] > 0
        assert dropout["activation_mean"] == pytest.approx(dense["activation_mean"])
    epochs = [r for r in records if r["type"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2] and [r["step"] for r in epochs] == [10, 20]
    for r in epochs:
        assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "wall_s"} <= set(r)


def test_sgd_update_ratio_is_lr_times_gradient_over_weight(mnist, tmp_path):
    """Without momentum an SGD update is lr * gradient: the logged ratio must be lr * |g| / |W before|."""
    from cycnn.nn.optim import SGD
    x, y, _, _ = mnist
    model = architecture.build(SMALL, seed=3)
    before = {}

    class Before(Callback):
        def on_step_begin(self, trainer, info):
            before.update({k: np.linalg.norm(p) for k, p, _ in trainer.model.parameters()})

    path = tmp_path / "sgd.jsonl"
    Trainer(model, SGD(lr=0.05, momentum=0), RunSettings(epochs=1, batch_size=32, lr=0.05),
            [Before(), RunLog(path, every=1)]).fit(x[:32], y[:32])
    record = latest(read_log(path), "step")[0]
    weight = record["params"]["0.W"]
    assert weight["update_ratio"] == pytest.approx(0.05 * weight["grad_norm"] / before["0.W"], rel=1e-4)
    assert record["params"]["0.b"]["update_ratio"] is None  # biases start at 0: no ratio on the first step


def test_logging_does_not_change_the_training(mnist, tmp_path):
    logged, _ = _train(mnist, [RunLog(tmp_path / "a.jsonl", every=2)], epochs=1)
    plain, _ = _train(mnist, [], epochs=1)
    for (key, a, _), (_, b, _) in zip(logged.parameters(), plain.parameters()):
        np.testing.assert_array_equal(a, b, err_msg=key)


def test_layer_times_prints_a_table_per_epoch(mnist):
    lines = []
    model, _ = _train(mnist, [LayerTimes(lines.append)])
    assert len(lines) == 2
    table = lines[0].splitlines()
    assert "forward" in table[1] and "backward" in table[1]
    assert len(table) == 2 + len(model.layers) + 1 and table[-1].startswith("total")
    assert "0: Conv2D (relu)" in table[2]


def test_timing_table_shares_add_up():
    text = timing_table(["a", "b"], [1.0, 3.0], [2.0, 2.0], steps=5)
    assert "over 5 steps" in text
    assert "37.5%" in text and "62.5%" in text and "8.00" in text


def test_read_log_keeps_the_last_record_of_a_step_and_tolerates_a_cut_last_line(tmp_path):
    path = tmp_path / "log.jsonl"
    rows = [{"type": "run"}, {"type": "step", "step": 1, "loss": 2.0}, {"type": "step", "step": 2, "loss": 1.5},
            {"type": "run", "resumed_at_step": 1}, {"type": "step", "step": 2, "loss": 1.4}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + '\n{"type": "st')
    records = read_log(path)
    assert len(records) == 5
    assert [r["loss"] for r in latest(records, "step")] == [2.0, 1.4]


@pytest.mark.parametrize("text, problem", [("not json\n{}\n", "line 1 is not JSON"),
                                           ('{"no": "type"}\n', "no record type"),
                                           ('{"type": "step"}\n', "does not start with a run record"),
                                           ("", "does not start with a run record")])
def test_read_log_rejects_other_files(tmp_path, text, problem):
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    with pytest.raises(DataError, match=problem):
        read_log(path)


def test_bad_interval_is_refused():
    with pytest.raises(CycnnError, match="positive number of steps"):
        RunLog("x.jsonl", every=0)


def test_cli_writes_the_log_beside_the_model_and_prints_timings(tmp_path, capsys):
    out = tmp_path / "new" / "m.npz"  # a folder that does not exist yet: the run creates it for all its files
    code, stdout, err = run_cli(["train", "--epochs", "1", "--limit-train", "300", "--batch-size", "32",
                                 "--conv", "4", "--kernel", "3", "--dense", "16", "--log-every", "4", "--verbose",
                                 "--out", out], capsys)
    assert code == 0, err
    records = read_log(tmp_path / "new" / "m.log.jsonl")
    assert records[0]["train_images"] == 285 and records[0]["limit_train"] == 300
    assert [r["step"] for r in latest(records, "step")] == [1, 4, 8, 9]  # 9 steps of 32
    assert "mean time per step over" in stdout and "2: Flatten" in stdout


def test_cli_refuses_a_zero_log_interval(tmp_path, capsys):
    code, _, err = run_cli(["train", "--epochs", "1", "--limit-train", "100", "--log-every", "0",
                            "--out", tmp_path / "m.npz"], capsys)
    assert code == 2 and err.startswith("cycnn: error: log_every must be a positive integer") and "Traceback" not in err


def test_records_of_the_wrong_shape_are_broken_lines(tmp_path):
    """The pictures read these fields: a string step or an escape in a layer name was a traceback (or a raw escape
    printed by matplotlib); now such a record is skipped like a broken line, with the warning."""
    path = tmp_path / "m.log.jsonl"
    lines = [{"type": "run", "train": {"epochs": 1}}, {"type": "step", "step": 1, "loss": 1.0},
             {"type": "step", "step": "2", "loss": 1.0},
             {"type": "step", "step": 3, "loss": 0.5, "layers": [{"layer": "0: \x1b[31mConv2D"}]},
             {"type": "epoch", "epoch": 1, "train_loss": "low"}, {"type": "epoch", "epoch": 1, "train_loss": 0.5}]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = read_log(path)
    assert [r["type"] for r in records] == ["run", "step", "epoch"]
    assert len(caught) == 1 and "skipped 3 broken lines" in str(caught[0].message)
    path.write_text(json.dumps({"type": "run", "train": 5}) + "\n")
    with pytest.raises(DataError, match="line 1 has a train that is not a dict"):
        read_log(path)
