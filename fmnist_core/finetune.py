"""Fine-tuning EfficientNet-Lite0 on Fashion-MNIST: its last stages and a new linear head
trained together, priced first.

The frozen-backbone path (features.py + heads.py) trains in seconds; fine-tuning runs the whole
backbone forward and its last stages backward for every image of every epoch, so it is priced
before it starts (`price`: multiply-adds from the network's size at the resolution, this CPU's
measured rate for them, the activations kept for backward) and the class limits decide
(`refusal`: the same limits roles.py applies to runs, max_est_minutes and max_job_mb). On this
2-core CPU one epoch of all 60,000 images at 64 px is priced at ~7.5 minutes of one core (a busy
machine's wall time is several times that); `python -m fmnist_core finetune` runs a small
budget (the first N images, one epoch) and says what a full epoch would cost. On CUDA
(`device auto`) the same code is the fast path (not measured here: no GPU).

Left out: running it as a queued run of the store (it is a CLI experiment), augmentation,
schedules; the backbone's batchnorms stay in eval mode (tiny batches would wreck their stats).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import backbones
from .errors import WorkbenchError

# measured here (AMD EPYC, 1 thread, load ~8): Lite0 forward at 64 px, 256 images in 0.92 s
# under bf16 autocast (8.9 G multiply-adds/s), 2.45 s in fp32 channels_last (3.3 G/s)
MACS_PER_S = {"bf16": 8.9e9, "fp32": 3.3e9}
BACKWARD = 2.0  # a trained stage's backward costs about twice its forward


@dataclass
class Price:
    seconds: float
    peak_mb: float
    images: int
    epochs: int

    def to_dict(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 1), "peak_mb": round(self.peak_mb), "images": self.images,
                "epochs": self.epochs}


def _precision(device: torch.device) -> str:
    from .device import cpu_has_fast_bf16
    return "bf16" if device.type == "cuda" or cpu_has_fast_bf16() else "fp32"


def price(images: int, epochs: int = 1, stages: int = 2, resolution: int = 64, batch: int = 64,
          test_images: int = 10_000, precision: str = "bf16", threads: int = 1) -> Price:
    """Seconds and memory of fine-tuning the last `stages` stages (+ head conv) on the CPU."""
    if not 0 <= stages <= 7:
        raise WorkbenchError(f"stages to train must be 0 to 7, got {stages}")
    macs = backbones.macs_per_image(backbones.PRETRAINED, resolution)
    # the last stages hold little of the compute at low resolution: a share by stage, generously
    share = min(1.0, 0.25 + 0.1 * stages)
    rate = MACS_PER_S[precision] * max(1, threads)
    train_s = images * epochs * macs * (1 + BACKWARD * share) / rate
    test_s = test_images * macs / rate
    # activations of the trained stages kept for backward (~6 maps of the widest, 96 ch at R/2)
    act = batch * 96 * (resolution // 2) ** 2 * 4 * 6 * share
    return Price(seconds=5.0 + train_s + test_s, peak_mb=900 + (4.7e6 * 4 * 4 + act) / 2**20,
                 images=images, epochs=epochs)


def refusal(p: Price, settings=None) -> str | None:
    """The class limits' answer for a student (None: allowed), as roles.check_limits words it."""
    from .cost import format_mb
    from .roles import class_settings
    st = settings or class_settings()
    if p.peak_mb > st.max_job_mb:
        return f"fine-tuning would need about {format_mb(p.peak_mb)}; the class limit is {format_mb(st.max_job_mb)}"
    if p.seconds > st.max_est_minutes * 60:
        return (f"fine-tuning would take about {p.seconds / 60:,.0f} minutes here; the class limit is "
                f"{st.max_est_minutes:.0f} minutes per run (fewer images, or a GPU)")
    return None


def finetune(data, images: int = 2000, epochs: int = 1, stages: int = 2, resolution: int = 64,
             test_images: int = 2000, lr: float = 1e-3, batch: int = 64, seed: int = 0, device: str = "auto",
             progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Train the last `stages` stages, the head conv and a new 10-class layer on the first
    `images` training images; score on the first `test_images` test images."""
    from .device import resolve_device
    dev = resolve_device(device)
    prec = _precision(dev)
    torch.manual_seed(seed)
    feats = backbones.EffNetFeatures(backbones.timm_lite0(pretrained=True), resolution, "pooled")
    head = torch.nn.Linear(1280, 10)
    trained = list(feats.net.blocks[7 - stages:]) + [feats.net.conv_head, feats.net.bn2] if stages else []
    for p in feats.parameters():
        p.requires_grad_(False)
    for m in trained:
        for p in m.parameters():
            p.requires_grad_(True)
    params = [{"params": [p for m in trained for p in m.parameters()], "lr": lr / 10},  # gentle on pretrained
              {"params": head.parameters(), "lr": lr}]
    opt = torch.optim.AdamW(params, weight_decay=1e-4)
    feats, head = feats.to(dev).eval(), head.to(dev)  # eval: the batchnorms keep ImageNet's statistics
    x = np.multiply(data.x_train[:images], 1 / 255.0, dtype=np.float32)[:, None]
    y = torch.as_tensor(data.y_train[:images], dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), batch):
            idx = perm[i:i + batch]
            xb, yb = torch.from_numpy(x[idx.numpy()]).to(dev), y[idx].to(dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=prec == "bf16"):
                logits = head(feats(xb).float())
            loss = F.cross_entropy(logits.float(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if (i // batch) % 10 == 0:
                progress(f"epoch {epoch}/{epochs}: {min(i + batch, len(y)):,}/{len(y):,} images, loss {loss.item():.3f}")
    train_s = time.perf_counter() - t0
    correct = 0
    with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=prec == "bf16"):
        for i in range(0, test_images, 256):
            xb = torch.from_numpy(np.multiply(data.x_test[i:min(i + 256, test_images)], 1 / 255.0,
                                              dtype=np.float32)[:, None]).to(dev)
            pred = head(feats(xb).float()).argmax(1).cpu().numpy()
            correct += int((pred == data.y_test[i:i + len(pred)]).sum())
    return {"test_accuracy": correct / test_images, "train_seconds": round(train_s, 1),
            "seconds": round(time.perf_counter() - t0, 1), "images": images, "epochs": epochs, "stages": stages,
            "resolution": resolution, "test_images": test_images, "device": str(dev), "precision": prec,
            "threads": torch.get_num_threads()}
