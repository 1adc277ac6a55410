"""The run loop: implementation x device x work x batch size (x CPU threads) -> result rows,
then the headline, into one results dict (the schema is results.py's).

What one run measures, for one model (default: the 784-128-10 MLP of mlp-seed000):

  implementations  pytorch, onnxruntime, manual-numpy, manual-torch, dataloader (impls.py)
  devices          cpu always; cuda and mps when present, else rows with available=false and why
  precisions       fp32 everywhere; PyTorch inference also in bf16 (CPUs with AMX or AVX512-BF16, CUDA) and fp16
                   (CUDA); where the hardware lacks one, rows with available=false and why
  work             inference (all 10,000 test images), latency (one image), train_step (forward,
                   backward, Adam step on one batch), epoch (one pass over the 60,000 training
                   images through the real trainer)
  batch sizes      1, 32, 256, 10,000; CPU threads 1 vs all
  the headline     inference over the 10,000 test images on the CPU, the implementations
                   interleaved round by round, and the issue's goals read from it (`goals`)

Every timed row also says whether it computes the same thing: its label agreement with fp32
PyTorch on the 10,000 test images and its max |logit difference| (`agreement`), so a faster
row never hides a wrong one.

The plan (`plan`) is made before anything is timed, so the run can say how many rows it will
deliver; `run_benchmark` reports progress as events (see events.py): the plan first, a step
before each stage, one event per finished row. Every figure carries its GFLOP/s and its share of
this machine's fp32 matmul peak, measured in the same run (training = 3x forward FLOPs, since
backward is about 2x forward).

Left out: how each implementation's runs are timed (impls.py), the timing primitives
(harness.py), saving and reading results files (results.py).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch

from ..data import FashionMNIST
from ..device import available_devices
from ..errors import WorkbenchError
from .config import DEVICES, IMPLS, PRECISIONS, BenchConfig
from .harness import (Skip, cpu_threads, describe_machine, forward_flops, loadavg, measure_peak,
                      numpy_matmul_gflops)
from .impls import IMPL_CLASSES, Impl
from .model import BenchModel
from .results import SCHEMA, default_label


@dataclass
class RunContext:
    """What every row of one run shares: the model, the data converted once, the peaks."""
    bm: BenchModel
    data: FashionMNIST
    cfg: BenchConfig
    flops: int                    # forward FLOPs of one image
    x_test: torch.Tensor          # (10000, 1, 28, 28) float32 in [0, 1], converted once
    peaks: dict[tuple[str, int | None], float] = field(default_factory=dict)
    _train: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    step_s: dict[tuple, float] = field(default_factory=dict)  # train_step medians, for epoch estimates
    agree: dict[tuple, dict] = field(default_factory=dict)    # (impl, device, precision) -> agreement
    _reference: np.ndarray | None = None

    def reference(self) -> np.ndarray:
        """fp32 PyTorch logits of the test images: the saved module as it is, on the CPU."""
        if self._reference is None:
            from ..models import build_model
            model = build_model(self.bm.config)
            model.load_state_dict(self.bm.state_dict)
            model.eval()
            with torch.inference_mode():
                self._reference = torch.cat([model(xb) for xb in self.x_test.split(AGREE_CHUNK)]).numpy()
        return self._reference

    def train_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first n training images as float32 and their labels, converted once."""
        from ..evaluate import images_to_tensor
        if n not in self._train:
            self._train[n] = (images_to_tensor(self.data.x_train[:n]).contiguous(),
                              torch.from_numpy(self.data.y_train[:n].astype(np.int64)))
        return self._train[n]

    def peak(self, device: str, threads: int) -> float | None:
        return self.peaks.get((device, threads if device == "cpu" else None))


@dataclass
class Group:
    """Rows timed by one implementation instance: one device, one CPU thread count. An
    unavailable implementation x device is one group whose rows all carry `unavailable`."""
    impl: str
    device: str
    threads: int | None
    pairs: list[tuple[str, int]]  # (work, batch size), in the order they are timed
    unavailable: str | None = None
    precision: str = "fp32"


