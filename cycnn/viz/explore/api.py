"""The explorer's HTTP API: each route's request checked (type, range, size) and answered from ``analysis``,
``transform`` and ``testset``. The README's "Explore a model" section documents it for scripts."""
import math
import re
import time

import numpy as np

from cycnn.data.preparation import for_model
from cycnn.nn.layers import Conv2D, Dense, MaxPool2D
from cycnn.viz import assets
from cycnn.viz.explore import analysis, transform
from cycnn.viz.server import MAX_BODY, ApiError, Route

IMAGE_TYPES = ("image/png", "image/jpeg", "application/octet-stream")
WHOLE_NUMBER = re.compile(r"-?[0-9]{1,9}")  # ASCII digits only: str.isdigit() takes "²" and "٣"
MAX_THUMBNAILS = 200


class Explorer:
    """The routes of ``cycnn explore`` for a ``SharedModel`` and (optionally) a ``testset.TestSet``; ``title`` names
    the model on the page."""

    def __init__(self, shared, tests=None, title="", live=False):
        self.shared, self.tests, self.title, self.live = shared, tests, title, live
        self.page = assets.inline_page("explore.html").encode("utf-8")

    @property
    def model(self):
        return self.shared.model

    def routes(self, page_paths=("/", "/index.html")):
        """The API's routes, with the page at ``page_paths``."""
        page = Route(lambda request: (self.page, "text/html; charset=utf-8"))
        return {**{("GET", path): page for path in page_paths},
                ("GET", "/api/model"): Route(self.describe),
                ("POST", "/api/predict"): Route(self.predict, MAX_BODY),
                ("GET", "/api/test-image"): Route(self.test_image),
                ("GET", "/api/test-images"): Route(self.test_images),
                ("GET", "/api/confusion"): Route(lambda request: self._tests().confusion()),
                ("GET", "/api/robustness"): Route(lambda request: self._tests().robustness()),
                ("GET", "/api/atlas"): Route(self.atlas)}

    # --- routes ---------------------------------------------------------------------------------------------
    def describe(self, request):
        model = self.model
        tests = None if self.tests is None else {"images": len(self.tests), "source": self.tests.source}
        return {"title": self.title, "class_names": model.class_names, "input_shape": list(model.input_shape),
                "parameters": model.parameter_count, "layers": analysis.describe(model), "test_set": tests,
                "live": self.live, "weights": self.shared.info,
                "transforms": {name: list(r) for name, r in transform.RANGES.items()}}

    def predict(self, request):
        """The answer for an image: see the README for the body and the query parameters."""
        started = time.perf_counter()
        model, info, query = self.shared.model, self.shared.info, request.query  # one snapshot for the whole answer
        x = self._input(request)
        settings = transform.check({name: _number(query, name) for name in transform.RANGES if name in query})
        if not transform.is_identity(settings):
            x = transform.apply(x[None], **settings)[0]
        target = _integer(query, "target", 0, model.num_classes - 1) if "target" in query else None
        result, outputs = analysis.respond(model, x, target, explain=_flag(query, "explain"))
        result["input"] = {"shape": list(x.shape), "data": analysis.b64(np.rint(np.clip(x, 0, 1) * 255))}
        if _flag(query, "occlusion"):
            explained = result["class_index"] if target is None else target
            result["occlusion"] = analysis.occlusion(self.shared, x, explained)
        if "layer" in query:
            layer = self._detail_layer(query)
            units = model.output_shapes[layer][0]  # channels of a map, units of a dense layer
            unit = _integer(query, "unit", 0, units - 1) if "unit" in query else 0
            result["detail"] = analysis.detail(model, x, outputs, layer, unit)
        if "atlas" in query:
            layer = _integer(query, "atlas", -1, len(model.layers) - 1)
            atlas = self._tests().placed_atlas(layer)  # placed once computed (GET /api/atlas), never waited for
            if atlas is not None:
                result["atlas_point"] = atlas.place(x if layer < 0 else outputs[layer][0])
        result["weights"] = info
        result["milliseconds"] = round((time.perf_counter() - started) * 1000, 2)
        return result

    def test_image(self, request):
        """One test image by ``index``, or ``pick=random`` / ``pick=mistake`` (a random misclassified one)."""
        tests, query = self._tests(), request.query
        if "index" in query:
            index = _integer(query, "index", 0, len(tests) - 1)
        else:
            pick = query.get("pick", "")
            if pick not in ("random", "mistake"):
                raise ApiError(400, "give index=N, or pick=random or pick=mistake")
            pool = tests.mistakes() if pick == "mistake" else np.arange(len(tests))
            if not len(pool):
                raise ApiError(404, "the model gets every test image right: there is no mistake to show")
            index = int(np.random.default_rng().choice(pool))
        x = tests.inputs([index])[0]
        return {"index": index, "label": int(tests.labels[index]), "class": self.model.class_names[tests.labels[index]],
                "predicted": int(tests.predicted()[index]), "shape": list(x.shape),
                "pixels": np.round(x[0] if x.shape[0] == 1 else x, 4).tolist()}

    def test_images(self, request):
        """Thumbnails (uint8, base64) of the test images ``indices=3,14,15`` (at most ``MAX_THUMBNAILS``)."""
        tests = self._tests()
        text = request.query.get("indices", "")
        items = text.split(",") if text else []
        if not items or len(items) > MAX_THUMBNAILS or not all(WHOLE_NUMBER.fullmatch(i) and i[0] != "-"
                                                                for i in items):
            raise ApiError(400, f"indices must be 1 to {MAX_THUMBNAILS} comma-separated test image numbers")
        indices = [int(i) for i in items]
        if max(indices) >= len(tests):
            raise ApiError(400, f"test image {max(indices)} does not exist (the test set has {len(tests):,})")
        predicted = tests.predicted()
        return {"shape": list(self.model.input_shape), "images": [
            {"index": i, "label": int(tests.labels[i]), "predicted": int(predicted[i]),
             "data": analysis.b64(np.asarray(tests.images[i]))} for i in indices]}

    def atlas(self, request):
        layer = _integer(request.query, "layer", -1, len(self.model.layers) - 1)
        points, _ = self._tests().atlas(layer)
        return {**points, "name": "input" if layer < 0 else self.model.layer_names()[layer]}

    # --- checks ---------------------------------------------------------------------------------------------
    def _tests(self):
        if self.tests is None:
            raise ApiError(404, "no test set for this model (its input shape or classes do not match the dataset)")
        return self.tests

    def _input(self, request):
        """The request's image as a model input (C, H, W): an image file prepared as ``cycnn predict`` does, or
        JSON pixels at the model's input size taken as they are."""
        if not request.body:
            raise ApiError(400, 'empty body: send a PNG or JPEG image, or JSON {"pixels": [[...]]}')
        if request.content_type in IMAGE_TYPES:
            return for_model(self.model).prepare(request.body, name="the image")
        if request.content_type != "application/json":
            raise ApiError(415, f"Content-Type {request.content_type or 'none'!r}: send image/png, image/jpeg, "
                                "application/octet-stream or application/json")
        return _pixels(request.json(), self.model.input_shape)

    def _detail_layer(self, query):
        layer = _integer(query, "layer", 0, len(self.model.layers) - 1)
        if not isinstance(self.model.layers[layer], (Conv2D, MaxPool2D, Dense)):
            raise ApiError(400, f"layer {layer} ({self.model.layer_names()[layer]}) has no detail view: give a "
                                "Conv2D, MaxPool2D or Dense layer")
        return layer


