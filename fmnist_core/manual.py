"""The manual twin: the workbench's networks written out by hand, checked against PyTorch.

Two halves:

* Inference. `ManualNet` runs any checkpoint (every MLP and CNN config) with NumPy
  only: explicit matrix products, im2col convolution, reshape-based pooling,
  batchnorm with its running statistics, dropout as identity. `forward_layers`
  returns every layer's output under the torch module's name, so the dashboard
  and the tests can put both implementations side by side. `TorchOpsNet` is the
  same explicit math written with torch tensor ops (matmul, clamp_min, unfold),
  no nn.Module layers: the "manual on GPU" implementation. `compare` measures the
  agreement of either with the nn.Module on a whole test set.
* Training. `train_numpy` trains MLPs from scratch with NumPy: layers with
  `forward` and `backward` side by side, softmax cross-entropy, SGD with momentum,
  Adam and AdamW with torch's update formulas, L2 and L1, mini-batches, early
  stopping. It honours the same contract as `train.train` (events, statuses,
  history rows) and hands back a torch `FashionNet` with the learned weights, so a
  NumPy run is saved, evaluated and shown like any other.

Both walk `models.layer_plan`, the same flat list of layers `build_model` turns
into an nn.Sequential, so the names and the order agree by construction.

References: karpathy/micrograd (forward and backward side by side, tested against
torch); CS231n notes on backpropagation and im2col; PyTorch's docs for the exact
update rules of torch.optim.SGD / Adam / AdamW and for nn.GELU (exact erf form);
Numerical Recipes (2nd ed., section 6.2) for the erfc approximation.

Left out on purpose: training CNNs by hand (inference only: a readable conv
backward is a lesson of its own, and far too slow in NumPy for 48,000 images),
the OneCycle schedule (it also cycles Adam's beta1; `none` and `cosine` are
implemented), bf16, and any GPU for the NumPy path (`TorchOpsNet` is the GPU twin).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .data import IMAGE_SIZE, NUM_CLASSES
from .errors import CheckpointError, ConfigError, ImageError
from .models import LayerSpec, ModelConfig, config_from_dict, layer_plan, read_checkpoint

BN_EPS = 1e-5          # torch's BatchNorm default
LEAKY_SLOPE = 0.01     # torch's LeakyReLU default, and what models._activation builds
# intermediate arrays per chunk stay under this: an im2col buffer of cnn-seed002 on
# 10,000 images would be 9 GB, while 64 MB chunks are as fast and fit anywhere
CHUNK_BYTES = 64 << 20


# --- small numeric helpers ------------------------------------------------------------

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


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU, x * Phi(x), as nn.GELU() computes it (not the tanh approximation)."""
    return (0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))).astype(x.dtype, copy=False)


def as_images(x: Any) -> np.ndarray:
    """Anything image-like -> float32 (N, 28, 28) or (N, 784), [0, 1]; never copies float32 input.

    uint8 is scaled by 1/255 exactly as evaluate.images_to_tensor does, so both
    implementations see bit-identical inputs.
    """
    if hasattr(x, "detach"):  # a torch tensor handed to the NumPy path
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.dtype == np.uint8:
        x = np.multiply(x, 1 / 255.0, dtype=np.float32)
    elif x.dtype != np.float32:
        x = x.astype(np.float32)
    side = IMAGE_SIZE
    if x.shape == (side, side):
        x = x[None]
    if x.ndim == 4 and x.shape[1:] == (1, side, side):
        x = x.reshape(len(x), side, side)
    if not ((x.ndim == 3 and x.shape[1:] == (side, side)) or (x.ndim == 2 and x.shape[1] == side * side)):
        raise ImageError(f"expected images of shape (N, 1, 28, 28), (N, 28, 28) or (N, 784), got {x.shape}")
    return x


def state_dict_to_numpy(sd: dict) -> dict[str, np.ndarray]:
    """A torch state_dict (or one already in NumPy) -> {name: float32 ndarray}.

    Float tensors become float32; counters (BatchNorm's num_batches_tracked) keep their dtype.
    """
    out = {}
    for k, v in sd.items():
        if hasattr(v, "detach"):
            v = v.detach().cpu()
            v = (v.float() if v.is_floating_point() else v).numpy()
        v = np.asarray(v)
        out[k] = v.astype(np.float32) if v.dtype.kind == "f" else v
    return out


# --- the plan, turned into steps with their weights in the layout each op wants -------

