"""Softmax and cross-entropy: from logits for training (numerically stable), from probabilities for evaluation."""
import numpy as np


def softmax(logits):
    """Row-wise softmax; subtracting the row maximum keeps exp() from overflowing."""
    z = logits - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def cross_entropy(probs, labels):
    """Mean -log p[label] from probabilities (clipped at 1e-12, so a confident mistake costs 27.6, not inf)."""
    labels = np.asarray(labels)
    picked = np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)
    return float(-np.mean(np.log(picked)))


class SoftmaxCrossEntropy:
    """``loss = SoftmaxCrossEntropy()(logits, labels)`` is the mean of -log softmax(logits)[label];
    ``backward()`` returns d loss / d logits = (softmax - onehot) / N."""

    def __init__(self):
        self._cache = None

    def __call__(self, logits, labels):
        return self.forward(logits, labels)

    def forward(self, logits, labels):
        logits = np.asarray(logits)
        labels = np.asarray(labels)
        if logits.ndim != 2 or labels.shape != (logits.shape[0],):
            raise ValueError(f"expected logits (N, K) and labels (N,), received {logits.shape} and {labels.shape}")
        if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[1]):
            raise ValueError(f"labels must lie in [0, {logits.shape[1]}), received {labels.min()}..{labels.max()}")
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(shifted).sum(axis=1))
        rows = np.arange(len(labels))
        loss = float(np.mean(log_norm - shifted[rows, labels]))
        probs = np.exp(shifted - log_norm[:, None])
        self._cache = (probs, labels)
        return loss

    def backward(self):
        probs, labels = self._cache
        grad = probs.copy()
        grad[np.arange(len(labels)), labels] -= 1
        grad /= len(labels)
        return grad