def _pixels(document, input_shape):
    """A JSON body's ``{"pixels": ...}``: (H, W) for a one-channel model or (C, H, W), finite numbers in [0, 1]."""
    if not isinstance(document, dict) or "pixels" not in document:
        raise ApiError(400, 'the JSON body must be an object with "pixels"')
    try:
        pixels = np.array(document["pixels"], dtype=np.float64)
    except (ValueError, TypeError):
        raise ApiError(400, "pixels must be a rectangular array of numbers") from None
    c, h, w = input_shape
    if c == 1 and pixels.shape == (h, w):
        pixels = pixels[None]
    if pixels.shape != tuple(input_shape):
        wanted = f"({h}, {w}) or (1, {h}, {w})" if c == 1 else f"({c}, {h}, {w})"
        raise ApiError(400, f"pixels have shape {pixels.shape}; this model takes {wanted}")
    if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 1:
        raise ApiError(400, "pixels must be finite numbers from 0 (black) to 1 (white)")
    return pixels.astype(np.float32)


def _integer(query, name, least, most):
    text = query.get(name, "")
    if not WHOLE_NUMBER.fullmatch(text):
        raise ApiError(400, f"{name} must be a whole number, received {text[:40]!r}")
    value = int(text)
    if not least <= value <= most:
        raise ApiError(400, f"{name} must be from {least} to {most}, received {value}")
    return value


def _number(query, name):
    text = query.get(name, "")
    try:
        value = float(text) if len(text) < 40 and text.isascii() else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ApiError(400, f"{name} must be a finite number, received {text[:40]!r}")
    return value


def _flag(query, name):
    value = query.get(name, "0")
    if value not in ("0", "1", "true", "false"):
        raise ApiError(400, f"{name} takes 1 or 0, received {value[:40]!r}")
    return value in ("1", "true")

