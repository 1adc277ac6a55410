"""The twin's own answer to "which pixels would change this class score?": the gradient of
one class's logit with respect to the input image, by the layers' own backward passes.

This is what gradient saliency is (captum's `Saliency`, fmnist_core.explain): run the
network forward, start the backward pass at the logits with 1 on the chosen class and 0
elsewhere, and carry it down through every layer's `backward` (layers.py), past the
first Linear to the pixels. Each layer's backward is the chain rule written out once:
Linear multiplies by its weight, ReLU lets the gradient through where its input was
positive, eval-mode batchnorm scales by gamma / sqrt(running var + eps), dropout in eval
is the identity, and the first layer's normalization divides by the dataset's std.
tests/test_explain.py checks the result against captum on the shipped MLP and on presets.

MLPs only (twin_of builds MLPs; the twin's conv and pooling backward passes are stepped
one batch at a time by twin.step, for small CNNs).
"""
from __future__ import annotations

import numpy as np

from ..data import IMAGE_SIZE, NUM_CLASSES
from ..errors import ConfigError
from .layers import NumpyMLP


def twin_of(model, dtype=np.float64) -> NumpyMLP:
    """The NumPy twin (training layers, with their backward) of a torch FashionNet MLP, with its
    very weights; float64 by default, so the comparison with torch measures torch's rounding."""
    if model.config.kind != "mlp":
        raise ConfigError("the twin's backward pass exists for MLPs only (a CNN's conv backward "
                          "is not written out by hand)")
    net = NumpyMLP(model.config, np.random.default_rng(0), dtype=dtype)
    net.load_state_dict(model.state_dict())
    return net


def input_gradient(net: NumpyMLP, x: np.ndarray, target: int) -> np.ndarray:
    """d logit[target] / d x for one (28, 28) input in [0, 1] -> (28, 28), in eval mode."""
    if not 0 <= int(target) < NUM_CLASSES:
        raise ConfigError(f"class index must be 0..{NUM_CLASSES - 1}, got {target}")
    x = np.asarray(x, dtype=net.dtype).reshape(1, IMAGE_SIZE, IMAGE_SIZE)
    net.forward(x, train=False)                   # every layer keeps what its backward needs
    seed = np.zeros((1, NUM_CLASSES), net.dtype)  # d logit[target] / d logits: one-hot
    seed[0, int(target)] = 1.0
    return net.backward(seed, input_grad=True)[0]  # down to the pixels: (28, 28)
