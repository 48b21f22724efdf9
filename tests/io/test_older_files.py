"""Files written by cycnn before the layered package (commit b78160a) load after it: the model gives the same
probabilities, and the checkpoint (settings in ``config`` and ``run``) resumes, with its stored paths ignored."""
from pathlib import Path

import numpy as np

from cycnn.io.model_file import load_model
from cycnn.train.checkpoint import load_checkpoint
from cycnn.train.run import resumed_model_path

FILES = Path(__file__).parent / "files"


def test_an_older_model_file_loads_and_answers_as_it_did():
    model = load_model(FILES / "model-b78160a.npz")
    assert model.metadata["note"] == "written by cycnn at b78160a"
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(model.predict_proba(x), np.load(FILES / "model-b78160a-probs.npy"))


def test_an_older_checkpoint_loads_into_one_settings_table():
    model, optimizer, state, settings = load_checkpoint(FILES / "run-b78160a.ckpt.npz")
    assert (state.epoch, state.step, state.global_step) == (1, 2, 12) and optimizer.t == 1
    assert (settings.epochs, settings.lr, settings.seed, settings.limit_train, settings.val_split) == (3, 0.01, 7, 100,
                                                                                                      0.1)
    # It recorded paths outside its directory; a resumed run goes beside the checkpoint instead.
    assert settings.out == "/somewhere/else/m.npz"
    assert resumed_model_path(FILES / "run-b78160a.ckpt.npz") == str(FILES / "run-b78160a.npz")
