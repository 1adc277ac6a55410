"""The NumPy twin's layers: each one's forward(x) and backward(grad) side by side.

Start reading here. Every layer the workbench's MLPs are made of, written out with
NumPy the way karpathy/micrograd writes its ops: `forward` computes the output and keeps
what `backward` will need (the input, a mask...); `backward(grad)` receives
dLoss/d(output) and returns dLoss/d(input), and a layer with parameters also fills
`self.grads`, keyed like `self.params` and like torch's state_dict. The shapes are in
the comments: (N, 784) -> (N, 128) means a batch of N flattened images in, N vectors
of 128 features out. `NumpyMLP` stacks the layers in the order of `models.layer_plan`.

Each forward's math is a plain function right above its class (`linear`, `relu`,
`standardize` and `scale_shift` for batchnorm...): the class calls it in training,
and twin.infer's ManualNet calls the very same function for inference (with `out=`
to write in place into an array it owns), so every forward is written once. The
convolution and pooling of the CNNs come last, forward only.

Tested against torch.autograd layer by layer (tests/test_twin_layers.py).

References: karpathy/micrograd (forward and backward side by side, tested against
torch); CS231n notes on backpropagation and im2col; PyTorch's docs for nn.GELU (exact
erf form) and the initialisation of nn.Linear; Numerical Recipes (2nd ed., section
6.2) for the erfc approximation.

Left out on purpose: convolution and pooling backward (CNNs are inference only in the
twin: a readable conv backward is a lesson of its own, and far too slow in NumPy for
48,000 images), and any GPU (twin.torch_ops is the GPU twin).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import ConfigError
from ..models import ModelConfig, layer_plan

BN_EPS = 1e-5          # torch's BatchNorm default
LEAKY_SLOPE = 0.01     # torch's LeakyReLU default, and what models._activation builds


# --- the layers ----------------------------------------------------------------------
#
# Each layer keeps what its backward needs from its forward (self.x, self.mask...).
# backward(grad) receives dLoss/d(output) and returns dLoss/d(input); layers with
# parameters also fill self.grads, keyed like self.params and like torch's state_dict.
# The functions take out=None: None returns a new array, out=x overwrites x (inference
# only; a layer in training never does, its backward still needs the input).

class Layer:
    """What every layer has: the torch module's name, and params / grads (empty without parameters)."""

    def __init__(self, name):
        self.name, self.params, self.grads = name, {}, {}


def normalize(x, mean, std):            # any shape: (N, 28, 28) -> (N, 28, 28)
    out = x - mean
    out /= std  # divide, not multiply by 1/std: the same rounding as torch
    return out


class Normalize(Layer):
    """(x - mean) / std: the model's first layer, no parameters."""

    def __init__(self, name, mean, std):
        super().__init__(name)
        self.mean, self.std = mean, std

    def forward(self, x, train=False):  # (N, 28, 28) -> (N, 28, 28)
        return normalize(x, self.mean, self.std)

    def backward(self, grad):           # (N, 28, 28) -> (N, 28, 28)
        return grad / self.std


class Flatten(Layer):
    def forward(self, x, train=False):  # (N, 28, 28) -> (N, 784)
        self.shape = x.shape
        return x.reshape(len(x), -1)

    def backward(self, grad):           # (N, 784) -> (N, 28, 28)
        return grad.reshape(self.shape)


def linear(x, wt, b):                   # (N, in) @ (in, out) + (out,) -> (N, out)
    out = x @ wt
    out += b
    return out


