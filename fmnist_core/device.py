"""Which device and precision to compute on: cuda, mps or cpu; fp32 or bf16.

`auto` picks CUDA, then Apple MPS, then the CPU. bf16 autocast pays on CPUs
with AMX or AVX-512 BF16 (this project's reference machine trains a small CNN
~2.4x faster with it) and on recent GPUs; elsewhere we stay in fp32.
"""
from __future__ import annotations

import functools
import os
import platform

import torch

from .errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "mps")


def available_devices() -> dict[str, str | None]:
    """device -> None when usable, else the plain reason it is not."""
    out: dict[str, str | None] = {"cpu": None}
    if torch.cuda.is_available():
        out["cuda"] = None
    else:
        out["cuda"] = ("this PyTorch build has no CUDA support" if torch.version.cuda is None
                       else "no CUDA device on this machine")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out["mps"] = None
    else:
        out["mps"] = "no Apple MPS device (Apple silicon with macOS 12.3+ only)"
    return out


def resolve_device(name: str = "auto") -> torch.device:
    if name not in DEVICES:
        raise ConfigError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    avail = available_devices()
    if name == "auto":
        for d in ("cuda", "mps"):
            if avail[d] is None:
                return torch.device(d)
        return torch.device("cpu")
    if avail[name] is not None:
        raise ConfigError(f"device {name} is not available: {avail[name]}")
    return torch.device(name)


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """AMX or AVX512-BF16 in /proc/cpuinfo (Linux); elsewhere assume no."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split())
                    return bool({"amx_bf16", "avx512_bf16"} & flags)
    except OSError:
        pass
    return False


def resolve_precision(precision: str, device: torch.device, model_kind: str) -> str:
    """'fp32' or 'bf16'. auto: bf16 for CNNs and ResNets where the hardware does it fast
    (AMX / AVX512-BF16; on a CPU without them, bf16 convolutions are ~10x slower: fp32).

    MLPs stay fp32 under auto: their matmuls are tiny and autocast's casts cost
    more than they save.
    """
    if precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    if precision != "auto":
        return precision
    if model_kind not in ("cnn", "resnet"):  # models.CONV_KINDS (device.py imports no models)
        return "fp32"
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return "fp32"


def autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what the platform module says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    info = {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(), "python": platform.python_version(),
            "torch": str(torch.__version__), "gpu": None}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
