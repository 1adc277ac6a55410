"""Timing harness: implementation x device x work x batch size (x CPU threads).

What it measures, for one model (default: the 784-128-10 MLP of mlp-seed000):

  implementations  pytorch       the nn.Module from models.py, inference_mode, the test set
                                 converted once to one float32 tensor
                   manual-numpy  the NumPy twin (manual.ManualNet, manual.train_numpy)
                   manual-torch  the same explicit math with torch ops (manual.TorchOpsNet),
                                 the twin that can run on a GPU
                   dataloader    "how it is usually done": torchvision-style Dataset with a PIL
                                 image and ToTensor per sample, a DataLoader, the nn.Module
  devices          cpu always; cuda and mps when present, else rows with available=false and why
  work             inference (all 10,000 test images), latency (one image), train_step (forward,
                   backward, Adam step on one batch), epoch (one pass over the 60,000 training
                   images through the real trainer)
  batch sizes      1, 32, 256, 10,000; CPU threads 1 vs all

Method (nanoGPT bench.py: a burn-in stage, then a timed stage, torch.cuda.synchronize() before
reading the clock): warm-up runs, then repeated timed runs; we report median, min and max. GPU
work is synchronized before and after each timed run (torch.cuda / torch.mps .synchronize), and
the host->device copy of the inputs is timed on its own (`transfer_s`) instead of being hidden
in the compute figure. FLOPs are counted analytically from the layer plan (2*in*out per linear,
2*k*k*cin*cout*H*W per conv, per image; training = 3x forward since backward is about 2x
forward), so every figure carries its GFLOP/s and its share of this machine's fp32 matmul peak,
measured in the same run with a 2048x2048 torch matmul.

Every results file carries its machine block (CPU, cores, GPU, torch/numpy versions, BLAS,
date), so a file produced on a GPU box can be loaded (`load_results`, validated) and shown
beside local figures (`merge_results`), each labelled with where it came from.

Deliberately left out: bf16/autocast (all fp32, so FLOP/s compare with the fp32 peak),
torch.compile, pinned memory and non_blocking copies, DataLoader worker processes (the course
projects used num_workers=0), energy, and FLOPs of elementwise layers (activations, pooling,
normalization: O(activations), small next to the matmuls).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from .data import ARTIFACTS, FashionMNIST, IMAGE_SIZE
from .device import available_devices, machine_info
from .errors import WorkbenchError
from .files import write_bytes_atomic
from .models import (ModelConfig, build_model, config_from_dict, config_to_dict, count_parameters,
                     layer_plan, preset, read_checkpoint)

SCHEMA = "fmnist-workbench/bench/1"
IMPLS = ("pytorch", "manual-numpy", "manual-torch", "dataloader")
WORKS = ("inference", "latency", "train_step", "epoch")
DEVICES = ("cpu", "cuda", "mps")
BENCH_DIR = ARTIFACTS / "benchmarks"
DEFAULT_MODEL = ARTIFACTS / "models" / "mlp.pt"
DEFAULT_PRESET = "mlp-seed000"

ROW_KEYS = ("impl", "device", "work", "batch_size", "threads", "median_s", "min_s", "max_s",
            "gflops", "peak_share", "available")


class ResultsFileError(WorkbenchError):
    """A benchmark results file that cannot be read or does not follow the schema."""


@dataclass
class BenchConfig:
    devices: tuple[str, ...] = DEVICES           # unavailable ones still get rows saying why
    impls: tuple[str, ...] = IMPLS
    inference_batches: tuple[int, ...] = (1, 32, 256, 10000)  # the four batch sizes
    train_batches: tuple[int, ...] = (1, 32, 256, 10000)
    epoch_batches: tuple[int, ...] = (64, 256)   # 64: what the presets train with
    dataloader_batches: tuple[int, ...] = (256,)  # ~0.8 s a run: one batch size tells the story
    threads: tuple[int, ...] = (1, 0)            # 0 = all the threads this process has
    epochs: bool = True                          # one-epoch rows (seconds each)
    dataloader_full: bool = True                 # DataLoader over all 10,000 / 60,000 images
    warmup: int = 2                              # burn-in runs before the clock starts
    min_repeats: int = 5
    max_repeats: int = 50
    row_budget_s: float = 0.5                    # timed runs per row: about this much time
    max_run_s: float = 5.0                       # skip a row whose one run would take longer
    max_epoch_s: float = 30.0                    # the same for one epoch: those take seconds anyway
    epoch_repeats: int = 2                       # timed epochs after one warm-up epoch
    peak_size: int = 2048                        # the matmul that measures the fp32 peak
    peak_repeats: int = 7
    numpy_peak: bool = True                      # numpy's own matmul rate, for the BLAS question
    fold_normalization: bool = True              # MLP inference: fold (x-m)/s into fc1, as the twin does
    headline_rounds: int = 15                    # interleaved 10k-inference rounds (0 = none)
    seed: int = 0

    @classmethod
    def quick(cls, **kw) -> "BenchConfig":
        """A few seconds: fewer repeats, no epochs, no DataLoader pass over a whole split."""
        base = cls(inference_batches=(10000,), train_batches=(256,), epoch_batches=(),
                   threads=(1, 0), epochs=False, dataloader_full=False, warmup=1, min_repeats=3,
                   max_repeats=10, row_budget_s=0.1, max_run_s=0.5, peak_size=1024,
                   peak_repeats=3, numpy_peak=False, headline_rounds=5)
        return replace(base, **kw)


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

def _sync_for(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return torch.cuda.synchronize
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


def time_runs(fn: Callable[[], Any], sync: Callable[[], None], warmup: int, min_repeats: int,
              max_repeats: int, budget_s: float | None) -> list[float]:
    """Warm up, then time repeated runs; returns each run's seconds.

    budget_s=None: exactly `warmup` burn-in runs and `min_repeats` timed ones. Otherwise the
    first burn-in run sizes the timed stage so the row takes about budget_s (between
    min_repeats and max_repeats runs); a run much slower than the budget is itself the first
    sample, and gets fewer repeats. The clock is read only after sync(): GPU kernels run asynchronously and
    a launch returns long before the work is done.
    """
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
    n = int(min(max_repeats, max(min_repeats, budget_s / max(first, 1e-9))))
    return [once() for _ in range(n)]


@contextlib.contextmanager
def cpu_threads(n: int):
    """torch's intra-op pool and numpy's BLAS both limited to n threads, restored afterwards."""
    from threadpoolctl import threadpool_limits
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(before)


def measure_peak(device: torch.device, size: int = 2048, repeats: int = 7) -> dict:
    """This machine's fp32 matmul rate: median of size x size @ size x size with torch."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(device)
    b = torch.randn(size, size, generator=gen).to(device)
    times = time_runs(lambda: torch.mm(a, b), _sync_for(device), warmup=2, min_repeats=repeats,
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
    import re
    from threadpoolctl import threadpool_info
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


# --- the model under test ------------------------------------------------------------------

@dataclass
class BenchModel:
    config: ModelConfig
    state_dict: dict[str, torch.Tensor]  # on the CPU, float32
    name: str
    source: str                          # which weights: a checkpoint path or "random weights"

    def describe(self) -> dict:
        return {"name": self.name, "source": self.source, "config": config_to_dict(self.config),
                "parameters": count_parameters(build_model(self.config)),
                "forward_flops_per_image": forward_flops(self.config)}


def resolve_model(checkpoint: str | Path | None = None, preset_name: str | None = None,
                  seed: int = 0) -> BenchModel:
    """--model CKPT, else --preset NAME (random weights), else artifacts/models/mlp.pt when
    present, else mlp-seed000 with random weights: timing does not need trained weights."""
    if checkpoint is not None:
        ckpt = read_checkpoint(checkpoint)
        cfg = config_from_dict(ckpt["model_config"])
        return BenchModel(cfg, _cpu_sd(ckpt["state_dict"]), Path(checkpoint).stem,
                          f"checkpoint {checkpoint}")
    name = preset_name or DEFAULT_PRESET
    cfg = preset(name)["model"]
    why = ""
    if preset_name is None and DEFAULT_MODEL.is_file():
        ckpt = read_checkpoint(DEFAULT_MODEL)
        shipped = config_from_dict(ckpt["model_config"])
        # the figures everyone compares are for the 784-128-10 net: only its weights will do
        if shipped == cfg:
            return BenchModel(cfg, _cpu_sd(ckpt["state_dict"]), DEFAULT_MODEL.stem,
                              f"checkpoint {_rel(DEFAULT_MODEL)}")
        why = (f"; {_rel(DEFAULT_MODEL)} is another architecture "
               f"({_describe_arch(shipped)}): --model times it")
    torch.manual_seed(seed)
    model = build_model(cfg)
    return BenchModel(cfg, _cpu_sd(model.state_dict()), name,
                      f"random weights (seed {seed}): timing does not need trained weights{why}")


def _describe_arch(cfg: ModelConfig) -> str:
    if cfg.kind == "mlp":
        return "-".join(map(str, (IMAGE_SIZE * IMAGE_SIZE, *cfg.hidden, 10))) + (
            " with batchnorm" if cfg.batchnorm else "")
    return f"CNN {list(cfg.channels)} kernel {cfg.kernel}"


def _cpu_sd(sd: dict) -> dict:
    return {k: v.detach().to("cpu").clone() for k, v in sd.items()}


def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


# --- implementations ----------------------------------------------------------------------

class _TorchvisionStyleDataset(torch.utils.data.Dataset):
    """What torchvision.datasets.FashionMNIST.__getitem__ does, over our in-memory arrays.

    torchvision's class only reads un-gzipped IDX files from its own folder layout, while our
    data comes from data.py (gzipped Debian files, a cache); so we emulate its per-sample path:
    uint8 tensor row -> .numpy() -> PIL image (mode "L") -> ToTensor (a new float tensor / 255).
    That per-image Python work, not the network, is what the course projects' timings measured.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray):
        from torchvision import transforms
        # a copy: the shared dataset arrays are read-only, and torch wants writable memory
        self.data = torch.from_numpy(np.array(x, dtype=np.uint8))
        self.targets = torch.from_numpy(np.asarray(y).astype(np.int64))
        self.transform = transforms.ToTensor()

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        from PIL import Image
        img, target = self.data[i], int(self.targets[i])
        # a 2-D uint8 array becomes a mode "L" image, as torchvision asks for explicitly
        img = Image.fromarray(img.numpy())
        return self.transform(img), target


def _manual_module():
    try:
        from . import twin as manual
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.endswith("twin"):
            return None
        raise
    return manual


class Impl:
    """One implementation on one device. Subclasses fill in what they can do."""

    name = ""
    works: tuple[str, ...] = ()

    def __init__(self, bm: BenchModel, device: torch.device):
        self.bm, self.device = bm, device

    @classmethod
    def unavailable(cls, device: str) -> str | None:
        """Why this implementation cannot run on `device` (None: it can)."""
        return None

    def to_input(self, x: torch.Tensor):
        """A float32 (N, 1, 28, 28) CPU tensor -> this implementation's input on its device."""
        return x.to(self.device)

    def to_labels(self, y: torch.Tensor):
        """int64 CPU labels -> this implementation's labels on its device."""
        return y.to(self.device)

    def forward(self, x) -> Any:
        raise NotImplementedError

    def train_step(self, x, y) -> Any:
        raise NotImplementedError


class PyTorchImpl(Impl):
    name = "pytorch"
    works = WORKS

    def __init__(self, bm, device, fold: bool = True):
        super().__init__(bm, device)
        self.model = build_model(bm.config)
        self.model.load_state_dict(bm.state_dict)
        self.model.to(device).eval()
        self.infer_model = fold_normalization(self.model) if fold else self.model
        # the trainer's choice (train._optimizer): fused Adam where PyTorch has it
        fast = {"fused": True} if device.type in ("cpu", "cuda") else {"foreach": True}
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3, **fast)

    def forward(self, x):
        with torch.inference_mode():
            return self.infer_model(x)

    def train_step(self, x, y):
        self.model.train()
        loss = F.cross_entropy(self.model(x), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.model.eval()
        return loss


def fold_normalization(model: torch.nn.Module) -> torch.nn.Module:
    """An inference copy of an MLP with its input normalization folded into fc1.

    ((x - m) / s) @ W.T + b  ==  x @ (W / s).T + (b - (m / s) * W.sum(1)): the same function,
    one pass over the 10,000 x 784 input fewer (two, counting the temporary), which on a
    2-core CPU is a third of the whole forward. manual.ManualNet and TorchOpsNet fold it the
    same way, so all implementations do the same arithmetic (ReLUs also work in place, as
    theirs do). CNNs are returned as they are: zero padding must pad the normalized image,
    so there the layer cannot be folded.
    """
    import copy
    if getattr(model, "config", None) is None or model.config.kind != "mlp":
        return model
    folded = copy.deepcopy(model)
    with torch.no_grad():
        m, s = folded.norm.mean.double(), folded.norm.std.double()
        w = folded.fc1.weight.double()
        folded.fc1.bias.copy_(folded.fc1.bias.double() - (m / s) * w.sum(1))
        folded.fc1.weight.copy_(w / s)
    folded.norm = torch.nn.Identity()
    for mod in folded.modules():
        if isinstance(mod, torch.nn.ReLU):
            mod.inplace = True  # inference only: no temporary per layer, as TorchOpsNet's clamp_min_
    return folded.eval()


class ManualNumpyImpl(Impl):
    name = "manual-numpy"
    works = WORKS

    @classmethod
    def unavailable(cls, device):
        if _manual_module() is None:
            return "fmnist_core.manual (the NumPy twin) is not installed"
        if device != "cpu":
            return "NumPy computes on the CPU only; manual-torch is the same math on a GPU"
        return None

    def __init__(self, bm, device):
        super().__init__(bm, device)
        manual = _manual_module()
        self.net = manual.ManualNet(bm.config, manual.state_dict_to_numpy(bm.state_dict))
        self._step = None

    def to_input(self, x):
        return np.ascontiguousarray(x.numpy(), dtype=np.float32)

    def to_labels(self, y):
        return y.numpy()

    def forward(self, x):
        return self.net.forward(x)

    def train_step(self, x, y):
        """The inner loop of manual.train_numpy: forward, softmax cross-entropy, backward, Adam."""
        if self._step is None:
            manual = _manual_module()
            net = manual.NumpyMLP(self.bm.config, np.random.default_rng(0))
            net.load_state_dict(self.bm.state_dict)
            opt, loss_fn = manual.Adam(1e-3), manual.SoftmaxCrossEntropy()
            params = net.parameters()

            def step(x, y):
                loss = loss_fn.forward(net.forward(x, train=True), y)
                net.backward(loss_fn.backward())
                opt.step([layer.params[k] for _, layer, k in params],
                         [layer.grads[k] for _, layer, k in params])
                return loss
            self._step = step
        return self._step(x, y)


class ManualTorchImpl(Impl):
    """Inference only: TorchOpsNet runs under inference_mode and has no trainer."""

    name = "manual-torch"
    works = ("inference", "latency")

    @classmethod
    def unavailable(cls, device):
        if _manual_module() is None:
            return "fmnist_core.manual (the twin's torch-ops version) is not installed"
        return None

    def __init__(self, bm, device):
        super().__init__(bm, device)
        manual = _manual_module()
        self.net = manual.TorchOpsNet(bm.config, bm.state_dict, device=str(device))

    def forward(self, x):
        return self.net.forward(x)


class DataLoaderImpl(PyTorchImpl):
    """The pytorch/examples mnist loop: for data, target in loader: data.to(device); model(data).
    Same nn.Module and optimizer as `pytorch`; only the way images reach it differs."""

    name = "dataloader"
    works = WORKS


def _make_impl(cls: type[Impl], bm: BenchModel, device: torch.device, cfg: BenchConfig) -> Impl:
    if cls is PyTorchImpl:
        return cls(bm, device, fold=cfg.fold_normalization)
    if cls is DataLoaderImpl:
        return cls(bm, device, fold=False)  # the usual loop runs the module as saved
    return cls(bm, device)


IMPL_CLASSES: dict[str, type[Impl]] = {c.name: c for c in
                                       (PyTorchImpl, ManualNumpyImpl, ManualTorchImpl, DataLoaderImpl)}

# the DataLoader cannot assemble a 10,000-image batch in step time: PIL per image makes
# that an epoch-scale wait, which the inference row already shows
DATALOADER_MAX_STEP_BATCH = 1024


def planned(cfg: BenchConfig, impl: str) -> list[tuple[str, int]]:
    """The (work, batch size) pairs an implementation is timed on under `cfg`."""
    cls = IMPL_CLASSES[impl]
    pairs: list[tuple[str, int]] = []
    if impl == "dataloader":
        if cfg.dataloader_full:
            pairs += [("inference", b) for b in cfg.dataloader_batches]
        pairs.append(("latency", 1))
        pairs += [("train_step", b) for b in cfg.train_batches if b <= DATALOADER_MAX_STEP_BATCH]
        if cfg.epochs and cfg.dataloader_full:
            pairs += [("epoch", b) for b in cfg.epoch_batches[:1]]
        return pairs
    pairs += [("inference", b) for b in cfg.inference_batches]
    pairs.append(("latency", 1))
    if "train_step" in cls.works:
        pairs += [("train_step", b) for b in cfg.train_batches]
    if cfg.epochs and "epoch" in cls.works:
        pairs += [("epoch", b) for b in cfg.epoch_batches]
    return pairs


def thread_sweep(cfg: BenchConfig, impl: str, device: str, work: str, all_threads: int) -> list[int]:
    """CPU rows are timed at each thread count; the DataLoader (Python-bound) and whole epochs
    (seconds each) only with all threads; GPU rows record the host's thread count."""
    if device != "cpu" or impl == "dataloader" or work == "epoch":
        return [all_threads]
    return sorted({all_threads if t == 0 else min(t, all_threads) for t in cfg.threads})


# --- the benchmark ------------------------------------------------------------------------

@dataclass
class _Ctx:
    bm: BenchModel
    data: FashionMNIST
    cfg: BenchConfig
    flops: int                    # forward FLOPs of one image
    x_test: torch.Tensor          # (10000, 1, 28, 28) float32 in [0, 1], converted once
    peaks: dict[tuple[str, int | None], float] = field(default_factory=dict)
    _train: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    step_s: dict[tuple, float] = field(default_factory=dict)  # train_step medians, for epoch estimates

    def train_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first n training images as float32 and their labels, converted once."""
        from .evaluate import images_to_tensor
        if n not in self._train:
            self._train[n] = (images_to_tensor(self.data.x_train[:n]).contiguous(),
                              torch.from_numpy(self.data.y_train[:n].astype(np.int64)))
        return self._train[n]

    def peak(self, device: str, threads: int) -> float | None:
        return self.peaks.get((device, threads if device == "cpu" else None))


def _row(impl: str, device: str, work: str, batch: int, threads: int | None, **kw) -> dict:
    row = {"impl": impl, "device": device, "work": work, "batch_size": batch, "threads": threads,
           "median_s": None, "min_s": None, "max_s": None, "repeats": 0, "images": None,
           "gflops": None, "peak_share": None, "available": True}
    row.update(kw)
    return row


def _transfer_s(ctx: _Ctx, impl: Impl, *tensors: torch.Tensor) -> float | None:
    """Median host->device copy time of a work's inputs; None on the CPU (nothing moves)."""
    if impl.device.type == "cpu":
        return None

    def copy():
        impl.to_input(tensors[0])
        for t in tensors[1:]:
            t.to(impl.device)
    times = time_runs(copy, _sync_for(impl.device), warmup=1, min_repeats=ctx.cfg.min_repeats,
                      max_repeats=ctx.cfg.max_repeats, budget_s=ctx.cfg.row_budget_s / 2)
    return statistics.median(times)


def _images(ctx: _Ctx, work: str, batch: int) -> int:
    return {"inference": len(ctx.x_test), "latency": 1, "train_step": batch,
            "epoch": len(ctx.data.y_train)}[work]


class _Skip(Exception):
    """A row whose one run would outlast the row limit: reported with the estimate, not timed."""


def _probe(ctx: _Ctx, steps, total: int, sync, sample: int, limit: float | None = None) -> None:
    """Run the first `sample` of a run's `total` equal steps and extrapolate; _Skip when one
    run would outlast the row limit.

    A FLOP bound cannot see Python overhead or slow small convolutions (a LeNet reaches a few
    % of peak), so rows are sized by doing a little of them. The probe doubles as burn-in.
    """
    import itertools
    sample = max(1, min(sample, total))
    sync()
    t0 = time.perf_counter()
    for step in itertools.islice(steps, sample):
        step()
    sync()
    est = (time.perf_counter() - t0) * total / sample
    limit = limit or ctx.cfg.max_run_s
    if est > limit:
        raise _Skip(f"skipped: one run would take about {est:.1f} s (row limit {limit:g} s)")


def measure_row(ctx: _Ctx, impl: Impl, work: str, batch: int, threads: int) -> dict:
    """Time one implementation x work x batch size on impl's device; one result row."""
    images = _images(ctx, work, batch)
    flops = ctx.flops * images * (1 if work in ("inference", "latency") else 3)
    peak = ctx.peak(impl.device.type, threads)
    base = dict(impl=impl.name, device=impl.device.type, work=work, batch=batch, threads=threads)
    limit = ctx.cfg.max_epoch_s if work == "epoch" else ctx.cfg.max_run_s
    if peak and flops / (peak * 1e9) > limit:
        return _row(**base, images=images,
                    reason=f"skipped: one run needs at least {flops / (peak * 1e9):.1f} s at this "
                           f"machine's matmul peak (row limit {limit:g} s)")
    extra: dict[str, Any] = {}
    if impl.name == "manual-numpy" and work in ("train_step", "epoch") and ctx.bm.config.kind != "mlp":
        return _row(**base, available=False, reason="the NumPy twin trains MLPs only (CNN inference only)")
    if batch == 1 and work in ("train_step", "epoch") and getattr(ctx.bm.config, "batchnorm", False):
        return _row(**base, available=False,
                    reason="batchnorm cannot train on a batch of one image (no batch statistics)")
    try:
        if impl.name == "dataloader":
            times, extra["note"] = _dataloader_times(ctx, impl, work, batch)
        elif work == "epoch":
            _epoch_estimate(ctx, impl, batch, threads, images)
            times = _epoch_times(ctx, impl, batch, threads)
            extra["note"] = "the trainer's own epoch_seconds; its first epoch was the warm-up"
            if impl.device.type != "cpu":  # the trainer moves the training set once, before the loop
                extra["transfer_s"] = _transfer_s(ctx, impl, *ctx.train_batch(images))
        else:
            times, extra["transfer_s"] = _direct_times(ctx, impl, work, batch)
    except _Skip as skip:
        return _row(**base, images=images, reason=str(skip))
    med = statistics.median(times)
    if work == "train_step":
        ctx.step_s[(impl.name, impl.device.type, threads, batch)] = med
    gflops = flops / med / 1e9
    return _row(**base, median_s=med, min_s=min(times), max_s=max(times), repeats=len(times),
                images=images, gflops=gflops, peak_share=gflops / peak if peak else None, **extra)


def _direct_times(ctx: _Ctx, impl: Impl, work: str, batch: int) -> tuple[list[float], float | None]:
    """Inference, latency and the PyTorch training step, on inputs already on the device."""
    cfg, sync = ctx.cfg, _sync_for(impl.device)
    if work == "train_step":
        xb_cpu, yb_cpu = ctx.train_batch(batch)
        xb, yb = impl.to_input(xb_cpu), impl.to_labels(yb_cpu)
        times = time_runs(lambda: impl.train_step(xb, yb), sync, cfg.warmup, cfg.min_repeats,
                          cfg.max_repeats, cfg.row_budget_s)
        return times, _transfer_s(ctx, impl, xb_cpu, yb_cpu)
    if getattr(impl, "_x_test", None) is None:
        impl._x_test = impl.to_input(ctx.x_test)  # the whole test set, converted once, on the device
    x = impl._x_test
    if work == "latency":
        # one image, many times: what a click in the dashboard waits for
        x1 = x[:1]
        times = time_runs(lambda: impl.forward(x1), sync, cfg.warmup, cfg.min_repeats * 10,
                          cfg.max_repeats * 10, cfg.row_budget_s / 2)
        return times, _transfer_s(ctx, impl, ctx.x_test[:1])
    batches = [x[i:i + batch] for i in range(0, len(x), batch)]  # views: no copies in the loop
    if batch <= 500:
        _probe(ctx, [lambda xb=xb: impl.forward(xb) for xb in batches], len(batches), sync,
               sample=math.ceil(500 / batch))
    else:  # a big batch: probe with 500 images of it (per image no cheaper than the full batch)
        _probe(ctx, [lambda: impl.forward(x[:500])] * math.ceil(len(x) / 500), math.ceil(len(x) / 500),
               sync, sample=1)

    def run():
        for xb in batches:
            impl.forward(xb)
    times = time_runs(run, sync, cfg.warmup, cfg.min_repeats, cfg.max_repeats, cfg.row_budget_s)
    return times, _transfer_s(ctx, impl, ctx.x_test)


def _train_config(ctx: _Ctx, device: torch.device, epochs: int, batch: int, threads: int):
    from .train import TrainConfig
    # fp32 so the figure compares with the fp32 peak; every image trains, no validation pass;
    # threads given explicitly: train_numpy would otherwise pick one BLAS thread by itself
    return TrainConfig(epochs=epochs, batch_size=batch, val_fraction=0.0, device=device.type,
                       precision="fp32", seed=ctx.cfg.seed, progress_every=10 ** 9, threads=threads)


def _epoch_estimate(ctx: _Ctx, impl: Impl, batch: int, threads: int, images: int) -> None:
    """_Skip an epoch that the training-step rows say would outlast the row limit; the step
    row with the nearest batch size at or above this one gives the (optimistic) estimate."""
    known = sorted((b, t) for (name, dev, th, b), t in ctx.step_s.items()
                   if name == impl.name and dev == impl.device.type and th == threads and b >= batch)
    if known:
        b, t = known[0]
        est = t / b * images
        if est > ctx.cfg.max_epoch_s:
            raise _Skip(f"skipped: one epoch would take about {est:.0f} s (from the batch-{b} "
                        f"training step; row limit {ctx.cfg.max_epoch_s:g} s)")


def _epoch_times(ctx: _Ctx, impl: Impl, batch: int, threads: int) -> list[float]:
    """One pass over all 60,000 training images through the real trainer (train.train or
    manual.train_numpy): the first epoch is the warm-up, the following ones are timed."""
    tcfg = _train_config(ctx, impl.device, 1 + ctx.cfg.epoch_repeats, batch, threads)
    if impl.name == "manual-numpy":
        result = _manual_module().train_numpy(ctx.bm.config, tcfg, ctx.data)
    else:
        from .train import train
        result = train(ctx.bm.config, tcfg, ctx.data)
    times = [h["epoch_seconds"] for h in result.history]
    return times[1:] or times


def _dataloader_times(ctx: _Ctx, impl: Impl, work: str, batch: int) -> tuple[list[float], str]:
    """The conventional loop: per-image PIL + ToTensor in a DataLoader, a copy per batch, the
    nn.Module. Conversion and copies happen inside the loop, as they do there, so they are in
    the time (no separate transfer figure)."""
    from torch.utils.data import DataLoader
    from torch.utils.data._utils.collate import default_collate
    cfg, dev, sync = ctx.cfg, impl.device, _sync_for(impl.device)
    note = "per-image PIL + ToTensor and the per-batch copy are inside the timed loop"
    split = "test" if work in ("inference", "latency") else "train"
    ds = _TorchvisionStyleDataset(getattr(ctx.data, f"x_{split}"), getattr(ctx.data, f"y_{split}"))
    model = impl.model
    if work == "inference":
        loader = DataLoader(ds, batch_size=batch, shuffle=False, num_workers=0)

        def run():
            model.eval()
            with torch.no_grad():  # pytorch/examples mnist test(): eval mode, no_grad
                for data, _target in loader:
                    model(data.to(dev))

        def infer(data):
            with torch.no_grad():
                model(data.to(dev))
        _probe(ctx, ((lambda d=data: infer(d)) for data, _ in loader), len(loader), sync,
               sample=math.ceil(1000 / batch))
        # ~a second a run: one warm-up, three timed
        return time_runs(run, sync, 1, 3, 3, None), note
    if work == "latency":
        def one():
            data, _ = default_collate([ds[0]])
            with torch.no_grad():
                model(data.to(dev))
        return time_runs(one, sync, cfg.warmup, cfg.min_repeats * 10, cfg.max_repeats * 10,
                         cfg.row_budget_s / 2), note
    loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=0)
    if work == "train_step":
        def step():  # fetch one shuffled batch through the loader, copy, step
            data, target = next(iter(loader))
            impl.train_step(data.to(dev), target.to(dev))
        return time_runs(step, sync, cfg.warmup, cfg.min_repeats, cfg.max_repeats,
                         cfg.row_budget_s), note

    def epoch():
        for data, target in loader:
            impl.train_step(data.to(dev), target.to(dev))

    _probe(ctx, ((lambda d=data, t=target: impl.train_step(d.to(dev), t.to(dev)))
                 for data, target in loader), len(loader), sync, sample=math.ceil(2000 / batch),
           limit=cfg.max_epoch_s)
    # one epoch, no warm-up: it takes seconds, and per-image Python work barely warms up
    return time_runs(epoch, sync, 0, 1, 1, None), note + "; one epoch, not repeated"