class Linear(Layer):
    """y = x W^T + b, with W stored (out, in) as torch stores it."""

    def __init__(self, name, n_in, n_out, rng, dtype):
        super().__init__(name)
        # torch's default init for nn.Linear: U(-1/sqrt(in), 1/sqrt(in)) for W and b alike
        bound = 1.0 / math.sqrt(n_in)
        self.params = {"weight": rng.uniform(-bound, bound, (n_out, n_in)).astype(dtype),
                       "bias": rng.uniform(-bound, bound, n_out).astype(dtype)}

    def forward(self, x, train=False):  # (N, in) -> (N, out)
        self.x = x
        return linear(x, self.params["weight"].T, self.params["bias"])

    def backward(self, grad, input_grad=True):  # (N, out) -> (N, in)
        self.grads["weight"] = grad.T @ self.x    # (out, N) @ (N, in) -> (out, in)
        self.grads["bias"] = grad.sum(0)          # (out,)
        if not input_grad:                        # the first layer: nothing below learns
            return None
        return grad @ self.params["weight"]       # (N, out) @ (out, in) -> (N, in)


def standardize(x, mean, inv_std, out=None):  # (N, F) -> (N, F): per feature, mean 0 and variance 1
    # features are the last axis, also in ManualNet's channels-last maps: broadcasting does the rest
    out = np.subtract(x, mean, out=out)
    out *= inv_std
    return out


def scale_shift(xhat, gamma, beta, out=None):  # (N, F) -> (N, F): the learned per-feature affine
    out = np.multiply(xhat, gamma, out=out)
    out += beta
    return out


class BatchNorm1d(Layer):
    """Per-feature batch normalization; batch statistics in training, running ones in eval."""

    def __init__(self, name, features, dtype, momentum=0.1):
        super().__init__(name)
        self.momentum = momentum  # 0.1: torch's default
        self.params = {"weight": np.ones(features, dtype), "bias": np.zeros(features, dtype)}
        self.running_mean = np.zeros(features, dtype)
        self.running_var = np.ones(features, dtype)
        self.num_batches_tracked = 0

    def forward(self, x, train=False):  # (N, F) -> (N, F)
        if train:
            n = len(x)
            mean, var = x.mean(0), x.var(0)   # biased variance normalizes the batch...
            m = self.momentum
            self.running_mean = (1 - m) * self.running_mean + m * mean
            # ...while the running estimate is unbiased, as in torch
            self.running_var = (1 - m) * self.running_var + m * var * (n / max(n - 1, 1))
            self.num_batches_tracked += 1
        else:
            mean, var = self.running_mean, self.running_var
        self.inv_std = 1.0 / np.sqrt(var + BN_EPS)
        self.xhat = standardize(x, mean, self.inv_std)
        return scale_shift(self.xhat, self.params["weight"], self.params["bias"])

    def backward(self, grad):           # (N, F) -> (N, F); training mode only
        n = len(grad)
        self.grads["weight"] = (grad * self.xhat).sum(0)
        self.grads["bias"] = grad.sum(0)
        dxhat = grad * self.params["weight"]
        # the mean and variance depend on every x in the batch: the two extra terms
        return self.inv_std / n * (n * dxhat - dxhat.sum(0) - self.xhat * (dxhat * self.xhat).sum(0))


def relu(x, out=None):                  # (N, H) -> (N, H)
    return np.maximum(x, 0, out=out)


class ReLU(Layer):
    def forward(self, x, train=False):  # (N, H) -> (N, H)
        self.mask = x > 0
        return relu(x)

    def backward(self, grad):           # (N, H) -> (N, H); the slope at 0 is 0, as in torch
        return grad * self.mask


def leaky_relu(x, out=None, slope=LEAKY_SLOPE):
    # x for x > 0, slope * x otherwise: the larger of the two in both cases (0 < slope < 1)
    return np.maximum(x, x * x.dtype.type(slope), out=out)


class LeakyReLU(Layer):
    def __init__(self, name, slope=LEAKY_SLOPE):
        super().__init__(name)
        self.slope = slope

    def forward(self, x, train=False):
        self.mask = x > 0
        return leaky_relu(x, slope=self.slope)

    def backward(self, grad):
        return np.where(self.mask, grad, self.slope * grad)


def tanh(x, out=None):
    return np.tanh(x, out=out)


class Tanh(Layer):
    def forward(self, x, train=False):
        self.y = tanh(x)
        return self.y

    def backward(self, grad):           # d tanh = 1 - tanh^2
        return grad * (1 - self.y * self.y)


