"""Features once, for everyone: a frozen backbone's features of the Fashion-MNIST images, cached.

A backbone (fmnist_core/backbones.py) + a resolution + a layer turns every image into a row of
D numbers. Computing them for all 70,000 images takes minutes, so it is a shared analysis job
(analysis.py, kind "features"): priced (`price_mb`), run by the dispatcher in a process of its
own with a progress bar, and stored once under artifacts/cache/features/KEY/ as

    train.npy  (60,000 x D float16)   test.npy  (10,000 x D float16)   meta.json

(plain .npy, read with allow_pickle=False). KEY is the job's key: the backbone file's content
hash + the parameters, so a retrained checkpoint is new features and a second asker reads the
same files. float16 halves the disk and memory of 70,000 x 1,280 values (179 MB instead of
358 MB); a head trained on them in float32 loses nothing measurable (features are post-ReLU6
activations of a few units, far inside float16's range and precision). `images` takes only the
first N of each split (tests and quick looks); 0 is all of them.

On a CPU with fast bf16 (AVX512-BF16, AMX) EfficientNet runs under bf16 autocast in
channels_last: measured 2.5x faster than fp32 on this 2-core EPYC; meta.json says which ran.

The heads trained on these features are in heads.py.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import backbones, runs
from .errors import WorkbenchError
from .files import read_json, write_atomic, write_json_atomic

KIND = "features"
TRAIN_IMAGES, TEST_IMAGES = 60_000, 10_000


def params_for(backbone: str, resolution: int | None = None, layer: str | None = None,
               checkpoint: str | Path | None = None, images: int = 0) -> tuple[str, dict[str, Any]]:
    """(the file the job is keyed by, its parameters): an EfficientNet is keyed by the
    package's weights file, a checkpoint backbone by its own file."""
    if backbone in backbones.EFFICIENTNETS:
        source = str(backbones.weights_file())
        resolution = int(resolution or 64)
    elif backbone == backbones.CHECKPOINT:
        if not checkpoint:
            raise WorkbenchError("a checkpoint backbone needs the checkpoint's file")
        source, resolution = str(checkpoint), int(resolution or 28)
    else:
        raise WorkbenchError(f"unknown backbone {backbone!r}; choose {backbones.PRETRAINED}, "
                             f"{backbones.CONTROL} or {backbones.CHECKPOINT}")
    layer = layer or backbones.default_layer(backbone, source)
    if not 0 <= int(images) <= TRAIN_IMAGES:
        raise WorkbenchError(f"images must be between 0 (all) and {TRAIN_IMAGES:,}, got {images}")
    params = {"backbone": backbone, "resolution": resolution, "layer": layer, "images": int(images)}
    check(source, params)
    return source, params


def check(source: str | Path, params: dict[str, Any]) -> None:
    backbones.check(params["backbone"], params["resolution"], params["layer"], source)


def folder(source: str | Path, params: dict[str, Any]) -> Path:
    from .analysis import job_key
    return runs.ARTIFACTS / "cache" / "features" / job_key(KIND, source, params)


def cached(source: str | Path, params: dict[str, Any]) -> dict[str, Any] | None:
    """meta.json when both arrays are on disk (files only, nothing computed)."""
    d = folder(source, params)
    meta = read_json(d / "meta.json")
    return meta if meta and (d / "train.npy").is_file() and (d / "test.npy").is_file() else None


def counts(params: dict[str, Any]) -> tuple[int, int]:
    n = int(params.get("images") or 0)
    return (min(n, TRAIN_IMAGES), min(n, TEST_IMAGES)) if n else (TRAIN_IMAGES, TEST_IMAGES)


def batch_size(resolution: int) -> int:
    # 256 at 64x64; the activations grow with the pixels, so fewer images a batch above it
    return max(16, min(256, int(256 * (64 / int(resolution)) ** 2)))


