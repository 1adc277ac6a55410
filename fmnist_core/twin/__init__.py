"""The twin: the workbench's networks written out by hand with NumPy, checked against PyTorch.

What it is. The same networks `models.build_model` makes from a config, computed
without nn.Module: explicit matrix products, im2col convolution, batchnorm from its
statistics, softmax cross-entropy, backward passes by hand, torch's optimizer
formulas. Every piece walks `models.layer_plan`, the flat list of layers the
nn.Sequential is built from, so layer names, order and state_dict keys agree by
construction, and the tests compare every layer's output and gradient with torch.

Reading order:

1. layers.py     each layer's forward(x) and backward(grad) side by side, and the
                 MLP made of them: the lesson
2. optim.py      SGD with momentum, Adam, AdamW and the schedules, torch's formulas
3. train.py      train_numpy: the from-scratch training loop for MLPs
4. infer.py      ManualNet: any trained checkpoint (MLP or CNN), fast: an
                 optimisation of layers.py (normalization and batchnorm folded into
                 the matmuls, in-place ops, chunks), not new math
5. torch_ops.py  TorchOpsNet: the same explicit math with torch tensor ops, on a GPU
6. compare.py    PyTorch vs the twin, layer by layer, over a whole test set
7. step.py       the step-through: one training step at a time of a small MLP or CNN,
                 every stage's numbers, PyTorch's autograd beside it, bit-for-bit reset
8. conv_pixel.py one output pixel of a convolution taken apart, forward and backward

Left out on purpose: training CNNs for whole runs by hand (train_numpy refuses them: an
epoch of im2col convolutions in NumPy is far too slow for 48,000 images; the step-through
steps small CNNs one batch at a time), bf16, and any GPU for the NumPy code (torch_ops is
the GPU twin).
"""
from .compare import IMPLS, compare
from .infer import ManualNet, state_dict_to_numpy
from .layers import NumpyMLP, SoftmaxCrossEntropy
from .optim import SGD, Adam
from .torch_ops import TorchOpsNet
from .train import check_trainable, train_numpy

__all__ = ["IMPLS", "SGD", "Adam", "ManualNet", "NumpyMLP", "SoftmaxCrossEntropy", "TorchOpsNet",
           "check_trainable", "compare", "state_dict_to_numpy", "train_numpy"]
