"""Steering a run while it trains (``TrainingControls``): pause, single steps, resume, a new learning rate,
dropout rate or delay, applied at the next step and reported to every callback; bad commands refused with nothing
changed; a stop while paused; the log's event records, and checkpoints and resumes that keep a changed rate."""
import math
import threading
import time

import numpy as np
import pytest

from cycnn.errors import ConfigError
from cycnn.io import architecture
from cycnn.nn.layers import Dropout
from cycnn.nn.optim import make_optimizer
from cycnn.train.callbacks import Callback
from cycnn.train.checkpoint import load_checkpoint, save_checkpoint
from cycnn.train.controls import ControlConflict, TrainingControls
from cycnn.train.log import RunLog, read_log
from cycnn.train.settings import RunSettings
from cycnn.train.trainer import Trainer

SMALL = architecture.stack([4], [3], 2, [16, 16], [0.2, 0.3], input_shape=(1, 28, 28), num_classes=10)
NO_DROPOUT = architecture.stack([4], [3], 2, [16], [0], input_shape=(1, 28, 28), num_classes=10)
LR = 0.01
STEPS = 10  # 320 images in batches of 32


class Recorder(Callback):
    """What each step ran with (its lr, the dropout rates), when it began and ended (wall and this thread's CPU
    time), and the on_change events; ``sleep`` slows every step so that other threads can catch a run mid-way."""

    def __init__(self, sleep=0.0):
        self.sleep, self.events, self.steps, self.times = sleep, [], [], []

    def on_step_begin(self, trainer, info):
        self.times.append(("begin", trainer.state.global_step, time.perf_counter(), time.thread_time()))

    def on_step_end(self, trainer, info):
        drop = [layer.p for layer in trainer.model.layers if isinstance(layer, Dropout)]
        self.steps.append({"step": trainer.state.global_step, "lr": info["lr"], "dropout": drop})
        time.sleep(self.sleep)
        self.times.append(("end", trainer.state.global_step, time.perf_counter(), time.thread_time()))

    def on_change(self, trainer, event):
        self.events.append(dict(event))

    def changes(self):
        return [e["change"] for e in self.events]


class At(Callback):
    """Calls ``action(trainer)`` once, at the end of global step ``step`` (from the training thread itself)."""

    def __init__(self, step, action):
        self.step, self.action = step, action

    def on_step_end(self, trainer, info):
        if trainer.state.global_step == self.step:
            self.action(trainer)


def make_trainer(callbacks, spec=SMALL, epochs=2, schedule="constant", seed=1):
    settings = RunSettings(epochs=epochs, batch_size=32, lr=LR, lr_schedule=schedule, seed=seed)
    return Trainer(architecture.build(spec, seed=seed), make_optimizer("adam", LR), settings, callbacks)


