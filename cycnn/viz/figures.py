"""The whole set of pictures of a model and its training, each with its file name, title and caption.

The figures themselves are drawn by ``network`` (kernels, the convolution at work, feature maps, dense layers),
``change`` (the first kernels' change since initialization), ``receptive`` (the patches that excite a deeper
channel), ``results`` (predictions, mistakes, the confusion matrix), ``training`` (from the training log) and
``progress`` (one test image's answer and feature maps epoch by epoch, from the log's probe records).
Each returns a matplotlib ``Figure``, built without pyplot so that nothing needs a display and no global state is
touched.
``pictures`` lists every picture that fits a model, its test results and its training log, which is what ``cycnn
visualize`` writes and ``cycnn report`` embeds; ``png_bytes`` renders one.
"""
import io
from dataclasses import dataclass

from matplotlib.figure import Figure

from cycnn.train.log import latest
from cycnn.viz.change import initial_model, kernel_change_figure
from cycnn.viz.network import (conv_layers, convolution_figure, dense_figure, feature_map_figure, kernel_figure,
                               layer_label, map_layers)
from cycnn.viz.progress import probe_epochs, progress_figure
from cycnn.viz.receptive import top_patches_figure
from cycnn.viz.results import confusion_figure, most_confused_figure, predictions_figure
from cycnn.viz.training import layer_times_figure, training_curves_figure

DPI = 100
PATCH_SAMPLE = 1000  # test images searched for the patches that excite each deeper channel most


@dataclass
class Picture:
    """One figure to write: ``name`` is its file stem; ``title`` and ``caption`` describe it on a page."""

    name: str
    title: str
    caption: str
    figure: Figure


def png_bytes(figure):
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    return buffer.getvalue()


def _weight_pictures(model, convs, test_images, records):
    """The pictures of the conv layers' weights: the first layer's kernels and, with a log, how training changed
    them; for each deeper layer the patches that excite its channels, and its raw kernels."""
    if convs:
        yield Picture(f"kernels_layer{convs[0]}", f"The kernels of {layer_label(model, convs[0])}",
                      "Each kernel is a small pattern of weights that the layer slides over its input; where the "
                      "input looks like the red part and unlike the blue part, the output is large.",
                      kernel_figure(model, convs[0]))
    if convs and model.layers[convs[0]].in_channels > 1:
        yield Picture(f"kernel_grid_layer{convs[0]}", f"The kernels of {layer_label(model, convs[0])}, channel by "
                      "channel", "One cell per (input channel, output channel) pair: what each kernel weighs in each "
                      "colour (or input channel) of the picture.", kernel_figure(model, convs[0], grid=True))
    start = initial_model(model, records) if records is not None else None
    if convs and start is not None:
        yield Picture(f"kernels_change_layer{convs[0]}", f"How training changed the kernels of "
                      f"{layer_label(model, convs[0])}",
                      "The kernels at initialization (rebuilt exactly from the seed in the training log), now, "
                      "and what training added: the difference shows what was learned even where the kernels "
                      "still look like their random start.", kernel_change_figure(model, start, convs[0]))
    for i in convs[1:]:
        yield Picture(f"top_patches_layer{i}", f"What the channels of {layer_label(model, i)} respond to",
                      f"A deeper channel looks at the channels below it, not at pixels; so for each channel, "
                      f"these are the pieces of the test images (of the first {PATCH_SAMPLE:,}) that excite it "
                      "most: the input pixels its strongest value sees. What they share is what it detects.",
                      top_patches_figure(model, i, test_images[:PATCH_SAMPLE]))
        yield Picture(f"kernel_grid_layer{i}", f"The kernels of {layer_label(model, i)}, weight by weight",
                      "One cell per (input channel, output channel) pair: the raw weights, which on their own say "
                      "little about what a deeper channel detects (see its top patches).", kernel_figure(model, i))


def pictures(model, test_images, test_labels, probs, chosen, records=None, count=24):
    """Every picture for ``model``, one at a time (a generator, so each can be written and dropped).

    ``test_images`` are model inputs (N, C, H, W) in [0, 1] with ``probs`` the model's class probabilities for
    them; ``chosen`` is a list of (slug, caption, image) for the per-image pictures; ``records`` a training log.
    """
    convs = conv_layers(model)
    yield from _weight_pictures(model, convs, test_images, records)
    for slug, caption, image in chosen:
        if convs:
            yield Picture(f"convolution_{slug}", f"The convolution of {layer_label(model, convs[0])} on {caption}",
                          "Multiply the kernel with every patch of its size in the image and add the bias: that is the "
                          "feature map. ReLU keeps its positive part and max-pooling keeps the largest value of "
                          "each window, halving the size.", convolution_figure(model, image, caption))
        for i in map_layers(model):
            yield Picture(f"feature_maps_{slug}_layer{i}", f"Feature maps of {layer_label(model, i)} for {caption}",
                          "Every channel of the layer's output for this image, all on one colour scale: bright "
                          "where the channel's pattern was found, black where it was not.",
                          feature_map_figure(model, image, i, caption))
        yield Picture(f"dense_{slug}", f"Dense-layer activations and class probabilities for {caption}",
                      "The hidden units that fire for this image, and the probability the network gives each class.",
                      dense_figure(model, image, caption))
    predicted = probs.argmax(axis=1)
    yield Picture("predictions", "Predictions on test images",
                  "Green: right; red, with a thick frame: wrong. Above each image, the three classes the network "
                  "finds most probable, with their probabilities.",
                  predictions_figure(test_images, test_labels, probs, model.class_names, count))
    yield Picture("most_confused", "The most confident mistakes",
                  "The wrong predictions the network was surest about; many are digits a person would hesitate on.",
                  most_confused_figure(test_images, test_labels, probs, model.class_names, count))
    yield Picture("confusion_matrix", "Confusion matrix",
                  "How often each true class (row) was predicted as each class (column).",
                  confusion_figure(test_labels, predicted, model.class_names))
    if records is not None and latest(records, "step"):
        yield Picture("training_curves", "Training curves",
                      "From the training log: loss and accuracy, and per layer how large the gradients and the "
                      "updates were and how many units output zero.", training_curves_figure(records))
        yield Picture("layer_times", "Time per layer",
                      "From the training log: the mean time of each layer's forward and backward pass per step.",
                      layer_times_figure(records))
    if records is not None and probe_epochs(records):
        yield _progress_picture(model, test_images, test_labels, records)


def _progress_picture(model, test_images, test_labels, records):
    """The probe's answer and feature maps epoch by epoch; the probe image is drawn when the test set it was
    taken from is the one given (its label agrees)."""
    probe = probe_epochs(records)[-1]["probe"]
    index = probe["index"]
    known = 0 <= index < len(test_images) and int(test_labels[index]) == probe["label"]
    return Picture("progress_probe", f"Epoch by epoch: the answer and the feature maps for test image #{index}",
                   "The same test image after each epoch of training (from the training log): the probability "
                   "the network gave each class, and the first layer's feature maps, each row on its own colour "
                   "scale so that the pattern shows even while the values grow. Read down the rows to see the "
                   "answer settle and the maps sharpen into strokes and edges.",
                   progress_figure(records, model.class_names, test_images[index] if known else None))
