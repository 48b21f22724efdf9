"""Data: IDX files and the bundled MNIST, image folders, named datasets, augmentation, the split a training run
uses, and preparing a user's own image the way the network's training images were prepared."""
