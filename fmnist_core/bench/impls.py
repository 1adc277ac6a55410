"""The implementations a benchmark compares, each on one device at one precision, and how each
one's runs are timed.

  pytorch       the nn.Module from models.py, inference_mode, the test set converted once to
                one float32 tensor (MLP inference with the input normalization folded into fc1,
                batches of >= 1,000 images on oneDNN kernels: `onednn_mlp`);
                also in bf16 (CPUs with AMX or AVX512-BF16; CUDA) and fp16 (CUDA), inference only
  onnxruntime   the same model exported by export.py (the module the ONNX download uses),
                run by ONNX Runtime: CPU provider, CUDA provider when the build has one
  manual-numpy  the NumPy twin (twin.ManualNet, twin.train_numpy); CPU only, training timed for MLPs only
  manual-torch  the same explicit math with torch ops (twin.TorchOpsNet), the twin that can run
                on a GPU; inference only
  dataloader    "how it is usually done": a torchvision-style Dataset with a PIL image and
                ToTensor per sample, a DataLoader, the nn.Module; its own timed loops, with the
                per-image conversion and the per-batch copy inside the clock

What differs between them lives here, as methods and attributes of the Impl classes: which
precisions each runs on a device (`precisions`), which (work, batch size) pairs each is planned
for (`planned`), at which CPU thread counts (`thread_counts`), what it refuses (`unavailable`,
`refuses`), which trainer runs its epochs (`train_epochs`), how its runs are timed (`measure`),
its logits for the agreement check (`outputs`) and whether it takes part in the interleaved
headline (`interleaved`). The run loop (run.py) asks; it never checks names.

Left out: the order rows are run in and the rows themselves (run.py); the timing primitives
(harness.py). Deliberately not timed: bf16 on a CPU without AMX or AVX512-BF16 (emulated: ~10x slower than fp32;
its rows say so), autocast (a whole-model cast is what inference at the limit uses),
torch.compile, pinned memory and non_blocking copies, DataLoader worker processes (the course
projects used num_workers=0).
"""
from __future__ import annotations

import copy
import math
import statistics
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import twin  # the hand-written twin: imported here only, nowhere else in bench/
from ..models import build_model
from .config import IMPLS, WORKS, BenchConfig
from ..device import cpu_has_fast_bf16
from .harness import Skip, probe, sync_for, time_runs
from .model import BenchModel

if TYPE_CHECKING:
    from .run import RunContext

TRAINING = ("train_step", "epoch")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
NO_BF16 = "not measured: no AMX or AVX512-BF16 on this CPU (bf16 would be slower)"


class TorchvisionStyleDataset(torch.utils.data.Dataset):
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