class _Step:
    """One layer of the plan with its constants prepared for fast inference."""

    def __init__(self, spec: LayerSpec, **consts: np.ndarray):
        self.name, self.kind, self.args = spec.name, spec.kind, spec.args
        self.c = consts


def _param(params: dict, key: str, shape: tuple[int, ...]) -> np.ndarray:
    if key not in params:
        raise CheckpointError(f"the weights lack {key!r}, which this model config needs")
    v = np.asarray(params[key])
    if v.shape != shape:
        raise CheckpointError(f"{key}: shape {v.shape} does not fit the config (expected {shape})")
    return np.ascontiguousarray(v, dtype=np.float32)


def _prepare(cfg: ModelConfig, params: dict[str, np.ndarray]) -> tuple[list[_Step], np.ndarray | None,
                                                                       np.ndarray | None, int]:
    """Check the weights against the plan and lay them out for the ops below.

    Returns (steps, folded first-layer weight, folded first-layer bias, floats per image).
    Internally activations of conv layers are kept channels-last (N, H, W, C): then
    im2col rows are contiguous per pixel and a conv's matmul output needs no transpose.
    forward_layers converts back to torch's (N, C, H, W) for display and comparison.
    """
    plan = layer_plan(cfg)
    steps: list[_Step] = []
    used: set[str] = set()

    def get(key, shape):
        used.add(key)
        return _param(params, key, shape)

    side, ch = IMAGE_SIZE, 1                 # current spatial size and channels (CNN part)
    per_image = side * side                  # largest float count per image, for chunking
    flat_from: tuple[int, int] | None = None  # (C, side) of the map flattened into fc1
    for s in plan:
        a = s.args
        if s.kind == "normalize":
            mean = float(np.asarray(params.get("norm.mean", a["mean"])))
            std = float(np.asarray(params.get("norm.std", a["std"])))
            used.update({"norm.mean", "norm.std"})
            steps.append(_Step(s, mean=np.float32(mean), std=np.float32(std)))
        elif s.kind == "flatten":
            if cfg.kind == "cnn":
                flat_from = (ch, side)
            steps.append(_Step(s))
        elif s.kind == "linear":
            w = get(f"{s.name}.weight", (a["out"], a["in"]))
            b = get(f"{s.name}.bias", (a["out"],))
            if flat_from is not None:
                # torch flattens (C, H, W); our maps are (H, W, C): permute fc1's columns once.
                # forward_layers flattens in torch's order and keeps the original weight (wt_chw)
                c, sz = flat_from
                w_hwc = w.reshape(a["out"], c, sz, sz).transpose(0, 2, 3, 1).reshape(a["out"], -1)
                steps.append(_Step(s, wt=np.ascontiguousarray(w_hwc.T), b=b, wt_chw=np.ascontiguousarray(w.T)))
                flat_from = None
            else:
                # pre-transposed and contiguous: x (N, in) @ wt (in, out) is one plain GEMM
                steps.append(_Step(s, wt=np.ascontiguousarray(w.T), b=b))
            per_image = max(per_image, a["out"])
        elif s.kind == "conv":
            k, o = a["kernel"], a["out"]
            w = get(f"{s.name}.weight", (o, a["in"], k, k))
            # im2col columns are ordered (C, kh, kw), the same as torch's weight (O, C, kh, kw)
            steps.append(_Step(s, wt=np.ascontiguousarray(w.reshape(o, -1).T), b=get(f"{s.name}.bias", (o,))))
            per_image = max(per_image, side * side * a["in"] * k * k, side * side * o)
            ch = o
        elif s.kind in ("batchnorm1d", "batchnorm2d"):
            f = a["features"]
            rm, rv = get(f"{s.name}.running_mean", (f,)), get(f"{s.name}.running_var", (f,))
            g, b = get(f"{s.name}.weight", (f,)), get(f"{s.name}.bias", (f,))
            used.add(f"{s.name}.num_batches_tracked")
            steps.append(_Step(s, mean=rm, inv_std=(1.0 / np.sqrt(rv + BN_EPS)).astype(np.float32),
                               gamma=g, beta=b))
        elif s.kind == "pool":
            side //= 2
            steps.append(_Step(s))
        elif s.kind in ("act", "dropout"):
            steps.append(_Step(s))
        else:
            raise ConfigError(f"the manual twin has no layer kind {s.kind!r}")
    extra = set(params) - used
    if extra:
        raise CheckpointError(f"the weights hold entries this config does not use: {', '.join(sorted(extra))}")

    # MLP: fold the input normalization into the first linear layer, which saves a full
    # pass over the input: ((x - m) / s) @ W.T + b  ==  x @ (W / s).T + (b - (m / s) * W.sum(1)).
    # (A CNN cannot fold it: zero padding must pad the *normalized* image.)
    w_fold = b_fold = None
    if cfg.kind == "mlp":
        norm, first = steps[0], steps[2]
        m, s_ = np.float64(norm.c["mean"]), np.float64(norm.c["std"])
        wt = first.c["wt"].astype(np.float64)
        w_fold = np.ascontiguousarray((wt / s_).astype(np.float32))
        b_fold = (first.c["b"] - (m / s_) * wt.sum(0)).astype(np.float32)
    return steps, w_fold, b_fold, per_image


