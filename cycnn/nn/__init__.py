"""The core: layers, their stateless math, Sequential, losses, optimizers, hooks and the kernels' helpers.

It knows nothing of files, runs, pictures or the command line (a test holds it to that).
"""
from cycnn.nn.hooks import ActivationRecorder, LayerTimer
from cycnn.nn.layers import LAYER_TYPES, Conv2D, Dense, Dropout, Flatten, Layer, MaxPool2D, ReLU
from cycnn.nn.losses import SoftmaxCrossEntropy, cross_entropy, softmax
from cycnn.nn.optim import OPTIMIZERS, SGD, Adam, Optimizer, make_optimizer
from cycnn.nn.sequential import Sequential, eval_mode

__all__ = ["ActivationRecorder", "Adam", "Conv2D", "Dense", "Dropout", "Flatten", "LAYER_TYPES", "Layer",
           "LayerTimer", "MaxPool2D", "OPTIMIZERS", "Optimizer", "ReLU", "SGD", "Sequential",
           "SoftmaxCrossEntropy", "cross_entropy", "eval_mode", "make_optimizer", "softmax"]
