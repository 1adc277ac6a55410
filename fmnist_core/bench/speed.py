"""Training-speed benchmark (`python -m fmnist_core bench-train`): the two figures of the
accuracy-and-speed issue, measured in one run so their ratio is meaningful on a noisy machine.

1. Seconds per epoch of the seed-001 MLP (784-128-64-10, Adam 1e-3, batch 32, the 48,000
   images of the 80/20 split) with this project's in-memory trainer, against the conventional
   loop of the course projects: a torchvision-style Dataset (PIL image + ToTensor per sample)
   in a DataLoader feeding the same model and optimizer. Medians over the timed epochs.
2. Time-to-93% of the dashboard's default CNN preset (`DEMO_PRESET`): train it as the preset says,
   evaluate the 10,000 test images after every epoch (outside the clock), and report the
   training wall time at which test accuracy first reached 93%, and the final accuracy.

The in-memory trainer is timed eager (1 thread and all threads) and with torch.compile
(`TrainConfig.compile`, 1 thread; which step really ran is reported: without a C++
compiler it falls back to eager). The CNN is the Train page's default preset
(`models.DEMO_PRESET`), the one a class demo trains live.

Left out: GPU rows (the benchmark's run.py covers devices), DataLoader worker processes.
"""
from __future__ import annotations

import os
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

from ..data import FashionMNIST, train_val_split
from ..device import machine_info
from ..evaluate import evaluate
from ..models import DEMO_PRESET, build_model, preset
from ..train import TrainConfig, train

TARGET = 0.93


def mlp_inmemory_epochs(data: FashionMNIST, epochs: int, threads: int, compile: bool = False
                        ) -> tuple[list[float], str]:
    """(seconds of each epoch, which step ran: "eager", "compiled" or "eager (why)")."""
    p = preset("mlp-seed001")
    cfg = TrainConfig(**{**p["train"], "epochs": epochs, "device": "cpu", "threads": threads,
                         "val_fraction": 0.2, "compile": compile})
    result = train(p["model"], cfg, data)
    return [h["epoch_seconds"] for h in result.history], result.history[-1].get("step", "eager")


def mlp_dataloader_epoch(data: FashionMNIST, fraction: float, threads: int) -> float:
    """Seconds for one epoch (extrapolated from `fraction` of it) of the conventional loop."""
    from torch.utils.data import DataLoader, Subset
    from .impls import TorchvisionStyleDataset  # torchvision's per-sample path, emulated
    torch.set_num_threads(threads)
    p = preset("mlp-seed001")
    tr_idx, _ = train_val_split(len(data.y_train), 0.2, 0)
    ds = TorchvisionStyleDataset(data.x_train, data.y_train)
    n = int(len(tr_idx) * fraction)
    loader = DataLoader(Subset(ds, tr_idx[:n].tolist()), batch_size=32, shuffle=True, num_workers=0)
    model = build_model(p["model"])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)  # as the course projects wrote it
    model.train()
    t = time.perf_counter()
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - t) / fraction


def cnn_time_to_target(data: FashionMNIST, name: str = DEMO_PRESET, threads: int = 0,
                       progress: Callable[[str], None] = lambda s: None, p: dict | None = None) -> dict:
    """Train preset `name` (or `p`, {"model": config, "train": options}) timing each epoch,
    with the test accuracy after every epoch measured outside the clock."""
    p = p or preset(name)
    cfg = TrainConfig(**{**p["train"], "device": "cpu", "threads": threads})
    probe = build_model(p["model"])
    eval_seconds = [0.0]
    curve = []

    def on_epoch(state: dict, row: dict) -> None:
        t = time.perf_counter()
        probe.load_state_dict(state)
        acc = evaluate(probe.eval(), data.x_test, data.y_test, top_misclassified=0)["accuracy"]
        train_s = row["elapsed"] - eval_seconds[0]  # the clock without our own evaluations
        eval_seconds[0] += time.perf_counter() - t
        curve.append({"epoch": row["epoch"], "train_seconds": round(train_s, 2), "test_accuracy": acc})
        progress(f"{name} epoch {row['epoch']}: {train_s:.1f} s, test accuracy {acc:.4f}")

    if cfg.val_fraction:
        # on_best fires only on a better validation score; evaluate every epoch instead
        cfg.val_fraction = 0.0
    result = train(p["model"], cfg, data, on_best=on_epoch)
    reached = next((c for c in curve if c["test_accuracy"] >= TARGET), None)
    return {"preset": name, "epochs": len(curve), "precision": result.precision,
            "train_seconds": round(result.train_seconds - eval_seconds[0], 2),
            "final_test_accuracy": curve[-1]["test_accuracy"] if curve else None,
            "time_to_target_s": reached["train_seconds"] if reached else None,
            "epoch_reached": reached["epoch"] if reached else None, "target": TARGET, "curve": curve}