def plan(cfg: BenchConfig, avail: dict[str, str | None], all_threads: int) -> list[Group]:
    """Every row the run will deliver, grouped as the loop runs them."""
    groups = []
    for d in cfg.devices:
        for name in cfg.impls:
            cls = IMPL_CLASSES[name]
            for prec, why_not in cls.precisions(d):
                if prec not in cfg.precisions:
                    continue
                pairs = cls.planned(cfg, prec)
                reason = avail.get(d) or cls.unavailable(d) or why_not
                if reason:
                    groups.append(Group(name, d, None, pairs, unavailable=reason, precision=prec))
                    continue
                by_threads: dict[int, list[tuple[str, int]]] = {}
                for w, b in pairs:
                    for t in cls.thread_counts(cfg, d, w, all_threads):
                        by_threads.setdefault(t, []).append((w, b))
                groups += [Group(name, d, t, todo, precision=prec) for t, todo in sorted(by_threads.items())]
    return groups


AGREE_CHUNK = 1000  # images per forward call of the agreement check: a CNN's maps stay small


def agreement(ctx: RunContext, impl: Impl) -> dict:
    """{"agreement", "max_logit_diff", "agreement_images"} of one implementation at one
    precision against fp32 PyTorch, once per run. A slow implementation (the NumPy twin of a
    CNN) is compared on the chunks that fit the epoch limit, and says how many images that was."""
    key = (impl.name, impl.device.type, impl.precision)
    if key not in ctx.agree:
        ref, outs, t0 = ctx.reference(), [], time.perf_counter()
        for xb in ctx.x_test.split(AGREE_CHUNK):
            outs.append(impl.outputs(xb))
            if time.perf_counter() - t0 > ctx.cfg.max_epoch_s:
                break
        got = np.concatenate(outs)
        ref = ref[:len(got)]
        ctx.agree[key] = {"agreement": float((got.argmax(1) == ref.argmax(1)).mean()),
                          "max_logit_diff": float(np.abs(got - ref).max()), "agreement_images": len(got)}
    return ctx.agree[key]


def _row(impl: str, device: str, work: str, batch: int, threads: int | None, precision: str = "fp32",
         **kw) -> dict:
    row = {"impl": impl, "device": device, "precision": precision, "work": work, "batch_size": batch,
           "threads": threads, "median_s": None, "min_s": None, "max_s": None, "repeats": 0,
           "images": None, "gflops": None, "peak_share": None, "available": True,
           "agreement": None, "max_logit_diff": None}
    row.update(kw)
    return row


def _images(ctx: RunContext, work: str, batch: int) -> int:
    return {"inference": len(ctx.x_test), "latency": 1, "train_step": batch,
            "epoch": len(ctx.data.y_train)}[work]


def measure_row(ctx: RunContext, impl: Impl, work: str, batch: int, threads: int) -> dict:
    """Time one implementation x work x batch size on impl's device; one result row."""
    images = _images(ctx, work, batch)
    flops = ctx.flops * images * (1 if work in ("inference", "latency") else 3)
    peak = ctx.peak(impl.device.type, threads)
    base = dict(impl=impl.name, device=impl.device.type, work=work, batch=batch, threads=threads,
                precision=impl.precision)
    limit = ctx.cfg.max_epoch_s if work == "epoch" else ctx.cfg.max_run_s
    if peak and flops / (peak * 1e9) > limit:
        return _row(**base, images=images,
                    reason=f"skipped: one run needs at least {flops / (peak * 1e9):.1f} s at this "
                           f"machine's matmul peak (row limit {limit:g} s)")
    refused = impl.refuses(work, batch)
    if refused:
        return _row(**base, available=False, reason=refused)
    try:
        times, extra = impl.measure(ctx, work, batch, threads)
    except Skip as skip:
        return _row(**base, images=images, reason=str(skip))
    med = statistics.median(times)
    if work == "train_step":
        ctx.step_s[(impl.name, impl.device.type, threads, batch)] = med
    extra.update(agreement(ctx, impl))  # the model as this row ran it; training rows too
    gflops = flops / med / 1e9
    return _row(**base, median_s=med, min_s=min(times), max_s=max(times), repeats=len(times),
                images=images, gflops=gflops, peak_share=gflops / peak if peak else None, **extra)


