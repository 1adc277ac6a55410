"""What a benchmark run covers: the vocabulary (implementations, works, devices), the settings
(`BenchConfig`, one why-comment per default) and its two presets, `quick` and `full`.

Every field of BenchConfig is saved in the results file (`settings`), so a file says how it
was measured. Left out: the model under test (model.py), how the rows are timed (harness.py,
impls.py, run.py).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

IMPLS = ("pytorch", "onnxruntime", "manual-numpy", "manual-torch", "dataloader")  # impls.IMPL_CLASSES, in this order
PRECISIONS = ("fp32", "bf16", "fp16")  # fp32 everywhere; bf16 on CPUs with AMX or AVX512-BF16 and on CUDA; fp16 on CUDA
WORKS = ("inference", "latency", "train_step", "epoch")
DEVICES = ("cpu", "cuda", "mps")
DEFAULT_PRESET = "mlp-seed000"  # the course project's MLP (784-128-10), the one the questions are about


@dataclass
class BenchConfig:
    devices: tuple[str, ...] = DEVICES           # unavailable ones still get rows saying why
    impls: tuple[str, ...] = IMPLS               # all five: the comparison is the point
    precisions: tuple[str, ...] = PRECISIONS     # lower ones: PyTorch inference only, where the
                                                 # hardware has them (rows say why not elsewhere)
    inference_batches: tuple[int, ...] = (1, 32, 256, 10000)  # the four batch sizes
    train_batches: tuple[int, ...] = (1, 32, 256, 10000)      # the same four, for one training step
    epoch_batches: tuple[int, ...] = (64, 256)   # 64: what the presets train with
    dataloader_batches: tuple[int, ...] = (256,)  # ~0.8 s a run: one batch size tells the story
    threads: tuple[int, ...] = (1, 0)            # 0 = all the threads this process has
    epochs: bool = True                          # one-epoch rows (seconds each)
    dataloader_full: bool = True                 # DataLoader over all 10,000 / 60,000 images
    warmup: int = 2                              # burn-in runs before the clock starts
    min_repeats: int = 5                         # a median needs a few runs, even of a slow row
    max_repeats: int = 50                        # fast rows stop here: more adds time, not certainty
    row_budget_s: float = 0.5                    # timed runs per row: about this much time
    max_run_s: float = 5.0                       # skip a row whose one run would take longer
    max_epoch_s: float = 30.0                    # the same for one epoch: those take seconds anyway
    epoch_repeats: int = 2                       # timed epochs after one warm-up epoch
    peak_size: int = 2048                        # the matmul that measures the fp32 peak
    peak_repeats: int = 7                        # its median: an odd count, one middle run
    numpy_peak: bool = True                      # numpy's own matmul rate, for the BLAS question
    fold_normalization: bool = True              # MLP inference: fold (x-m)/s into fc1, as the twin does
    onednn: bool = True                          # fp32 MLP inference on the CPU of >= 1,000 images through
                                                 # oneDNN (torch.utils.mkldnn): on AMD EPYC MKL's sgemm
                                                 # took 2x ONNX Runtime's time (183 vs 88 ms, 1 thread),
                                                 # oneDNN 90 ms; one image stays dense (17 vs 67 us)
    headline_rounds: int = 15                    # interleaved 10k-inference rounds (0 = none)
    turn_pause_s: float = 0.2                    # idle before each headline turn: NumPy's BLAS and
                                                 # PyTorch's threads spin ~0.1 s after a call and took
                                                 # the next one's cores (PyTorch 28-48 ms in turns vs
                                                 # 13-14 alone; 15 ms with the pause, 2 cores)
    seed: int = 0                                # the same weights and batches on every run

    @classmethod
    def quick(cls, **kw) -> "BenchConfig":
        """A few seconds: fewer repeats, no epochs, no DataLoader pass over a whole split."""
        base = cls(inference_batches=(10000,), train_batches=(256,), epoch_batches=(),
                   threads=(1, 0), epochs=False, dataloader_full=False, warmup=1, min_repeats=3,
                   max_repeats=10, row_budget_s=0.1, max_run_s=0.5, peak_size=1024,
                   peak_repeats=3, numpy_peak=False, headline_rounds=5)
        return replace(base, **kw)

    @classmethod
    def full(cls, **kw) -> "BenchConfig":
        """Several minutes: every batch size, epochs, the DataLoader over whole splits (the defaults)."""
        return cls(**kw)