def bench_train(data: FashionMNIST, quick: bool = False, progress: Callable[[str], None] = lambda s: None,
                skip_cnn: bool = False, cnn_threads: int = 0) -> dict:
    all_threads = torch.get_num_threads()
    # the machine may be shared: the load average beside the figures says how busy it was
    out: dict = {"machine": machine_info(), "quick": quick, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                 "loadavg_start": list(os.getloadavg())}
    mlp = {}
    for threads in sorted({1, all_threads}):
        progress(f"mlp-seed001 in-memory, {threads} thread(s)...")
        times, _ = mlp_inmemory_epochs(data, 1 if quick else 3, threads)
        mlp[f"inmemory_{threads}t_epoch_s"] = round(statistics.median(times), 3)
        mlp[f"inmemory_{threads}t_all_s"] = [round(t, 3) for t in times]
    if quick:
        mlp["compile"] = "skipped (--quick)"
    else:
        # torch.compile'd step, one thread (tiny matmuls: a second thread only waits); the
        # first epoch holds the compilation, the median of 4 leaves it out (reported apart)
        progress("mlp-seed001 in-memory, torch.compile, 1 thread...")
        times, mlp["compile"] = mlp_inmemory_epochs(data, 4, 1, compile=True)
        mlp["inmemory_compiled_1t_epoch_s"] = round(statistics.median(times[1:]), 3)
        mlp["inmemory_compiled_1t_all_s"] = [round(t, 3) for t in times]
    # the DataLoader loop at the same thread counts, each loop judged at its best: on a busy
    # machine a second thread can make either loop several times slower (seen: 85 s vs 11 s)
    for threads in sorted({1, all_threads}):
        progress(f"mlp-seed001 conventional DataLoader loop, {threads} thread(s)...")
        mlp[f"dataloader_{threads}t_epoch_s"] = round(
            mlp_dataloader_epoch(data, 0.2 if quick else 1.0, threads), 3)
    mlp["dataloader_epoch_s"] = min(v for k, v in mlp.items() if k.startswith("dataloader_") and k.endswith("t_epoch_s"))
    mlp["dataloader_extrapolated_from"] = 0.2 if quick else 1.0
    rows = {k: v for k, v in mlp.items() if k.startswith("inmemory_") and k.endswith("epoch_s")}
    best = min(rows.values())
    mlp["inmemory_best_epoch_s"] = best
    mlp["inmemory_best"] = min(rows, key=rows.get).removeprefix("inmemory_").removesuffix("_epoch_s")
    mlp["speedup_vs_dataloader"] = round(mlp["dataloader_epoch_s"] / best, 2)
    out["mlp_seed001"] = mlp
    torch.set_num_threads(all_threads)
    out["loadavg_after_mlp"] = list(os.getloadavg())
    if not skip_cnn:
        out["cnn"] = cnn_time_to_target(data, threads=cnn_threads, progress=progress)
        out["cnn"]["threads"] = cnn_threads or all_threads
    out["loadavg_end"] = list(os.getloadavg())
    return out
