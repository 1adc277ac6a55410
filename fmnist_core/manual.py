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
  Adam and AdamW with torch's update formulas, L2 and L1, the cosine and OneCycle
  schedules, batchnorm, dropout, flips and shifts, mini-batches, early stopping. It honours the same contract as `train.train` (events, statuses,
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
bf16, and any GPU for the NumPy path (`TorchOpsNet` is the GPU twin).
"""
from __future__ import annotations

import contextlib
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


def _prepare(cfg: ModelConfig, params: dict[str, np.ndarray]) -> tuple[list[_Step], list[_Step], int]:
    """Check the weights against the plan and lay them out for the ops below.

    Returns (steps, fused steps, floats per image): `steps` is the plan one to one
    (forward_layers), `fused` the same function in fewer passes (forward, see _fuse).
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
            # im2col columns are ordered (kh, kw, C): channels innermost, so building the
            # columns copies contiguous runs (4x faster than torch's (C, kh, kw) order here);
            # the weight (O, C, kh, kw) is permuted once to match
            wt = np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(-1, o))  # (kh*kw*C, O)
            steps.append(_Step(s, wt=wt, b=get(f"{s.name}.bias", (o,))))
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

    return steps, _fuse(cfg, steps), per_image


def _fuse(cfg: ModelConfig, steps: list[_Step]) -> list[_Step]:
    """The same network in fewer passes over memory, for `forward`.

    * MLP: the input normalization goes into fc1, saving a full pass over the input:
      ((x - m) / s) @ W.T + b  ==  x @ (W / s).T + (b - (m / s) * W.sum(1)).
      (A CNN cannot fold it: zero padding must pad the *normalized* image.)
    * batchnorm (eval) is a per-channel scale and shift: it goes into the linear or conv
      layer before it, W' = W * g / sqrt(v + eps), b' = (b - mean) * g / sqrt(v + eps) + beta.
    * dropout is the identity in evaluation: dropped.
    The arithmetic is done in float64 and rounded once; the results differ from the
    layer-by-layer path by float32 rounding only (see the tests).
    """
    fused: list[_Step] = []
    norm = None
    for s in steps:
        if s.kind == "dropout":
            continue
        if s.kind == "normalize" and cfg.kind == "mlp":
            norm = s  # folded into the first linear layer below
            continue
        if s.kind == "linear" and norm is not None:
            m, sd = np.float64(norm.c["mean"]), np.float64(norm.c["std"])
            wt = s.c["wt"].astype(np.float64)
            s = _Step(LayerSpec(s.name, s.kind, s.args), wt=(wt / sd).astype(np.float32),
                      b=(s.c["b"] - (m / sd) * wt.sum(0)).astype(np.float32))
            norm = None
        elif s.kind in ("batchnorm1d", "batchnorm2d") and fused and fused[-1].kind in ("linear", "conv"):
            prev, c = fused[-1], s.c
            scale = c["inv_std"].astype(np.float64) * c["gamma"]
            fused[-1] = _Step(LayerSpec(prev.name, prev.kind, prev.args),
                              wt=(prev.c["wt"] * scale).astype(np.float32),
                              b=((prev.c["b"] - c["mean"].astype(np.float64)) * scale + c["beta"]).astype(np.float32))
            continue
        fused.append(s)
    return fused


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
        self.steps, self.fused, self._per_image = _prepare(self.config, params)

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> "ManualNet":
        ckpt = read_checkpoint(path)
        net = cls(config_from_dict(ckpt["model_config"]), state_dict_to_numpy(ckpt["state_dict"]))
        net.metrics = ckpt.get("metrics", {})
        return net

    def forward(self, x) -> np.ndarray:
        """Logits (N, 10) float32 for images (N, 1, 28, 28) / (N, 28, 28) / (N, 784), float or uint8.

        The fast path: the fused steps (normalization and batchnorm folded into the
        matmuls, no dropout), in place wherever the array is ours, in chunks for CNNs.
        """
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
        for `norm` is what went into the next layer. Mind the memory for large N on CNNs
        (`compare` goes through a test set in chunks).
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
        h = x.reshape(n, IMAGE_SIZE, IMAGE_SIZE, 1)  # channels-last; one channel: a view
        for s in (self.fused if fast else self.steps):
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
            # the four corners of every 2x2 window as strided views (odd sizes drop the last
            # row/column, like torch); elementwise max/sum over them is 2x faster than
            # reshaping to (N, H/2, 2, W/2, 2, C) and reducing two axes
            hh, ww = h.shape[1] // 2 * 2, h.shape[2] // 2 * 2
            a, b = h[:, 0:hh:2, 0:ww:2], h[:, 0:hh:2, 1:ww:2]
            c, d = h[:, 1:hh:2, 0:ww:2], h[:, 1:hh:2, 1:ww:2]
            if s.args["type"] == "max":
                out = np.maximum(a, b)
                np.maximum(out, c, out=out)
                return np.maximum(out, d, out=out), True
            out = a + b                 # summed in torch's order, then / 4 (exact: a power of 2)
            out += c
            out += d
            out *= np.float32(0.25)
            return out, True
        case "dropout":
            return h, False  # eval mode: dropout is the identity
    raise ConfigError(f"the manual twin has no layer kind {s.kind!r}")


