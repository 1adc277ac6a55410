"""The model under test: its architecture and CPU weights (`BenchModel`), found from a checkpoint,
a preset, or the shipped default (`resolve_model`).

Timing needs no trained weights, so a preset's architecture with random weights will do; the
shipped artifacts/models/mlp.pt is used only when it is the 784-128-10 net everyone compares.
Left out: anything that runs the model (impls.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data import ARTIFACTS, IMAGE_SIZE
from ..models import (ModelConfig, build_model, config_from_dict, config_to_dict, count_parameters,
                      preset, read_checkpoint)
from .config import DEFAULT_PRESET
from .harness import forward_flops

DEFAULT_MODEL = ARTIFACTS / "models" / "mlp.pt"


@dataclass
class BenchModel:
    config: ModelConfig
    state_dict: dict[str, torch.Tensor]  # on the CPU, float32
    name: str
    source: str                          # which weights: a checkpoint path or "random weights"
    _onnx: dict[bool, bytes] = field(default_factory=dict, repr=False)

    def onnx(self, fold: bool = False) -> bytes:
        """The model as ONNX (export.py: the exporter the download uses), exported once per run;
        fold: an MLP with its input normalization folded into fc1, as the PyTorch rows run it."""
        if fold not in self._onnx:
            from ..export import onnx_bytes
            from .impls import fold_normalization
            model = build_model(self.config)
            model.load_state_dict(self.state_dict)
            model.eval()
            self._onnx[fold] = onnx_bytes(fold_normalization(model) if fold else model, source=self.source)
        return self._onnx[fold]

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
