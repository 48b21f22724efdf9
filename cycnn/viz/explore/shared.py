"""One model answering many request threads at once.

Single-image requests use only the layers' pure functions (``Sequential.trace``), which any number of threads may
run together. Batches (occlusion's masked copies, the test set's passes) are worth the fused path, which keeps its
scratch arrays on the layers: ``SharedModel`` lets one batch through it at a time, each batch a few milliseconds
to a few tens, so no request waits long behind another's.
"""
import threading


class SharedModel:
    def __init__(self, model):
        self.model = model
        self._fused = threading.Lock()

    def probabilities(self, x):
        """Class probabilities (N, classes) of a float batch (N, C, H, W), through the fused path."""
        with self._fused:
            return self.model.predict_proba(x)
