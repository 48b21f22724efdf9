"""The live page's controls and its explorer panel in headless Chromium, during a real ``cycnn train --live`` run:
press Pause and see the status and the step counter stop, press Step and see it advance by one, set the learning
rate on the page, draw a digit into the explorer and read a prediction, resume. Skipped where Chromium,
chromium-driver or Selenium is missing; ``CYCNN_SCREENSHOTS=DIR`` keeps the screenshot."""
import json
import os
import signal
import time

import pytest

from test_explore_browser import CHROMIUM, DRIVER, FLAGS, answers, screenshot, stroke, wait_for_answer
from test_live import fetch, start_live_training, stop_process

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None, reason="chromium and chromium-driver are not installed (Debian: apt-get "
                                               "install chromium chromium-driver; .ci/run installs them)")]


def snapshot(url):
    return json.loads(fetch(url + "data.json")[2])


def wait_for(predicate, timeout=30, what="the page"):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


def test_pause_step_set_and_draw_during_training(tmp_path):
    # a run long enough to stay alive through the test (it is paused most of the time)
    process, url = start_live_training(tmp_path, "--epochs", "20", "--limit-train", "4000")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1400"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
    try:
        driver.get(url)
        body = driver.find_element(By.TAG_NAME, "body")
        WebDriverWait(driver, 60).until(lambda d: body.get_attribute("data-status") == "training"
                                        and d.find_element(By.ID, "pause").is_displayed())
        driver.find_element(By.ID, "pause").click()
        WebDriverWait(driver, 30).until(lambda d: body.get_attribute("data-status") == "paused")
        paused_at = snapshot(url)["step"]
        time.sleep(1.5)
        assert snapshot(url)["step"] == paused_at  # the run waits
        assert int(body.get_attribute("data-drawn-step")) == paused_at
        driver.find_element(By.ID, "step").click()
        WebDriverWait(driver, 30).until(lambda d: body.get_attribute("data-drawn-step") == str(paused_at + 1))
        time.sleep(1.0)
        assert snapshot(url)["step"] == paused_at + 1 and snapshot(url)["status"] == "paused"

        rate = driver.find_element(By.ID, "lr")
        rate.clear()
        rate.send_keys("0.0005")
        driver.find_element(By.ID, "set-lr").click()
        driver.find_element(By.ID, "step").click()  # the change applies at the next step
        changed = wait_for(lambda: [e for e in snapshot(url)["events"] if e["change"] == "lr"], what="the lr event")
        assert changed[0]["to"] == pytest.approx(0.0005)
        wait_for(lambda: snapshot(url)["lr"] == pytest.approx(0.0005), what="the new rate in the snapshot")

        pad = driver.find_element(By.ID, "pad")
        driver.execute_script("arguments[0].scrollIntoView()", pad)
        before = answers(driver)
        stroke(driver, [(140, 50 + 9 * k) for k in range(21)])
        label = wait_for_answer(driver, before)
        assert label in [str(k) for k in range(10)]
        assert "the weights of step" in driver.find_element(By.ID, "top-note").text
        screenshot(driver, tmp_path / "live-controls.png")

        driver.find_element(By.ID, "resume").click()
        WebDriverWait(driver, 30).until(lambda d: body.get_attribute("data-status") == "training")
        wait_for(lambda: snapshot(url)["step"] > paused_at + 3, what="the run to go on")
    finally:
        driver.quit()
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except Exception:
                pass
        stop_process(process)
    assert process.returncode == 130 and os.path.exists(tmp_path / "m.ckpt.npz")  # Ctrl-C: checkpointed, resumable
