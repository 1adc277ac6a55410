"""The price of a job before it starts: memory and time, from the layer plan alone.

Nothing is allocated to price a run: the layer plan (models.layer_plan) gives every layer's
output size and multiply-adds per image, so a 2,048-channel 1x1 conv at batch 60,000 is priced
(and refused) from arithmetic, not by trying it.

  parameters    plan_parameters; weights + gradients + optimizer state (Adam/AdamW: two
                moments, SGD with momentum: one) at 4 bytes each
  activations   what backward keeps: every layer's output for the batch, plus the largest
                layer once more for the gradient flowing back; evaluation passes run
                forward only at predict_logits' batch of 2,000
  data          the training images as one float32 tensor (train.train keeps them in memory)
  base          the trainer process before any of that: Python, PyTorch, MLflow's client
  time          FLOPs per epoch (forward 2 x multiply-adds per image, training 3x that) over
                this server's measured fp32 matmul rate times an efficiency per layer kind,
                plus a cost per optimizer step and the start-up; calibrated on the presets
                by tests/test_cost.py, which holds each estimate to a measured run

The constants below were fitted on a 2-core AMD EPYC (AVX-512, one torch thread) with
`python scripts/calibrate_cost.py`; the matmul rate is measured on each server once and cached
(artifacts/cache/calibration.json), so a faster machine gets shorter estimates.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from .data import ARTIFACTS
from .models import IMAGE_SIZE, layer_plan, plan_parameters, resblock_has_shortcut

MB = 1024 * 1024
BASE_MB = 1130.0         # a trainer process before its model: Python, torch, MLflow's client and store
                         # (875 MB RSS measured), the uint8 dataset, and ~250 MB torch keeps while training
EVAL_BATCH = 2000        # evaluate.predict_logits
STEP_OVERHEAD_S = 1.3e-3   # Python, the optimizer and the autograd graph per step, on top of the FLOPs
START_S = 4.0            # a trainer process: imports, the dataset, the store
# share of the matmul peak each layer kind reaches in training (fitted, see the docstring):
# dense matmuls come closest; small convolutions and the elementwise layers around them far less
EFFICIENCY = {"linear": 0.5, "conv": 0.2, "conv-bf16": 0.35}
ACT_FACTOR = 3.0         # measured peaks over the saved maps: autocast and channels_last keep copies
CALIBRATION_FILE = "calibration.json"


@dataclass(frozen=True)
class Price:
    parameters: int
    weights_mb: float       # weights + gradients + optimizer state
    activations_mb: float   # what one training step keeps for backward, at the batch size
    data_mb: float
    peak_mb: float          # the estimated peak RSS of the trainer process
    gflops_per_epoch: float
    seconds: float          # the estimated wall time of the whole run on this server
    epochs: int

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 1) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def sentence(self) -> str:
        from .views.format import format_seconds
        return f"≈ {format_mb(self.peak_mb)}, ≈ {format_seconds(self.seconds)} here"


def format_mb(mb: float) -> str:
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"


# --- the layer walk ---------------------------------------------------------------------------

def layer_costs(model_config) -> list[dict[str, Any]]:
    """Per layer of the plan: output values per image, multiply-adds per image, and its kind."""
    c, h, w = 1, IMAGE_SIZE, IMAGE_SIZE
    flat = None  # width once flattened
    out = []
    for s in layer_plan(model_config):
        a, macs, kind = s.args, 0, s.kind
        if s.kind == "flatten":
            flat = c * h * w
        elif s.kind == "linear":
            macs, flat = a["in"] * a["out"], a["out"]
        elif s.kind == "conv":
            c = a["out"]
            macs = a["in"] * a["out"] * a["kernel"] ** 2 * h * w
        elif s.kind == "pool":
            h, w = h // a["size"], w // a["size"]
        elif s.kind == "resblock":
            h, w = h // a["stride"], w // a["stride"]
            macs = (a["in"] * a["out"] * 9 + a["out"] * a["out"] * 9) * h * w
            if resblock_has_shortcut(a):
                macs += a["in"] * a["out"] * h * w
            c, kind = a["out"], "conv"
        elif s.kind == "gap":
            flat = c
        size = flat if flat is not None else c * h * w
        # a residual block keeps about six maps of its output for backward (two convs, two
        # batchnorms, the sum, the ReLU), two more with a shortcut
        saved = size * (8 if s.kind == "resblock" and resblock_has_shortcut(a) else 6 if s.kind == "resblock" else 1)
        out.append({"name": s.name, "kind": kind, "out": size, "saved": saved, "macs": macs})
    return out


# --- this server's speed ------------------------------------------------------------------------

def matmul_gflops() -> float:
    """This server's one-thread fp32 matmul rate (GFLOP/s), measured once and cached per CPU."""
    from .device import machine_info
    cpu = str(machine_info().get("cpu") or "unknown")
    path = ARTIFACTS / "cache" / CALIBRATION_FILE
    try:
        cached = json.loads(path.read_text())
        if cached.get("cpu") == cpu and cached.get("gflops", 0) > 0:
            return float(cached["gflops"])
    except (OSError, ValueError):
        pass
    gflops = _measure_gflops()
    from .files import write_json_atomic
    write_json_atomic(path, {"cpu": cpu, "gflops": gflops, "measured": time.time()})
    return gflops


