"""Heads trained in seconds: a linear layer or a small MLP on a backbone's cached features.

A head is a model config like the others (models.HeadConfig: kind "head", naming its backbone,
resolution and layer). Its layer plan starts at the features, so the ordinary trainers train it
unchanged: train.train (PyTorch) or the NumPy twin's train_numpy (its own backprop), on a
`FeatureData` whose x_train/x_test are the cached features instead of pixels. As a run in the
store it goes through submit, the queue and execute like any run (execute reads the features
when the model is a head), so Results shows its curves, confusion matrix and report.

The checkpoint holds the head's weights and its config; `load_model` puts the backbone back in
front (`with_backbone`), so Predict answers images with it. The backbone is PyTorch's; the
twin runs the head, layer by layer (`twin_layers`, compared with PyTorch by `agreement`).

Left out: training the backbone (fine-tuning).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import backbones, features
from .errors import CheckpointError, WorkbenchError
from .models import HeadConfig, layer_plan
from .train import trainer  # noqa: F401 (heads.trainer(engine): a head trains like any run)


@dataclass
class FeatureData:
    """What the trainers read from a FashionMNIST, with features for pixels: (N, D) float16."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def source_and_params(cfg: HeadConfig) -> tuple[str, dict[str, Any]]:
    return features.params_for(cfg.backbone, cfg.resolution, cfg.layer, cfg.source or None, cfg.images)


def head_config(backbone: str, resolution: int | None = None, layer: str | None = None,
                checkpoint: str | Path | None = None, hidden: tuple[int, ...] = (), dropout: float = 0.0,
                images: int = 0, classes: int = 10) -> HeadConfig:
    """A head on computed features: their width and normalisation from the features' meta."""
    source, params = features.params_for(backbone, resolution, layer, checkpoint, images)
    meta = features.cached(source, params)
    if meta is None:
        raise WorkbenchError(f"the {backbone} features at {params['resolution']} px ({params['layer']}) are not "
                             f"computed yet: `python -m fmnist_core features {backbone}` first")
    if "mean" not in meta:  # features stored before the meta carried their statistics
        train = features.load(source, params)[0]
        meta = {**meta, "mean": float(train.mean(dtype=np.float64)), "std": float(train.std(dtype=np.float64))}
    return HeadConfig(backbone=backbone, source=str(checkpoint) if backbone == backbones.CHECKPOINT else "",
                      resolution=params["resolution"], layer=params["layer"], in_features=int(meta["width"]),
                      hidden=tuple(int(h) for h in hidden), dropout=float(dropout), classes=int(classes),
                      mean=float(meta["mean"]), std=float(meta["std"]), images=int(images))


def feature_data(cfg: HeadConfig, data=None) -> FeatureData:
    """The cached features with the dataset's labels (the first rows of each split)."""
    from .data import load
    source, params = source_and_params(cfg)
    train, test, meta = features.load(source, params)
    if int(meta["width"]) != int(cfg.in_features):
        raise WorkbenchError(f"the cached features are {meta['width']} wide, the head takes {cfg.in_features}")
    ds = data or load()
    return FeatureData(train, ds.y_train[:len(train)], test, ds.y_test[:len(test)])


class BackboneHead(nn.Module):
    """images (N, 1, 28, 28) -> backbone features (N, D) -> head logits (N, classes)."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head
        self.config, self.plan = head.config, head.plan
        self.metrics = getattr(head, "metrics", {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def with_backbone(head: nn.Module, path: str | Path | None = None) -> BackboneHead:
    cfg: HeadConfig = head.config
    try:
        net = backbones.build(cfg.backbone, cfg.resolution, cfg.layer, cfg.source or None)
    except (WorkbenchError, OSError) as exc:
        raise CheckpointError(f"{path}: its backbone cannot be rebuilt ({exc})") from None
    return BackboneHead(net, head).eval()


# --- the twin runs the head ----------------------------------------------------------------------

def twin_layers(cfg: HeadConfig, state_dict: dict, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """[(layer name, output)] of the head run by the NumPy twin's own ops (twin/layers.py)."""
    from .twin.layers import ACTIVATIONS, linear, normalize
    sd = {k: v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v) for k, v in state_dict.items()}
    h = np.array(x, dtype=np.float32)                       # (N, D)
    out = []
    for s in layer_plan(cfg):
        if s.kind == "normalize":
            h = normalize(h, sd["norm.mean"], sd["norm.std"])
        elif s.kind == "linear":                            # (N, in) -> (N, out)
            h = linear(h, np.ascontiguousarray(sd[f"{s.name}.weight"].T), sd[f"{s.name}.bias"])
        elif s.kind == "act":
            h = ACTIVATIONS[s.args["fn"]](h.copy())
        # dropout: the identity at inference
        out.append((s.name, h.copy()))
    return out


def torch_layers(head: nn.Module, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
    h = torch.from_numpy(np.array(x, dtype=np.float32))
    out = []
    with torch.no_grad():
        for name, m in head.eval().named_children():
            h = m(h)
            out.append((name, h.numpy().copy()))
    return out


def agreement(head: nn.Module, x: np.ndarray) -> dict[str, Any]:
    """PyTorch's head against the twin's on features x: per layer the largest difference, and
    whether the predicted classes agree."""
    tl, nl = torch_layers(head, x), twin_layers(head.config, head.state_dict(), x)
    rows = [{"layer": a, "max_abs_diff": float(np.abs(ta - na).max())} for (a, ta), (b, na) in zip(tl, nl)]
    same = float((tl[-1][1].argmax(1) == nl[-1][1].argmax(1)).mean())
    return {"layers": rows, "max_abs_diff": max(r["max_abs_diff"] for r in rows), "label_agreement": same}


def test_accuracy(head: nn.Module, data: FeatureData) -> float:
    with torch.no_grad():
        logits = head.eval()(torch.from_numpy(np.asarray(data.x_test, dtype=np.float32)))
    return float((logits.argmax(1).numpy() == data.y_test).mean())


def cached_test_logits(model: nn.Module) -> torch.Tensor | None:
    """A head's logits for the 10,000 test images from its cached features (the head alone:
    milliseconds), or None when the model is no head or the full features are not cached —
    so Results never runs a backbone over the test set in the web process."""
    if not isinstance(model, BackboneHead):
        return None
    cfg = model.config
    source, params = features.params_for(cfg.backbone, cfg.resolution, cfg.layer, cfg.source or None, 0)
    if features.cached(source, params) is None:
        return None
    test = features.load(source, params)[1]
    with torch.no_grad():
        return model.head(torch.from_numpy(np.asarray(test, dtype=np.float32)))
