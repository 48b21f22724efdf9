"""One model answering many request threads at once.

Single-image requests use only the layers' pure functions (``Sequential.trace``), which any number of threads may
run together. Batches (occlusion's masked copies, the test set's passes) are worth the fused path, which keeps its
scratch arrays on the layers: ``SharedModel`` lets one batch through it at a time, each batch a few milliseconds
to a few tens, so no request waits long behind another's.

During training (``cycnn train --live``) the model answering is a copy of the weights at the last snapshot, put in
place by ``replace``: a request takes ``shared.model`` once and keeps it, so it never mixes two snapshots.
"""
import threading


class SharedModel:
    """``model`` (a Sequential) for many threads; ``info`` is what the answers say about it (e.g. the step)."""

    def __init__(self, model, **info):
        self.model, self.info = model, info
        self._fused = threading.Lock()

    def replace(self, model, **info):
        """Answer with ``model`` from now on (requests under way finish with the one they took)."""
        self.model, self.info = model, info

    def probabilities(self, x):
        """Class probabilities (N, classes) of a float batch (N, C, H, W), through the fused path."""
        model = self.model
        with self._fused:
            return model.predict_proba(x)
