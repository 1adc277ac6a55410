"""Every GPU path of the workbench, proved in one call: `python scripts/gpu_check.py`.

On a machine with CUDA (or Apple MPS) and only PyTorch, torchvision, NumPy and ONNX Runtime
(+ onnx) installed — no MLflow, Streamlit, captum, scikit-learn or threadpoolctl: every module
this one imports must load without them (tests/test_gpu_check.py blocks them and runs it) —
and the four dataset files in $FMNIST_DATA_DIR, in a few minutes it

  1. trains the demo preset (models.DEMO_PRESET) and every preset whose name starts with
     "speedrun" on the device, scoring the test set after each epoch: time to 93% and 94%
     (the clock includes those test passes), and the demo must reach `require`;
  2. runs bf16 and fp16 autocast: inference on the test set (label agreement with fp32) and one
     training step each (fp16 with a GradScaler): finite losses;
  3. runs the benchmark's rows on the device (bench.run_benchmark): PyTorch (fp32, bf16, fp16),
     the torch-ops twin, ONNX Runtime's CUDA provider where the build has it, each with its
     label agreement with fp32 PyTorch, which must reach `min_agreement`;
  4. compares the hand-written NumPy twin (on the CPU) with the trained demo model's logits on
     the device: label agreement at least `twin_agreement`.

It writes one results file: a benchmark results file (bench/results.py's schema, so the Timings
page loads it like any file "from another machine") with one more block, "gpu_check": every
check with ok/skipped/failed, its figures and its reason. The script exits 1 when any check
failed (the file is written all the same), 2 on bad input. `--device cpu` runs the same code on
the CPU, with the small budgets a test can afford.

Left out: multi-GPU, and timing beyond what the benchmark's quick preset measures.
"""
from __future__ import annotations

import math
import time
import traceback
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from .data import FashionMNIST
from .device import resolve_device
from .errors import ConfigError
from .evaluate import images_to_tensor
from .models import DEMO_PRESET, PRESETS, build_model, preset

SCHEMA_KEY = "gpu_check"
Say = Callable[[str], None]


@dataclass
class CheckConfig:
    device: str = "cuda"          # cuda | mps | cpu (cpu: the same code, for a test)
    presets: tuple[str, ...] = ()  # empty: the demo preset and every speedrun* preset
    train_limit: int = 0          # 0: all 60,000 training images
    max_epochs: int = 0           # 0: each preset's own epochs
    train_budget_s: float = 120.0  # each preset's training stops after this (TrainConfig.max_seconds)
    # the demo preset's best test accuracy (plain, no TTA) must reach it: speedrun-93 ends at
    # 92.96-93.05% plain on the CPU (93% is its figure with TTA), so 0.92 catches a broken device
    # path without failing on a seed's noise
    require: float = 0.92
    targets: tuple[float, ...] = (0.93, 0.94)  # the test accuracies whose time is reported
    test_limit: int = 0           # 0: all 10,000 test images for the agreement checks
    min_agreement: float = 0.99   # every benchmark row (bf16 and fp16 included) vs fp32 PyTorch
    twin_agreement: float = 0.999  # the NumPy twin vs the device's fp32 logits
    bench: bool = True            # the benchmark's rows (a minute on a GPU)
    bench_batches: tuple[int, ...] = (1, 256, 10000)  # inference batch sizes of the rows
    seed: int = 0


def default_presets() -> list[str]:
    """The demo preset, cnn-demo (the demo before the speedrun presets), then every other
    speedrun* preset models.PRESETS has when this runs."""
    names = [DEMO_PRESET, "cnn-demo"] + sorted(n for n in PRESETS if n.startswith("speedrun"))
    return list(dict.fromkeys(n for n in names if n in PRESETS))