def _headline(ctx: _Ctx, rows: list[dict], all_threads: int, say) -> dict | None:
    """The interleaved 10k-inference comparison, for the implementations whose own row shows
    it fits the time budget (10 rows' worth); None when none does or the CPU was not timed."""
    n, cfg = len(ctx.x_test), ctx.cfg
    own = {r["impl"]: r["median_s"] for r in rows
           if r["device"] == "cpu" and r["work"] == "inference" and r["batch_size"] == n
           and r["threads"] == all_threads and r["median_s"] is not None and r["impl"] != "dataloader"}
    if not cfg.headline_rounds or not own:
        return None
    rounds = min(cfg.headline_rounds, int(10 * cfg.row_budget_s / sum(own.values())) - 1)
    if rounds < 3:
        return None
    say("the headline: inference over the 10,000 test images, implementations interleaved")
    with cpu_threads(all_threads):
        headline = interleaved_inference(ctx, list(own), rounds)
    headline["threads"] = all_threads
    dl = [r["median_s"] for r in rows if r["impl"] == "dataloader" and r["device"] == "cpu"
          and r["work"] == "inference" and r["median_s"] is not None]
    if dl:  # ~100x slower: its own row's median is as good as an interleaved one
        headline["median_s"]["dataloader"] = dl[0]
    base = headline["median_s"].get("pytorch")
    headline["ratio_to_pytorch"] = {k: v / base for k, v in headline["median_s"].items()} if base else {}
    return headline


