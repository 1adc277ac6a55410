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
to write in place into an array it owns), so every forward is written once. The ResNet's
layers (Conv2d with its col2im backward, BatchNorm2d, ResBlock, GlobalAvgPool) follow the
MLP's, then the CNNs' own two: Pool2d (2x2 max or average pooling, with its backward) and
FlattenMaps (channels-last maps flattened in torch's (C, H, W) order). `NumpyMLP` builds any
plan from these; twin.step steps CNNs with them, one batch at a time.

Tested against torch.autograd layer by layer (tests/test_twin_layers.py).

References: karpathy/micrograd (forward and backward side by side, tested against
torch); CS231n notes on backpropagation and im2col; PyTorch's docs for nn.GELU (exact
erf form) and the initialisation of nn.Linear; Numerical Recipes (2nd ed., section
6.2) for the erfc approximation.

Left out on purpose: training CNNs for whole runs (train_numpy refuses them: an epoch of im2col
convolutions in NumPy takes minutes; ResNets train, slowly; the step-through steps CNNs one
batch at a time), and any GPU (twin.torch_ops is the GPU twin).
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
        self.batch_stats = train
        self.inv_std = 1.0 / np.sqrt(var + BN_EPS)
        self.xhat = standardize(x, mean, self.inv_std)
        return scale_shift(self.xhat, self.params["weight"], self.params["bias"])

    def backward(self, grad):           # (N, F) -> (N, F)
        n = len(grad)
        self.grads["weight"] = (grad * self.xhat).sum(0)
        self.grads["bias"] = grad.sum(0)
        dxhat = grad * self.params["weight"]
        if not self.batch_stats:        # eval: fixed running statistics, a per-feature scale
            return dxhat * self.inv_std
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


# --- the ResNet's layers: convolution, batchnorm over maps, residual block, average pool
#
# Maps are channels-last, (N, H, W, C), as in ManualNet; conv2d and resblock (forward) are
# the functions further down, shared with inference.

class Conv2d(Layer):
    """A k x k convolution (stride 1 or 2, zero padding) as im2col + one matmul; backward is
    the same matmul transposed, and col2im adds each window's gradient back onto its pixels."""

    def __init__(self, name, c_in, c_out, kernel, padding, stride, rng, dtype, bias=True):
        super().__init__(name)
        self.k, self.pad, self.stride = kernel, padding, stride
        # torch's default init (kaiming_uniform with a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        bound = 1.0 / math.sqrt(c_in * kernel * kernel)
        self.params = {"weight": rng.uniform(-bound, bound, (c_out, c_in, kernel, kernel)).astype(dtype)}
        if bias:
            self.params["bias"] = rng.uniform(-bound, bound, c_out).astype(dtype)

    def forward(self, x, train=False):  # (N, H, W, C) or (N, 28, 28) -> (N, H', W', O)
        self.squeeze = x.ndim == 3      # the stem gets the images without a channel axis
        if self.squeeze:
            x = x[..., None]
        n, h, w, c = x.shape
        k, p, st = self.k, self.pad, self.stride
        wk = self.params["weight"]                                    # (O, C, kh, kw)
        self.wt = wk.transpose(2, 3, 1, 0).reshape(-1, wk.shape[0])   # (kh*kw*C, O), as conv2d's
        b = self.params.get("bias", np.zeros(wk.shape[0], wk.dtype))
        if not train:  # nothing to keep for a backward: conv2d in chunks (validation sets are big)
            step = max(1, (32 << 20) // (8 * h * w * k * k * c))
            return np.concatenate([conv2d(x[i:i + step], self.wt, b, k, p, st) for i in range(0, n, step)])
        xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0))) if p else x
        win = sliding_window_view(xp, (k, k), axis=(1, 2))[:, ::st, ::st]  # (N, H', W', C, kh, kw)
        oh, ow = win.shape[1], win.shape[2]
        self.in_shape, self.out_hw = x.shape, (oh, ow)
        self.cols = win.transpose(0, 1, 2, 4, 5, 3).reshape(n * oh * ow, k * k * c)
        return linear(self.cols, self.wt, b).reshape(n, oh, ow, -1)

    def backward(self, grad, input_grad=True):  # (N, H', W', O) -> (N, H, W, C)
        n, h, w, c = self.in_shape
        k, p, st = self.k, self.pad, self.stride
        oh, ow = self.out_hw
        g = grad.reshape(-1, grad.shape[-1])                          # (N*H'*W', O)
        dwt = self.cols.T @ g                                         # (kh*kw*C, O)
        self.grads["weight"] = dwt.reshape(k, k, c, -1).transpose(3, 2, 0, 1)  # (O, C, kh, kw)
        if "bias" in self.params:
            self.grads["bias"] = g.sum(0)
        if not input_grad:
            return None
        dcols = (g @ self.wt.T).reshape(n, oh, ow, k, k, c)
        dxp = np.zeros((n, h + 2 * p, w + 2 * p, c), dtype=grad.dtype)
        for i in range(k):              # col2im: window offset (i, j) read pixel (st*y + i, st*x + j)
            for j in range(k):
                dxp[:, i:i + st * (oh - 1) + 1:st, j:j + st * (ow - 1) + 1:st] += dcols[:, :, :, i, j]
        dx = dxp[:, p:p + h, p:p + w] if p else dxp
        return dx[..., 0] if self.squeeze else dx


