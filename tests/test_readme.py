"""The README's Python examples run as written: the explicit loop, the one-call ``fit`` and the custom callback."""
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_examples():
    """The ```python blocks of the README's "Python API" section, in order."""
    text = README.read_text()
    section = text[text.index("## Python API"):]
    section = section[:section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_section_has_the_loop_the_fit_call_and_a_callback():
    examples = python_examples()
    assert len(examples) == 3
    assert "model.backward(" in examples[0] and "cycnn.fit(" in examples[1] and "Callback" in examples[2]


@pytest.mark.slow
def test_the_python_examples_run_as_written(tmp_path, monkeypatch, capsys):
    """One namespace, as a reader pasting them one after the other; the loop's model must learn."""
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for example in python_examples():
        exec(compile(example, str(README), "exec"), namespace)
    assert (tmp_path / "mine.npz").is_file()
    accuracy = float(re.search(r"test accuracy ([0-9.]+)", capsys.readouterr().out).group(1))
    assert accuracy > 0.8  # 100 steps of Adam on the reference network
    assert namespace["history"].history["val_accuracy"][0] > 0.9


def test_the_layer_reference_table_is_what_cycnn_layers_prints(capsys):
    from cli_runner import run_cli  # tests/cli_runner.py
    code, out, _ = run_cli(["layers", "--markdown"], capsys)
    assert code == 0 and out.strip() in README.read_text()