def interleaved_inference(ctx: _Ctx, impls: list[str], rounds: int) -> dict:
    """The issue's headline figure, robust to a shared machine: inference over all 10,000 test
    images in one batch on the CPU, the implementations taking turns round by round, so a
    neighbour's job that starts or stops mid-run slows all of them alike. Medians per impl."""
    runners = {}
    for name in impls:
        cls = IMPL_CLASSES[name]
        if cls.unavailable("cpu") is None:
            impl = _make_impl(cls, ctx.bm, torch.device("cpu"), ctx.cfg)
            x = impl.to_input(ctx.x_test)
            runners[name] = (lambda impl=impl, x=x: impl.forward(x))
    times: dict[str, list[float]] = {n: [] for n in runners}
    for r in range(rounds + 1):  # round 0 is the warm-up
        for name, fn in runners.items():
            t0 = time.perf_counter()
            fn()
            if r:
                times[name].append(time.perf_counter() - t0)
    return {"work": "inference", "device": "cpu", "batch_size": len(ctx.x_test), "rounds": rounds,
            "median_s": {n: statistics.median(t) for n, t in times.items()},
            "min_s": {n: min(t) for n, t in times.items()}}


def run_benchmark(bm: BenchModel, data: FashionMNIST, cfg: BenchConfig | None = None,
                  progress: Callable[[str], None] | None = None, label: str | None = None) -> dict:
    """Every implementation x device x work x batch (x threads on the CPU) -> a results dict.

    Devices or implementations that cannot run still get their rows, with available=false
    and the reason, so a results table always has the same shape.
    """
    from .evaluate import images_to_tensor
    cfg = cfg or BenchConfig()
    say = progress or (lambda msg: None)
    for name in cfg.impls:
        if name not in IMPL_CLASSES:
            raise WorkbenchError(f"unknown implementation {name!r}; choose from {', '.join(IMPLS)}")
    for d in cfg.devices:
        if d not in DEVICES:
            raise WorkbenchError(f"unknown device {d!r}; choose from {', '.join(DEVICES)}")
    all_threads = torch.get_num_threads()
    avail = available_devices()
    started = time.perf_counter()
    load_before = _loadavg()
    ctx = _Ctx(bm=bm, data=data, cfg=cfg, flops=forward_flops(bm.config),
               x_test=images_to_tensor(data.x_test).contiguous())

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
    for d in cfg.devices:
        for name in cfg.impls:
            cls = IMPL_CLASSES[name]
            pairs = planned(cfg, name)
            reason = avail.get(d) or cls.unavailable(d)
            if reason:
                rows += [_row(name, d, w, b, None, available=False, reason=reason) for w, b in pairs]
                continue
            by_threads: dict[int, list[tuple[str, int]]] = {}
            for w, b in pairs:
                for t in thread_sweep(cfg, name, d, w, all_threads):
                    by_threads.setdefault(t, []).append((w, b))
            for t, todo in sorted(by_threads.items()):
                with cpu_threads(t):
                    torch.manual_seed(cfg.seed)
                    impl = _make_impl(cls, bm, torch.device(d), cfg)
                    for w, b in todo:
                        say(f"{name} on {d}" + (f" ({t} threads)" if d == "cpu" else "") +
                            f": {w}, batch {b}")
                        try:
                            rows.append(measure_row(ctx, impl, w, b, t))
                        except (RuntimeError, ValueError) as exc:
                            # one row that breaks (a GPU out of memory, say) must not cost the
                            # rest of the run: it is reported as such
                            rows.append(_row(name, d, w, b, t, available=False,
                                             reason=f"failed: {type(exc).__name__}: {str(exc)[:200]}"))

    headline = _headline(ctx, rows, all_threads, say)

    machine = machine_info()
    machine.update(numpy=np.__version__, date=_now(), threads_all=all_threads, blas=blas_info(),
                   host=platform.node(), devices=avail,
                   # other jobs on the machine during the run: what to read the spread against
                   load_average={"before": load_before, "after": _loadavg()})
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
        "seconds": time.perf_counter() - started,
    }


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # not on every platform
        return None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def default_label(machine: dict) -> str:
    """Where figures came from, in words: 'Intel Xeon, 2 cores' or '... + NVIDIA H100'."""
    label = f"{machine.get('cpu') or 'unknown CPU'}, {machine.get('cores')} cores"
    if machine.get("gpu"):
        label += f" + {machine['gpu']}"
    return label