class BatchNorm2d(BatchNorm1d):
    """BatchNorm1d over every pixel of a channels-last map: the features are the channels."""

    def forward(self, x, train=False):  # (N, H, W, C) -> (N, H, W, C)
        return super().forward(x.reshape(-1, x.shape[-1]), train).reshape(x.shape)

    def backward(self, grad):
        return super().backward(grad.reshape(-1, grad.shape[-1])).reshape(grad.shape)


class GlobalAvgPool(Layer):
    def forward(self, x, train=False):  # (N, H, W, C) -> (N, C)
        self.shape = x.shape
        return global_avg_pool(x)

    def backward(self, grad):           # (N, C) -> (N, H, W, C): each pixel had weight 1/(H*W)
        n, h, w, c = self.shape
        return np.broadcast_to(grad[:, None, None, :] / (h * w), self.shape).copy()


class ResBlock(Layer):
    """models.ResBlock: act(bn2(conv2(act(bn1(conv1(x))))) + shortcut(x)), its sublayers named
    as torch's children, so params / grads keys read 'conv1.weight', 'bn1.bias', ..."""

    def __init__(self, name, c_in, c_out, stride, fn, rng, dtype):
        super().__init__(name)
        self.subs = {"conv1": Conv2d("conv1", c_in, c_out, 3, 1, stride, rng, dtype, bias=False),
                     "bn1": BatchNorm2d("bn1", c_out, dtype), "act1": ACTIVATION_LAYERS[fn]("act1"),
                     "conv2": Conv2d("conv2", c_out, c_out, 3, 1, 1, rng, dtype, bias=False),
                     "bn2": BatchNorm2d("bn2", c_out, dtype)}
        self.shortcut = stride != 1 or c_in != c_out
        if self.shortcut:
            self.subs["short_conv"] = Conv2d("short_conv", c_in, c_out, 1, 0, stride, rng, dtype, bias=False)
            self.subs["short_bn"] = BatchNorm2d("short_bn", c_out, dtype)
        self.act2 = ACTIVATION_LAYERS[fn]("act2")
        # the sublayers' very arrays: the optimizer updates them in place
        self.params = {f"{sn}.{k}": v for sn, sub in self.subs.items() for k, v in sub.params.items()}

    def _sync(self):                    # after load_state_dict put new arrays into self.params
        for sn, sub in self.subs.items():
            for k in sub.params:
                sub.params[k] = self.params[f"{sn}.{k}"]

    def forward(self, x, train=False):  # (N, H, W, C) -> (N, H/s, W/s, O)
        self._sync()
        sb = self.subs
        y = x
        for sn in ("conv1", "bn1", "act1", "conv2", "bn2"):
            y = sb[sn].forward(y, train)
        skip = sb["short_bn"].forward(sb["short_conv"].forward(x, train), train) if self.shortcut else x
        return self.act2.forward(y + skip, train)

    def backward(self, grad):           # the sum's gradient flows into both branches; dx adds them up
        sb = self.subs
        g = self.act2.backward(grad)
        dx_main = g
        for sn in ("bn2", "conv2", "act1", "bn1", "conv1"):
            dx_main = sb[sn].backward(dx_main)
        dx_skip = sb["short_conv"].backward(sb["short_bn"].backward(g)) if self.shortcut else g
        self.grads = {f"{sn}.{k}": v for sn, sub in sb.items() for k, v in sub.grads.items()}
        return dx_main + dx_skip

    def batchnorms(self):
        return [(f"{self.name}.{sn}", sub) for sn, sub in self.subs.items() if isinstance(sub, BatchNorm2d)]