def sigmoid(x, out=None):               # 1 / (1 + exp(-x)), one pass at a time
    with np.errstate(over="ignore"):  # exp(-x) overflows to inf for x << 0: 1/inf = 0, the right limit
        out = np.negative(x, out=out)
        np.exp(out, out=out)
        out += 1
        return np.reciprocal(out, out=out)


class Sigmoid(Layer):
    def forward(self, x, train=False):
        self.y = sigmoid(x)
        return self.y

    def backward(self, grad):           # d sigmoid = s (1 - s)
        return grad * self.y * (1 - self.y)


def normal_cdf(x):                      # Phi(x), the standard normal CDF, in x's dtype
    return (0.5 * (1.0 + erf(x / math.sqrt(2.0)))).astype(x.dtype, copy=False)


def gelu(x, out=None, cdf=None):
    """Exact GELU, x * Phi(x), as nn.GELU() computes it (not the tanh approximation).
    cdf: Phi(x) when the caller has it already (the GELU layer keeps it for backward)."""
    return np.multiply(x, normal_cdf(x) if cdf is None else cdf, out=out)


class GELU(Layer):
    """x * Phi(x), Phi the standard normal CDF (the exact form nn.GELU uses)."""

    def forward(self, x, train=False):
        self.x, self.cdf = x, normal_cdf(x)
        return gelu(x, cdf=self.cdf)

    def backward(self, grad):           # d (x Phi(x)) = Phi(x) + x phi(x)
        pdf = np.exp(-0.5 * self.x * self.x) / math.sqrt(2.0 * math.pi)
        return grad * (self.cdf + self.x * pdf)


ACTIVATIONS = {"relu": relu, "leaky_relu": leaky_relu, "tanh": tanh, "sigmoid": sigmoid, "gelu": gelu}
ACTIVATION_LAYERS = {"relu": ReLU, "leaky_relu": LeakyReLU, "tanh": Tanh, "sigmoid": Sigmoid, "gelu": GELU}


class Dropout(Layer):
    """Inverted dropout: zero a fraction p in training and scale the rest by 1/(1-p),
    so evaluation is the identity."""

    def __init__(self, name, p, rng):
        super().__init__(name)
        self.p, self.rng, self.mask = p, rng, None

    def forward(self, x, train=False):
        if not train or self.p == 0:
            self.mask = None
            return x
        self.mask = (self.rng.random(x.shape) >= self.p).astype(x.dtype) / (1 - self.p)
        return x * self.mask

    def backward(self, grad):
        return grad if self.mask is None else grad * self.mask


class SoftmaxCrossEntropy:
    """Mean cross-entropy of softmax(logits), optionally with label smoothing (as F.cross_entropy)."""

    def __init__(self, label_smoothing=0.0):
        self.eps = label_smoothing

    def forward(self, logits, y):       # (N, 10), (N,) -> scalar
        z = logits - logits.max(1, keepdims=True)          # shift: exp cannot overflow
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))  # log-softmax
        n, k = logits.shape
        # smoothed target: 1 - eps on the label, eps spread over all classes
        self.target = np.full((n, k), self.eps / k, dtype=logits.dtype)
        self.target[np.arange(n), y] += 1 - self.eps
        self.p = np.exp(logp)
        return float(-(self.target * logp).sum() / n)

    def backward(self):                 # -> (N, 10): softmax minus target, averaged
        return (self.p - self.target) / len(self.p)


# --- the MLP: the layers in the order of the plan --------------------------------------

