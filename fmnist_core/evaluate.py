"""Metrics on a labelled set: loss, accuracy, confusion matrix, per-class report,
misclassified examples. Inputs are the dataset's uint8 images; batching keeps
memory flat. scikit-learn computes the confusion matrix and the per-class table.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .data import CLASSES, NUM_CLASSES
from .device import autocast


def images_to_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) in [0, 1]: the model contract."""
    if isinstance(x, torch.Tensor):
        t = x.float().div(255.0) if x.dtype == torch.uint8 else x
    else:
        x = np.asarray(x)
        # a new float array: the shared dataset arrays are read-only and stay untouched
        t = torch.from_numpy(np.multiply(x, 1 / 255.0, dtype=np.float32) if x.dtype == np.uint8
                             else np.array(x, dtype=np.float32))
    if t.dim() == 3:
        t = t.unsqueeze(1)
    return t


@torch.no_grad()
def predict_logits(model: torch.nn.Module, x, batch_size: int = 2000,
                   device: torch.device | str | None = None, precision: str = "fp32") -> torch.Tensor:
    """Logits (N, 10) as float32 on the CPU."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    outs = []
    for i in range(0, len(x), batch_size):
        xb = images_to_tensor(x[i:i + batch_size]).to(device, non_blocking=True)
        with autocast(device, precision):
            outs.append(model(xb).float().cpu())
    model.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0, NUM_CLASSES)


def metrics_from_logits(logits: torch.Tensor, y, top_misclassified: int | None = None) -> dict:
    y_t = torch.from_numpy(np.asarray(y).astype(np.int64))
    loss = F.cross_entropy(logits, y_t).item()
    probs = logits.softmax(1)
    conf, pred = probs.max(1)
    y_np, pred_np = y_t.numpy(), pred.numpy()
    # imported here: the trainer and the benchmark import this module on machines without
    # scikit-learn (scripts/gpu_check.py: PyTorch, NumPy and ONNX Runtime only)
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
    cm = confusion_matrix(y_np, pred_np, labels=list(range(NUM_CLASSES)))
    p, r, f1, support = precision_recall_fscore_support(
        y_np, pred_np, labels=list(range(NUM_CLASSES)), zero_division=0)
    wrong = np.flatnonzero(pred_np != y_np)
    # most confident mistakes first: the instructive ones
    wrong = wrong[np.argsort(-conf.numpy()[wrong], kind="stable")]
    if top_misclassified is not None:
        wrong = wrong[:top_misclassified]
    return {
        "n": int(len(y_np)),
        "accuracy": float((pred_np == y_np).mean()),
        "loss": float(loss),
        "confusion_matrix": cm.tolist(),
        "per_class": [{"class": CLASSES[k], "precision": float(p[k]), "recall": float(r[k]),
                       "f1": float(f1[k]), "support": int(support[k])} for k in range(NUM_CLASSES)],
        "misclassified": [{"index": int(i), "true": int(y_np[i]), "pred": int(pred_np[i]),
                           "confidence": float(conf[i])} for i in wrong],
    }


def evaluate(model: torch.nn.Module, x, y, batch_size: int = 2000, device=None,
             precision: str = "fp32", top_misclassified: int | None = 500) -> dict:
    logits = predict_logits(model, x, batch_size=batch_size, device=device, precision=precision)
    return metrics_from_logits(logits, y, top_misclassified=top_misclassified)
