"""`ManualNet`: any checkpoint (every MLP, CNN and ResNet config) run with NumPy only, fast.

This is an optimisation of the layers in twin.layers, not new math: the same
network, computed in fewer passes over memory. The plan's layers become steps with
their weights laid out for the op that uses them (pre-transposed, channels-last);
`forward` runs the *fused* steps (`_fuse`: the MLP's input normalization and every
eval-mode batchnorm folded into the matmul before it, dropout dropped), in place
wherever the array is ours, in chunks for CNNs (im2col convolution, strided-view
pooling). `forward_layers` runs the plan one layer at a time and returns every
layer's output under the torch module's name, in torch's layout, for the dashboard
and the tests to put side by side with PyTorch.

Read twin.layers first; then this file's `prepare_steps` and `_fuse` say what changes.

Left out on purpose: training (twin.train), dropout in training mode, bf16, and any
GPU (twin.torch_ops runs the same steps with torch ops).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..data import IMAGE_SIZE, NUM_CLASSES
from ..errors import CheckpointError, ConfigError, ImageError
from ..models import LayerSpec, ModelConfig, config_from_dict, layer_plan, read_checkpoint, resblock_has_shortcut
from .layers import (ACTIVATIONS, BN_EPS, conv2d, global_avg_pool, linear, normalize, pool2d, resblock,
                     scale_shift, standardize)

# intermediate arrays per chunk stay under this: an im2col buffer of cnn-seed002 on
# 10,000 images would be 9 GB, while 64 MB chunks are as fast and fit anywhere
CHUNK_BYTES = 64 << 20


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

class Step:
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


def _conv_wt(w: np.ndarray) -> np.ndarray:
    """torch's conv weight (O, C, kh, kw) -> (kh*kw*C, O), the rows of twin.layers.conv2d's im2col.

    Columns ordered (kh, kw, C), channels innermost: building them copies contiguous runs
    (4x faster than torch's (C, kh, kw) order here)."""
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0]))


def _bn_consts(get, name: str, f: int, prefix: str = "") -> dict[str, np.ndarray]:
    """A batchnorm's eval-mode constants: running mean, 1/sqrt(var + eps), gamma, beta."""
    rm, rv = get(f"{name}.running_mean", (f,)), get(f"{name}.running_var", (f,))
    get(f"{name}.num_batches_tracked", None)
    return {f"{prefix}mean": rm, f"{prefix}inv_std": (1.0 / np.sqrt(rv + BN_EPS)).astype(np.float32),
            f"{prefix}gamma": get(f"{name}.weight", (f,)), f"{prefix}beta": get(f"{name}.bias", (f,))}


def _resblock_consts(get, name: str, a: dict) -> dict[str, np.ndarray]:
    """A resblock's weights as twin.layers.resblock reads them (convs without bias: zeros)."""
    i, o = a["in"], a["out"]
    zero = np.zeros(o, np.float32)
    c = {"conv1.wt": _conv_wt(get(f"{name}.conv1.weight", (o, i, 3, 3))), "conv1.b": zero,
         **_bn_consts(get, f"{name}.bn1", o, "bn1."),
         "conv2.wt": _conv_wt(get(f"{name}.conv2.weight", (o, o, 3, 3))), "conv2.b": zero,
         **_bn_consts(get, f"{name}.bn2", o, "bn2.")}
    if resblock_has_shortcut(a):
        c["short.wt"] = _conv_wt(get(f"{name}.short_conv.weight", (o, i, 1, 1)))
        c["short.b"] = zero
        c.update(_bn_consts(get, f"{name}.short_bn", o, "short_bn."))
    return c