def _check(name: str, fn: Callable[[], dict], say: Say) -> dict:
    """Run one check: {"name", "status": ok | failed | skipped, "seconds", ...figures, "reason"?}.
    A check returns its figures, raises Skip for a path this machine lacks, or fails (any
    other exception: its type and message are the reason)."""
    t = time.perf_counter()
    try:
        out = {"name": name, "status": "ok", **fn()}
    except _Skip as s:
        out = {"name": name, "status": "skipped", "reason": str(s)}
    except Exception as exc:  # noqa: BLE001: every failure is a result of the check, reported
        out = {"name": name, "status": "failed", "reason": f"{type(exc).__name__}: {exc}",
               "traceback": traceback.format_exc()[-2000:]}  # the innermost frames
    out["seconds"] = round(time.perf_counter() - t, 2)
    say(f"{name}: {out['status']}" + (f" ({out['reason']})" if out.get("reason") else ""))
    return out


class _Skip(Exception):
    pass


class CheckFailed(AssertionError):
    pass


def _require(ok: bool, why: str) -> None:
    if not ok:
        raise CheckFailed(why)


def _test_set(ds: FashionMNIST, cfg: CheckConfig) -> tuple[np.ndarray, np.ndarray]:
    n = cfg.test_limit or len(ds.y_test)
    return ds.x_test[:n], ds.y_test[:n].astype(np.int64)


def _logits(model: torch.nn.Module, x: np.ndarray, device: torch.device, dtype=None) -> np.ndarray:
    """Logits of uint8 images on `device` (autocast to `dtype` when given), as float32 NumPy."""
    out = []
    model = model.to(device).eval()
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype or torch.bfloat16,
                                                 enabled=dtype is not None):
        for i in range(0, len(x), 2000):
            out.append(model(images_to_tensor(x[i:i + 2000]).to(device)).float().cpu().numpy())
    return np.concatenate(out)


# --- 1. training ----------------------------------------------------------------------------

def train_preset(name: str, ds: FashionMNIST, cfg: CheckConfig, device: torch.device) -> tuple[dict, Any]:
    """Train one preset on the device, the test set scored each epoch: figures and the model."""
    from .train import TrainConfig, train
    p = preset(name)
    tc = {**p["train"], "device": device.type, "max_seconds": cfg.train_budget_s, "seed": cfg.seed}
    if cfg.max_epochs:
        tc["epochs"] = min(tc.get("epochs", 10), cfg.max_epochs)
    x, y = _test_set(ds, cfg)
    res = train(p["model"], TrainConfig(**tc), ds, train_limit=cfg.train_limit or None, watch=(x, y))
    _require(res.status == "finished", f"{name}: training ended {res.status}: {res.message}")
    curve = [(r["epoch"], r.get("elapsed"), r.get("watch_accuracy")) for r in res.history]
    _require(all(a is not None and math.isfinite(a) for _, _, a in curve), f"{name}: no test accuracy per epoch")
    best = max(a for _, _, a in curve)
    reach = {f"{t:.0%}": next(({"epoch": e, "seconds": round(s, 2)} for e, s, a in curve if a >= t), None)
             for t in cfg.targets}
    return ({"preset": name, "device": res.device, "precision": res.precision, "epochs": res.epochs_run,
             "train_seconds": round(res.train_seconds, 2), "best_test_accuracy": round(best, 4),
             "reached": reach, "curve": [{"epoch": e, "seconds": round(s, 2), "test_accuracy": round(a, 4)}
                                         for e, s, a in curve], "message": res.message}, res.model)


# --- 2. autocast ----------------------------------------------------------------------------

def _dtype_supported(dtype: torch.dtype, device: torch.device) -> str | None:
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        return "this GPU has no bf16"
    return None