def wait_for(predicate, timeout=2.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


class Background:
    """``trainer.fit`` in a thread; leaving the block stops the run and joins it (failing if it hangs)."""

    def __init__(self, trainer, images, labels):
        self.trainer, self.error = trainer, None
        self.thread = threading.Thread(target=self._fit, args=(images, labels), daemon=True)

    def _fit(self, images, labels):
        try:
            self.trainer.fit(images, labels)
        except BaseException as exc:  # re-raised in the test's thread
            self.error = exc

    def join(self, timeout=5.0):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the training thread did not end"
        if self.error is not None:
            raise self.error

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.trainer.stop_requested = True
        self.thread.join(5.0)
        assert not self.thread.is_alive(), "the training thread did not end after stop_requested"


@pytest.mark.slow  # about a second: the fast tier stays under a minute
def test_pause_holds_the_run_without_using_the_cpu_and_resume_finishes_it(mnist):
    x, y = mnist[0][:320], mnist[1][:320]
    controls, recorder = TrainingControls(), Recorder(sleep=0.01)
    trainer = make_trainer([controls, recorder], epochs=3)
    with Background(trainer, x, y) as run:
        assert wait_for(lambda: trainer.state.global_step >= 2)
        assert controls.request({"action": "pause"})["paused"] is True
        assert wait_for(lambda: "paused" in recorder.changes())
        held = trainer.state.global_step
        seen = set()
        for _ in range(20):  # a second of polling: the counter does not move
            seen.add(trainer.state.global_step)
            time.sleep(0.05)
        assert seen == {held} and held < 3 * STEPS
        controls.request({"action": "resume"})
        run.join()
    assert trainer.state.global_step == 3 * STEPS and trainer.state.epoch == 3
    assert recorder.changes() == ["paused", "resumed"]
    assert [(e["from"], e["to"]) for e in recorder.events] == [(False, True), (True, False)]
    # The longest gap between a step's end and the next step's begin is the pause; the thread slept through it.
    pairs = [(b[2] - a[2], b[3] - a[3]) for a, b in zip(recorder.times, recorder.times[1:])
             if a[0] == "end" and b[0] == "begin"]
    wall, cpu = max(pairs)
    assert wall >= 1.0 and cpu / wall < 0.02, (wall, cpu)


def test_step_runs_exactly_one_step_of_a_paused_run(mnist):
    x, y = mnist[0][:320], mnist[1][:320]
    controls, recorder = TrainingControls(), Recorder()
    controls.request({"action": "pause"})  # before the run starts: its first step waits
    trainer = make_trainer([controls, recorder])
    with Background(trainer, x, y):
        assert wait_for(lambda: recorder.changes() == ["paused"])
        assert trainer.state.global_step == 0
        controls.request({"action": "step"})
        assert wait_for(lambda: trainer.state.global_step == 1)
        time.sleep(0.2)
        assert trainer.state.global_step == 1 and controls.paused
        for _ in range(2):
            controls.request({"action": "step"})
        assert wait_for(lambda: trainer.state.global_step == 3)
        time.sleep(0.2)
        assert trainer.state.global_step == 3 and controls.paused
    assert recorder.changes() == ["paused"]  # single steps are not changes; the run never resumed


def test_step_while_running_is_a_conflict():
    controls = TrainingControls()
    with pytest.raises(ControlConflict, match="pause it first"):
        controls.request({"action": "step"})
    controls.request({"action": "pause"})
    controls.request({"action": "resume"})
    with pytest.raises(ControlConflict):
        controls.request({"action": "step"})
    assert not controls.paused and controls._steps_allowed == 0


def test_set_lr_applies_at_the_next_step_with_a_constant_schedule(mnist):
    controls, recorder = TrainingControls(), Recorder()
    trainer = make_trainer([controls, recorder, At(3, lambda t: controls.request({"action": "set", "lr": 0.05}))])
    trainer.fit(mnist[0][:320], mnist[1][:320])
    lrs = [s["lr"] for s in recorder.steps]
    assert lrs[:3] == [LR] * 3 and lrs[3:] == [0.05] * (2 * STEPS - 3)
    assert trainer.optimizer.lr == trainer.settings.lr == trainer.base_lr == 0.05
    assert recorder.events == [{"step": 3, "epoch": 1, "change": "lr", "from": LR, "to": 0.05}]


def test_set_lr_scales_the_cosine_schedule_through_the_new_rate(mnist):
    """The rate at the changed step is the one asked for, and from there it decays as the schedule did, to 0."""
    controls, recorder = TrainingControls(), Recorder()
    trainer = make_trainer([controls, recorder, At(7, lambda t: controls.request({"action": "set", "lr": 0.004}))],
                           schedule="cosine")
    trainer.fit(mnist[0][:320], mnist[1][:320])
    lrs = [s["lr"] for s in recorder.steps]

    def cosine(k):  # the original schedule's factor at global step k (counting from 0)
        return 0.5 * (1 + math.cos(math.pi * k / (2 * STEPS)))

    assert lrs[:7] == pytest.approx([LR * cosine(k) for k in range(7)], rel=1e-12)
    assert lrs[7] == pytest.approx(0.004, rel=1e-12)
    assert lrs[7:] == pytest.approx([0.004 * cosine(k) / cosine(7) for k in range(7, 2 * STEPS)], rel=1e-12)
    assert lrs[7:] == pytest.approx([trainer.learning_rate(k // STEPS, k % STEPS, STEPS)
                                     for k in range(7, 2 * STEPS)], rel=1e-12)
    assert trainer.settings.lr == trainer.base_lr == pytest.approx(0.004 / cosine(7), rel=1e-12)
    assert [(e["change"], e["step"]) for e in recorder.events] == [("lr", 7)]
    assert recorder.events[0]["from"] == pytest.approx(LR * cosine(7), rel=1e-12)
    assert recorder.events[0]["to"] == pytest.approx(0.004, rel=1e-12)


def test_set_dropout_changes_every_dropout_layer(mnist):
    controls, recorder = TrainingControls(), Recorder()
    trainer = make_trainer([controls, recorder, At(4, lambda t: controls.request({"action": "set", "dropout": 0.5}))],
                           epochs=1)
    trainer.fit(mnist[0][:320], mnist[1][:320])
    assert [s["dropout"] for s in recorder.steps] == [[0.2, 0.3]] * 4 + [[0.5, 0.5]] * (STEPS - 4)
    assert recorder.events == [{"step": 4, "epoch": 1, "change": "dropout", "from": 0.2, "to": 0.5}]
    assert [layer.get_config()["p"] for layer in trainer.model.layers if isinstance(layer, Dropout)] == [0.5, 0.5]


def test_dropout_in_a_model_without_dropout_is_a_conflict():
    controls = TrainingControls()
    controls.on_train_begin(make_trainer([controls], spec=NO_DROPOUT))
    with pytest.raises(ControlConflict, match="no dropout"):
        controls.request({"action": "set", "dropout": 0.3})
    with pytest.raises(ControlConflict):  # and the rest of the command is not taken either
        controls.request({"action": "set", "lr": 0.5, "dropout": 0.3})
    assert controls._pending == {}


def test_dropout_asked_for_before_the_first_step_is_taken():
    """The live server is up (and its page can send commands) before the run's on_train_begin: controls made
    for the run's model (as ``cycnn.viz.live.serve`` makes them) know its dropout layers from the start."""
    trainer = make_trainer([])  # a model with two Dropout layers, not yet training
    controls = TrainingControls(trainer.model)
    assert controls.request({"action": "set", "dropout": 0.4})["pending"] == {"dropout": 0.4}


def test_set_delay_slows_every_step(mnist):
    controls, recorder = TrainingControls(), Recorder()
    trainer = make_trainer([controls, recorder, At(2, lambda t: controls.request({"action": "set", "delay": 0.1}))],
                           epochs=1)
    trainer.fit(mnist[0][:160], mnist[1][:160])  # 5 steps
    ends = [t for kind, _, t, _ in recorder.times if kind == "end"]
    gaps = np.diff(ends)
    assert all(gaps[1:] >= 0.1) and gaps[0] < 0.1, gaps  # steps 3, 4, 5 waited; step 2 did not
    assert controls.delay == 0.1
    assert recorder.events == [{"step": 2, "epoch": 1, "change": "delay", "from": 0.0, "to": 0.1}]


BAD_COMMANDS = [
    "pause", None, ["pause"], {}, {"action": None}, {"action": 3}, {"action": "jump"}, {"action": "PAUSE"},
    {"action": "pause", "lr": 0.1}, {"action": "resume", "now": True}, {"action": "step", "count": 2},
    {"action": "set"}, {"action": "set", "momentum": 0.9}, {"action": "set", "lr": 0.1, "momentum": 0.9},
    {"action": "set", "lr": True}, {"action": "set", "lr": "0.1"}, {"action": "set", "lr": None},
    {"action": "set", "lr": [0.1]}, {"action": "set", "lr": math.nan}, {"action": "set", "lr": math.inf},
    {"action": "set", "lr": -0.1}, {"action": "set", "lr": 0}, {"action": "set", "lr": 10.5},
    {"action": "set", "dropout": 1.0}, {"action": "set", "dropout": -0.1}, {"action": "set", "dropout": math.nan},
    {"action": "set", "dropout": False}, {"action": "set", "delay": -1}, {"action": "set", "delay": 10.01},
    {"action": "set", "delay": -math.inf}, {"action": "set", "lr": 0.1, "dropout": 1.5},
    {"action": "set", "lr": 0.1, "delay": "1"},
    {"action": "set", "lr": 10 ** 400},
]


@pytest.mark.parametrize("command", BAD_COMMANDS, ids=lambda command: repr(command)[:50])
def test_a_bad_command_is_refused_and_changes_nothing(mnist, command):
    controls, recorder = TrainingControls(), Recorder()
    trainer = make_trainer([controls, recorder], epochs=1)
    controls.on_train_begin(trainer)  # dropout commands are judged against this model's layers
    try:
        controls.request(command)
    except ControlConflict as exc:
        raise AssertionError(f"a malformed command is a ConfigError, not a conflict: {exc}") from None
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)
    except Exception as exc:
        raise AssertionError(f"{type(exc).__name__} instead of ConfigError: {exc}") from None
    else:
        raise AssertionError("the command was accepted")
    assert not controls.paused and controls.delay == 0.0 and controls._pending == {}
    trainer.fit(mnist[0][:96], mnist[1][:96])  # 3 steps after it: nothing changed
    assert trainer.state.global_step == 3 and recorder.events == []
    assert [s["lr"] for s in recorder.steps] == [LR] * 3 and trainer.settings.lr == LR
    assert all(s["dropout"] == [0.2, 0.3] for s in recorder.steps)


def test_limits_are_inclusive_where_documented():
    """lr 10 and delay 0 or 10 are allowed, dropout 0 too; integers are numbers."""
    controls = TrainingControls()
    controls.on_train_begin(make_trainer([controls]))
    answer = controls.request({"action": "set", "lr": 10, "dropout": 0, "delay": 10})
    assert answer == {"action": "set", "paused": False, "pending": {"lr": 10.0, "dropout": 0.0, "delay": 10.0}}
    assert controls.request({"action": "set", "delay": 0})["pending"]["delay"] == 0.0


def test_a_stop_while_paused_ends_the_run_without_another_step(mnist):
    controls, recorder = TrainingControls(), Recorder()
    trainer = make_trainer([controls, recorder, At(2, lambda t: controls.request({"action": "pause"}))])
    with Background(trainer, mnist[0][:320], mnist[1][:320]) as run:
        assert wait_for(lambda: recorder.changes() == ["paused"])
        time.sleep(0.1)  # waiting on the condition now
        started = time.monotonic()
        trainer.stop_requested = True  # what Ctrl-C's handler does, from another thread
        run.join(timeout=3.0)
        assert time.monotonic() - started < 1.5
    assert trainer.state.global_step == 2 and len(recorder.steps) == 2
    assert trainer.state.epoch == 0 and trainer.state.step == 2


def test_the_log_records_every_change(mnist, tmp_path):
    controls, path = TrainingControls(), tmp_path / "run.jsonl"

    def change(trainer):
        controls.request({"action": "pause"})
        controls.request({"action": "resume"})  # both reported, in order, before step 3
        controls.request({"action": "set", "lr": 0.02, "delay": 0.001})

    trainer = make_trainer([RunLog(path, every=5), controls, At(2, change)], epochs=1)
    trainer.fit(mnist[0][:320], mnist[1][:320])
    events = [r for r in read_log(path) if r["type"] == "event"]
    assert [(e["change"], e["from"], e["to"]) for e in events] == [
        ("paused", False, True), ("resumed", True, False), ("lr", LR, 0.02), ("delay", 0.0, 0.001)]
    assert all(e["step"] == 2 and e["epoch"] == 1 for e in events)
    steps = [r for r in read_log(path) if r["type"] == "step"]
    assert [(r["step"], r["lr"]) for r in steps] == [(1, LR), (5, 0.02), (10, 0.02)]


def _run_with_change(mnist, callbacks=(), stop_at=None):
    """A cosine run whose rate is set to 0.003 after step 5; with ``stop_at``, stopped after that step."""
    controls, recorder = TrainingControls(), Recorder()
    extra = [At(stop_at, lambda t: setattr(t, "stop_requested", True))] if stop_at else []
    trainer = make_trainer([controls, recorder, At(5, lambda t: controls.request({"action": "set", "lr": 0.003})),
                            *extra, *callbacks], schedule="cosine", seed=4)
    trainer.fit(mnist[0][:320], mnist[1][:320])
    return trainer, recorder


def test_a_checkpoint_keeps_the_changed_schedule_and_a_resume_follows_it(mnist, tmp_path):
    whole, whole_steps = _run_with_change(mnist)
    stopped, _ = _run_with_change(mnist, stop_at=13)
    path = tmp_path / "run.ckpt.npz"
    save_checkpoint(path, stopped.model, stopped.optimizer, stopped.state, stopped.settings)
    model, optimizer, state, settings = load_checkpoint(path)
    assert settings.lr == stopped.settings.lr == whole.settings.lr and settings.lr != LR
    assert state.global_step == 13
    recorder = Recorder()
    resumed = Trainer(model, optimizer, settings, [recorder], state)
    resumed.fit(mnist[0][:320], mnist[1][:320])
    assert [s["lr"] for s in recorder.steps] == [s["lr"] for s in whole_steps.steps[13:]]
    for (key, a, _), (_, b, _) in zip(whole.model.parameters(), model.parameters()):
        assert np.array_equal(a, b), key  # bit for bit the run that was never stopped


def test_controls_that_are_never_used_change_nothing(mnist):
    """A run with TrainingControls in its callbacks ends with the same weights, bit for bit, as one without."""
    runs = []
    for callbacks in ([], [TrainingControls()]):
        trainer = make_trainer(callbacks, schedule="cosine", seed=2)
        trainer.fit(mnist[0][:320], mnist[1][:320])
        runs.append({key: param.copy() for key, param, _ in trainer.model.parameters()})
    assert runs[0].keys() == runs[1].keys()
    assert all(np.array_equal(runs[0][k], runs[1][k]) for k in runs[0])
