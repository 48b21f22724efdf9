"""Determinism of whole training runs: the same seed and data give the same weights bit for bit, whatever the
number of threads (the kernels split work by image, output channel or fixed blocks of the result, and no sum is
ever split across threads). tests/nn/test_kernels_checked.py checks the same property layer by layer on odd shapes."""
import numpy as np
import pytest

from cycnn.cli import main
from cycnn.nn.runtime import default_threads, set_threads
from cycnn.io.model_file import load_model

# 5 steps of 50 images with augmentation and dropout: every random stream and every kernel is used, and the
# products are large enough to be split among threads. (A small test set keeps the final evaluation short.)
BASE = ["train", "--val-split", "0", "--epochs", "1", "--batch-size", "50", "--augment", "--quiet"]
CONFIGS = {
    # conv 3x3x32 (9 taps: the direct fused kernel) + pool, conv 3x3x64 (Winograd) + pool, dense (own kernel)
    "reference": [],
    # convolutions without pooling (unfused Conv2D: im2col, GEMM, col2im), a 5x5 and a 3x3 kernel, padding
    "unfused": ["--conv", "6,12", "--kernel", "5,3", "--pool", "1", "--padding", "1", "--dense", "24"],
}


@pytest.fixture(scope="module", autouse=True)
def restore_threads():
    yield
    set_threads(default_threads()).restore_original_limits()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, mnist):
    """250 MNIST training and 100 test images as IDX files."""
    directory = tmp_path_factory.mktemp("mnist-250")
    x_train, y_train, x_test, y_test = mnist
    for prefix, images, labels in (("train", x_train[:250], y_train[:250]), ("t10k", x_test[:100], y_test[:100])):
        (directory / f"{prefix}-images-idx3-ubyte").write_bytes(b"\0\0\x08\x03" + b"".join(
            d.to_bytes(4, "big") for d in images.shape) + images.tobytes())
        (directory / f"{prefix}-labels-idx1-ubyte").write_bytes(b"\0\0\x08\x01" + len(labels).to_bytes(4, "big")
                                                                 + labels.astype(np.uint8).tobytes())
    return directory


@pytest.fixture
def train(data_dir):
    def run(path, *args):
        with pytest.raises(SystemExit) as stop:
            main([*BASE, "--data-dir", str(data_dir), *map(str, args), "--out", str(path)])
        assert stop.value.code == 0
        return {key: param for key, param, _ in load_model(path).parameters()}
    return run


def identical(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_the_same_seed_gives_the_same_weights(train, tmp_path):
    first = train(tmp_path / "a.npz", "--seed", "7", "--threads", "2")
    again = train(tmp_path / "b.npz", "--seed", "7", "--threads", "2")
    other = train(tmp_path / "c.npz", "--seed", "8", "--threads", "2")
    assert identical(first, again)
    assert not identical(first, other)  # the comparison can fail: the seed matters


@pytest.mark.parametrize("config", CONFIGS, ids=list(CONFIGS))
def test_the_thread_count_does_not_change_the_weights(config, train, tmp_path):
    runs = {threads: train(tmp_path / f"t{threads}.npz", *CONFIGS[config], "--threads", threads)
            for threads in (1, 2, 3)}
    assert identical(runs[1], runs[2])
    assert identical(runs[1], runs[3])  # more threads than this machine's cores: uneven splits


def test_the_log_interval_does_not_change_the_weights(train, tmp_path):
    every_step = train(tmp_path / "a.npz", "--log-every", "1", "--threads", "1")
    rarely = train(tmp_path / "b.npz", "--log-every", "1000", "--threads", "1")
    assert identical(every_step, rarely)