def check_autocast(model: torch.nn.Module, dtype: torch.dtype, ds: FashionMNIST, cfg: CheckConfig,
                   device: torch.device) -> dict:
    """Inference under autocast (label agreement with fp32 on the device) and one training
    step under autocast (fp16 with a GradScaler, as mixed precision trains): a finite loss and
    finite gradients."""
    why = _dtype_supported(dtype, device)
    if why:
        raise _Skip(why)
    x, _ = _test_set(ds, cfg)
    ref = _logits(model, x, device)
    low = _logits(model, x, device, dtype)
    agree = float((ref.argmax(1) == low.argmax(1)).mean())
    _require(np.isfinite(low).all(), "non-finite logits under autocast")
    _require(agree >= cfg.min_agreement, f"label agreement with fp32 {agree:.4f} < {cfg.min_agreement}")
    net = build_model(model.config).to(device)
    net.load_state_dict(model.state_dict())
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16 and device.type == "cuda")
    xb = images_to_tensor(ds.x_train[:256]).to(device)
    yb = torch.as_tensor(ds.y_train[:256].astype(np.int64), device=device)
    with torch.autocast(device.type, dtype=dtype):
        loss = F.cross_entropy(net(xb), yb)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    grads_ok = all(torch.isfinite(p.grad).all().item() for p in net.parameters() if p.grad is not None)
    _require(math.isfinite(loss.item()) and grads_ok, f"the training step gave loss {loss.item()} "
             f"or non-finite gradients")
    return {"dtype": str(dtype).replace("torch.", ""), "agreement": round(agree, 5),
            "max_logit_diff": float(np.abs(ref - low).max()), "train_step_loss": round(loss.item(), 4),
            "images": int(len(x))}


# --- 3. the benchmark's rows ------------------------------------------------------------------

