"""One output pixel of a convolution taken apart, with the numbers of one step of twin.step.

What it is. CNN Explainer's view of a convolution (Wang et al. 2020: the receptive patch, the
kernel sliding over it, the sum), for the student's own network and in both directions, read
from a `StepRecord`: forward, the patch of the conv's input under the kernel (zero padding
included) times the kernel, plus the bias, is the value the layer computed there; then each
layer up to the next conv or flatten at that pixel (batchnorm, activation, the pooling window
it falls in and whether it wins). Backward, the gradient dLoss/d(that output) reaches the kernel
as gradient x patch (its share of the kernel's gradient) and the input as gradient x kernel at
the pixels under the window. tests/test_twin_step.py checks the value against the layer's
output and that the shares of every pixel add up to the kernel's and the input's gradients.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .step import StepRecord


def explain_conv_pixel(rec: StepRecord, layer: str, channel: int, row: int, col: int, image: int = 0) -> dict:
    """Output pixel (row, col) of channel `channel` of conv layer `layer`, for image `image` of the
    record (0..SHOW-1), with the weights the step started from.

    Forward: the receptive patch of the conv's input (C, k, k, zero padding included), the kernel
    (C, k, k), their products, bias, value = sum + bias, and the layer's own output there; then
    each layer up to the next conv or flatten at that pixel (batchnorm, activation, the pooling
    window it falls in). Backward: the gradient dLoss/d(that output), its share of the kernel's
    gradient (gradient x patch) and of the input's (gradient x kernel, at `input_rows/cols`).
    """
    names = [d["name"] for d in rec.layers]
    if layer not in names or rec.layers[names.index(layer)]["kind"] != "conv":
        raise ConfigError(f"{layer!r} is not a conv layer of this model")
    i = names.index(layer)
    d = rec.layers[i]
    out = d["out"]                               # (S, H, W, O)
    if not 0 <= image < len(out):
        raise ConfigError(f"image must be 0..{len(out) - 1}")
    _, h, w, o = out.shape
    if not (0 <= channel < o and 0 <= row < h and 0 <= col < w):
        raise ConfigError(f"{layer} has {o} channels of {h}×{w} pixels: channel 0..{o - 1}, row and "
                          f"column 0..{h - 1}")
    k, p = d["args"]["kernel"], d["args"]["padding"]
    x = rec.layers[i - 1]["out"][image]          # the conv's input: (28, 28) or (H, W, C)
    x = x[..., None] if x.ndim == 2 else x
    xp = np.pad(x, ((p, p), (p, p), (0, 0)))
    patch = xp[row:row + k, col:col + k].transpose(2, 0, 1)        # (C, k, k), torch's order
    kernel = rec.before[f"{layer}.weight"][channel]                  # (C, k, k)
    bias = float(rec.before[f"{layer}.bias"][channel])
    products = patch * kernel
    value = float(products.sum()) + bias
    rows, cols = np.arange(row - p, row - p + k), np.arange(col - p, col - p + k)
    chain, r, c = [], row, col
    for e in rec.layers[i + 1:]:
        if e["kind"] in ("conv", "flatten"):
            break
        if e["kind"] == "pool":
            pre = rec.layers[rec.layers.index(e) - 1]["out"][image]
            if r // 2 >= e["out"].shape[1] or c // 2 >= e["out"].shape[2]:
                chain.append({"name": e["name"], "kind": "pool", "dropped": True})
                break
            window = pre[r - r % 2:r - r % 2 + 2, c - c % 2:c - c % 2 + 2, channel]
            mine = (r % 2) * 2 + c % 2     # the pixel's place in its window, row-major
            r, c = r // 2, c // 2
            chain.append({"name": e["name"], "kind": "pool", "type": e["args"]["type"], "window": window.copy(),
                          "at": (r, c), "value": float(e["out"][image, r, c, channel]),
                          # max pooling passes on (and back) only the first largest value, as torch
                          "wins": bool(e["args"]["type"] == "max" and window.reshape(-1).argmax() == mine)})
        else:
            chain.append({"name": e["name"], "kind": e["kind"], "args": dict(e["args"]), "at": (r, c),
                          "value": float(e["out"][image, r, c, channel])})
    g = float(d["grad"][image, row, col, channel]) if d["grad"] is not None else 0.0
    return {"layer": layer, "channel": channel, "row": row, "col": col, "image": image, "kernel_size": k,
            "padding": p, "patch": patch, "kernel": kernel, "products": products, "bias": bias,
            "value": value, "layer_value": float(out[image, row, col, channel]), "chain": chain,
            "grad": g, "kernel_grad": g * patch, "input_grad": g * kernel,
            "input_rows": rows, "input_cols": cols,
            "inside": np.outer((rows >= 0) & (rows < x.shape[0]), (cols >= 0) & (cols < x.shape[1]))}
