"""Evaluating a model: class probabilities for uint8 images, loss and accuracy, the confusion matrix and
per-class precision, recall and F1."""
import numpy as np

from cycnn.data.datasets import to_input
from cycnn.nn.losses import cross_entropy


def predict_images(model, images, batch_size=1000):
    """Class probabilities for uint8 images (converted batch by batch) or for float inputs."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        return model.predict_proba(images)
    out = np.empty((len(images), model.num_classes))
    for start in range(0, len(images), batch_size):
        out[start:start + batch_size] = model.predict_proba(to_input(images[start:start + batch_size]))
    return out


def evaluate(model, images, labels, batch_size=1000):
    """(mean cross-entropy, accuracy) of ``model`` on uint8 images (N, H, W) or float inputs."""
    probs = predict_images(model, images, batch_size)
    return scores(probs, labels)


def scores(probs, labels):
    """(mean cross-entropy, accuracy) of class probabilities against the labels."""
    labels = np.asarray(labels)
    return cross_entropy(probs, labels), float(np.mean(probs.argmax(axis=1) == labels))


def confusion_matrix(labels, predictions, num_classes):
    """counts[true, predicted]."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(labels), np.asarray(predictions)), 1)
    return counts


def per_class_scores(confusion, class_names):
    """Precision, recall, F1 and support for every class (0 where a ratio is undefined)."""
    confusion = np.asarray(confusion)
    true_pos = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    precision = np.divide(true_pos, predicted, out=np.zeros_like(true_pos), where=predicted > 0)
    recall = np.divide(true_pos, actual, out=np.zeros_like(true_pos), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(true_pos), where=denom > 0)
    return [{"class": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision, recall, f1, actual)]