class Impl:
    """One implementation on one device. Subclasses fill in what they can do."""

    name = ""
    works: tuple[str, ...] = ()
    sweeps_threads = True   # CPU rows at each thread count of cfg.threads (False: all threads only)
    interleaved = True      # takes its turn in the interleaved headline

    def __init__(self, bm: BenchModel, device: torch.device, cfg: BenchConfig, precision: str = "fp32"):
        self.bm, self.device, self.cfg, self.precision = bm, device, cfg, precision
        self._x_test = None  # the whole test set as this implementation's input, converted once

    @classmethod
    def unavailable(cls, device: str) -> str | None:
        """Why this implementation cannot run on `device` (None: it can)."""
        return None

    @classmethod
    def precisions(cls, device: str) -> list[tuple[str, str | None]]:
        """(precision, why not) pairs this implementation is planned at on `device`: fp32 only,
        unless a subclass says otherwise. A reason makes rows that say why, not missing rows."""
        return [("fp32", None)]

    @classmethod
    def planned(cls, cfg: BenchConfig, precision: str = "fp32") -> list[tuple[str, int]]:
        """The (work, batch size) pairs this implementation is timed on under `cfg`; below fp32,
        inference and latency only (training in bf16/fp16 is autocast's job, not timed here)."""
        pairs = [("inference", b) for b in cfg.inference_batches]
        pairs.append(("latency", 1))
        if precision != "fp32":
            return pairs
        if "train_step" in cls.works:
            pairs += [("train_step", b) for b in cfg.train_batches]
        if cfg.epochs and "epoch" in cls.works:
            pairs += [("epoch", b) for b in cfg.epoch_batches]
        return pairs

    @classmethod
    def thread_counts(cls, cfg: BenchConfig, device: str, work: str, all_threads: int) -> list[int]:
        """CPU rows are timed at each thread count; whole epochs (seconds each) and the
        implementations that do not sweep only with all threads; GPU rows record the host's."""
        if device != "cpu" or not cls.sweeps_threads or work == "epoch":
            return [all_threads]
        return sorted({all_threads if t == 0 else min(t, all_threads) for t in cfg.threads})

    def refuses(self, work: str, batch: int) -> str | None:
        """Why this implementation cannot do `work` at `batch` for its model (None: it can)."""
        if batch == 1 and work in TRAINING and getattr(self.bm.config, "batchnorm", False):
            return "batchnorm cannot train on a batch of one image (no batch statistics)"
        return None

    def to_input(self, x: torch.Tensor):
        """A float32 (N, 1, 28, 28) CPU tensor -> this implementation's input on its device."""
        return x.to(self.device)

    def to_labels(self, y: torch.Tensor):
        """int64 CPU labels -> this implementation's labels on its device."""
        return y.to(self.device)

    def forward(self, x) -> Any:
        raise NotImplementedError

    def outputs(self, x: torch.Tensor) -> np.ndarray:
        """Logits of float32 CPU images as a float32 NumPy array (for the agreement check)."""
        out = self.forward(self.to_input(x))
        if isinstance(out, torch.Tensor):
            return out.float().cpu().numpy()
        return np.asarray(out, dtype=np.float32)

    def train_step(self, x, y) -> Any:
        raise NotImplementedError

    def train_epochs(self, tcfg, data):
        """Train through this implementation's own trainer; returns its TrainResult."""
        raise NotImplementedError

    # --- timing -----------------------------------------------------------------------------

    def measure(self, ctx: RunContext, work: str, batch: int, threads: int) -> tuple[list[float], dict]:
        """Time one work at one batch size: each timed run's seconds, and the row's extra fields."""
        if work == "epoch":
            return self._epoch_times(ctx, batch, threads)
        return self._direct_times(ctx, work, batch)

    def transfer_s(self, *tensors: torch.Tensor) -> float | None:
        """Median host->device copy time of a work's inputs; None on the CPU (nothing moves)."""
        if self.device.type == "cpu":
            return None

        def copy_in():
            self.to_input(tensors[0])
            for t in tensors[1:]:
                t.to(self.device)
        times = time_runs(copy_in, sync_for(self.device), warmup=1, min_repeats=self.cfg.min_repeats,
                          max_repeats=self.cfg.max_repeats, budget_s=self.cfg.row_budget_s / 2)
        return statistics.median(times)

    def _direct_times(self, ctx: RunContext, work: str, batch: int) -> tuple[list[float], dict]:
        """Inference, latency and the training step, on inputs already on the device."""
        cfg, sync = self.cfg, sync_for(self.device)
        if work == "train_step":
            xb_cpu, yb_cpu = ctx.train_batch(batch)
            xb, yb = self.to_input(xb_cpu), self.to_labels(yb_cpu)
            times = time_runs(lambda: self.train_step(xb, yb), sync, cfg.warmup, cfg.min_repeats,
                              cfg.max_repeats, cfg.row_budget_s)
            return times, {"transfer_s": self.transfer_s(xb_cpu, yb_cpu)}
        if self._x_test is None:
            self._x_test = self.to_input(ctx.x_test)
        x = self._x_test
        if work == "latency":
            # one image, many times: what a click in the dashboard waits for
            x1 = x[:1]
            times = time_runs(lambda: self.forward(x1), sync, cfg.warmup, cfg.min_repeats * 10,
                              cfg.max_repeats * 10, cfg.row_budget_s / 2)
            return times, {"transfer_s": self.transfer_s(ctx.x_test[:1])}
        batches = [x[i:i + batch] for i in range(0, len(x), batch)]  # views: no copies in the loop
        if batch <= 500:
            probe([lambda xb=xb: self.forward(xb) for xb in batches], len(batches), sync,
                  sample=math.ceil(500 / batch), limit=cfg.max_run_s)
        else:  # a big batch: probe with 500 images of it (per image no cheaper than the full batch)
            probe([lambda: self.forward(x[:500])] * math.ceil(len(x) / 500), math.ceil(len(x) / 500),
                  sync, sample=1, limit=cfg.max_run_s)

        def run():
            for xb in batches:
                self.forward(xb)
        times = time_runs(run, sync, cfg.warmup, cfg.min_repeats, cfg.max_repeats, cfg.row_budget_s)
        return times, {"transfer_s": self.transfer_s(ctx.x_test)}

    def _epoch_times(self, ctx: RunContext, batch: int, threads: int) -> tuple[list[float], dict]:
        """One pass over all 60,000 training images through this implementation's real trainer:
        the first epoch is the warm-up, the following ones are timed."""
        from ..train import TrainConfig
        images = len(ctx.data.y_train)
        self._epoch_estimate(ctx, batch, threads, images)
        # fp32 so the figure compares with the fp32 peak; every image trains, no validation pass;
        # threads given explicitly: train_numpy would otherwise pick one BLAS thread by itself
        tcfg = TrainConfig(epochs=1 + self.cfg.epoch_repeats, batch_size=batch, val_fraction=0.0,
                           device=self.device.type, precision="fp32", seed=self.cfg.seed,
                           progress_every=10 ** 9, threads=threads)
        times = [h["epoch_seconds"] for h in self.train_epochs(tcfg, ctx.data).history]
        extra = {"note": "the trainer's own epoch_seconds; its first epoch was the warm-up"}
        if self.device.type != "cpu":  # the trainer moves the training set once, before the loop
            extra["transfer_s"] = self.transfer_s(*ctx.train_batch(images))
        return times[1:] or times, extra

    def _epoch_estimate(self, ctx: RunContext, batch: int, threads: int, images: int) -> None:
        """Skip an epoch that the training-step rows say would outlast the row limit; the step
        row with the nearest batch size at or above this one gives the (optimistic) estimate."""
        known = sorted((b, t) for (name, dev, th, b), t in ctx.step_s.items()
                       if name == self.name and dev == self.device.type and th == threads and b >= batch)
        if known:
            b, t = known[0]
            est = t / b * images
            if est > self.cfg.max_epoch_s:
                raise Skip(f"skipped: one epoch would take about {est:.0f} s (from the batch-{b} "
                           f"training step; row limit {self.cfg.max_epoch_s:g} s)")


