"""The explorer's HTTP API in process (a JsonServer on a free loopback port, http.client as the client): answers for
drawn, uploaded and JSON images with every option, one-line JSON refusals after which the server goes on serving,
the test-set routes, concurrent clients, the token, and ``cycnn explore`` itself."""
import base64
import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

import cycnn
from cli_runner import assert_one_line_error, run_cli
from cycnn.data.datasets import to_input
from cycnn.data.preparation import DIGIT
from cycnn.errors import CycnnError
from cycnn.io.model_file import save_model
from cycnn.nn.layers import Conv2D, Dense, Flatten, MaxPool2D
from cycnn.nn.sequential import Sequential
from cycnn.viz.explore.api import Explorer
from cycnn.viz.explore.shared import SharedModel
from cycnn.viz.explore.testset import TestSet
from cycnn.viz.server import JsonServer

IMAGES = 150  # test images behind the test-set routes
JSON, PNG = "application/json", "image/png"


def encode(image, fmt="PNG"):
    image.save(buffer := io.BytesIO(), fmt)
    return buffer.getvalue()


def pixels_body(pixels):
    return json.dumps({"pixels": pixels.tolist() if isinstance(pixels, np.ndarray) else pixels}).encode()


STROKE = Image.new("L", (160, 200), 255)  # a dark vertical stroke on light paper, as a learner draws a 1
ImageDraw.Draw(STROKE).line((80, 30, 80, 170), fill=0, width=14)
STROKE_PNG = encode(STROKE)
BLANK = pixels_body(np.zeros((28, 28)))


@pytest.fixture(scope="session")
def trained(mnist):
    """A small model trained in about a second on 4,000 MNIST images: it reads clear digits right."""
    model = Sequential([Conv2D(1, 8, 3, activation="relu", seed=0), MaxPool2D(2), Conv2D(8, 8, 3, activation="relu",
                        seed=1), MaxPool2D(2), Flatten(), Dense(8 * 5 * 5, 10, seed=2)])
    cycnn.fit(model, mnist[0][:4000], mnist[1][:4000], epochs=2, batch_size=32, lr=0.003)
    return model


@pytest.fixture(scope="module")
def server(trained, mnist):
    shared = SharedModel(trained)
    tests = TestSet(shared, mnist[2][:IMAGES], mnist[3][:IMAGES], "MNIST")
    server = JsonServer(Explorer(shared, tests, title="tiny").routes(), 0)
    yield server
    server.stop()