def row_name(impl: str, precision: str = "fp32") -> str:
    """How the headline and goals name a row: 'pytorch', 'pytorch bf16'."""
    return impl if precision == "fp32" else f"{impl} {precision}"


def _headline(ctx: RunContext, rows: list[dict], all_threads: int, say) -> dict | None:
    """The interleaved 10k-inference comparison, for the implementations (and precisions) whose
    own row shows it fits the time budget (10 rows' worth); None when none does or the CPU was
    not timed."""
    n, cfg = len(ctx.x_test), ctx.cfg
    own = {row_name(r["impl"], r.get("precision", "fp32")): r["median_s"] for r in rows
           if r["device"] == "cpu" and r["work"] == "inference" and r["batch_size"] == n
           and r["threads"] == all_threads and r["median_s"] is not None and IMPL_CLASSES[r["impl"]].interleaved}
    if not cfg.headline_rounds or not own:
        return None
    rounds = min(cfg.headline_rounds, int(10 * cfg.row_budget_s / sum(own.values())) - 1)
    if rounds < 3:
        return None
    say("the headline: inference over the 10,000 test images, implementations interleaved")
    with cpu_threads(all_threads):
        headline = interleaved_inference(ctx, list(own), rounds, pause_s=cfg.turn_pause_s)
    headline["threads"] = all_threads
    for r in rows:  # the others (the DataLoader: ~100x slower): their own row's median is as good
        if (not IMPL_CLASSES[r["impl"]].interleaved and r["device"] == "cpu" and r["work"] == "inference"
                and r["median_s"] is not None):
            headline["median_s"].setdefault(row_name(r["impl"], r.get("precision", "fp32")), r["median_s"])
    base = headline["median_s"].get("pytorch")
    headline["ratio_to_pytorch"] = {k: v / base for k, v in headline["median_s"].items()} if base else {}
    return headline


def interleaved_inference(ctx: RunContext, impls: list[str], rounds: int, pause_s: float = 0.0) -> dict:
    """The issue's headline figure, robust to a shared machine: inference over all 10,000 test
    images in one batch on the CPU, the implementations taking turns round by round, so a
    neighbour's job that starts or stops mid-run slows all of them alike. Medians per impl.

    impls: row names ('pytorch', 'pytorch bf16'). pause_s: the CPU idles this long before each
    turn. Without it a turn started while the previous implementation's thread pool (NumPy's
    BLAS, PyTorch's, ONNX Runtime's) still spun, waiting for more work, on the cores it needed:
    on 2 cores PyTorch took 2-3x its own row's time."""
    runners = {}
    for name in impls:
        impl_name, _, precision = name.partition(" ")
        cls = IMPL_CLASSES[impl_name]
        if cls.unavailable("cpu") is None:
            impl = cls(ctx.bm, torch.device("cpu"), ctx.cfg, precision or "fp32")
            x = impl.to_input(ctx.x_test)
            runners[name] = (lambda impl=impl, x=x: impl.forward(x))
    times: dict[str, list[float]] = {n: [] for n in runners}
    for r in range(rounds + 1):  # round 0 is the warm-up
        for name, fn in runners.items():
            if pause_s:
                time.sleep(pause_s)
            t0 = time.perf_counter()
            fn()
            if r:
                times[name].append(time.perf_counter() - t0)
    return {"work": "inference", "device": "cpu", "batch_size": len(ctx.x_test), "rounds": rounds,
            "pause_s": pause_s, "median_s": {n: statistics.median(t) for n, t in times.items()},
            "min_s": {n: min(t) for n, t in times.items()}}


GOALS = {  # issue 13: 10k-image inference of the 784-128-10 MLP, measured in one run
    "pytorch_vs_onnxruntime": "fp32 PyTorch within 1.1x of ONNX Runtime's time",
    "bf16_speedup": "a bf16 row >= 3x faster than fp32, with >= 99.9% label agreement",
    "vs_dataloader": ">= 50x faster than the seed-style DataLoader loop (fp32)",
}