class NumpyMLP:
    """An MLP config's layer plan as the layers above; names and state_dict keys match torch's."""

    def __init__(self, config: ModelConfig, rng: np.random.Generator, dtype=np.float32):
        if config.kind != "mlp":
            raise ConfigError("the NumPy trainer trains MLPs only (a CNN's backward by hand is left out); "
                              "train CNNs with the torch engine — the manual twin still runs them for inference")
        self.config, self.dtype = config, dtype
        self.layers = []
        for s in layer_plan(config):
            a = s.args
            match s.kind:
                case "normalize":
                    # the float32 values a checkpoint stores, so the saved model computes the same
                    layer = Normalize(s.name, dtype(np.float32(a["mean"])), dtype(np.float32(a["std"])))
                case "flatten":
                    layer = Flatten(s.name)
                case "linear":
                    layer = Linear(s.name, a["in"], a["out"], rng, dtype)
                case "batchnorm1d":
                    layer = BatchNorm1d(s.name, a["features"], dtype)
                case "act":
                    layer = ACTIVATION_LAYERS[a["fn"]](s.name)
                case "dropout":
                    layer = Dropout(s.name, a["p"], rng)
                case _:
                    raise ConfigError(f"the NumPy trainer has no layer kind {s.kind!r}")
            self.layers.append(layer)
        self.out_grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        """(N, 784) or (N, 1, 28, 28) in [0, 1] -> logits (N, 10)."""
        for layer in self.layers:
            x = layer.forward(x, train)
        return x

    def backward(self, grad: np.ndarray, input_grad: bool = False) -> np.ndarray | None:
        """dLoss/dlogits -> fills every layer's grads; keeps dLoss/d(output) per layer in out_grads.

        Below the first Linear nothing learns: stop there unless the input gradient is wanted.
        """
        first = next(i for i, layer in enumerate(self.layers) if layer.params)  # fc1
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            self.out_grads[layer.name] = grad
            if i == first and not input_grad:
                # skip fc1's (N, 784) input gradient: as many flops as fc1's forward matmul
                return layer.backward(grad, input_grad=False)
            grad = layer.backward(grad)
        return grad

    def parameters(self) -> list[tuple[str, Any, str]]:
        """[(state_dict name, layer, key)]; read layer.params[key] / layer.grads[key] when needed."""
        return [(f"{layer.name}.{k}", layer, k) for layer in self.layers for k in layer.params]

    def state_dict(self) -> dict[str, np.ndarray]:
        sd = {}
        for layer in self.layers:
            if isinstance(layer, Normalize):
                sd[f"{layer.name}.mean"] = np.asarray(layer.mean, np.float32)
                sd[f"{layer.name}.std"] = np.asarray(layer.std, np.float32)
            for k, v in layer.params.items():
                sd[f"{layer.name}.{k}"] = v.copy()
            if isinstance(layer, BatchNorm1d):
                sd[f"{layer.name}.running_mean"] = layer.running_mean.copy()
                sd[f"{layer.name}.running_var"] = layer.running_var.copy()
                sd[f"{layer.name}.num_batches_tracked"] = np.asarray(layer.num_batches_tracked, np.int64)
        return sd

    def load_state_dict(self, sd: dict) -> None:
        sd = {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v) for k, v in sd.items()}
        for layer in self.layers:
            for k in layer.params:
                layer.params[k] = sd[f"{layer.name}.{k}"].astype(self.dtype).copy()
            if isinstance(layer, BatchNorm1d):
                layer.running_mean = sd[f"{layer.name}.running_mean"].astype(self.dtype).copy()
                layer.running_var = sd[f"{layer.name}.running_var"].astype(self.dtype).copy()
                layer.num_batches_tracked = int(sd.get(f"{layer.name}.num_batches_tracked", 0))


# --- forward only: the CNN layers (ManualNet runs trained CNNs; no backward by hand) --
#
# Feature maps are channels-last, (N, H, W, C): then a window's pixels are contiguous
# runs of C numbers, and a convolution's matrix product needs no transpose.

