"""Timing primitives and what the figures are measured against: FLOP counts, this machine's
matmul peak, its BLAS libraries and the machine block of a results file.

Method: warm-up runs, then torch.utils.benchmark.Timer's blocked_autorange for the timed stage
(`time_runs`; medians of its blocks), the clock read only after GPU work is synchronized
(`sync_for`). A row too slow for its limit is found by doing a little of it (`probe`, which
raises `Skip`). FLOPs are counted analytically from the layer plan (2*in*out per linear,
2*k*k*cin*cout*H*W per conv, per image), and the fp32 peak is a 2048x2048 torch matmul measured
in the same run.

Left out: what is timed (impls.py) and in which order (run.py); FLOPs of elementwise layers
(activations, pooling, normalization: O(activations), small next to the matmuls).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import itertools
import os
import platform
import re
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from ..data import IMAGE_SIZE
from ..device import machine_info
from ..models import ModelConfig, layer_plan


# --- FLOPs from the layer plan ---------------------------------------------------------------

def forward_flops(cfg: ModelConfig) -> int:
    """Multiply-adds x 2 of one image's forward pass: linear and conv layers only."""
    flops, size = 0, IMAGE_SIZE
    for spec in layer_plan(cfg):
        a = spec.args
        if spec.kind == "linear":
            flops += 2 * a["in"] * a["out"]
        elif spec.kind == "conv":
            # stride 1 and padding k//2 with odd k: the map keeps its size
            flops += 2 * a["kernel"] ** 2 * a["in"] * a["out"] * size * size
        elif spec.kind == "pool":
            size //= a["size"]
    return flops


# --- timing -------------------------------------------------------------------------------

def sync_for(device: torch.device) -> Callable[[], None]:
    """What waits for `device` to finish its queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        return torch.cuda.synchronize
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


def time_runs(fn: Callable[[], Any], sync: Callable[[], None], warmup: int, min_repeats: int,
              max_repeats: int, budget_s: float | None) -> list[float]:
    """Warm up, then time repeated runs; returns seconds per run, one figure per timed block.

    budget_s=None: exactly `warmup` burn-in runs and `min_repeats` timed ones, one run each.
    Otherwise torch.utils.benchmark.Timer.blocked_autorange times the row: it sizes blocks of
    runs (a fast call is repeated inside a block, so clock overhead vanishes), runs blocks for
    about budget_s (at most max_repeats first-run times: more adds time, not certainty) and
    gives each block's seconds per run; a row with fewer blocks than min_repeats gets more
    single runs. The Timer keeps this process's thread count (its default is one thread) and
    reads the clock through `sync` (GPU kernels run asynchronously). A run much slower than the
    budget is itself the first sample, and gets fewer repeats.
    """
    import logging
    # torch.utils.benchmark imports cpp_extension, which warns about a missing CUDA toolkit
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils.benchmark import Timer

    def once() -> float:
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t0

    if budget_s is None:
        for _ in range(warmup):
            once()
        return [once() for _ in range(min_repeats)]
    first = once()
    if first > budget_s * 2:
        # a run of seconds: one-time costs are lost in it, so the first run counts, and
        # more only while the budget lasts (a busy machine can make such rows very slow)
        return [first] + [once() for _ in range(min(min_repeats - 1, int(budget_s * 4 / first)))]
    for _ in range(warmup - 1):
        once()

    def clock() -> float:
        sync()
        return time.perf_counter()
    timer = Timer("fn()", globals={"fn": fn}, timer=clock, num_threads=torch.get_num_threads())
    times = list(timer.blocked_autorange(min_run_time=min(budget_s, max_repeats * first)).times)
    return times + [once() for _ in range(min_repeats - len(times))]


class Skip(Exception):
    """A row whose one run would outlast the row limit: reported with the estimate, not timed."""


def probe(steps: Iterable[Callable[[], Any]], total: int, sync: Callable[[], None], sample: int,
          limit: float) -> None:
    """Run the first `sample` of a run's `total` equal steps and extrapolate; Skip when one
    run would outlast `limit` seconds.

    A FLOP bound cannot see Python overhead or slow small convolutions (a LeNet reaches a few
    % of peak), so rows are sized by doing a little of them. The probe doubles as burn-in.
    """
    sample = max(1, min(sample, total))
    sync()
    t0 = time.perf_counter()
    for step in itertools.islice(steps, sample):
        step()
    sync()
    est = (time.perf_counter() - t0) * total / sample
    if est > limit:
        raise Skip(f"skipped: one run would take about {est:.1f} s (row limit {limit:g} s)")


@contextlib.contextmanager
def cpu_threads(n: int):
    """torch's intra-op pool and numpy's BLAS both limited to n threads, restored afterwards."""
    try:
        from threadpoolctl import threadpool_limits  # comes with scikit-learn
    except ImportError:  # a GPU machine with PyTorch and NumPy only (gpu_check): torch's pool alone
        threadpool_limits = None
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n, user_api="blas") if threadpool_limits else contextlib.nullcontext():
            yield
    finally:
        torch.set_num_threads(before)


# --- what the figures are compared with: the matmul peak, the BLAS, the machine ------------------

def measure_peak(device: torch.device, size: int = 2048, repeats: int = 7) -> dict:
    """This machine's fp32 matmul rate: median of size x size @ size x size with torch."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(device)
    b = torch.randn(size, size, generator=gen).to(device)
    times = time_runs(lambda: torch.mm(a, b), sync_for(device), warmup=2, min_repeats=repeats,
                      max_repeats=repeats, budget_s=None)
    med = statistics.median(times)
    # "highest" = true fp32; "high"/"medium" would let a GPU use TF32 and inflate the peak
    return {"median_s": med, "min_s": min(times), "gflops": 2 * size ** 3 / med / 1e9,
            "size": size, "repeats": len(times),
            "matmul_precision": torch.get_float32_matmul_precision()}