def _inference_s(headline: dict | None, rows: list[dict], *names: str) -> tuple[list[float | None], str]:
    """Implementations' (and precisions') times for the 10,000 test images on the CPU, all from
    the interleaved headline when it has them all, else each one's fastest own inference row."""
    t = (headline or {}).get("median_s", {})
    if all(t.get(n) for n in names):
        return [t[n] for n in names], "the interleaved headline"
    out = []
    for name in names:
        own = [r["median_s"] for r in rows if row_name(r["impl"], r.get("precision", "fp32")) == name
               and r["device"] == "cpu" and r["work"] == "inference" and r["median_s"] is not None]
        out.append(min(own) if own else None)
    return out, "each one's fastest inference row"


def goals(headline: dict | None, rows: list[dict]) -> dict:
    """The issue's three goals, read from one run: the interleaved headline's times, else the
    rows' own (fastest thread count). Each {"goal", "value", "met" (true/false, null = not
    measured), "note" (the figures, or why not measured)}."""
    def goal(key, value, met, note):
        return key, {"goal": GOALS[key], "value": value, "met": met, "note": note}


    def skipped(name, what):
        why = next((r.get("reason") for r in rows if row_name(r["impl"], r.get("precision", "fp32")) == name
                    and r["device"] == "cpu" and r["work"] == "inference" and r.get("reason")), None)
        return f"{what}: {why.removeprefix('not measured: ')}" if why else f"{what}: not timed in this run"
    (pt, ort), where = _inference_s(headline, rows, "pytorch", "onnxruntime")
    out = []
    if pt and ort:
        r = pt / ort
        out.append(goal("pytorch_vs_onnxruntime", r, r <= 1.1, f"PyTorch {_ms(pt)} vs ONNX Runtime "
                        f"{_ms(ort)}: {r:.2f}x its time ({where})"))
    else:
        out.append(goal("pytorch_vs_onnxruntime", None, None, skipped("pytorch" if not pt else "onnxruntime",
                                                                      "PyTorch" if not pt else "ONNX Runtime")))
    (pt, bf), where = _inference_s(headline, rows, "pytorch", "pytorch bf16")
    if pt and bf:
        agree = next((r["agreement"] for r in rows if r["device"] == "cpu" and r.get("precision") == "bf16"
                      and r.get("agreement") is not None), None)
        speed = pt / bf
        out.append(goal("bf16_speedup", speed, speed >= 3 and agree is not None and agree >= 0.999,
                        f"bf16 {_ms(bf)} vs fp32 {_ms(pt)}: "
                        + (f"{speed:.2f}x faster" if speed >= 1 else f"{1 / speed:.1f}x slower") + f" ({where}), label "
                        f"agreement " + (f"{agree:.2%}" if agree is not None else "unknown")))
    else:
        out.append(goal("bf16_speedup", None, None, skipped("pytorch bf16", "bf16") if not bf else
                        skipped("pytorch", "PyTorch fp32")))
    (pt, dl), where = _inference_s(headline, rows, "pytorch", "dataloader")
    if pt and dl:
        r = dl / pt
        out.append(goal("vs_dataloader", r, r >= 50, f"DataLoader loop {_ms(dl)} vs PyTorch {_ms(pt)}: "
                        f"{r:.0f}x faster ({where})"))
    else:
        out.append(goal("vs_dataloader", None, None, skipped("dataloader", "the DataLoader loop") if pt
                        else skipped("pytorch", "PyTorch fp32")))
    return dict(out)