# --- saving, loading and merging results files ----------------------------------------------

def save_results(results: dict, out: str | Path | None = None, bench_dir: str | Path | None = None,
                 timestamped: bool = True) -> list[Path]:
    """A timestamped file under bench_dir (default artifacts/benchmarks/), plus `out` if given.
    Written atomically: a reader never sees half a file."""
    paths = []
    if timestamped:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        paths.append(Path(bench_dir or BENCH_DIR) / f"bench-{stamp}-{os.getpid()}.json")
    if out:
        paths.append(Path(out))
    text = json.dumps(results, indent=1)
    for p in paths:
        write_bytes_atomic(p, text)
    return paths


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def validate_results(obj: Any, origin: str = "results") -> dict:
    """Raise ResultsFileError naming the first thing wrong; return obj when it follows the schema."""
    def bad(msg: str):
        raise ResultsFileError(f"{origin}: {msg}")

    if not isinstance(obj, dict):
        bad(f"expected a JSON object at the top, got {type(obj).__name__}")
    if obj.get("schema") != SCHEMA:
        bad(f"not a workbench benchmark file (schema {obj.get('schema')!r}, expected {SCHEMA!r})")
    for key, typ in (("machine", dict), ("rows", list), ("peak", list)):
        if not isinstance(obj.get(key), typ):
            bad(f"'{key}' is missing or not a {'list' if typ is list else 'JSON object'}")
    m = obj["machine"]
    for key in ("cpu", "cores", "torch", "numpy", "date"):
        if key not in m:
            bad(f"the machine block lacks '{key}'")
    for i, p in enumerate(obj["peak"]):
        if not isinstance(p, dict) or p.get("device") not in DEVICES or not _is_num(p.get("gflops")):
            bad(f"peak entry {i} needs a device ({', '.join(DEVICES)}) and a number 'gflops'")
    h = obj.get("headline")
    if h is not None and not (isinstance(h, dict) and isinstance(h.get("median_s"), dict)
                              and all(_is_num(v) for v in h["median_s"].values())):
        bad("'headline' must be null or hold a 'median_s' object of numbers")
    if not obj["rows"]:
        bad("has no rows")
    for i, r in enumerate(obj["rows"]):
        if not isinstance(r, dict):
            bad(f"row {i} is not a JSON object")
        missing = [k for k in ROW_KEYS if k not in r]
        if missing:
            bad(f"row {i} lacks {', '.join(missing)}")
        if r["impl"] not in IMPLS:
            bad(f"row {i}: unknown impl {r['impl']!r} (expected one of {', '.join(IMPLS)})")
        if r["device"] not in DEVICES:
            bad(f"row {i}: unknown device {r['device']!r} (expected one of {', '.join(DEVICES)})")
        if r["work"] not in WORKS:
            bad(f"row {i}: unknown work {r['work']!r} (expected one of {', '.join(WORKS)})")
        if not isinstance(r["batch_size"], int) or isinstance(r["batch_size"], bool) or r["batch_size"] < 1:
            bad(f"row {i}: batch_size must be a positive integer, got {r['batch_size']!r}")
        if not isinstance(r["available"], bool):
            bad(f"row {i}: 'available' must be true or false, got {r['available']!r}")
        if not r["available"] and not isinstance(r.get("reason"), str):
            bad(f"row {i} is unavailable but gives no reason")
        for k in ("median_s", "min_s", "max_s", "gflops", "peak_share"):
            if r[k] is not None and not (_is_num(r[k]) and r[k] >= 0):
                bad(f"row {i}: '{k}' must be a non-negative number or null, got {r[k]!r}")
        if r["median_s"] is not None and not r["min_s"] <= r["median_s"] <= r["max_s"]:
            bad(f"row {i}: expected min_s <= median_s <= max_s")
        if r["available"] and r["median_s"] is None and not isinstance(r.get("reason"), str):
            bad(f"row {i} has no timing and gives no reason")
    return obj