def _chunk_size(per_image: int, n: int) -> int:
    return max(1, min(n, CHUNK_BYTES // (4 * per_image)))


# --- NumPy inference ------------------------------------------------------------------

class ManualNet:
    """A workbench model run with NumPy only, layer by layer as written in `layer_plan`.

    params: the state_dict as {name: ndarray} (see `state_dict_to_numpy`); torch
    tensors are accepted and converted. Everything runs in float32.
    """

    def __init__(self, config: ModelConfig | dict, params: dict[str, np.ndarray]):
        self.config = config_from_dict(config) if isinstance(config, dict) else config
        params = state_dict_to_numpy(params)
        self.plan = layer_plan(self.config)
        self.steps, self._w_fold, self._b_fold, self._per_image = _prepare(self.config, params)

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> "ManualNet":
        ckpt = read_checkpoint(path)
        net = cls(config_from_dict(ckpt["model_config"]), state_dict_to_numpy(ckpt["state_dict"]))
        net.metrics = ckpt.get("metrics", {})
        return net

    # the fast path: in-place where the array is ours, normalization folded into fc1
    def forward(self, x) -> np.ndarray:
        """Logits (N, 10) float32 for images (N, 1, 28, 28) / (N, 28, 28) / (N, 784), float or uint8."""
        x = as_images(x)
        n = len(x)
        step = _chunk_size(self._per_image, n)
        if step >= n:
            return self._run(x, record=None)
        out = np.empty((n, NUM_CLASSES), dtype=np.float32)
        for i in range(0, n, step):
            out[i:i + step] = self._run(x[i:i + step], record=None)
        return out

    def forward_layers(self, x) -> list[tuple[str, np.ndarray]]:
        """[(layer name, output)] for every layer of the plan, in torch's layout.

        Each output is its own array (no in-place tricks, no folding): what you see
        for `norm` is what went into the next layer. Mind the memory for large N on CNNs.
        """
        record: list[tuple[str, np.ndarray]] = []
        self._run(as_images(x), record=record)
        return record

    def predict(self, x) -> np.ndarray:
        """Predicted class indices (N,)."""
        return self.forward(x).argmax(1)

    def _run(self, x: np.ndarray, record: list | None) -> np.ndarray:
        n = len(x)
        fast = record is None
        # the input belongs to the caller (maybe the read-only dataset): in-place ops
        # are only allowed once an op has produced an array of our own
        owned = False
        steps = self.steps
        if fast and self._w_fold is not None:
            # norm and flatten are folded into fc1: start at fc1 with the folded weights
            h = x.reshape(n, -1) @ self._w_fold   # (N, 784) @ (784, H1) -> (N, H1)
            h += self._b_fold
            owned = True
            steps = steps[3:]
        else:
            h = x.reshape(n, IMAGE_SIZE, IMAGE_SIZE, 1)  # channels-last; one channel: a view
        for s in steps:
            if record is not None and s.kind == "flatten" and h.ndim == 4:
                # shown as torch has it: (C, H, W) order, and fc1 then uses its original columns
                h, made = _to_torch_layout(h).reshape(n, -1), True
            else:
                h, made = _np_op(s, h, fast and owned, chw=record is not None)
            owned = owned or made
            if record is not None:
                record.append((s.name, _to_torch_layout(h)))
        return h


def _to_torch_layout(h: np.ndarray) -> np.ndarray:
    # (N, H, W, C) -> (N, C, H, W); 2D activations are already torch's layout
    return np.ascontiguousarray(h.transpose(0, 3, 1, 2)) if h.ndim == 4 else h


def _np_op(s: _Step, h: np.ndarray, inplace: bool, chw: bool = False) -> tuple[np.ndarray, bool]:
    """Apply one step. Returns (output, whether the output is a fresh array of ours).

    chw: the flattened map came in torch's (C, H, W) order (forward_layers).
    """
    c = s.c
    match s.kind:
        case "normalize":
            h = np.subtract(h, c["mean"], dtype=np.float32)
            h /= c["std"]  # divide, not multiply by 1/std: the same rounding as torch
            return h, True
        case "flatten":
            # (N, H, W, C) -> (N, H*W*C): a view; fc1's weight columns were permuted to match
            return h.reshape(len(h), -1), False
        case "linear":
            out = h @ c["wt_chw" if chw and "wt_chw" in c else "wt"]  # (N, in) @ (in, out) -> (N, out)
            out += c["b"]
            return out, True
        case "conv":
            return _np_conv(h, c["wt"], c["b"], s.args["kernel"], s.args["padding"]), True
        case "batchnorm1d" | "batchnorm2d":
            # channels are the last axis in both layouts: broadcasting does the rest
            out = h if inplace else h.copy()
            out -= c["mean"]
            out *= c["inv_std"]
            out *= c["gamma"]
            out += c["beta"]
            return out, True
        case "act":
            return _np_act(s.args["fn"], h, inplace), True
        case "pool":
            n, hh, ww, ch = h.shape
            h2, w2 = hh // 2, ww // 2  # odd sizes drop the last row/column, like torch
            win = h[:, :2 * h2, :2 * w2, :].reshape(n, h2, 2, w2, 2, ch)
            if s.args["type"] == "max":
                return win.max(axis=(2, 4)), True
            return win.mean(axis=(2, 4), dtype=np.float32), True
        case "dropout":
            return h, False  # eval mode: dropout is the identity
    raise ConfigError(f"the manual twin has no layer kind {s.kind!r}")


def _np_conv(h: np.ndarray, wt: np.ndarray, b: np.ndarray, k: int, pad: int) -> np.ndarray:
    """Convolution as one matrix product (im2col), channels-last.

    (N, H, W, C) -> pad -> every k x k window as a row (N*H*W, C*k*k) -> @ (C*k*k, O) -> (N, H, W, O)
    """
    n, hh, ww, ch = h.shape
    if pad:
        h = np.pad(h, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    win = sliding_window_view(h, (k, k), axis=(1, 2))   # (N, H', W', C, k, k), a view
    oh, ow = win.shape[1], win.shape[2]
    cols = win.reshape(n * oh * ow, ch * k * k)         # the copy: im2col
    out = cols @ wt                                      # (N*H*W, C*k*k) @ (C*k*k, O)
    out += b
    return out.reshape(n, oh, ow, -1)


def _np_act(fn: str, h: np.ndarray, inplace: bool) -> np.ndarray:
    out = h if inplace else None
    match fn:
        case "relu":
            return np.maximum(h, 0, out=out)
        case "leaky_relu":
            # x for x > 0, 0.01 x otherwise: the larger of the two in both cases
            return np.maximum(h, h * np.float32(LEAKY_SLOPE), out=out)
        case "tanh":
            return np.tanh(h, out=out)
        case "sigmoid":
            with np.errstate(over="ignore"):  # exp(-x) overflows to inf for x << 0: 1/inf = 0, right
                out = np.negative(h, out=out)
                np.exp(out, out=out)
                out += 1
                return np.reciprocal(out, out=out)
        case "gelu":
            return gelu(h)
    raise ConfigError(f"the manual twin has no activation {fn!r}")


# --- the same explicit math with torch tensor ops: the "manual on GPU" ------------------

class TorchOpsNet:
    """`ManualNet` written with torch tensor ops (matmul, clamp_min, unfold, reshape), no nn.Module.

    Runs on any torch device; this is the manual implementation on the GPU.
    """

    def __init__(self, config: ModelConfig | dict, state_dict: dict, device: str = "cpu"):
        import torch
        self.config = config_from_dict(config) if isinstance(config, dict) else config
        self.device = torch.device(device)
        self.plan = layer_plan(self.config)
        steps, w_fold, b_fold, self._per_image = _prepare(self.config, state_dict_to_numpy(state_dict))

        def t(a):
            return torch.from_numpy(np.ascontiguousarray(a)).to(self.device)
        for s in steps:
            s.c = {k: t(np.asarray(v, dtype=np.float32)) for k, v in s.c.items()}
        self.steps = steps
        self._w_fold = t(w_fold) if w_fold is not None else None
        self._b_fold = t(b_fold) if b_fold is not None else None

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> "TorchOpsNet":
        ckpt = read_checkpoint(path)
        return cls(config_from_dict(ckpt["model_config"]), ckpt["state_dict"], device=device)

    def _input(self, x):
        import torch
        if not isinstance(x, torch.Tensor):
            x = torch.from_numpy(as_images(x))
        x = x.to(self.device)
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        n = x.shape[0]
        side = IMAGE_SIZE
        if x.numel() != n * side * side:
            raise ImageError(f"expected images of shape (N, 1, 28, 28), (N, 28, 28) or (N, 784), "
                             f"got {tuple(x.shape)}")
        return x.reshape(n, side, side, 1)

    def forward(self, x):
        """Logits (N, 10) float32 on self.device."""
        import torch
        with torch.inference_mode():
            h = self._input(x)
            n = h.shape[0]
            # a GPU has room for bigger chunks; the CPU keeps NumPy's budget
            step = _chunk_size(self._per_image, n) * (16 if self.device.type != "cpu" else 1)
            if step >= n:
                return self._run(h, None)
            return torch.cat([self._run(h[i:i + step], None) for i in range(0, n, step)])

    __call__ = forward

    def forward_layers(self, x):
        import torch
        record: list = []
        with torch.inference_mode():
            self._run(self._input(x), record)
        return record

    def predict(self, x):
        return self.forward(x).argmax(1)

    def _run(self, h, record):
        import torch
        fast = record is None
        owned = False
        steps = self.steps
        n = h.shape[0]
        if fast and self._w_fold is not None:
            h = torch.addmm(self._b_fold, h.reshape(n, -1), self._w_fold)  # norm folded into fc1
            owned = True
            steps = steps[3:]
        for s in steps:
            if record is not None and s.kind == "flatten" and h.dim() == 4:
                h, made = h.permute(0, 3, 1, 2).reshape(n, -1), True  # torch's (C, H, W) order
            else:
                h, made = _torch_op(s, h, fast and owned, chw=record is not None)
            owned = owned or made
            if record is not None:
                record.append((s.name, h.permute(0, 3, 1, 2).contiguous() if h.dim() == 4 else h))
        return h


def _torch_op(s: _Step, h, inplace: bool, chw: bool = False):
    import torch
    c = s.c
    match s.kind:
        case "normalize":
            return (h - c["mean"]) / c["std"], True
        case "flatten":
            return h.reshape(h.shape[0], -1), False
        case "linear":
            wt = c["wt_chw" if chw and "wt_chw" in c else "wt"]
            return torch.addmm(c["b"], h, wt), True   # b + (N, in) @ (in, out)
        case "conv":
            k, pad = s.args["kernel"], s.args["padding"]
            n, hh, ww, ch = h.shape
            if pad:
                h = torch.nn.functional.pad(h, (0, 0, pad, pad, pad, pad))
            win = h.unfold(1, k, 1).unfold(2, k, 1)         # (N, H, W, C, k, k), a view
            cols = win.reshape(n * hh * ww, ch * k * k)      # im2col (copies)
            return torch.addmm(c["b"], cols, c["wt"]).reshape(n, hh, ww, -1), True
        case "batchnorm1d" | "batchnorm2d":
            return (h - c["mean"]) * c["inv_std"] * c["gamma"] + c["beta"], True
        case "act":
            fn = s.args["fn"]
            if fn == "relu":
                return (h.clamp_min_(0) if inplace else h.clamp_min(0)), True
            if fn == "leaky_relu":
                return torch.maximum(h, h * LEAKY_SLOPE), True
            if fn == "tanh":
                return torch.tanh(h), True
            if fn == "sigmoid":
                return 1.0 / (1.0 + torch.exp(-h)), True
            if fn == "gelu":
                return 0.5 * h * (1.0 + torch.erf(h / math.sqrt(2.0))), True
        case "pool":
            n, hh, ww, ch = h.shape
            h2, w2 = hh // 2, ww // 2
            win = h[:, :2 * h2, :2 * w2, :].reshape(n, h2, 2, w2, 2, ch)
            return (win.amax(dim=(2, 4)) if s.args["type"] == "max" else win.mean(dim=(2, 4))), True
        case "dropout":
            return h, False
    raise ConfigError(f"the manual twin has no layer kind {s.kind!r}")