def _fold_resblock(c: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A resblock's constants with each batchnorm folded into the conv before it."""
    out = {}
    for conv, bn in (("conv1", "bn1"), ("conv2", "bn2"), ("short", "short_bn")):
        if f"{conv}.wt" in c:
            scale = c[f"{bn}.inv_std"].astype(np.float64) * c[f"{bn}.gamma"]
            out[f"{conv}.wt"] = (c[f"{conv}.wt"] * scale).astype(np.float32)
            out[f"{conv}.b"] = ((c[f"{conv}.b"] - c[f"{bn}.mean"].astype(np.float64)) * scale
                                + c[f"{bn}.beta"]).astype(np.float32)
    return out


def prepare_steps(cfg: ModelConfig, params: dict[str, np.ndarray]) -> tuple[list[Step], list[Step], int]:
    """Check the weights against the plan and lay them out for the ops below.

    Returns (steps, fused steps, floats per image): `steps` is the plan one to one
    (forward_layers), `fused` the same function in fewer passes (forward, see _fuse).
    Internally activations of conv layers are kept channels-last (N, H, W, C): then
    im2col rows are contiguous per pixel and a conv's matmul output needs no transpose.
    forward_layers converts back to torch's (N, C, H, W) for display and comparison.
    """
    plan = layer_plan(cfg)
    steps: list[Step] = []
    used: set[str] = set()

    def get(key, shape):
        used.add(key)
        return None if shape is None else _param(params, key, shape)

    side, ch = IMAGE_SIZE, 1                 # current spatial size and channels (CNN part)
    per_image = side * side                  # largest float count per image, for chunking
    flat_from: tuple[int, int] | None = None  # (C, side) of the map flattened into fc1
    for s in plan:
        a = s.args
        if s.kind == "normalize":
            mean = float(np.asarray(params.get("norm.mean", a["mean"])))
            std = float(np.asarray(params.get("norm.std", a["std"])))
            used.update({"norm.mean", "norm.std"})
            steps.append(Step(s, mean=np.float32(mean), std=np.float32(std)))
        elif s.kind == "flatten":
            if cfg.kind == "cnn":
                flat_from = (ch, side)
            steps.append(Step(s))
        elif s.kind == "linear":
            w = get(f"{s.name}.weight", (a["out"], a["in"]))
            b = get(f"{s.name}.bias", (a["out"],))
            if flat_from is not None:
                # torch flattens (C, H, W); our maps are (H, W, C): permute fc1's columns once.
                # forward_layers flattens in torch's order and keeps the original weight (wt_chw)
                c, sz = flat_from
                w_hwc = w.reshape(a["out"], c, sz, sz).transpose(0, 2, 3, 1).reshape(a["out"], -1)
                steps.append(Step(s, wt=np.ascontiguousarray(w_hwc.T), b=b, wt_chw=np.ascontiguousarray(w.T)))
                flat_from = None
            else:
                # pre-transposed and contiguous: x (N, in) @ wt (in, out) is one plain GEMM
                steps.append(Step(s, wt=np.ascontiguousarray(w.T), b=b))
            per_image = max(per_image, a["out"])
        elif s.kind == "conv":
            k, o = a["kernel"], a["out"]
            wt = _conv_wt(get(f"{s.name}.weight", (o, a["in"], k, k)))  # (kh*kw*C, O)
            steps.append(Step(s, wt=wt, b=get(f"{s.name}.bias", (o,))))
            per_image = max(per_image, side * side * a["in"] * k * k, side * side * o)
            ch = o
        elif s.kind in ("batchnorm1d", "batchnorm2d"):
            steps.append(Step(s, **_bn_consts(get, s.name, a["features"])))
        elif s.kind == "pool":
            side //= 2
            steps.append(Step(s))
        elif s.kind == "resblock":
            per_image = max(per_image, side * side * a["in"] * 9, side * side * a["out"] * 9)
            steps.append(Step(s, **_resblock_consts(get, s.name, a)))
            side = (side - 1) // a["stride"] + 1  # 3x3, padding 1: 28 -> 14 -> 7 -> 4
            ch = a["out"]
        elif s.kind in ("act", "dropout", "gap"):
            steps.append(Step(s))
        else:
            raise ConfigError(f"the manual twin has no layer kind {s.kind!r}")
    extra = set(params) - used
    if extra:
        raise CheckpointError(f"the weights hold entries this config does not use: {', '.join(sorted(extra))}")

    return steps, _fuse(cfg, steps), per_image


def _fuse(cfg: ModelConfig, steps: list[Step]) -> list[Step]:
    """The same network in fewer passes over memory, for `forward`.

    * MLP: the input normalization goes into fc1, saving a full pass over the input:
      ((x - m) / s) @ W.T + b  ==  x @ (W / s).T + (b - (m / s) * W.sum(1)).
      (A CNN cannot fold it: zero padding must pad the *normalized* image.)
    * batchnorm (eval) is a per-channel scale and shift: it goes into the linear or conv
      layer before it, W' = W * g / sqrt(v + eps), b' = (b - mean) * g / sqrt(v + eps) + beta;
      also the three inside each ResNet block (conv1/bn1, conv2/bn2, shortcut conv/bn).
    * dropout is the identity in evaluation: dropped.
    The arithmetic is done in float64 and rounded once; the results differ from the
    layer-by-layer path by float32 rounding only (see the tests).
    """
    fused: list[Step] = []
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
            s = Step(LayerSpec(s.name, s.kind, s.args), wt=(wt / sd).astype(np.float32),
                      b=(s.c["b"] - (m / sd) * wt.sum(0)).astype(np.float32))
            norm = None
        elif s.kind in ("batchnorm1d", "batchnorm2d") and fused and fused[-1].kind in ("linear", "conv"):
            prev, c = fused[-1], s.c
            scale = c["inv_std"].astype(np.float64) * c["gamma"]
            fused[-1] = Step(LayerSpec(prev.name, prev.kind, prev.args),
                              wt=(prev.c["wt"] * scale).astype(np.float32),
                              b=((prev.c["b"] - c["mean"].astype(np.float64)) * scale + c["beta"]).astype(np.float32))
            continue
        if s.kind == "resblock":
            s = Step(LayerSpec(s.name, s.kind, s.args), **_fold_resblock(s.c))
        fused.append(s)
    return fused


def chunk_size(per_image: int, n: int) -> int:
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
        self.steps, self.fused, self._per_image = prepare_steps(self.config, params)

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
        step = chunk_size(self._per_image, n)
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
        h = x.reshape(len(x), IMAGE_SIZE, IMAGE_SIZE, 1)  # channels-last; one channel: a view
        return run_steps(self.fused if record is None else self.steps, h, record, _np_op, _to_torch_layout)


def run_steps(steps: list[Step], h, record: list | None, op, torch_layout):
    """h through the steps with op(step, h, inplace, chw) -> (output, fresh?); ManualNet's
    and TorchOpsNet's loop. record: None for the fast path, else a list that receives
    (name, output in torch's layout) per step, via torch_layout (N, H, W, C) -> (N, C, H, W).
    """
    n = len(h)
    fast = record is None
    # the input belongs to the caller (maybe the read-only dataset): in-place ops
    # are only allowed once an op has produced an array of our own
    owned = False
    for s in steps:
        if record is not None and s.kind == "flatten" and h.ndim == 4:
            # shown as torch has it: (C, H, W) order, and fc1 then uses its original columns
            h, made = torch_layout(h).reshape(n, -1), True
        else:
            h, made = op(s, h, fast and owned, chw=record is not None)
        owned = owned or made
        if record is not None:
            record.append((s.name, torch_layout(h)))
    return h


def _to_torch_layout(h: np.ndarray) -> np.ndarray:
    # (N, H, W, C) -> (N, C, H, W); 2D activations are already torch's layout
    return np.ascontiguousarray(h.transpose(0, 3, 1, 2)) if h.ndim == 4 else h


def _np_op(s: Step, h: np.ndarray, inplace: bool, chw: bool = False) -> tuple[np.ndarray, bool]:
    """Apply one step with twin.layers' functions. Returns (output, whether the output
    is a fresh array of ours). inplace: h is ours, an op may overwrite it.

    chw: the flattened map came in torch's (C, H, W) order (forward_layers).
    """
    c = s.c
    out = h if inplace else None
    match s.kind:
        case "normalize":
            return normalize(h, c["mean"], c["std"]), True
        case "flatten":
            # (N, H, W, C) -> (N, H*W*C): a view; fc1's weight columns were permuted to match
            return h.reshape(len(h), -1), False
        case "linear":
            # in forward, a linear step may hold weights with normalization or batchnorm folded in
            return linear(h, c["wt_chw" if chw and "wt_chw" in c else "wt"], c["b"]), True
        case "conv":
            return conv2d(h, c["wt"], c["b"], s.args["kernel"], s.args["padding"]), True
        case "batchnorm1d" | "batchnorm2d":
            xhat = standardize(h, c["mean"], c["inv_std"], out=out)
            return scale_shift(xhat, c["gamma"], c["beta"], out=xhat), True
        case "act":
            if s.args["fn"] not in ACTIVATIONS:
                raise ConfigError(f"the manual twin has no activation {s.args['fn']!r}")
            return ACTIVATIONS[s.args["fn"]](h, out=out), True
        case "pool":
            return pool2d(h, s.args["type"]), True
        case "resblock":
            return resblock(h, c, s.args["stride"], s.args["fn"]), True
        case "gap":
            return global_avg_pool(h), True
        case "dropout":
            return h, False  # eval mode: dropout is the identity
    raise ConfigError(f"the manual twin has no layer kind {s.kind!r}")