class PyTorchImpl(Impl):
    name = "pytorch"
    works = WORKS
    folds = True  # MLP inference with the normalization folded into fc1 (when cfg says so)

    @classmethod
    def precisions(cls, device):
        if device == "cpu":
            return [("fp32", None), ("bf16", None if cpu_has_fast_bf16() else NO_BF16)]
        if device == "cuda":
            bf16 = None if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else \
                "not measured: this GPU has no native bf16"
            return [("fp32", None), ("fp16", None), ("bf16", bf16)]
        return [("fp32", None)]

    def __init__(self, bm, device, cfg, precision="fp32"):
        super().__init__(bm, device, cfg, precision)
        self.model = build_model(bm.config)
        self.model.load_state_dict(bm.state_dict)
        self.model.to(device).eval()
        self.infer_model = fold_normalization(self.model) if self.folds and cfg.fold_normalization else self.model
        self.dtype = DTYPES[precision]
        if precision != "fp32":  # the whole model cast once: weights and activations in 16 bits
            self.infer_model = copy.deepcopy(self.infer_model).to(self.dtype)
        self.onednn = None
        if (self.folds and cfg.onednn and precision == "fp32" and device.type == "cpu"
                and bm.config.kind == "mlp"):
            self.onednn = onednn_mlp(self.infer_model)
        # the trainer's choice (train._optimizer): fused Adam where PyTorch has it
        fast = {"fused": True} if device.type in ("cpu", "cuda") else {"foreach": True}
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3, **fast)

    def to_input(self, x):
        return x.to(self.device, self.dtype)

    def forward(self, x):
        with torch.inference_mode():
            if self.onednn is not None and len(x) >= ONEDNN_MIN_BATCH:
                return self.onednn(x.reshape(len(x), -1).to_mkldnn()).to_dense()
            return self.infer_model(x)

    def train_step(self, x, y):
        self.model.train()
        loss = F.cross_entropy(self.model(x), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.model.eval()
        return loss

    def train_epochs(self, tcfg, data):
        from ..train import train
        return train(self.bm.config, tcfg, data)


ONEDNN_MIN_BATCH = 1000  # below this the layout conversions cost more than oneDNN saves


def onednn_mlp(model: torch.nn.Module) -> torch.nn.Module | None:
    """An inference copy of a (folded) MLP whose linear layers run on oneDNN kernels
    (torch.utils.mkldnn.to_mkldnn), or None where it cannot (batchnorm1d, say) or computes
    something else than the model on a few images."""
    import warnings
    from torch.utils import mkldnn
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # it builds on torch.jit, which warns it is deprecated
            fast = mkldnn.to_mkldnn(copy.deepcopy(model)).eval()
        x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            same = torch.allclose(fast(x.reshape(8, -1).to_mkldnn()).to_dense(), model(x), atol=1e-4)
    except (RuntimeError, TypeError, NotImplementedError):
        return None
    return fast if same else None


def fold_normalization(model: torch.nn.Module) -> torch.nn.Module:
    """An inference copy of an MLP with its input normalization folded into fc1.

    ((x - m) / s) @ W.T + b  ==  x @ (W / s).T + (b - (m / s) * W.sum(1)): the same function,
    one pass over the 10,000 x 784 input fewer (two, counting the temporary), which on a
    2-core CPU is a third of the whole forward. The twin's ManualNet and TorchOpsNet fold it the
    same way, so all implementations do the same arithmetic (ReLUs also work in place, as
    theirs do). CNNs are returned as they are: zero padding must pad the normalized image,
    so there the layer cannot be folded.
    """
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


class OnnxRuntimeImpl(Impl):
    """The model exported to ONNX by export.py, in an ONNX Runtime session with its intra-op
    threads set to the row's thread count. The MLP is exported with the normalization folded
    into fc1 when the PyTorch rows fold it (the same function; see fold_normalization), so both
    do the same arithmetic. Inputs and outputs are host NumPy arrays: on CUDA each run includes
    the copies (no I/O binding)."""

    name = "onnxruntime"
    works = ("inference", "latency")

    @classmethod
    def unavailable(cls, device):
        import onnxruntime as ort
        if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            return "this onnxruntime build has no CUDA provider (onnxruntime-gpu has)"
        if device == "mps":
            return "ONNX Runtime on Apple GPUs (CoreML provider) is not timed"
        return None

    def __init__(self, bm, device, cfg, precision="fp32"):
        super().__init__(bm, device, cfg, precision)
        from ..export import ort_session
        provider = "CUDAExecutionProvider" if device.type == "cuda" else "CPUExecutionProvider"
        self.session = ort_session(bm.onnx(fold=cfg.fold_normalization), threads=torch.get_num_threads(),
                                   provider=provider)
        self.input_name = self.session.get_inputs()[0].name

    def to_input(self, x):
        return np.ascontiguousarray(x.numpy(), dtype=np.float32)

    def forward(self, x):
        return self.session.run(None, {self.input_name: x})[0]


class ManualNumpyImpl(Impl):
    name = "manual-numpy"
    works = WORKS

    @classmethod
    def unavailable(cls, device):
        if device != "cpu":
            return "NumPy computes on the CPU only; manual-torch is the same math on a GPU"
        return None

    def __init__(self, bm, device, cfg, precision="fp32"):
        super().__init__(bm, device, cfg, precision)
        self.net = twin.ManualNet(bm.config, twin.state_dict_to_numpy(bm.state_dict))
        self._step = None

    def refuses(self, work, batch):
        if work in TRAINING and self.bm.config.kind != "mlp":
            return "the benchmark times the NumPy twin's training for MLPs only (CNNs: inference)"
        return super().refuses(work, batch)

    def to_input(self, x):
        return np.ascontiguousarray(x.numpy(), dtype=np.float32)

    def to_labels(self, y):
        return y.numpy()

    def forward(self, x):
        return self.net.forward(x)

    def train_step(self, x, y):
        """The inner loop of twin.train_numpy: forward, softmax cross-entropy, backward, Adam."""
        if self._step is None:
            net = twin.NumpyMLP(self.bm.config, np.random.default_rng(0))
            net.load_state_dict(self.bm.state_dict)
            opt, loss_fn = twin.Adam(1e-3), twin.SoftmaxCrossEntropy()
            params = net.parameters()

            def step(x, y):
                loss = loss_fn.forward(net.forward(x, train=True), y)
                net.backward(loss_fn.backward())
                opt.step([layer.params[k] for _, layer, k in params],
                         [layer.grads[k] for _, layer, k in params])
                return loss
            self._step = step
        return self._step(x, y)

    def train_epochs(self, tcfg, data):
        return twin.train_numpy(self.bm.config, tcfg, data)


class ManualTorchImpl(Impl):
    """Inference only: TorchOpsNet runs under inference_mode and has no trainer."""

    name = "manual-torch"
    works = ("inference", "latency")

    def __init__(self, bm, device, cfg, precision="fp32"):
        super().__init__(bm, device, cfg, precision)
        self.net = twin.TorchOpsNet(bm.config, bm.state_dict, device=str(device))

    def forward(self, x):
        return self.net.forward(x)


class DataLoaderImpl(PyTorchImpl):
    """The pytorch/examples mnist loop: for data, target in loader: data.to(device); model(data).
    Same nn.Module and optimizer as `pytorch`; only the way images reach it differs."""

    name = "dataloader"
    works = WORKS
    folds = False            # the usual loop runs the module as saved
    sweeps_threads = False   # Python-bound (PIL per image): more BLAS threads change nothing
    interleaved = False      # ~100x slower: its own inference row stands in for it in the headline
    # a 10,000-image batch cannot be assembled in step time: PIL per image makes that an
    # epoch-scale wait, which the inference row already shows
    max_step_batch = 1024

    @classmethod
    def precisions(cls, device):
        return [("fp32", None)]  # the seed-style loop as it was written

    @classmethod
    def planned(cls, cfg, precision="fp32"):
        pairs: list[tuple[str, int]] = []
        if cfg.dataloader_full:
            pairs += [("inference", b) for b in cfg.dataloader_batches]
        pairs.append(("latency", 1))
        pairs += [("train_step", b) for b in cfg.train_batches if b <= cls.max_step_batch]
        if cfg.epochs and cfg.dataloader_full:
            pairs += [("epoch", b) for b in cfg.epoch_batches[:1]]
        return pairs

    def measure(self, ctx, work, batch, threads):
        """The conventional loop: per-image PIL + ToTensor in a DataLoader, a copy per batch, the
        nn.Module. Conversion and copies happen inside the loop, as they do there, so they are in
        the time (no separate transfer figure)."""
        from torch.utils.data import DataLoader
        from torch.utils.data._utils.collate import default_collate
        cfg, dev, sync = self.cfg, self.device, sync_for(self.device)
        note = {"note": "per-image PIL + ToTensor and the per-batch copy are inside the timed loop"}
        split = "test" if work in ("inference", "latency") else "train"
        ds = TorchvisionStyleDataset(getattr(ctx.data, f"x_{split}"), getattr(ctx.data, f"y_{split}"))
        model = self.model
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
            # the epoch-scale limit: one pass over the test set is the baseline of the goal
            # ">= 50x the DataLoader loop", and a busy 2-core machine made it ~10 s
            probe(((lambda d=data: infer(d)) for data, _ in loader), len(loader), sync,
                  sample=math.ceil(1000 / batch), limit=cfg.max_epoch_s)
            # ~a second a run on an idle machine: one warm-up, three timed
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
                self.train_step(data.to(dev), target.to(dev))
            return time_runs(step, sync, cfg.warmup, cfg.min_repeats, cfg.max_repeats,
                             cfg.row_budget_s), note

        def epoch():
            for data, target in loader:
                self.train_step(data.to(dev), target.to(dev))

        probe(((lambda d=data, t=target: self.train_step(d.to(dev), t.to(dev)))
               for data, target in loader), len(loader), sync, sample=math.ceil(2000 / batch),
              limit=cfg.max_epoch_s)
        # one epoch, no warm-up: it takes seconds, and per-image Python work barely warms up
        return time_runs(epoch, sync, 0, 1, 1, None), {"note": note["note"] + "; one epoch, not repeated"}


IMPL_CLASSES: dict[str, type[Impl]] = {c.name: c for c in
                                       (PyTorchImpl, OnnxRuntimeImpl, ManualNumpyImpl, ManualTorchImpl,
                                        DataLoaderImpl)}
assert tuple(IMPL_CLASSES) == IMPLS  # config.IMPLS names them for the CLI and the results schema
