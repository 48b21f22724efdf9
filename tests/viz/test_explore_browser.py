"""``cycnn explore``'s page in a real browser, driven as a person would: headless Chromium through Selenium and
Debian's chromedriver draws strokes with the mouse, clicks a feature map, moves a slider with the keyboard and
uploads a file. Skipped where Chromium, chromedriver or Selenium is missing (``.ci/run`` installs them).

Each test leaves a screenshot in the test's directory; ``CYCNN_SCREENSHOTS=DIR`` keeps copies there (how the
README's picture was made).
"""
import math
import os
import shutil
import tempfile

import numpy as np
import pytest

from cycnn.data.datasets import load_data
from cycnn.io.architecture import build, reference
from cycnn.train.fit import fit
from cycnn.viz.explore.api import Explorer
from cycnn.viz.explore.shared import SharedModel
from cycnn.viz.explore.testset import TestSet
from cycnn.viz.server import JsonServer

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None, reason="chromium and chromium-driver are not installed (Debian: apt-get "
                                               "install chromium chromium-driver; .ci/run installs them)")]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]


@pytest.fixture(scope="module")
def server():
    """The explorer for a reference network trained for one epoch on 12,000 MNIST images (a few seconds)."""
    data = load_data()
    model = build(reference())
    fit(model, data.x_train[:12000], data.y_train[:12000], epochs=1, seed=1)
    shared = SharedModel(model)
    tests = TestSet(shared, data.x_test[:2000], data.y_test[:2000], source="MNIST (first 2,000)")
    running = JsonServer(Explorer(shared, tests, title="reference, 1 epoch").routes(), 0)
    yield running
    running.stop()