def parse_results(data: str | bytes | dict, origin: str = "uploaded file") -> dict:
    """A results file's text (an upload's bytes, say) -> the validated results dict."""
    if isinstance(data, (bytes, bytearray)):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ResultsFileError(f"{origin}: not a text file (expected the JSON that "
                                   f"`python -m fmnist_core bench` writes)") from None
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ResultsFileError(f"{origin}: not valid JSON ({exc.msg} at line {exc.lineno}, "
                                   f"column {exc.colno})") from None
    results = validate_results(data, origin)
    results.setdefault("label", default_label(results["machine"]))
    results["origin"] = origin
    return results


def load_results(path: str | Path) -> dict:
    """Read and validate a results file from this machine or another one."""
    path = Path(path)
    if not path.is_file():
        raise ResultsFileError(f"results file not found: {path}")
    return parse_results(path.read_bytes(), origin=path.name)


def merge_results(results: list[dict]) -> list[dict]:
    """Rows of several results files as one list, each row labelled with where it came from:
    `source` (the machine's label), `hardware` (the CPU or GPU that computed it), `origin`
    (file name) and `created`. The same run given twice appears once."""
    seen, out = set(), []
    for res in results:
        key = (res.get("label"), res.get("created"))
        if key in seen:
            continue
        seen.add(key)
        m = res["machine"]
        for r in res["rows"]:
            hardware = m.get("gpu") if r["device"] == "cuda" else (
                "Apple GPU (MPS)" if r["device"] == "mps" else m.get("cpu"))
            out.append({**r, "source": res.get("label") or default_label(m),
                        "hardware": hardware or r["device"], "origin": res.get("origin", "this run"),
                        "created": res.get("created")})
    return out