def bench_rows(ds: FashionMNIST, cfg: CheckConfig, device: torch.device, say: Say) -> dict:
    """The benchmark (quick preset) on this device only: its whole results dict."""
    from .bench.config import PRECISIONS, BenchConfig
    from .bench.model import resolve_model
    from .bench.run import run_benchmark
    from .data import PROJECT_ROOT
    impls = ["pytorch", "manual-torch", "onnxruntime"]
    notes = {}
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401  (torch.onnx.export's dynamo path needs it)
    except ImportError as exc:
        impls.remove("onnxruntime")
        notes["onnxruntime"] = f"not run: {exc} (ONNX export needs onnx, onnxscript and onnxruntime)"
    course = PROJECT_ROOT / "artifacts" / "models" / "mlp-seed000.pt"
    bm = resolve_model(checkpoint=course) if course.is_file() else resolve_model(preset_name="mlp-seed000")
    bc = BenchConfig.quick(devices=(device.type,), impls=tuple(impls), precisions=PRECISIONS,
                           inference_batches=cfg.bench_batches, train_batches=(256,), threads=(0,),
                           headline_rounds=0, seed=cfg.seed)
    results = run_benchmark(bm, ds, bc, progress=lambda e: say(e["message"]) if e.get("event") == "step" else None,
                            label=None)
    results["notes"] = notes
    return results


def check_bench_rows(results: dict, cfg: CheckConfig) -> dict:
    rows = results["rows"]
    failed = [r for r in rows if str(r.get("reason", "")).startswith("failed")]
    _require(not failed, "rows failed: " + "; ".join(f"{r['impl']} {r.get('precision', 'fp32')} {r['work']} "
                                                       f"{r['batch_size']}: {r['reason']}" for r in failed[:3]))
    timed = [r for r in rows if r["available"] and r["median_s"] is not None]
    _require(bool(timed), "no row could be timed on this device")
    low = [r for r in timed if r.get("agreement") is not None and r["agreement"] < cfg.min_agreement]
    _require(not low, "label agreement below %.3f: " % cfg.min_agreement + "; ".join(
        f"{r['impl']} {r.get('precision', 'fp32')}: {r['agreement']:.4f}" for r in low[:3]))
    return {"timed_rows": len(timed), "not_run": sorted({f"{r['impl']} {r.get('precision', 'fp32')}: "
                                                         f"{r.get('reason')}" for r in rows if not r["available"]}),
            "agreement": {f"{r['impl']} {r.get('precision', 'fp32')}": r["agreement"] for r in timed
                          if r.get("agreement") is not None}, "notes": results.get("notes", {})}


# --- 4. the NumPy twin against the device ---------------------------------------------------

def check_twin(model: torch.nn.Module, ds: FashionMNIST, cfg: CheckConfig, device: torch.device) -> dict:
    from .twin.infer import ManualNet, state_dict_to_numpy
    x, y = _test_set(ds, cfg)
    dev = _logits(model, x, device)
    net = ManualNet(model.config, state_dict_to_numpy({k: v.cpu() for k, v in model.state_dict().items()}))
    mine = np.asarray(net.forward(x), np.float32)
    agree = float((dev.argmax(1) == mine.argmax(1)).mean())
    _require(agree >= cfg.twin_agreement, f"the NumPy twin agrees with the {device.type} logits on {agree:.4f} "
             f"of the labels (< {cfg.twin_agreement})")
    return {"agreement": round(agree, 5), "max_logit_diff": float(np.abs(dev - mine).max()),
            "accuracy_device": float((dev.argmax(1) == y).mean()), "accuracy_twin": float((mine.argmax(1) == y).mean()),
            "images": int(len(x))}


# --- the whole check --------------------------------------------------------------------------

def run_checks(ds: FashionMNIST, cfg: CheckConfig, say: Say = lambda s: None) -> dict:
    """Every check in order; returns the results file's dict (see the module docstring)."""
    started = time.perf_counter()
    device = resolve_device(cfg.device)  # a device this machine lacks: one sentence, exit 2
    names = list(cfg.presets) or default_presets()
    for n in names:
        if n not in PRESETS:
            raise ConfigError(f"unknown preset {n!r}")
    checks, demo = [], {}

    def train_one(name: str) -> dict:
        figures, model = train_preset(name, ds, cfg, device)
        demo.setdefault("model", model)  # the first preset (the demo) feeds the later checks
        if name == names[0]:
            _require(figures["best_test_accuracy"] >= cfg.require,
                     f"{name} reached {figures['best_test_accuracy']:.2%}, below the required {cfg.require:.0%}")
        return figures

    for name in names:
        checks.append(_check(f"train {name}", lambda n=name: train_one(n), say))
    model = demo.get("model")
    for dtype in (torch.bfloat16, torch.float16):
        label = f"autocast {str(dtype).replace('torch.', '')}"
        checks.append(_check(label, (lambda d=dtype: check_autocast(model, d, ds, cfg, device)) if model is not None
                             else _skip_for("no trained model (training failed)"), say))
    checks.append(_check("twin vs device logits", (lambda: check_twin(model, ds, cfg, device)) if model is not None
                         else _skip_for("no trained model (training failed)"), say))
    results = None
    if cfg.bench:
        got = {}

        def bench() -> dict:
            got["results"] = bench_rows(ds, cfg, device, say)
            return check_bench_rows(got["results"], cfg)
        checks.append(_check("benchmark rows", bench, say))
        results = got.get("results")
    if results is None:  # no benchmark: a results file all the same, with the machine block
        results = _empty_results(device)
    failed = [c["name"] for c in checks if c["status"] == "failed"]
    results[SCHEMA_KEY] = {"device": device.type, "config": {k: list(v) if isinstance(v, tuple) else v
                                                             for k, v in asdict(cfg).items()},
                           "checks": checks, "ok": not failed, "failed": failed,
                           "seconds": round(time.perf_counter() - started, 1)}
    results["label"] = f"gpu_check on {results['machine'].get('gpu') or results['machine'].get('cpu')} ({device.type})"
    return results


def _skip_for(why: str):
    def fn():
        raise _Skip(why)
    return fn


def _empty_results(device: torch.device) -> dict:
    """The results file's frame without benchmark rows: one unavailable row saying why."""
    from .bench.harness import describe_machine, loadavg
    from .bench.results import SCHEMA
    from .device import available_devices
    machine = describe_machine(torch.get_num_threads(), available_devices(), loadavg())
    row = {"impl": "pytorch", "device": device.type, "work": "inference", "batch_size": 1, "threads": None,
           "median_s": None, "min_s": None, "max_s": None, "gflops": None, "peak_share": None,
           "available": False, "reason": "not run: gpu_check --no-bench"}
    return {"schema": SCHEMA, "created": machine["date"], "machine": machine, "model": None, "settings": {},
            "peak": [], "rows": [row], "headline": None}


def quick(cfg: CheckConfig) -> CheckConfig:
    """Small budgets for a test on the CPU: 2,000 training images, one epoch, 500 test
    images, batch 256 rows only. `require` is left to the caller."""
    return replace(cfg, train_limit=2000, max_epochs=1, train_budget_s=60.0, test_limit=500,
                   bench_batches=(256,))