@pytest.fixture
def browser(server, tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="cycnn-chromium-")
    for flag in [*FLAGS, f"--user-data-dir={profile}", "--window-size=1280,1800"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(60)
    driver.get(server.url)
    WebDriverWait(driver, 60).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def screenshot(driver, path):
    """The whole page (the window made as tall as the page, then back)."""
    size = driver.get_window_size()
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(size["width"], height + size["height"] - driver.execute_script("return innerHeight"))
    driver.save_screenshot(str(path))
    driver.set_window_size(size["width"], size["height"])
    keep = os.environ.get("CYCNN_SCREENSHOTS")
    if keep:
        shutil.copy(path, os.path.join(keep, path.name))


def answers(driver):
    return int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-answered") or 0)


def wait_for_answer(driver, after):
    """Wait until the page has drawn an answer newer than the ``after``-th; its label."""
    body = driver.find_element(By.TAG_NAME, "body")
    WebDriverWait(driver, 30).until(lambda d: answers(d) > after and not d.execute_script(
        "return state.inFlight || state.pending"))
    return body.get_attribute("data-label")


def stroke(driver, points):
    """Press the mouse at the first point on the pad (in pad pixels, 0..280), move through the rest, release."""
    pad = driver.find_element(By.ID, "pad")
    scale = pad.size["width"] / 280
    offset = [(x - 140) * scale for x, _ in points], [(y - 140) * scale for _, y in points]
    actions = ActionChains(driver, duration=10)
    actions.move_to_element_with_offset(pad, offset[0][0], offset[1][0]).click_and_hold()
    for k in range(1, len(points)):
        actions.move_by_offset(offset[0][k] - offset[0][k - 1], offset[1][k] - offset[1][k - 1])
    actions.release().perform()


def probabilities(driver):
    return driver.execute_script("return state.last.probability_list")


def test_a_vertical_stroke_reads_one_and_a_loop_reads_zero(browser, tmp_path):
    before = answers(browser)
    stroke(browser, [(140, 50 + 9 * k) for k in range(21)])
    assert wait_for_answer(browser, before) == "1"
    screenshot(browser, tmp_path / "explore-one.png")
    browser.find_element(By.ID, "clear").click()
    before = answers(browser)
    loop = [(140 + 60 * math.sin(t), 140 - 85 * math.cos(t)) for t in np.linspace(0, 2 * math.pi, 40)]
    stroke(browser, loop)
    assert wait_for_answer(browser, before) == "0"
    assert browser.find_element(By.ID, "top-label").text == "0"
    # every layer drew, and the explanations came with the last answer (after the mouse was released)
    assert browser.execute_script("return state.last.layers.length") == 8
    assert browser.execute_script("return !!state.last.occlusion && !!state.last.saliency && !!state.last.gradcam")
    screenshot(browser, tmp_path / "explore-zero.png")


def test_clicking_a_feature_map_shows_the_convolution_with_numbers(browser, tmp_path):
    before = answers(browser)
    stroke(browser, [(140, 50 + 9 * k) for k in range(21)])
    wait_for_answer(browser, before)
    before = answers(browser)
    browser.find_element(By.CSS_SELECTOR, 'canvas[data-layer="0"][data-channel="5"]').click()
    wait_for_answer(browser, before)
    panel = browser.find_element(By.ID, "detail-panel")
    assert panel.is_displayed()
    assert "filter 5" in browser.find_element(By.ID, "detail-title").text
    equation = browser.find_element(By.ID, "detail-equation").text
    assert "bias" in equation and "ReLU" in equation and "the map holds" in equation
    cells = browser.find_elements(By.CSS_SELECTOR, "#detail table.numbers td")
    assert len(cells) == 3 * 9  # the patch, the kernel and the products of a 3x3 kernel
    assert all(c.text.strip() for c in cells)
    # the page's sum + bias, through the ReLU, is the map's own value at the position shown
    shown = browser.execute_script("""const d = state.last.detail, [r, c] = position(d);
        return d.output.values[r * d.output.shape[1] + c];""")
    numbers = [v for v in map(_number, equation.replace("→", " ").split()) if v is not None]
    assert numbers[-3] == pytest.approx(shown, rel=0.01, abs=0.01)  # "ReLU → y; the map holds y' at (r, c)"
    screenshot(browser, tmp_path / "explore-convolution.png")


def _number(text):
    try:
        return float(text.replace("−", "-").rstrip(";,"))
    except ValueError:
        return None


def test_the_rotation_slider_moves_the_probabilities(browser):
    before = answers(browser)
    stroke(browser, [(140, 50 + 9 * k) for k in range(21)])
    wait_for_answer(browser, before)
    upright = probabilities(browser)
    slider = browser.find_element(By.ID, "slider-rotate")
    slider.click()  # the thumb sits in the middle: 0 degrees
    before = answers(browser)
    slider.send_keys(*[Keys.ARROW_RIGHT] * 60)
    wait_for_answer(browser, before)
    assert float(slider.get_attribute("value")) >= 45
    rotated = probabilities(browser)
    assert max(abs(a - b) for a, b in zip(upright, rotated)) > 0.01


def test_uploading_a_file(browser, digit_png, tmp_path):
    before = answers(browser)
    browser.find_element(By.ID, "upload").send_keys(str(digit_png))
    label = wait_for_answer(browser, before)
    assert "uploaded" in browser.find_element(By.ID, "source-note").text
    assert label in browser.execute_script("return state.model.class_names")


def test_a_test_image_the_confusion_matrix_and_the_map(browser, tmp_path):
    before = answers(browser)
    browser.find_element(By.ID, "test-mistake").click()
    wait_for_answer(browser, before)
    assert "the model says" in browser.find_element(By.ID, "source-note").text
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "table.confusion td.off"))
    browser.find_element(By.CSS_SELECTOR, "table.confusion td.off").click()
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#gallery figure"))
    before = answers(browser)
    browser.find_elements(By.CSS_SELECTOR, "#gallery figure")[0].click()
    wait_for_answer(browser, before)
    assert browser.execute_script("return state.atlas !== null && state.last.atlas_point.length") == 2
    screenshot(browser, tmp_path / "explore-testset.png")


def test_a_phone_sized_window(browser, tmp_path):
    browser.set_window_size(390, 844)
    before = answers(browser)
    stroke(browser, [(140, 50 + 9 * k) for k in range(21)])
    assert wait_for_answer(browser, before) == "1"
    overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the page is {overflow} px wider than a phone's screen"
    screenshot(browser, tmp_path / "explore-phone.png")