class Pool2d(Layer):
    """2x2 pooling with stride 2 over channels-last maps (pool2d below), and its backward: max
    pooling sends each window's gradient to the pixel that won (the first one on a tie, as torch
    does), average pooling gives each of the four a quarter."""

    CORNERS = ((0, 0), (0, 1), (1, 0), (1, 1))  # row-major: torch's order when breaking ties

    def __init__(self, name, kind):
        super().__init__(name)
        self.kind = kind                # "max" | "avg"

    def forward(self, x, train=False):  # (N, H, W, C) -> (N, H/2, W/2, C)
        self.shape = x.shape
        if self.kind == "max":
            hh, ww = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
            self.win = np.argmax(np.stack([x[:, i:hh:2, j:ww:2] for i, j in self.CORNERS]), axis=0)
        return pool2d(x, self.kind)

    def backward(self, grad):           # (N, H/2, W/2, C) -> (N, H, W, C); an odd last row gets 0
        dx = np.zeros(self.shape, grad.dtype)
        hh, ww = self.shape[1] // 2 * 2, self.shape[2] // 2 * 2
        for k, (i, j) in enumerate(self.CORNERS):
            dx[:, i:hh:2, j:ww:2] = grad * 0.25 if self.kind == "avg" else np.where(self.win == k, grad, 0)
        return dx


class FlattenMaps(Layer):
    """A CNN's flatten: torch flattens (C, H, W), the twin's maps are (H, W, C); permuting first
    keeps fc1's weight exactly torch's."""

    def forward(self, x, train=False):  # (N, H, W, C) -> (N, C*H*W)
        self.shape = x.shape
        return x.transpose(0, 3, 1, 2).reshape(len(x), -1)

    def backward(self, grad):           # (N, C*H*W) -> (N, H, W, C)
        n, h, w, c = self.shape
        return grad.reshape(n, c, h, w).transpose(0, 2, 3, 1)


# --- the MLP: the layers in the order of the plan --------------------------------------

class NumpyMLP:
    """A model's layer plan as the layers above (an MLP's, a ResNet's or a CNN's; the name is
    the first it had); names and state_dict keys match torch's."""

    def __init__(self, config: ModelConfig, rng: np.random.Generator, dtype=np.float32):
        self.config, self.dtype = config, dtype
        self.layers = []
        for s in layer_plan(config):
            a = s.args
            match s.kind:
                case "normalize":
                    # the float32 values a checkpoint stores, so the saved model computes the same
                    layer = Normalize(s.name, dtype(np.float32(a["mean"])), dtype(np.float32(a["std"])))
                case "flatten":
                    layer = Flatten(s.name) if config.kind == "mlp" else FlattenMaps(s.name)
                case "pool":
                    layer = Pool2d(s.name, a["type"])
                case "linear":
                    layer = Linear(s.name, a["in"], a["out"], rng, dtype)
                case "batchnorm1d":
                    layer = BatchNorm1d(s.name, a["features"], dtype)
                case "batchnorm2d":
                    layer = BatchNorm2d(s.name, a["features"], dtype)
                case "conv":
                    layer = Conv2d(s.name, a["in"], a["out"], a["kernel"], a["padding"], 1, rng, dtype)
                case "resblock":
                    layer = ResBlock(s.name, a["in"], a["out"], a["stride"], a["fn"], rng, dtype)
                case "gap":
                    layer = GlobalAvgPool(s.name)
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
        for name, bn in self.batchnorms():
            sd[f"{name}.running_mean"] = bn.running_mean.copy()
            sd[f"{name}.running_var"] = bn.running_var.copy()
            sd[f"{name}.num_batches_tracked"] = np.asarray(bn.num_batches_tracked, np.int64)
        return sd

    def batchnorms(self) -> list[tuple[str, BatchNorm1d]]:
        """(state_dict prefix, layer) of every batchnorm, the ones inside residual blocks too."""
        out = []
        for layer in self.layers:
            if isinstance(layer, BatchNorm1d):
                out.append((layer.name, layer))
            elif isinstance(layer, ResBlock):
                out.extend(layer.batchnorms())
        return out

    def load_state_dict(self, sd: dict) -> None:
        sd = {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v) for k, v in sd.items()}
        for layer in self.layers:
            for k in layer.params:
                layer.params[k] = sd[f"{layer.name}.{k}"].astype(self.dtype).copy()
        for name, bn in self.batchnorms():
            bn.running_mean = sd[f"{name}.running_mean"].astype(self.dtype).copy()
            bn.running_var = sd[f"{name}.running_var"].astype(self.dtype).copy()
            bn.num_batches_tracked = int(sd.get(f"{name}.num_batches_tracked", 0))


# --- forward functions shared with inference (ManualNet): convolution, pooling, blocks --
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
    return x.mean((1, 2))


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
