"""The live page in a real browser: headless Chromium loads it from ``cycnn train --live``, runs its script until
the curves are drawn, and takes a screenshot that must not be blank. Skipped where Chromium is not installed
(Debian: ``apt-get install chromium``; ``.ci/run`` installs it)."""
import json
import re
import shutil
import signal
import subprocess
import tempfile
import time

import numpy as np
import pytest
from PIL import Image

from test_live import fetch, start_live_training

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Without the networking flags Chromium stalls on a closed network; as root it needs --no-sandbox.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         "--window-size=1280,1400", "--virtual-time-budget=5000"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install "
                                                         "chromium; .ci/run installs it), so no browser test")


@pytest.mark.slow
def test_live_page_draws_in_chromium(tmp_path):
    process, url = start_live_training(tmp_path, "--keep-serving", "--epochs", "1", "--limit-train", "600")
    try:
        deadline = time.monotonic() + 300
        while "test_accuracy" not in (final := json.loads(fetch(url + "data.json")[2])):
            assert time.monotonic() < deadline, "the run did not finish"
            time.sleep(0.1)
        shot = tmp_path / "live.png"
        with tempfile.TemporaryDirectory() as profile:
            browser = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}",
                                      "--dump-dom", url], capture_output=True, text=True, timeout=120)
        assert shot.is_file(), browser.stderr[-2000:]
        # the page's script marks the body once it has drawn a snapshot's curves, kernels, maps and bars
        drawn = re.search(r'data-drawn-step="(\d+)"', browser.stdout)
        assert drawn and int(drawn.group(1)) == final["step"], browser.stdout[:2000]
        assert 'data-status="finished"' in browser.stdout
        image = np.asarray(Image.open(shot).convert("RGB"))
        assert image.shape[:2] == (1400, 1280)
        background = np.all(image == [246, 248, 250], axis=2) | np.all(image == 255, axis=2)
        assert background.mean() < 0.95  # curves, kernels, maps, digits and bars, not just empty panels
        colours = (image[..., 0].astype(np.int32) << 16) | (image[..., 1].astype(np.int32) << 8) | image[..., 2]
        assert len(np.unique(colours)) > 200  # colour maps and text, not a blank page
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        process.stdout.close()
        process.stderr.close()