def conv2d(x, wt, b, kernel, padding, stride=1):
    """Convolution as one matrix product (im2col): every k x k window becomes a row.

    (N, H, W, C) -> pad -> windows (N*H'*W', k*k*C) -> linear(., wt (k*k*C, O), b) -> (N, H', W', O).
    wt is torch's weight (O, C, kh, kw) permuted to (kh, kw, C) rows, matching the windows.
    stride 2 keeps every second window in each direction (the ResNet's downsampling).
    """
    n, _, _, ch = x.shape
    if padding:
        x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    win = sliding_window_view(x, (kernel, kernel), axis=(1, 2))   # (N, H', W', C, kh, kw), a view
    if stride > 1:
        win = win[:, ::stride, ::stride]
    oh, ow = win.shape[1], win.shape[2]
    # the one copy: (kh, kw, C) order, channels innermost, copies contiguous runs
    # (4x faster here than torch's (C, kh, kw) order)
    cols = win.transpose(0, 1, 2, 4, 5, 3).reshape(n * oh * ow, kernel * kernel * ch)
    return linear(cols, wt, b).reshape(n, oh, ow, -1)


def pool2d(x, kind):                    # (N, H, W, C) -> (N, H/2, W/2, C): 2x2 windows, stride 2
    # the four corners of every 2x2 window as strided views (odd sizes drop the last
    # row/column, like torch); elementwise max/sum over them is 2x faster than
    # reshaping to (N, H/2, 2, W/2, 2, C) and reducing two axes
    hh, ww = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
    a, b = x[:, 0:hh:2, 0:ww:2], x[:, 0:hh:2, 1:ww:2]
    c, d = x[:, 1:hh:2, 0:ww:2], x[:, 1:hh:2, 1:ww:2]
    if kind == "max":
        out = np.maximum(a, b)
        np.maximum(out, c, out=out)
        return np.maximum(out, d, out=out)
    out = a + b                 # summed in torch's order, then / 4 (exact: a power of 2)
    out += c
    out += d
    out *= np.float32(0.25)
    return out


def batchnorm_eval(x, c, prefix, out=None):  # (..., C) -> (..., C) with running statistics
    xhat = standardize(x, c[f"{prefix}mean"], c[f"{prefix}inv_std"], out=out)
    return scale_shift(xhat, c[f"{prefix}gamma"], c[f"{prefix}beta"], out=xhat)


def resblock(x, c, stride, fn):
    """The residual block of models.ResBlock, channels-last: (N, H, W, C) -> (N, H/s, W/s, O).

    act(bn2(conv2(act(bn1(conv1(x))))) + shortcut(x)), shortcut = bn(1x1 conv, stride s)
    when c holds "short.wt", else x itself. c holds the convs' weights as conv2d wants them
    ("conv1.wt", "conv1.b", ...) and each batchnorm's running statistics ("bn1.mean",
    "bn1.inv_std", "bn1.gamma", "bn1.beta"); a batchnorm already folded into its conv
    (twin.infer's fused steps) is simply absent.
    """
    act = ACTIVATIONS[fn]
    y = conv2d(x, c["conv1.wt"], c["conv1.b"], 3, 1, stride)
    if "bn1.mean" in c:
        y = batchnorm_eval(y, c, "bn1.", out=y)
    y = act(y, out=y)
    y = conv2d(y, c["conv2.wt"], c["conv2.b"], 3, 1)
    if "bn2.mean" in c:
        y = batchnorm_eval(y, c, "bn2.", out=y)
    if "short.wt" in c:
        skip = conv2d(x, c["short.wt"], c["short.b"], 1, 0, stride)
        if "short_bn.mean" in c:
            skip = batchnorm_eval(skip, c, "short_bn.", out=skip)
    else:
        skip = x
    y += skip
    return act(y, out=y)


def global_avg_pool(x):                 # (N, H, W, C) -> (N, C): the mean of each map
    return x.mean((1, 2), dtype=np.float32)


# --- a numeric helper --------------------------------------------------------------------

def erf(x: np.ndarray) -> np.ndarray:
    """erf, vectorised. NumPy has none and SciPy is not a dependency.

    Numerical Recipes' Chebyshev fit of erfc (fractional error < 1.2e-7), evaluated in
    float64: measured max |error| of erf 8.3e-8 over [-8, 8] against math.erf.
    """
    x = np.asarray(x, dtype=np.float64)
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = (-1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277)))))))))
    erfc = t * np.exp(-z * z + poly)
    return np.where(x >= 0, 1.0 - erfc, erfc - 1.0)