def _np_conv(h: np.ndarray, wt: np.ndarray, b: np.ndarray, k: int, pad: int) -> np.ndarray:
    """Convolution as one matrix product (im2col), channels-last.

    (N, H, W, C) -> pad -> every k x k window as a row (N*H*W, k*k*C) -> @ (k*k*C, O) -> (N, H, W, O)
    """
    n, hh, ww, ch = h.shape
    if pad:
        h = np.pad(h, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    win = sliding_window_view(h, (k, k), axis=(1, 2))   # (N, H', W', C, kh, kw), a view
    oh, ow = win.shape[1], win.shape[2]
    cols = win.transpose(0, 1, 2, 4, 5, 3).reshape(n * oh * ow, k * k * ch)  # the copy: im2col
    out = cols @ wt                                      # (N*H*W, k*k*C) @ (k*k*C, O)
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
        steps, fused, self._per_image = _prepare(self.config, state_dict_to_numpy(state_dict))
        for s in {id(s): s for s in steps + fused}.values():  # the lists share unchanged steps
            s.c = {k: torch.from_numpy(np.array(v, dtype=np.float32)).to(self.device) for k, v in s.c.items()}
        self.steps, self.fused = steps, fused

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> "TorchOpsNet":
        ckpt = read_checkpoint(path)
        return cls(config_from_dict(ckpt["model_config"]), ckpt["state_dict"], device=device)

    def _input(self, x):
        import warnings

        import torch
        if not isinstance(x, torch.Tensor):
            x = np.asarray(x)
            x = as_images(x) if x.dtype != np.uint8 else x.reshape(-1, IMAGE_SIZE * IMAGE_SIZE)
            with warnings.catch_warnings():
                # the dataset's arrays are read-only; nothing here writes to the input
                warnings.simplefilter("ignore", UserWarning)
                x = torch.from_numpy(x)
        x = x.to(self.device)  # uint8 travels as uint8: a quarter of the bytes to a GPU
        # multiply by 1/255 (not divide by 255): bit-identical to evaluate.images_to_tensor
        x = x.float().mul_(1 / 255.0) if x.dtype == torch.uint8 else x.float()
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
        n = h.shape[0]
        for s in (self.fused if fast else self.steps):
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
            win = h.unfold(1, k, 1).unfold(2, k, 1)         # (N, H, W, C, kh, kw), a view
            cols = win.permute(0, 1, 2, 4, 5, 3).reshape(n * hh * ww, k * k * ch)  # im2col (copies)
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


# --- compare: the twin against the nn.Module, on a whole test set -----------------------

def compare(checkpoint_path: str | Path, x, y, impl: str = "numpy", device: str = "cpu") -> dict[str, Any]:
    """Run a checkpoint both ways over (x, y) and measure how far apart they are.

    impl: "numpy" (ManualNet) or "torch-ops" (TorchOpsNet on `device`). Both sides run
    layer by layer in chunks, so even cnn-seed002's 10,000 x 32 x 28 x 28 feature maps
    never sit in memory at once. The logits compared are the twin's fast `forward`
    (normalization and batchnorm folded into the matmuls); where nothing was folded it
    does exactly the arithmetic of `forward_layers`, whose last output is then used
    rather than computing everything twice.
    """
    import torch

    from .errors import DataError
    from .evaluate import images_to_tensor
    from .models import load_model

    if impl not in IMPLS:
        raise ConfigError(f"impl must be one of {', '.join(IMPLS)}, got {impl!r}")
    y = np.asarray(y).astype(np.int64)
    if len(x) != len(y) or len(y) == 0:
        raise DataError(f"compare needs as many labels as images and at least one, got {len(x)} images "
                        f"and {len(y)} labels")
    model = load_model(checkpoint_path)  # torch, eval mode, CPU
    ckpt = read_checkpoint(checkpoint_path)
    if impl == "numpy":
        net: ManualNet | TorchOpsNet = ManualNet(model.config, state_dict_to_numpy(ckpt["state_dict"]))
    else:
        from .device import resolve_device
        net = TorchOpsNet(model.config, ckpt["state_dict"], device=str(resolve_device(device)))

    def to_np(a):
        return a.detach().float().cpu().numpy() if hasattr(a, "detach") else a

    # forward's fused steps do other arithmetic than the plan's when something was folded
    # into a matmul (MLP normalization, batchnorm); else forward_layers' logits are forward's
    folded = {id(s) for s in net.fused} != {id(s) for s in net.steps if s.kind != "dropout"}
    mine = to_np(net.forward(x)) if folded else np.empty((len(y), NUM_CLASSES), np.float32)
    ref = np.empty((len(y), NUM_CLASSES), np.float32)
    # size chunks by what one image's layer outputs take, both twins together
    per_image = sum(int(np.prod(a.shape)) for _, a in net.forward_layers(x[:1]))
    chunk = max(1, min(len(y), (CHUNK_BYTES * 2) // (8 * per_image)))
    names = [s.name for s in net.plan]
    worst = dict.fromkeys(names, 0.0)
    with torch.no_grad():
        for i in range(0, len(y), chunk):
            xb = x[i:i + chunk]
            h = images_to_tensor(xb)
            theirs = []
            for module in model.children():  # exactly nn.Sequential's forward
                h = module(h)
                theirs.append(h.numpy())
            ref[i:i + chunk] = theirs[-1]
            ours = net.forward_layers(xb)
            if not folded:
                mine[i:i + chunk] = to_np(ours[-1][1])
            for (name, a), b in zip(ours, theirs):
                worst[name] = max(worst[name], float(np.abs(to_np(a) - b).max()))
    pred_ref, pred_mine = ref.argmax(1), mine.argmax(1)
    kinds = {s.name: s.kind for s in net.plan}
    return {"n": int(len(y)), "impl": impl, "device": str(getattr(net, "device", "cpu")),
            "agreement": float((pred_ref == pred_mine).mean()),
            "accuracy_torch": float((pred_ref == y).mean()),
            "accuracy_manual": float((pred_mine == y).mean()),
            "max_abs_diff": float(np.abs(ref - mine).max()),
            "layers": [{"name": n, "kind": kinds[n], "max_abs_diff": worst[n]} for n in names]}


IMPLS = ("numpy", "torch-ops")


# --- from-scratch training of MLPs ------------------------------------------------------
#
# Each layer keeps what its backward needs from its forward (self.x, self.mask...).
# backward(grad) receives dLoss/d(output) and returns dLoss/d(input); layers with
# parameters also fill self.grads, keyed like self.params and like torch's state_dict.

class Normalize:
    """(x - mean) / std: the model's first layer, no parameters."""

    def __init__(self, name, mean, std):
        self.name, self.mean, self.std = name, mean, std
        self.params, self.grads = {}, {}

    def forward(self, x, train=False):  # (N, 784) -> (N, 784)
        return (x - self.mean) / self.std

    def backward(self, grad):           # (N, 784) -> (N, 784)
        return grad / self.std


class Flatten:
    def __init__(self, name):
        self.name, self.params, self.grads = name, {}, {}

    def forward(self, x, train=False):  # (N, 1, 28, 28) -> (N, 784)
        self.shape = x.shape
        return x.reshape(len(x), -1)

    def backward(self, grad):           # (N, 784) -> (N, 1, 28, 28)
        return grad.reshape(self.shape)


class Linear:
    """y = x W^T + b, with W stored (out, in) as torch stores it."""

    def __init__(self, name, n_in, n_out, rng, dtype):
        self.name = name
        # torch's default init for nn.Linear: U(-1/sqrt(in), 1/sqrt(in)) for W and b alike
        bound = 1.0 / math.sqrt(n_in)
        self.params = {"weight": rng.uniform(-bound, bound, (n_out, n_in)).astype(dtype),
                       "bias": rng.uniform(-bound, bound, n_out).astype(dtype)}
        self.grads = {}

    def forward(self, x, train=False):  # (N, in) -> (N, out)
        self.x = x
        return x @ self.params["weight"].T + self.params["bias"]

    def backward(self, grad, input_grad=True):  # (N, out) -> (N, in)
        self.grads["weight"] = grad.T @ self.x    # (out, N) @ (N, in) -> (out, in)
        self.grads["bias"] = grad.sum(0)          # (out,)
        if not input_grad:                        # the first layer: nothing below learns
            return None
        return grad @ self.params["weight"]       # (N, out) @ (out, in) -> (N, in)


class BatchNorm1d:
    """Per-feature batch normalization; batch statistics in training, running ones in eval."""

    def __init__(self, name, features, dtype, momentum=0.1):
        self.name, self.momentum = name, momentum  # 0.1: torch's default
        self.params = {"weight": np.ones(features, dtype), "bias": np.zeros(features, dtype)}
        self.grads = {}
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
        self.xhat = (x - mean) * self.inv_std
        return self.xhat * self.params["weight"] + self.params["bias"]

    def backward(self, grad):           # (N, F) -> (N, F); training mode only
        n = len(grad)
        self.grads["weight"] = (grad * self.xhat).sum(0)
        self.grads["bias"] = grad.sum(0)
        dxhat = grad * self.params["weight"]
        # the mean and variance depend on every x in the batch: the two extra terms
        return self.inv_std / n * (n * dxhat - dxhat.sum(0) - self.xhat * (dxhat * self.xhat).sum(0))


class ReLU:
    def __init__(self, name):
        self.name, self.params, self.grads = name, {}, {}

    def forward(self, x, train=False):  # (N, H) -> (N, H)
        self.mask = x > 0
        return x * self.mask

    def backward(self, grad):           # (N, H) -> (N, H); the slope at 0 is 0, as in torch
        return grad * self.mask


class LeakyReLU:
    def __init__(self, name, slope=LEAKY_SLOPE):
        self.name, self.slope, self.params, self.grads = name, slope, {}, {}

    def forward(self, x, train=False):
        self.mask = x > 0
        return np.where(self.mask, x, self.slope * x)

    def backward(self, grad):
        return np.where(self.mask, grad, self.slope * grad)


class Tanh:
    def __init__(self, name):
        self.name, self.params, self.grads = name, {}, {}

    def forward(self, x, train=False):
        self.y = np.tanh(x)
        return self.y

    def backward(self, grad):           # d tanh = 1 - tanh^2
        return grad * (1 - self.y * self.y)


class Sigmoid:
    def __init__(self, name):
        self.name, self.params, self.grads = name, {}, {}

    def forward(self, x, train=False):
        with np.errstate(over="ignore"):  # exp overflow -> inf -> 1/inf = 0: the right limit
            self.y = 1 / (1 + np.exp(-x))
        return self.y

    def backward(self, grad):           # d sigmoid = s (1 - s)
        return grad * self.y * (1 - self.y)


class GELU:
    """x * Phi(x), Phi the standard normal CDF (the exact form nn.GELU uses)."""

    def __init__(self, name):
        self.name, self.params, self.grads = name, {}, {}

    def forward(self, x, train=False):
        self.x = x
        self.cdf = (0.5 * (1.0 + erf(x / math.sqrt(2.0)))).astype(x.dtype, copy=False)
        return x * self.cdf

    def backward(self, grad):           # d (x Phi(x)) = Phi(x) + x phi(x)
        pdf = np.exp(-0.5 * self.x * self.x) / math.sqrt(2.0 * math.pi)
        return grad * (self.cdf + self.x * pdf)


class Dropout:
    """Inverted dropout: zero a fraction p in training and scale the rest by 1/(1-p),
    so evaluation is the identity."""

    def __init__(self, name, p, rng):
        self.name, self.p, self.rng, self.params, self.grads = name, p, rng, {}, {}
        self.mask = None

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


_ACTIVATION_LAYERS = {"relu": ReLU, "leaky_relu": LeakyReLU, "tanh": Tanh, "sigmoid": Sigmoid, "gelu": GELU}


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
                    layer = _ACTIVATION_LAYERS[a["fn"]](s.name)
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


# --- optimizers: torch.optim's update rules, written out -------------------------------

class SGD:
    """torch.optim.SGD: g += wd * p; buf = momentum * buf + g (buf = g at first); p -= lr * buf."""

    def __init__(self, lr, momentum=0.0, weight_decay=0.0):
        self.lr, self.momentum, self.wd = lr, momentum, weight_decay
        self.buf: dict[int, np.ndarray] = {}

    def set_momentum(self, m: float) -> None:  # the OneCycle schedule moves it
        self.momentum = m

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        for i, (p, g) in enumerate(zip(params, grads)):
            if self.wd:
                g = g + self.wd * p            # coupled L2: part of the gradient
            if self.momentum:
                if i not in self.buf:
                    self.buf[i] = g.copy()
                else:
                    self.buf[i] *= self.momentum
                    self.buf[i] += g
                g = self.buf[i]
            p -= self.lr * g                   # in place: the layer holds this very array


class Adam:
    """torch.optim.Adam / AdamW (decoupled=True), betas (0.9, 0.999), eps 1e-8.

    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
    p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    Adam adds wd * p to g (coupled L2); AdamW shrinks p by (1 - lr wd) first.
    """

    def __init__(self, lr, weight_decay=0.0, decoupled=False, betas=(0.9, 0.999), eps=1e-8):
        self.lr, self.wd, self.decoupled = lr, weight_decay, decoupled
        self.b1, self.b2, self.eps = betas[0], betas[1], eps
        self.t = 0
        self.m: dict[int, np.ndarray] = {}
        self.v: dict[int, np.ndarray] = {}

    def set_momentum(self, m: float) -> None:  # the OneCycle schedule moves beta1
        self.b1 = m

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        self.t += 1
        b1, b2 = self.b1, self.b2
        step_size = self.lr / (1 - b1 ** self.t)
        sqrt_bc2 = math.sqrt(1 - b2 ** self.t)
        for i, (p, g) in enumerate(zip(params, grads)):
            if self.wd and self.decoupled:
                p *= 1 - self.lr * self.wd
            elif self.wd:
                g = g + self.wd * p
            if i not in self.m:
                self.m[i], self.v[i] = np.zeros_like(p), np.zeros_like(p)
            m, v = self.m[i], self.v[i]
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * (g * g)
            denom = np.sqrt(v)
            denom /= sqrt_bc2
            denom += self.eps
            p -= step_size * (m / denom)


def _optimizer(cfg) -> SGD | Adam:
    if cfg.optimizer == "sgd":
        return SGD(cfg.lr, cfg.momentum, cfg.weight_decay)
    return Adam(cfg.lr, cfg.weight_decay, decoupled=cfg.optimizer == "adamw")


def lr_schedule(cfg, total_steps: int):
    """t -> (learning rate, momentum or None) for optimizer step t = 0, 1, ..., as torch's schedulers.

    cosine:   CosineAnnealingLR(T_max=total_steps, eta_min=0), in closed form.
    onecycle: OneCycleLR(max_lr=lr, total_steps) with its defaults: warm up from lr/25 to lr
              over the first 30% of steps, anneal to lr/25/1e4, both along a cosine; the
              momentum (SGD's momentum, Adam's beta1) moves 0.95 -> 0.85 -> 0.95 against it.
    """
    if cfg.schedule == "cosine":
        return lambda t: (0.5 * cfg.lr * (1 + math.cos(math.pi * t / total_steps)), None)
    if cfg.schedule != "onecycle":
        return lambda t: (cfg.lr, None)
    initial = cfg.lr / 25.0
    phases = [(float(0.3 * total_steps) - 1, initial, cfg.lr, 0.95, 0.85),
              (total_steps - 1, cfg.lr, initial / 1e4, 0.85, 0.95)]

    def cos(start, end, pct):
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)

    def at(t):
        start_step = 0.0
        for i, (end_step, lr0, lr1, m0, m1) in enumerate(phases):
            if t <= end_step or i == len(phases) - 1:
                pct = (t - start_step) / (end_step - start_step)
                return cos(lr0, lr1, pct), cos(m0, m1, pct)
            start_step = end_step
    return at


def _augment(xb: np.ndarray, cfg, rng: np.random.Generator) -> np.ndarray:
    """Random horizontal flips and shifts of a (N, 28, 28) batch, as train._augment does."""
    n, side = len(xb), IMAGE_SIZE
    if cfg.augment_flip:
        flip = rng.random(n) < 0.5
        xb = np.where(flip[:, None, None], xb[:, :, ::-1], xb)
    s = cfg.augment_shift
    if s:
        pad = np.pad(xb, ((0, 0), (s, s), (s, s)))        # shifted-in pixels are black
        dy, dx = rng.integers(0, 2 * s + 1, n), rng.integers(0, 2 * s + 1, n)
        ar = np.arange(side)
        rows = (ar[None, :] + dy[:, None])[:, :, None]     # (N, 28, 1)
        cols = (ar[None, :] + dx[:, None])[:, None, :]     # (N, 1, 28)
        xb = pad[np.arange(n)[:, None, None], rows, cols]  # (N, 28, 28)
    return xb


def check_trainable(model_config: ModelConfig, cfg) -> None:
    """Raise ConfigError, saying why, when train_numpy cannot train this model/config pair."""
    if model_config.kind != "mlp":
        raise ConfigError("the NumPy engine trains MLPs only; train CNNs with the torch engine "
                          "(the manual twin still runs trained CNNs for inference and compare)")
    if cfg.device not in ("auto", "cpu"):
        raise ConfigError(f"the NumPy engine runs on the CPU only; choose device auto or cpu, "
                          f"not {cfg.device!r} (the torch engine uses {cfg.device})")
    if cfg.precision == "bf16":
        raise ConfigError("the NumPy engine trains in fp32 only; choose precision auto or fp32")


@contextlib.contextmanager
def _blas_threads(n: int):
    """Limit the BLAS thread pool to n inside the block (a no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits  # comes with scikit-learn
    except ImportError:
        yield
        return
    with threadpool_limits(n, user_api="blas"):
        yield


def train_numpy(model_config: ModelConfig, cfg, data, callback=None, should_stop=None, on_best=None,
                train_limit: int | None = None):
    """Train an MLP from scratch with NumPy; the same contract as `train.train`.

    Events, statuses, messages, history rows, early stopping and `on_best` behave as
    there; `result.model` is a torch FashionNet holding the learned weights (CPU, eval).
    """
    cfg.validate()
    check_trainable(model_config, cfg)
    # one BLAS thread unless told otherwise: mini-batch GEMMs are too small to split, and
    # on a busy 2-core machine two spinning threads made (64, 784) @ (784, 128) take
    # 12.8 ms instead of 1.0 ms. Overflow in a diverging run is reported as status
    # "diverged", not as a screen of RuntimeWarnings.
    with _blas_threads(cfg.threads or 1), np.errstate(over="ignore", invalid="ignore"):
        return _train_numpy(model_config, cfg, data, callback, should_stop, on_best, train_limit)


def _train_numpy(model_config, cfg, data, callback, should_stop, on_best, train_limit):
    import time

    import torch

    from .data import train_val_split
    from .models import build_model
    from .epochs import EpochLog

    rng = np.random.default_rng(cfg.seed)  # init, shuffling, dropout and augmentation

    tr_idx, val_idx = train_val_split(len(data.y_train), cfg.val_fraction, cfg.seed)
    if train_limit:
        tr_idx = tr_idx[:train_limit]
    x_tr = np.multiply(data.x_train[tr_idx], 1 / 255.0, dtype=np.float32)  # (n, 28, 28)
    y_tr = data.y_train[tr_idx].astype(np.int64)
    x_val = np.multiply(data.x_train[val_idx], 1 / 255.0, dtype=np.float32)
    y_val = data.y_train[val_idx].astype(np.int64)

    net = NumpyMLP(model_config, rng)
    opt = _optimizer(cfg)
    loss_fn = SoftmaxCrossEntropy(cfg.label_smoothing)
    plist = net.parameters()
    l1_params = [(layer, k) for _, layer, k in plist if layer.params[k].ndim > 1]  # weights, as train.py
    n = len(y_tr)
    steps = math.ceil(n / cfg.batch_size)
    total_steps = cfg.epochs * steps

    schedule = lr_schedule(cfg, total_steps)  # stepped per batch, as train.py steps its scheduler

    def to_torch(sd):
        return {k: torch.from_numpy(np.array(v)) for k, v in sd.items()}

    log = EpochLog(cfg, callback, on_best)
    log.start(steps, n, len(y_val), "cpu", "fp32")
    t = 0
    for epoch in range(1, cfg.epochs + 1):
        t_epoch = time.perf_counter()
        perm = rng.permutation(n)
        xs, ys = x_tr[perm], y_tr[perm]  # one gather per epoch; batches are then views
        loss_sum, correct, seen = 0.0, 0, 0
        for b in range(steps):
            xb = xs[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            yb = ys[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            if cfg.augment_flip or cfg.augment_shift:
                xb = _augment(xb, cfg, rng)
            logits = net.forward(xb, train=True)            # (B, 28, 28) -> (B, 10)
            loss = loss_fn.forward(logits, yb)
            if cfg.l1:
                loss += cfg.l1 * sum(float(np.abs(layer.params[k]).sum()) for layer, k in l1_params)
            net.backward(loss_fn.backward())
            if cfg.l1:
                for layer, k in l1_params:
                    layer.grads[k] = layer.grads[k] + cfg.l1 * np.sign(layer.params[k])
            opt.lr, momentum = schedule(t)
            if momentum is not None:
                opt.set_momentum(momentum)
            opt.step([layer.params[k] for _, layer, k in plist], [layer.grads[k] for _, layer, k in plist])
            t += 1
            loss_sum += loss * len(yb)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(yb)
            if not math.isfinite(loss_sum):
                log.diverged(epoch, b + 1)
                break
            if log.after_batch(epoch, b + 1, steps, lambda: loss_sum / seen, should_stop):
                break
        if log.status != "finished":
            break
        row = {"epoch": epoch, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
               "lr": schedule(t)[0], "epoch_seconds": time.perf_counter() - t_epoch}
        if len(y_val):
            vlogits = np.concatenate([net.forward(x_val[i:i + 4000]) for i in range(0, len(y_val), 4000)])
            row["val_loss"] = SoftmaxCrossEntropy().forward(vlogits, y_val)
            row["val_accuracy"] = float((vlogits.argmax(1) == y_val).mean())
        if log.end_epoch(row, lambda: to_torch(net.state_dict())):  # early stop, or the time limit
            break
    seconds = log.elapsed()
    model = build_model(model_config)
    model.load_state_dict(log.best_state if log.best_state is not None else to_torch(net.state_dict()))
    return log.finish(model.eval(), seconds, "cpu", "fp32")