def price_mb(source: str | Path, params: dict[str, Any]) -> float:
    """Peak memory of the job: the process, the weights, one batch's activations, the outputs."""
    from .analysis import BASE_MB
    d = backbones.width(params["backbone"], params["resolution"], params["layer"], source)
    n_train, n_test = counts(params)
    r, b = int(params["resolution"]), batch_size(params["resolution"])
    if params["backbone"] in backbones.EFFICIENTNETS:
        # the widest maps are the 96-channel expansions at half resolution; ~4 live at once
        act = b * 96 * (r // 2) ** 2 * 4 * 4
        weights = 4.7e6 * 4 * 2
    else:
        from .cost import layer_costs
        from .models import config_from_dict, read_checkpoint
        costs = layer_costs(config_from_dict(read_checkpoint(source)["model_config"]))
        act = b * max(c["out"] for c in costs) * 4 * 4
        weights = Path(source).stat().st_size * 2
    out = (n_train + n_test) * d * 2 + b * d * 4
    return BASE_MB + (act + weights + out) / 2**20


def _as_input(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.multiply(x, 1 / 255.0, dtype=np.float32)).unsqueeze(1)  # (N, 1, 28, 28)


def run_backbone(net: torch.nn.Module, x: np.ndarray, out: np.ndarray, bf16: bool, batch: int,
                 progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Features of uint8 images x (N, 28, 28) into `out` (N, D), batch by batch."""
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for i in range(0, len(x), batch):
            xb = _as_input(x[i:i + batch])
            if bf16:
                xb = xb.contiguous(memory_format=torch.channels_last)
            out[i:i + batch] = net(xb).float().numpy()
            if progress is not None:
                progress(min(i + batch, len(x)))
    return out


def use_bf16(backbone: str) -> bool:
    from .device import cpu_has_fast_bf16
    return backbone in backbones.EFFICIENTNETS and bool(cpu_has_fast_bf16())


def extract(source: str | Path, params: dict[str, Any], data,
            progress: Callable[[float, str], None] = lambda f, w: None) -> dict[str, Any]:
    """Compute and store the features of the first images of each split (all by default)."""
    check(source, params)
    t0 = time.perf_counter()
    progress(0.0, "loading the backbone")
    net = backbones.build(params["backbone"], params["resolution"], params["layer"], source)
    bf16 = use_bf16(params["backbone"])
    if bf16:
        net = net.to(memory_format=torch.channels_last)
    n_train, n_test = counts(params)
    total = n_train + n_test
    d = backbones.width(params["backbone"], params["resolution"], params["layer"], source)
    batch = batch_size(params["resolution"])
    dest = folder(source, params)
    for split, x, done_before in (("train", data.x_train[:n_train], 0), ("test", data.x_test[:n_test], n_train)):
        out = np.empty((len(x), d), dtype=np.float16)

        def tick(n, split=split, done_before=done_before):
            progress((done_before + n) / total, f"{split} images: {n:,} of {len(x):,}")
        run_backbone(net, x, out, bf16, batch, tick)
        if not np.isfinite(out).all():
            raise WorkbenchError(f"the {params['backbone']} features overflowed float16; choose another layer")

        def save(tmp, out=out):
            with open(tmp, "wb") as f:
                np.save(f, out, allow_pickle=False)
        write_atomic(dest / f"{split}.npy", save)
        if split == "train":  # the heads' input normalisation (models.HeadConfig.mean/std)
            stats = (float(out.mean(dtype=np.float64)), float(out.std(dtype=np.float64)) or 1.0)
    meta = {**params, "mean": stats[0], "std": stats[1], "width": d, "train_images": n_train, "test_images": n_test,
            "seconds": round(time.perf_counter() - t0, 2), "precision": "bf16" if bf16 else "fp32",
            "threads": torch.get_num_threads(), "dtype": "float16"}
    write_json_atomic(dest / "meta.json", meta)  # last: its presence says the arrays are whole
    return meta


def load(source: str | Path, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(train, test, meta): the cached arrays, memory-mapped read-only (no pickle)."""
    meta = cached(source, params)
    if meta is None:
        raise WorkbenchError(f"the {params['backbone']} features at {params['resolution']} px "
                             f"({params['layer']}) are not computed yet: ask for them first")
    d = folder(source, params)
    return (np.load(d / "train.npy", mmap_mode="r", allow_pickle=False),
            np.load(d / "test.npy", mmap_mode="r", allow_pickle=False), meta)


def request(backbone: str, resolution: int | None = None, layer: str | None = None,
            checkpoint: str | Path | None = None, images: int = 0, asker: str = "",
            max_mb: float | None = None, start_dispatcher: bool = True) -> dict[str, Any]:
    """The features job's record (analysis.request): done at once when cached."""
    from . import analysis
    source, params = params_for(backbone, resolution, layer, checkpoint, images)
    rec = analysis.request(KIND, source, params, asker=asker, max_mb=max_mb, start_dispatcher=start_dispatcher)
    return {**rec, "source": source, "params": params}
