"""`TorchOpsNet`: the twin's explicit math written with torch tensor ops; runs on a GPU.

The same steps as twin.infer's `ManualNet` (the same prepared and fused weights),
computed with matmul / addmm, clamp_min, unfold and reshape instead of nn.Module
layers: the "manual on the GPU" implementation the benchmark times against
nn.Module. It is a second implementation on purpose (another library's primitives,
GPU kernels), checked against PyTorch by the same tests as `ManualNet`.

Left out on purpose: training and autograd (inference_mode throughout), bf16.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch

from ..data import IMAGE_SIZE
from ..errors import ConfigError, ImageError
from ..models import ModelConfig, config_from_dict, layer_plan, read_checkpoint
from .infer import Step, as_images, chunk_size, prepare_steps, run_steps, state_dict_to_numpy
from .layers import LEAKY_SLOPE


class TorchOpsNet:
    """`ManualNet` written with torch tensor ops (matmul, clamp_min, unfold, reshape), no nn.Module.

    Runs on any torch device; this is the manual implementation on the GPU.
    """

    def __init__(self, config: ModelConfig | dict, state_dict: dict, device: str = "cpu"):
        self.config = config_from_dict(config) if isinstance(config, dict) else config
        self.device = torch.device(device)
        self.plan = layer_plan(self.config)
        steps, fused, self._per_image = prepare_steps(self.config, state_dict_to_numpy(state_dict))
        for s in {id(s): s for s in steps + fused}.values():  # the lists share unchanged steps
            s.c = {k: torch.from_numpy(np.array(v, dtype=np.float32)).to(self.device) for k, v in s.c.items()}
        self.steps, self.fused = steps, fused

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> "TorchOpsNet":
        ckpt = read_checkpoint(path)
        return cls(config_from_dict(ckpt["model_config"]), ckpt["state_dict"], device=device)

    def _input(self, x):
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
        with torch.inference_mode():
            h = self._input(x)
            n = h.shape[0]
            # a GPU has room for bigger chunks; the CPU keeps NumPy's budget
            step = chunk_size(self._per_image, n) * (16 if self.device.type != "cpu" else 1)
            if step >= n:
                return self._run(h, None)
            return torch.cat([self._run(h[i:i + step], None) for i in range(0, n, step)])

    __call__ = forward

    def forward_layers(self, x):
        record: list = []
        with torch.inference_mode():
            self._run(self._input(x), record)
        return record

    def predict(self, x):
        return self.forward(x).argmax(1)

    def _run(self, h, record):
        return run_steps(self.fused if record is None else self.steps, h, record, _torch_op, _torch_layout)


def _torch_layout(h):
    # (N, H, W, C) -> (N, C, H, W); 2D activations are already torch's layout
    return h.permute(0, 3, 1, 2).contiguous() if h.dim() == 4 else h


def _conv(h, wt, b, k: int, pad: int, stride: int = 1):
    """im2col convolution of channels-last maps, as twin.layers.conv2d."""
    n, _, _, ch = h.shape
    if pad:
        h = torch.nn.functional.pad(h, (0, 0, pad, pad, pad, pad))
    win = h.unfold(1, k, stride).unfold(2, k, stride)   # (N, H', W', C, kh, kw), a view
    oh, ow = win.shape[1], win.shape[2]
    cols = win.permute(0, 1, 2, 4, 5, 3).reshape(n * oh * ow, k * k * ch)  # im2col (copies)
    return torch.addmm(b, cols, wt).reshape(n, oh, ow, -1)


def _bn(h, c, prefix: str = ""):
    if f"{prefix}mean" not in c:  # folded into the conv before it
        return h
    return (h - c[f"{prefix}mean"]) * c[f"{prefix}inv_std"] * c[f"{prefix}gamma"] + c[f"{prefix}beta"]


def _act(h, fn: str, inplace: bool):
    if fn == "relu":
        return h.clamp_min_(0) if inplace else h.clamp_min(0)
    if fn == "leaky_relu":
        return torch.maximum(h, h * LEAKY_SLOPE)
    if fn == "tanh":
        return torch.tanh(h)
    if fn == "sigmoid":
        return 1.0 / (1.0 + torch.exp(-h))
    if fn == "gelu":
        return 0.5 * h * (1.0 + torch.erf(h / math.sqrt(2.0)))
    raise ConfigError(f"the manual twin has no activation {fn!r}")


def _resblock(h, c, stride: int, fn: str):
    """twin.layers.resblock with torch ops."""
    y = _act(_bn(_conv(h, c["conv1.wt"], c["conv1.b"], 3, 1, stride), c, "bn1."), fn, True)
    y = _bn(_conv(y, c["conv2.wt"], c["conv2.b"], 3, 1), c, "bn2.")
    skip = _bn(_conv(h, c["short.wt"], c["short.b"], 1, 0, stride), c, "short_bn.") if "short.wt" in c else h
    return _act(y + skip, fn, True)


def _torch_op(s: Step, h, inplace: bool, chw: bool = False):
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
            return _conv(h, c["wt"], c["b"], s.args["kernel"], s.args["padding"]), True
        case "batchnorm1d" | "batchnorm2d":
            return _bn(h, c), True
        case "act":
            return _act(h, s.args["fn"], inplace), True
        case "resblock":
            return _resblock(h, c, s.args["stride"], s.args["fn"]), True
        case "gap":
            return h.mean((1, 2)), True
        case "pool":
            n, hh, ww, ch = h.shape
            h2, w2 = hh // 2, ww // 2
            win = h[:, :2 * h2, :2 * w2, :].reshape(n, h2, 2, w2, 2, ch)
            return (win.amax(dim=(2, 4)) if s.args["type"] == "max" else win.mean(dim=(2, 4))), True
        case "dropout":
            return h, False
    raise ConfigError(f"the manual twin has no layer kind {s.kind!r}")