def call(server, method, path, body=None, headers=None):
    """(status, response, body bytes) of one request on a connection of its own."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response, response.read()
    finally:
        conn.close()


def api(server, method, path, body=None, content_type=None):
    status, _, data = call(server, method, path, body, {"Content-Type": content_type} if content_type else {})
    return status, json.loads(data)


def predict(server, body, content_type=JSON, query=""):
    status, answer = api(server, "POST", "/api/predict" + query, body, content_type)
    assert status == 200, answer
    return answer


def ask(server, query=""):  # the answer for the drawn stroke
    return predict(server, STROKE_PNG, PNG, query)


def assert_refusal(status, data, expected):
    message = json.loads(data)
    assert status == expected and set(message) == {"error"}, (status, message)
    assert message["error"] and "\n" not in message["error"] and "Traceback" not in message["error"]


def assert_still_serving(server):
    assert api(server, "GET", "/api/model")[0] == 200
    assert predict(server, BLANK)["layers"]


def input_image(answer):
    return np.frombuffer(base64.b64decode(answer["input"]["data"]), dtype=np.uint8).reshape(28, 28)


def check_answer(answer, model):
    probabilities = answer["probability_list"]
    assert sum(probabilities) == pytest.approx(1, abs=1e-9) and min(probabilities) >= 0
    assert answer["label"] == model.class_names[answer["class_index"]] == model.class_names[np.argmax(probabilities)]
    assert answer["probabilities"] == dict(zip(model.class_names, probabilities))
    assert answer["input"]["shape"] == [1, 28, 28] and input_image(answer).shape == (28, 28)
    assert [layer["shape"] for layer in answer["layers"]] == [list(shape) for shape in model.output_shapes]


def test_model_description_and_page(server, trained):
    status, described = api(server, "GET", "/api/model")
    assert status == 200 and described["title"] == "tiny" and described["class_names"] == trained.class_names
    assert described["input_shape"] == [1, 28, 28] and described["parameters"] == trained.parameter_count
    assert [layer["shape"] for layer in described["layers"]] == [list(s) for s in trained.output_shapes]
    assert [layer["detail"] for layer in described["layers"]] == [True, True, True, True, False, True]
    assert described["test_set"] == {"images": IMAGES, "source": "MNIST"} and described["transforms"]["scale"][2] == 1
    status, response, page = call(server, "GET", "/")
    assert status == 200 and response.getheader("Content-Type").startswith("text/html") and b"<html" in page


def test_drawn_and_uploaded_images_read_as_their_digits(server, trained, draw_digit):
    """PNG, JPEG and untyped bytes are prepared as ``cycnn predict`` prepares a file."""
    for body, content_type, label in [(STROKE_PNG, PNG, "1"), (encode(draw_digit("zero")), PNG, "0"),
                                      (encode(draw_digit("seven"), "JPEG"), "image/jpeg", "7"),
                                      (encode(draw_digit("zero")), "application/octet-stream", "0")]:
        answer = predict(server, body, content_type)
        check_answer(answer, trained)
        assert answer["label"] == label, (content_type, answer["probabilities"])
        expected = trained.predict_proba(DIGIT.prepare(body)[None])[0]
        np.testing.assert_allclose(answer["probability_list"], expected, rtol=1e-4, atol=1e-6)


def test_json_pixels_in_either_shape(server, trained, mnist):
    image = to_input(mnist[2][:1])[0]  # (1, 28, 28)
    flat, channel = predict(server, pixels_body(image[0])), predict(server, pixels_body(image))
    check_answer(flat, trained)
    assert flat["probability_list"] == channel["probability_list"] and flat["label"] == str(mnist[3][0])
    np.testing.assert_allclose(flat["probability_list"], trained.predict_proba(image[None])[0], atol=1e-5)
    np.testing.assert_array_equal(input_image(flat), np.rint(image[0] * 255))


def test_explanations_and_occlusion_for_the_answer_and_for_a_target(server):
    answer = ask(server, "?explain=1")
    assert answer["target"] == answer["class_index"] == 1 and answer["saliency"]["shape"] == [28, 28]
    assert answer["gradcam"]["layer"] == 2 and answer["gradcam"]["shape"] == [11, 11]
    other = ask(server, "?explain=true&target=7")  # why not a 7?
    assert (other["target"], other["class_index"]) == (7, 1) and other["saliency"] != answer["saliency"]
    assert "saliency" not in ask(server, "?explain=0")
    occlusion = (answer := ask(server, "?occlusion=1"))["occlusion"]
    assert occlusion["shape"] == [28, 28] and occlusion["target"] == answer["class_index"]
    assert occlusion["base"] == pytest.approx(answer["probability_list"][answer["class_index"]], rel=1e-4)
    assert ask(server, "?occlusion=1&target=5")["occlusion"]["target"] == 5


def test_detail_of_a_conv_a_pool_and_a_dense_unit(server, trained):
    shapes = lambda d: (d["type"], d["unit"], d["input"]["shape"], d["output"]["shape"])  # noqa: E731
    conv, pool = ask(server, "?layer=0&unit=7")["detail"], ask(server, "?layer=3")["detail"]
    assert shapes(conv) == ("conv", 7, [1, 28, 28], [26, 26]) and conv["kernel"]["shape"] == [1, 3, 3]
    assert conv["bias"] == pytest.approx(float(trained.layers[0].params["b"][7]))
    assert shapes(pool) == ("pool", 0, [11, 11], [5, 5])  # the unit defaults to 0
    dense = ask(server, "?layer=5&unit=9")["detail"]
    assert dense["type"] == "dense" and dense["unit"] == 9 and dense["inputs"] == 200
    assert all(np.ravel_multi_index(c["position"], (8, 5, 5)) == c["input"] for c in dense["contributions"])


def test_atlas_places_a_test_image_on_its_own_point(server, mnist):
    image = to_input(mnist[2][4:5])[0]
    assert "atlas_point" not in predict(server, pixels_body(image), query="?atlas=1")  # that map is not made yet
    for layer in (-1, 1):
        status, atlas = api(server, "GET", f"/api/atlas?layer={layer}")
        points = np.array(atlas["points"])
        assert status == 200 and points.shape == (IMAGES, 4) and points[4, 3] == 4 and points[4, 2] == mnist[3][4]
        assert atlas["name"] == ("input" if layer < 0 else "1: MaxPool2D")
        placed = predict(server, pixels_body(image), query=f"?atlas={layer}")["atlas_point"]
        np.testing.assert_allclose(placed, points[4, :2], rtol=2e-3, atol=1e-3 * np.abs(points[:, :2]).max())


def test_transforms_change_the_input(server):
    plain = input_image(ask(server)).astype(int)
    assert np.array_equal(input_image(ask(server, "?rotate=0")), plain)
    assert not np.array_equal(input_image(ask(server, "?rotate=30")), plain)
    shifted = input_image(ask(server, "?shift_x=3"))
    assert (shifted[:, :3] == 0).all() and np.array_equal(shifted[:, 3:], plain[:, :-3])
    thick = input_image(ask(server, "?thickness=2"))
    assert (thick >= plain).all() and (thick > 127).sum() > (plain > 127).sum()
    assert not np.array_equal(input_image(ask(server, "?noise=0.5&scale=1.5")), plain)


def _post(name, body=BLANK, query="", content_type=JSON, status=400, path="/api/predict", headers=None, marks=()):
    headers = {**({"Content-Type": content_type} if content_type else {}), **(headers or {})}
    return pytest.param("POST", path + query, body, headers, status, id=name, marks=marks)


def _get(name, path, status=400, method="GET", marks=()):
    return pytest.param(method, path, None, {}, status, id=name, marks=marks)


def _first(token):
    return BLANK.replace(b"0.0", token, 1)  # a (28, 28) image whose first number is written as ``token``


BAD_REQUESTS = [
    _post("empty-body", b"", content_type=PNG), _post("not-an-image", b"hello, world", content_type=PNG),
    _post("truncated-png", STROKE_PNG[:len(STROKE_PNG) // 2], content_type=PNG),
    _post("bad-jpeg", b"\xff\xd8\xff" * 9, content_type="image/jpeg"), _post("malformed-json", b'{"pixels": [[0.1, '),
    _post("not-utf8", b'\xff\xfe{"pixels": 1}'), _post("nan", _first(b"NaN")), _post("infinity", _first(b"Infinity")),
    _post("minus-infinity", _first(b"-Infinity")), _post("overflow", _first(b"1e999")), _post("dark", _first(b"-0.1")),
    _post("too-bright", pixels_body(np.full((28, 28), 1.5))), _post("27-rows", pixels_body(np.zeros((27, 28)))),
    _post("two-channels", pixels_body(np.zeros((2, 28, 28)))), _post("batch", pixels_body(np.zeros((1, 1, 28, 28)))),
    _post("ragged", pixels_body([[0.0] * 28] * 27 + [[0.0] * 27])), _post("strings", pixels_body([["ink"] * 28] * 28)),
    _post("not-an-object", json.dumps([[0.0] * 28] * 28).encode()),
    _post("no-pixels", b'{"image": []}'), _post("bad-content-length", headers={"Content-Length": "12a"}),
    _post("text-plain", b"hello", content_type="text/plain", status=415),
    _post("no-content-type", STROKE_PNG, content_type=None, status=415),
    *[_post(name, query=query) for name, query in [
        ("target-too-big", "?target=10"), ("target-negative", "?target=-1"), ("target-text", "?target=one"),
        ("unit-out-of-range", "?layer=0&unit=8"), ("layer-without-detail", "?layer=4"), ("layer-too-big", "?layer=6"),
        ("rotate-nan", "?rotate=nan"), ("rotate-infinite", "?rotate=inf"), ("rotate-too-far", "?rotate=181"),
        ("thickness-fraction", "?thickness=0.5"), ("explain-2", "?explain=2"), ("occlusion-yes", "?occlusion=yes"),
        ("atlas-too-big", "?atlas=6")]],
    _post("post-model", path="/api/model", status=405), _get("unknown-path", "/api/nothing", 404),
    _get("delete", "/api/model", 405, "DELETE"), _get("get-predict", "/api/predict", 405),
    pytest.param("GET", "/api/model", b"x", {}, 413, id="get-with-body"),
    *[_get(f"traversal-{k}", path, 404) for k, path in enumerate(
        ["/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/static/../../../etc/passwd", "//etc/passwd"])],
    *[_get(f"test-image-{name}", "/api/test-image" + query) for name, query in [
        ("out-of-range", "?index=150"), ("text", "?index=five"), ("bad-pick", "?pick=best"), ("nothing", "")]],
    *[_get(f"test-images-{name}", "/api/test-images?indices=" + query) for name, query in [
        ("empty", ""), ("too-many", ",".join(["1"] * 201)), ("not-digits", "1,a"), ("empty-item", "1,,2"),
        ("negative", "-1"), ("out-of-range", "3,150")]],
    *[_get(f"atlas-{name}", "/api/atlas" + query) for name, query in [
        ("below", "?layer=-2"), ("above", "?layer=6"), ("missing", "")]],
    _post("target-double-minus", query="?target=--5"),
    _get("test-images-superscript", "/api/test-images?indices=%C2%B2"),
    _get("test-images-arabic-digit", "/api/test-images?indices=%D9%A3"),
    _post("content-length-superscript", headers={"Content-Length": "\u00b2"}),
]


@pytest.mark.parametrize("method, path, body, headers, status", BAD_REQUESTS)
def test_a_bad_request_gets_a_one_line_json_error_and_the_server_goes_on(server, method, path, body, headers, status):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        assert_refusal(response.status, data, status)
        assert b"root:" not in data
        if response.getheader("Connection") != "close":  # a connection kept open serves the next request
            conn.request("POST", "/api/predict", body=BLANK, headers={"Content-Type": JSON})
            assert conn.getresponse().status == 200
    finally:
        conn.close()
    assert_still_serving(server)


SMUGGLED = b"GET /api/model HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize("raw_request, status", [
    (b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n\x89PNG"
     % (100 << 20), 413),
    (b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"4\r\n\x89PNG\r\n0\r\n\r\n", 411),
    (b"POST /api/nothing HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(SMUGGLED), SMUGGLED), 404),
], ids=["100-MB-announced", "chunked", "body-after-a-refusal"])
def test_a_body_left_unread_closes_the_connection_at_once(server, raw_request, status):
    """Refused before its body is read: at once (100 MB never come), the unread bytes never taken for a request."""
    started, received = time.monotonic(), b""
    with socket.create_connection((server.host, server.port), timeout=10) as raw:
        raw.sendall(raw_request)
        while chunk := raw.recv(65536):  # until the server closes the connection
            received += chunk
    head, _, data = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status) and b"\r\nConnection: close" in head, head
    assert received.count(b"HTTP/1.1 ") == 1 and time.monotonic() - started < 2
    assert_refusal(status, data, status)
    assert_still_serving(server)


def test_test_images_by_index_at_random_and_among_mistakes(server, trained, mnist):
    status, picked = api(server, "GET", "/api/test-image?index=5")
    assert status == 200 and picked["index"] == 5 and picked["label"] == mnist[3][5] and picked["shape"] == [1, 28, 28]
    np.testing.assert_allclose(picked["pixels"], to_input(mnist[2][5:6])[0, 0], atol=1e-4)
    assert picked["predicted"] == int(trained.predict(to_input(mnist[2][5:6]))[0])
    for pick in ("random", "mistake"):
        status, picked = api(server, "GET", f"/api/test-image?pick={pick}")
        assert status == 200 and 0 <= picked["index"] < IMAGES and picked["label"] == mnist[3][picked["index"]]
        assert pick == "random" or picked["predicted"] != picked["label"]
    thumbnails = api(server, "GET", "/api/test-images?indices=3,14,15")[1]["images"]
    assert [(t["index"], t["label"], base64.b64decode(t["data"])) for t in thumbnails] == [
        (i, mnist[3][i], mnist[2][i].tobytes()) for i in (3, 14, 15)]


def test_confusion_matrix_and_robustness_curves(server, mnist):
    status, confusion = api(server, "GET", "/api/confusion")
    matrix = np.array(confusion["matrix"])
    assert status == 200 and matrix.shape == (10, 10) and matrix.sum() == confusion["images"] == IMAGES
    assert confusion["accuracy"] == pytest.approx(np.trace(matrix) / IMAGES) and confusion["accuracy"] > 0.6
    assert [[len(cell) for cell in row] for row in confusion["cells"]] == matrix.tolist()
    assert all(mnist[3][i] == true for true, row in enumerate(confusion["cells"]) for cell in row for i in cell)
    status, curves = api(server, "GET", "/api/robustness")
    assert status == 200 and set(curves) == {"rotate", "shift_x", "scale", "noise"}
    for curve in curves.values():
        assert len(curve["values"]) == len(curve["accuracy"]) and all(0 <= a <= 1 for a in curve["accuracy"])
    rotate = dict(zip(curves["rotate"]["values"], curves["rotate"]["accuracy"]))
    assert rotate[0.0] > rotate[60.0] and rotate[0.0] == confusion["accuracy"]


def test_concurrent_clients_get_the_answers_sequential_requests_give(server, mnist):
    bodies = [pixels_body(to_input(mnist[2][k:k + 1])[0, 0]) for k in range(8)]
    queries = ["?explain=1&occlusion=1"] * 4 + ["?explain=1"] * 4  # occlusion queues for the fused path
    expected = [predict(server, body, query=query) for body, query in zip(bodies, queries)]
    assert all(answer.pop("milliseconds") >= 0 for answer in expected)
    assert len({answer["label"] for answer in expected}) >= 4  # mixed-up answers would show
    barrier = threading.Barrier(8, timeout=30)

    def client(k):
        barrier.wait()
        return [predict(server, bodies[k], query=queries[k]) for _ in range(10)]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(client, range(8)))
    for k, answers in enumerate(results):
        for answer in answers:  # every number and every map as when the image came alone (the time apart)
            assert answer.pop("milliseconds") >= 0 and answer == expected[k]


@pytest.mark.parametrize("host, token", [("127.0.0.1", "secret"), ("127.0.0.2", None)], ids=["set", "off-loopback"])
def test_a_token_is_asked_for_when_set_or_off_the_loopback_names(trained, host, token):
    """127.0.0.2 is not a trusted name (though it is the loopback device: nothing is public), so a token is made."""
    try:
        server = JsonServer(Explorer(SharedModel(trained)).routes(), 0, host=host, token=token)
    except CycnnError:
        pytest.skip(f"{host} cannot be bound here")
    try:
        token = server.token
        assert token and len(token) >= 6 and server.url == f"http://{host}:{server.port}/?token={token}"
        for path, headers in (("/api/model", {}), ("/api/model?token=wrong", {}), ("/api/nothing", {}),
                              ("/api/model", {"X-Cycnn-Token": token.upper()})):
            assert_refusal(*call(server, "GET", path, None, headers)[::2], 403)
        assert call(server, "GET", f"/api/model?token={token}")[0] == 200
        assert call(server, "GET", "/api/model", None, {"X-Cycnn-Token": token})[0] == 200
        assert_refusal(*call(server, "GET", f"/api/confusion?token={token}")[::2], 404)  # no test set
    finally:
        server.stop()


@pytest.mark.parametrize("model, port, fragment", [("m.npz", "-1", "--port"), ("m.npz", "70000", "70000"),
                                                    ("missing.npz", "0", "missing.npz")])
def test_explore_refuses_bad_arguments_in_one_line(trained, tmp_path, capsys, model, port, fragment):
    save_model(trained, tmp_path / "m.npz")
    code, _, err = run_cli(["explore", tmp_path / model, "--port", port], capsys)
    assert_one_line_error(code, err, fragment)


@pytest.mark.slow
def test_explore_serves_until_interrupted(trained, tmp_path):
    """Ctrl+C ends ``cycnn explore`` normally: it catches the interrupt, stops its server and exits 0."""
    save_model(trained, tmp_path / "digits.npz")
    env = {**os.environ, "PYTHONPATH": str(Path(cycnn.__file__).resolve().parents[1]), "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen([sys.executable, "-m", "cycnn", "explore", "digits.npz", "--port", "0"], cwd=tmp_path,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        try:
            line = process.stdout.readline()
            match = re.fullmatch(r"exploring digits\.npz at (http://127\.0\.0\.1:\d+/)\n", line)
            assert match, (line, process.stderr.read() if process.poll() is not None else "")
            with urllib.request.urlopen(match.group(1) + "api/model", timeout=10) as response:
                described = json.loads(response.read())
            assert described["title"] == "digits.npz" and described["test_set"]["images"] == 10000
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=30) == 0
            assert "explorer stopped" in (err := process.stderr.read()) and "Traceback" not in err
        finally:
            process.kill()  # nothing once it has exited; the with block then closes the pipes
