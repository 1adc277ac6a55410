"""One run spec: what a training run is, built from a preset plus overrides, validated once.

The Train form, the settings link, the CLI, the store and the trainer all go through
`RunSpec`: `RunSpec.build(...)` / `from_dict(...)` validate (one sentence naming the field on
anything wrong), `to_dict()` is what the store keeps (tag `fmnist.spec`) and the trainer reads
back, `params()` is the flat view MLflow shows. Nothing else translates a spec.

What is checked here, before any run exists: the model config (models.validate_config), the
training options (TrainConfig.validate), the engine and the twin's own rules, the number of
training images, the threads, and a last batch of one image under batchnorm (its batch
statistics are undefined: torch raises after a whole epoch). Class limits and the price are
not here: roles.check_limits and cost.price.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import ConfigError
from .models import (ModelConfig, config_from_dict, config_to_dict, layer_plan, plan_parameters,
                     preset as get_preset)
from .train import TrainConfig, train_config_from_dict, train_config_to_dict

ENGINES = ("torch", "numpy")
TRAIN_IMAGES = 60_000


@dataclass(frozen=True)
class RunSpec:
    model: ModelConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str | None = None          # the preset it started from, when its model is unchanged
    engine: str = "torch"              # torch | numpy (the hand-written twin trains it)
    train_limit: int | None = None     # only the first N training images (demos, tests); None = all
    watch_test: bool = False           # score the test set at each epoch end, for the record only

    # --- building ---------------------------------------------------------------------------

    @classmethod
    def from_preset(cls, name: str, model: dict[str, Any] | None = None, train: dict[str, Any] | None = None,
                    **extra: Any) -> "RunSpec":
        """A preset with overrides: `RunSpec.from_preset("mlp-seed000", train={"epochs": 2})`."""
        p = get_preset(name)
        try:
            mcfg = replace(p["model"], **(model or {}))
        except TypeError as exc:
            raise ConfigError(str(exc)) from None
        tcfg = train_config_from_dict({**p["train"], **(train or {})})
        same = config_to_dict(mcfg) == config_to_dict(p["model"])
        return cls(mcfg, tcfg, preset=name if same else None, **extra).validate()

    def validate(self) -> "RunSpec":
        layer_plan(self.model)  # validates the model config
        self.train.validate()
        if self.engine not in ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.train_limit is not None and (not isinstance(self.train_limit, int) or self.train_limit < 1):
            raise ConfigError(f"training images (train_limit) must be a whole number >= 1, got {self.train_limit!r}")
        threads = self.train.threads
        if not isinstance(threads, int) or not 0 <= threads <= max(os.cpu_count() or 1, 64):
            raise ConfigError(f"threads must be 0 (leave as is) to {max(os.cpu_count() or 1, 64)}, got {threads!r}")
        if self.engine == "numpy":
            from .twin import check_trainable
            check_trainable(self.model, self.train)
        if self.watch_test and self.engine != "torch":
            raise ConfigError("watching the test set (watch_test) needs the torch engine")
        n = self.train_images()
        if n < 1:
            raise ConfigError("no training images are left after the validation split")
        if self.has_batchnorm() and n % self.train.batch_size == 1:
            raise ConfigError(f"with batchnorm the last batch would hold one image ({n:,} training images, "
                              f"batch size {self.train.batch_size}): choose another batch size")
        return self

    # --- what it implies ----------------------------------------------------------------------

    def train_images(self) -> int:
        """Images one epoch trains on: after the validation split, then the limit (as train.train)."""
        n = TRAIN_IMAGES - int(round(TRAIN_IMAGES * self.train.val_fraction))
        return min(n, self.train_limit) if self.train_limit else n

    def val_images(self) -> int:
        return int(round(TRAIN_IMAGES * self.train.val_fraction))

    def has_batchnorm(self) -> bool:
        return any(s.kind in ("batchnorm1d", "batchnorm2d", "resblock") for s in layer_plan(self.model))

    def parameters(self) -> int:
        return plan_parameters(self.model)

    # --- the one translator -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d = {"model_config": config_to_dict(self.model), "train_config": train_config_to_dict(self.train),
             "preset": self.preset, "engine": self.engine, "train_limit": self.train_limit,
             "parameters": self.parameters()}
        if self.watch_test:
            d["watch_test"] = True
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunSpec":
        """Back from the store (or a test, or a link): every field checked; unknown keys refused."""
        if isinstance(d, RunSpec):
            return d.validate()
        if not isinstance(d, dict) or "model_config" not in d:
            raise ConfigError("a run spec needs a model_config")
        known = {"model_config", "train_config", "preset", "engine", "train_limit", "parameters",
                 "watch_test", "run_id", "created"}  # the last two: added by the store when read
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown run spec keys: {', '.join(sorted(unknown))}")
        limit = d.get("train_limit")
        return cls(config_from_dict(d["model_config"]), train_config_from_dict(d.get("train_config") or {}),
                   preset=d.get("preset"), engine=d.get("engine") or "torch",
                   train_limit=int(limit) if isinstance(limit, (int, float)) and float(limit).is_integer() else limit,
                   watch_test=bool(d.get("watch_test"))).validate()

    def params(self) -> dict[str, str]:
        """The flat view for MLflow's params table: model.hidden=128,64, train.lr=0.001, ..."""
        def flat(prefix: str, d: dict) -> dict[str, str]:
            return {f"{prefix}.{k}": ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
                    for k, v in d.items()}
        return {**flat("model", config_to_dict(self.model)), **flat("train", train_config_to_dict(self.train)),
                "preset": str(self.preset), "engine": self.engine, "train_limit": str(self.train_limit)}


def run_spec(model_config: ModelConfig, train_config: TrainConfig, preset: str | None = None,
             engine: str = "torch", train_limit: int | None = None, watch_test: bool = False) -> dict[str, Any]:
    """The stored form of a new spec (RunSpec(...).validate().to_dict()), for callers with configs."""
    return RunSpec(model_config, train_config, preset=preset, engine=engine, train_limit=train_limit,
                   watch_test=watch_test).validate().to_dict()
