"""PyTorch against the twin: one checkpoint run both ways over a whole test set.

`compare` runs the nn.Module and `ManualNet` (impl "numpy") or `TorchOpsNet` (impl
"torch-ops") layer by layer over the images, in chunks, and reports how far apart
they are: agreement of the predicted labels, both accuracies, the largest logit
difference, and the largest difference per layer. The CLI's `compare` command and
the dashboard's "Inside the network" page show its result.

Left out on purpose: timing (fmnist_core.bench does that) and single images
(fmnist_core.inspect_net shows one input layer by layer).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import NUM_CLASSES
from ..device import resolve_device
from ..errors import ConfigError, DataError
from ..evaluate import images_to_tensor
from ..models import load_model, read_checkpoint
from .infer import CHUNK_BYTES, ManualNet, state_dict_to_numpy
from .torch_ops import TorchOpsNet

IMPLS = ("numpy", "torch-ops")


def compare(checkpoint_path: str | Path, x, y, impl: str = "numpy", device: str = "cpu") -> dict[str, Any]:
    """Run a checkpoint both ways over (x, y) and measure how far apart they are.

    impl: "numpy" (ManualNet) or "torch-ops" (TorchOpsNet on `device`). Both sides run
    layer by layer in chunks, so even cnn-seed002's 10,000 x 32 x 28 x 28 feature maps
    never sit in memory at once. The logits compared are the twin's fast `forward`
    (normalization and batchnorm folded into the matmuls); where nothing was folded it
    does exactly the arithmetic of `forward_layers`, whose last output is then used
    rather than computing everything twice.
    """
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