def _measure_gflops(size: int = 1024, repeats: int = 5) -> float:
    import statistics
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a queued training runs on one thread (execute.queue_threads on 2 cores)
    try:
        a, b = torch.randn(size, size), torch.randn(size, size)
        torch.mm(a, b)
        times = []
        for _ in range(repeats):
            # this thread's CPU seconds, not the wall clock: measured while the server is busy
            # (a class at work, a test suite) the wall clock would price every run as if the
            # neighbours' share of the core were the run's own, for as long as the cache lives
            t0 = time.thread_time()
            torch.mm(a, b)
            times.append(time.thread_time() - t0)
    finally:
        torch.set_num_threads(before)
    return 2 * size ** 3 / statistics.median(times) / 1e9


# --- the price --------------------------------------------------------------------------------

def price(spec, gflops: float | None = None) -> Price:
    """The price of training `spec` (a RunSpec or its dict) on this server."""
    from .spec import RunSpec
    spec = RunSpec.from_dict(spec) if not isinstance(spec, RunSpec) else spec
    t = spec.train
    layers = layer_costs(spec.model)
    params = plan_parameters(spec.model)
    states = {"adam": 2, "adamw": 2}.get(t.optimizer, 1 if t.momentum else 0)
    weights_mb = params * 4 * (2 + states) / MB
    saved = sum(l["saved"] for l in layers)
    widest = max(l["out"] for l in layers)
    batch = min(t.batch_size, spec.train_images())
    # backward holds the saved maps plus the gradient of the widest one (x2: input and output grads)
    act_mb = (saved + 2 * widest) * batch * 4 / MB
    eval_mb = 2 * widest * min(EVAL_BATCH, 10_000) * 4 / MB
    # the training images as float32, converted through a second, transient copy
    data_mb = 2 * spec.train_images() * IMAGE_SIZE * IMAGE_SIZE * 4 / MB
    peak = BASE_MB + data_mb + weights_mb * 1.5 + max(act_mb * ACT_FACTOR, eval_mb * 1.2)

    rate = (gflops or matmul_gflops()) * 1e9
    conv = "conv-bf16" if _bf16(spec) else "conv"

    def seconds_per_image(train: bool) -> float:
        return sum(2 * l["macs"] * (3 if train else 1) / (rate * EFFICIENCY[conv if l["kind"] == "conv" else "linear"])
                   for l in layers if l["macs"])
    n_train, n_eval = spec.train_images(), spec.val_images() + (10_000 if spec.watch_test else 0)
    steps = -(-n_train // t.batch_size)
    epoch_s = n_train * seconds_per_image(True) + n_eval * seconds_per_image(False) + steps * STEP_OVERHEAD_S
    if spec.engine == "numpy":
        epoch_s *= 3.0  # the twin's own loops: measured 2-4x PyTorch's time on the same MLP
    total = START_S + t.epochs * epoch_s + 10_000 * seconds_per_image(False)  # + the final test pass
    if t.max_seconds:
        total = min(total, START_S + t.max_seconds + 10_000 * seconds_per_image(False))
    gflops_epoch = sum(2 * l["macs"] for l in layers) * (3 * n_train + n_eval) / 1e9
    return Price(parameters=params, weights_mb=weights_mb, activations_mb=act_mb, data_mb=data_mb,
                 peak_mb=peak, gflops_per_epoch=gflops_epoch, seconds=total, epochs=t.epochs)


def _bf16(spec) -> bool:
    """Will the convolutions run in bf16 (train.py's autocast: CNNs on a CPU that has it)?"""
    if spec.train.precision == "bf16":
        return True
    if spec.train.precision != "auto" or spec.engine != "torch" or spec.model.kind not in ("cnn", "resnet"):
        return False
    from .device import cpu_has_fast_bf16
    return bool(cpu_has_fast_bf16())