def numpy_matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """The same matmul through numpy's BLAS: tells whether the NumPy rows start from a fast BLAS."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    times = time_runs(lambda: a @ b, lambda: None, warmup=1, min_repeats=repeats,
                      max_repeats=repeats, budget_s=None)
    return 2 * size ** 3 / statistics.median(times) / 1e9


def blas_info() -> dict:
    """Which BLAS the NumPy rows stand on, and torch's: threadpoolctl lists the libraries
    loaded in this process (numpy's OpenBLAS and the kernel it picked, torch's OpenMP); torch's
    own BLAS is linked in and named by its build config. Thread and core-type variables are
    read, never changed (OPENBLAS_CORETYPE forces an OpenBLAS kernel: it matters here)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # PyTorch and NumPy only (gpu_check): no list of the loaded libraries
        def threadpool_info():
            return []
    keep = ("user_api", "internal_api", "prefix", "version", "architecture", "threading_layer",
            "num_threads")
    infos = threadpool_info()
    libs = [{k: d.get(k) for k in keep if k in d} | {"library": Path(d.get("filepath", "")).name}
            for d in infos]
    # numpy's wheel ships its BLAS in numpy.libs/; scipy or torch may load others beside it
    numpy_blas = next((lib for lib, d in zip(libs, infos)
                       if d.get("user_api") == "blas" and "numpy" in d.get("filepath", "")), None)
    found = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                      "MKL_NUM_THREADS") if k in os.environ}
    return {"numpy": numpy_blas, "torch": found.group(1) if found else None,
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "libraries": libs, "env": env}


def loadavg() -> list[float] | None:
    """The 1, 5 and 15-minute load averages (None where the platform has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # not on every platform
        return None


def describe_machine(all_threads: int, devices: dict, load_before: list[float] | None) -> dict:
    """The machine block of a results file: CPU, cores, GPU, versions, BLAS, date, devices."""
    machine = machine_info()
    now = _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")
    machine.update(numpy=np.__version__, date=now, threads_all=all_threads, blas=blas_info(),
                   host=platform.node(), devices=devices,
                   # other jobs on the machine during the run: what to read the spread against
                   load_average={"before": load_before, "after": loadavg()})
    return machine