def _ms(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 0.1 else f"{s * 1e3:.0f} ms"


def run_benchmark(bm: BenchModel, data: FashionMNIST, cfg: BenchConfig | None = None,
                  progress: Callable[[dict], None] | None = None, label: str | None = None) -> dict:
    """Every implementation x device x work x batch (x threads on the CPU) -> a results dict.

    Devices or implementations that cannot run still get their rows, with available=false
    and the reason, so a results table always has the same shape. `progress` receives the
    events of events.py: the plan, a step before each stage, each finished row.
    """
    from ..evaluate import images_to_tensor
    cfg = cfg or BenchConfig()
    emit = progress or (lambda event: None)

    def say(msg: str) -> None:
        emit({"event": "step", "message": msg})
    for name in cfg.impls:
        if name not in IMPL_CLASSES:
            raise WorkbenchError(f"unknown implementation {name!r}; choose from {', '.join(IMPLS)}")
    for d in cfg.devices:
        if d not in DEVICES:
            raise WorkbenchError(f"unknown device {d!r}; choose from {', '.join(DEVICES)}")
    all_threads = torch.get_num_threads()
    avail = available_devices()
    started = time.perf_counter()
    load_before = loadavg()
    ctx = RunContext(bm=bm, data=data, cfg=cfg, flops=forward_flops(bm.config),
                     x_test=images_to_tensor(data.x_test).contiguous())
    groups = plan(cfg, avail, all_threads)
    total = sum(len(g.pairs) for g in groups)
    emit({"event": "plan", "total": total, "message": f"benchmarking {bm.name} ({bm.source})"})

    peaks = []
    cpu_counts = sorted({all_threads if t == 0 else min(t, all_threads) for t in cfg.threads} |
                        {all_threads})
    for d in cfg.devices:
        if avail.get(d) is not None:
            continue
        for t in (cpu_counts if d == "cpu" else [all_threads]):
            say(f"measuring the fp32 matmul peak on {d}" + (f", {t} threads" if d == "cpu" else ""))
            with cpu_threads(t):
                p = measure_peak(torch.device(d), cfg.peak_size, cfg.peak_repeats)
            p.update(device=d, threads=t if d == "cpu" else None)
            peaks.append(p)
            ctx.peaks[(d, t if d == "cpu" else None)] = p["gflops"]

    rows: list[dict] = []

    def add(row: dict) -> None:
        rows.append(row)
        emit({"event": "row", "done": len(rows), "total": total, "row": row})

    for g in groups:
        if g.unavailable:
            for w, b in g.pairs:
                add(_row(g.impl, g.device, w, b, None, g.precision, available=False, reason=g.unavailable))
            continue
        with cpu_threads(g.threads):
            torch.manual_seed(cfg.seed)
            try:
                impl = IMPL_CLASSES[g.impl](bm, torch.device(g.device), cfg, g.precision)
            except (WorkbenchError, RuntimeError, ValueError) as exc:  # an export that fails, say
                impl = exc
            for w, b in g.pairs:
                say(f"{g.impl}{'' if g.precision == 'fp32' else ' ' + g.precision} on {g.device}" +
                    (f" ({g.threads} threads)" if g.device == "cpu" else "") + f": {w}, batch {b}")
                try:
                    if isinstance(impl, Exception):
                        raise impl
                    row = measure_row(ctx, impl, w, b, g.threads)
                except (WorkbenchError, RuntimeError, ValueError) as exc:
                    # one row that breaks (a GPU out of memory, say) must not cost the
                    # rest of the run: it is reported as such
                    row = _row(g.impl, g.device, w, b, g.threads, g.precision, available=False,
                               reason=f"failed: {type(exc).__name__}: {str(exc)[:200]}")
                add(row)

    headline = _headline(ctx, rows, all_threads, say)

    machine = describe_machine(all_threads, avail, load_before)
    if cfg.numpy_peak and "cpu" in cfg.devices:
        say("measuring numpy's matmul rate")
        with cpu_threads(all_threads):
            machine["numpy_matmul_gflops"] = numpy_matmul_gflops(cfg.peak_size)
    return {
        "schema": SCHEMA,
        "label": label or default_label(machine),
        "created": machine["date"],
        "machine": machine,
        "model": bm.describe(),
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
        "peak": peaks,
        "rows": rows,
        "headline": headline,
        "goals": goals(headline, rows),
        "seconds": time.perf_counter() - started,
    }