# --- a table for people ---------------------------------------------------------------------

def _fmt_s(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.0f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms" if s < 0.1 else f"{s * 1e3:.0f} ms"
    return f"{s:.2f} s"


def format_table(rows: list[dict], by_source: bool = False) -> str:
    """Readable text: timed rows, then one line per implementation x device that cannot run.
    by_source: rows from merge_results, each line ending with the machine it came from."""
    head = (f"{'impl':<13}{'device':<7}{'work':<11}{'batch':>6}{'thr':>4}{'median':>11}"
            f"{'min..max':>22}{'GFLOP/s':>9}{'peak':>6}{'transfer':>10}")
    if by_source:
        head += "  source"
    lines = [head, "-" * len(head)]
    missing: dict[tuple, str] = {}
    for r in rows:
        src = f"  {r.get('source', '')}" if by_source else ""
        if not r["available"]:
            missing.setdefault((r["impl"], r["device"], src), r.get("reason", ""))
            continue
        key = f"{r['impl']:<13}{r['device']:<7}{r['work']:<11}{r['batch_size']:>6}{r['threads'] or '':>4}"
        if r["median_s"] is None:
            lines.append(f"{key}  {r.get('reason', '')}{src}")
            continue
        share = f"{r['peak_share']:.0%}" if r["peak_share"] is not None else "-"
        span = f"{_fmt_s(r['min_s'])}..{_fmt_s(r['max_s'])}"
        lines.append(f"{key}{_fmt_s(r['median_s']):>11}{span:>22}{r['gflops']:>9.1f}{share:>6}"
                     f"{_fmt_s(r.get('transfer_s')):>10}{src}")
    for (impl, dev, src), reason in missing.items():
        lines.append(f"{impl:<13}{dev:<7}not run: {reason}{src}")
    return "\n".join(lines)
