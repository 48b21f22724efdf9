"""The test set as the explorer uses it: images to pick, the confusion matrix with its cells' images, robustness
curves and the 2-D map (PCA) of a layer.

Everything is computed on first use and kept (a lock makes concurrent first requests compute it once); the batch
passes go through the ``SharedModel``'s fused path, one batch at a time.
"""
import threading

import numpy as np

from cycnn.data.datasets import to_input
from cycnn.train.evaluation import confusion_matrix
from cycnn.viz.explore import transform

SAMPLE = 1000  # test images in the robustness curves and the PCA map
SAMPLE_SEED = 0
BATCH = 250
CURVES = {"rotate": [float(a) for a in range(-60, 61, 10)], "shift_x": [float(s) for s in range(-8, 9, 2)],
          "scale": [0.5, 0.625, 0.75, 0.875, 1.0, 1.25, 1.5, 1.75, 2.0],
          "noise": [round(0.1 * k, 1) for k in range(9)]}


def layer_features(model, x, layer):
    """Layer ``layer``'s outputs for a float batch, flattened to (N, features); layer -1 is the input itself."""
    if layer < 0:
        return x.reshape(len(x), -1).astype(np.float64)
    return np.concatenate([np.asarray(model.layer_outputs(x[s:s + BATCH])[layer], dtype=np.float64)
                           .reshape(min(BATCH, len(x) - s), -1) for s in range(0, len(x), BATCH)])


class TestSet:
    """uint8 test images (N, H, W) or (N, C, H, W) with their labels, for the ``SharedModel`` ``shared``."""

    __test__ = False  # not a pytest test class, though its name starts with "Test"

    def __init__(self, shared, images, labels, source):
        self.shared, self.source = shared, source
        self.images, self.labels = images, np.asarray(labels)
        self.sample = np.sort(np.random.default_rng(SAMPLE_SEED).permutation(len(images))[:SAMPLE])
        self._lock = threading.Lock()
        self._cached_for = None  # the model the cached results are of (a new snapshot during training: recomputed)
        self._predicted = self._curves = None
        self._atlases = {}

    def _current(self):
        """(Holding the lock.) The model now, with the caches of an earlier one dropped."""
        model = self.shared.model
        if model is not self._cached_for:
            self._cached_for, self._predicted, self._curves, self._atlases = model, None, None, {}
        return model

    def __len__(self):
        return len(self.labels)

    def inputs(self, indices):
        return to_input(self.images[indices])

    def predicted(self):
        """The model's class for every test image (computed once)."""
        with self._lock:
            self._current()
            if self._predicted is None:
                self._predicted = np.concatenate([self.shared.probabilities(self.inputs(slice(s, s + 2000)))
                                                  .argmax(axis=1) for s in range(0, len(self), 2000)])
            return self._predicted

    def mistakes(self):
        return np.flatnonzero(self.predicted() != self.labels)

    def confusion(self):
        predicted, classes = self.predicted(), self.shared.model.num_classes
        cells = [[[] for _ in range(classes)] for _ in range(classes)]
        for index, (true, guess) in enumerate(zip(self.labels, predicted)):
            cells[true][guess].append(index)
        matrix = confusion_matrix(self.labels, predicted, classes)
        return {"matrix": matrix.tolist(), "cells": cells, "images": len(self),
                "accuracy": float(np.mean(predicted == self.labels))}

    def robustness(self):
        """Accuracy of the sample against each transform's strength (computed once)."""
        with self._lock:
            self._current()
            if self._curves is None:
                x, y = self.inputs(self.sample), self.labels[self.sample]
                self._curves = {name: {"values": values, "accuracy": [
                    float(np.mean(self.shared.probabilities(transform.apply(x, **{name: v})).argmax(axis=1) == y))
                    for v in values]} for name, values in CURVES.items()}
            return self._curves

    def placed_atlas(self, layer):
        """The atlas of layer ``layer`` if it has been computed for the model now, else None (never waits for
        the lock)."""
        return self._atlases.get(layer) if self._cached_for is self.shared.model else None

    def atlas(self, layer):
        """The sample projected on the first two principal components of layer ``layer``'s outputs: the points
        (x, y, label, index) and the projection that places a new image among them."""
        with self._lock:
            model = self._current()
            if layer not in self._atlases:
                self._atlases[layer] = _Atlas(layer_features(model, self.inputs(self.sample), layer))
            atlas = self._atlases[layer]
        points = [[float(f"{a:.4g}"), float(f"{b:.4g}"), int(self.labels[i]), int(i)]
                  for (a, b), i in zip(atlas.points, self.sample)]
        return {"layer": layer, "points": points, "explained": atlas.explained}, atlas


class _Atlas:
    """PCA of (N, D) features through the N x N Gram matrix (D is up to tens of thousands; N is 1,000)."""

    def __init__(self, features):
        self.mean = features.mean(axis=0)
        centred = features - self.mean
        values, vectors = np.linalg.eigh(centred @ centred.T)
        top = np.argsort(values)[::-1][:2]
        scale = np.sqrt(np.maximum(values[top], 1e-12))
        self.components = centred.T @ vectors[:, top] / scale  # (D, 2), unit length
        self.points = vectors[:, top] * scale
        total = max(float(values.clip(0).sum()), 1e-12)
        self.explained = [float(f"{v / total:.4g}") for v in values[top].clip(0)]

    def place(self, features):
        return [float(f"{v:.4g}") for v in (np.asarray(features, dtype=np.float64).ravel() - self.mean)
                @ self.components]
