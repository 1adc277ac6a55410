"""What a study may vary, and its templates: the course's questions as ready-made studies.

A *setting* is a name a study varies. Most are RunSpec fields written as a path
(`model.dropout`, `train.lr`, `train.batch_size`, `model.batchnorm`, ...); a few are
course words that change several fields at once (`depth`, `width`, `regularization`,
`architecture`, `augmentation`, `engine`). `apply(spec_dict, name, value)` is the one place
that turns a setting's value into a spec; the trial's RunSpec is then validated as any other.

A *template* is a study ready to open: its question (settings with their values or ranges),
the spec it starts from, and for the seeds' own experiments the figure the seed reported.
"""
from __future__ import annotations

import copy
import json
from typing import Any

from .errors import ConfigError
from .models import config_to_dict, preset as get_preset

# L1 and L2 strengths of the `regularization` setting: seed 004 compared the two at one
# strength each; these are strong enough to move a 1-epoch MLP's accuracy, not to cripple it
L1_STRENGTH = 1e-5   # times the sum of |w| over every weight matrix (~100k weights)
L2_STRENGTH = 1e-3   # Adam's weight decay (coupled L2, as a Keras kernel_regularizer)
DEPTH_WIDTH = 128    # the width of each hidden layer when only the depth is varied

DERIVED = {
    "depth": "hidden layers of the MLP (0 = a linear model), each as wide as the base's first",
    "width": "units in every hidden layer of the MLP",
    "regularization": "none, l1 or l2 (weights penalised in the loss / weight decay)",
    "architecture": "mlp, cnn or resnet (the presets mlp-seed000, cnn-seed003, resnet)",
    "augmentation": "random flips and 1-pixel shifts on or off",
    "engine": "torch (PyTorch) or numpy (the hand-written twin)",
}
ARCHITECTURES = {"mlp": "mlp-seed000", "cnn": "cnn-seed003", "resnet": "resnet"}


def describe(name: str) -> str:
    return DERIVED.get(name) or name.split(".", 1)[-1].replace("_", " ")


def check_name(name: str, base: dict[str, Any]) -> None:
    """A setting this module can apply to `base` (a RunSpec dict), else one sentence."""
    if name in DERIVED:
        return
    section, _, field = name.partition(".")
    key = {"model": "model_config", "train": "train_config"}.get(section)
    if key is None or field not in base.get(key, {}) or field in ("kind", "seed"):
        raise ConfigError(f"a study cannot vary {name!r}: choose one of {', '.join(DERIVED)} or a field "
                          f"such as model.dropout, train.lr, train.batch_size")


def apply(spec: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    """`spec` (a RunSpec dict, not changed) with the setting `name` set to `value`."""
    try:
        return _apply(spec, name, value)
    except (TypeError, ValueError) as exc:  # '0..3' as a depth: a sentence, not a traceback
        raise ConfigError(f"{name} cannot be {value!r}") from exc


def _apply(spec: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    s = copy.deepcopy(spec)
    m, t = s["model_config"], s["train_config"]
    if name == "depth":
        if m.get("kind") != "mlp":
            raise ConfigError("depth is a setting of MLPs")
        width = (m.get("hidden") or [DEPTH_WIDTH])[0]
        m["hidden"] = [width] * int(value)
    elif name == "width":
        if m.get("kind") != "mlp":
            raise ConfigError("width is a setting of MLPs")
        m["hidden"] = [int(value)] * max(1, len(m.get("hidden") or []))
    elif name == "regularization":
        if value not in ("none", "l1", "l2"):
            raise ConfigError(f"regularization is none, l1 or l2, got {value!r}")
        t["l1"] = L1_STRENGTH if value == "l1" else 0.0
        t["weight_decay"] = L2_STRENGTH if value == "l2" else 0.0
    elif name == "architecture":
        if value not in ARCHITECTURES:
            raise ConfigError(f"architecture is one of {', '.join(ARCHITECTURES)}, got {value!r}")
        s["model_config"] = config_to_dict(get_preset(ARCHITECTURES[value])["model"])
        s["preset"] = None
    elif name == "augmentation":
        t["augment_flip"], t["augment_shift"] = bool(value), 1 if value else 0
    elif name == "engine":
        s["engine"] = str(value)
    else:
        section, _, field = name.partition(".")
        d = m if section == "model" else t
        d[field] = value
    if s["model_config"] != spec["model_config"]:
        s["preset"] = None  # a preset names a model: a changed one is no longer that preset
    s.pop("parameters", None)  # recomputed by RunSpec.to_dict
    return s


def parse_value(text: str) -> Any:
    """'0.2' -> 0.2, '3' -> 3, 'true' -> True, 'l1' -> 'l1' (what a person types for a value)."""
    v = text.strip()
    try:
        return json.loads(v.lower() if v.lower() in ("true", "false") else v)
    except ValueError:
        return v


def parse_values(text: str) -> list[Any]:
    """'0, 1, 2' -> [0, 1, 2]."""
    vals = [parse_value(v) for v in text.split(",") if v.strip()]
    if not vals:
        raise ConfigError("give at least one value, separated by commas")
    return vals


def base_spec(preset: str = "mlp-seed000", epochs: int | None = None, train_limit: int | None = None,
              **train: Any) -> dict[str, Any]:
    """A preset's spec dict, with a number of epochs, a training subset, train overrides."""
    from .spec import RunSpec
    tr = {**({"epochs": int(epochs)} if epochs else {}), **train}
    return RunSpec.from_preset(preset, train=tr, train_limit=train_limit).to_dict()


# --- templates: the course's questions, and the seeds' own experiments ------------------------
# each: about, settings {name: {"values": [...]} | {"low", "high", "log"}}, preset, train
# overrides; "reported" (a seed's figure, %) and "epochs" for the seeds' experiments
TEMPLATES: dict[str, dict[str, Any]] = {
    "depth": {"about": "Does depth help? 0 to 4 hidden layers of 128 (seed 004)",
              "settings": {"depth": {"values": [0, 1, 2, 3, 4]}}, "preset": "mlp-seed000"},
    "width": {"about": "How wide should the hidden layer be? (seed 001's table)",
              "settings": {"width": {"values": [32, 64, 128, 256, 512]}}, "preset": "mlp-seed000"},
    "dropout": {"about": "Dropout 0 to 0.5 (seed 004)",
                "settings": {"model.dropout": {"values": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]}},
                "preset": "mlp-seed003"},
    "batchnorm": {"about": "Batch normalization on or off (seed 004)",
                  "settings": {"model.batchnorm": {"values": [False, True]}}, "preset": "mlp-seed001"},
    "regularization": {"about": "L1 vs L2 vs none (seed 004)",
                       "settings": {"regularization": {"values": ["none", "l1", "l2"]}},
                       "preset": "mlp-seed001"},
    "lr": {"about": "Learning rate on a log range, 1e-4 to 1e-1 (seed 001's table)",
           "settings": {"train.lr": {"low": 1e-4, "high": 1e-1, "log": True}}, "preset": "mlp-seed001",
           "search": "tpe"},
    "batch-size": {"about": "Batch size 16 to 1,024 (seed 001's table)",
                   "settings": {"train.batch_size": {"values": [16, 32, 64, 128, 256, 512, 1024]}},
                   "preset": "mlp-seed001"},
    # seed 003's finding: stopping on the loss and on the accuracy disagree (which epoch is kept,
    # how long a run trains); patience 2 over 10 epochs lets the two stop at different epochs
    "early-stopping": {"about": "Early stopping on validation loss vs validation accuracy (seed 003)",
                       "settings": {"train.early_stop_on": {"values": ["val_accuracy", "val_loss"]}},
                       "preset": "mlp-seed003", "train": {"epochs": 10, "patience": 2, "batch_size": 100}},
    "architecture": {"about": "MLP vs CNN vs ResNet", "settings": {"architecture": {"values": ["mlp", "cnn", "resnet"]}},
                     "preset": "mlp-seed000"},
    "engine": {"about": "The hand-written NumPy twin vs PyTorch, same model and seed (seed 000)",
               "settings": {"engine": {"values": ["torch", "numpy"]}}, "preset": "mlp-seed000"},
    "augmentation": {"about": "Augmentation (flips, 1-pixel shifts) on or off",
                     "settings": {"augmentation": {"values": [False, True]}}, "preset": "mlp-seed001"},
    # the seeds' experiments as each describes itself: one point, 3 seeds, the reported figure
    "seed000": {"about": "seed 000: 784-128-10, Adam, 60 epochs", "settings": {}, "preset": "mlp-seed000",
                "train": {"epochs": 60}, "reported": 88.88, "seeds": 3},
    "seed001": {"about": "seed 001: 784-128-64-10, batch 32, 10 epochs", "settings": {}, "preset": "mlp-seed001",
                "train": {"epochs": 10, "batch_size": 32}, "reported": 87.45, "seeds": 3},
    "seed003-mlp": {"about": "seed 003: MLP with 2 hidden layers, batch 100, 50 epochs, early stopping on "
                             "validation accuracy", "settings": {}, "preset": "mlp-seed003",
                    "train": {"epochs": 50, "batch_size": 100, "patience": 5}, "reported": 88.32, "seeds": 3},
    "seed003-cnn": {"about": "seed 003: 2-conv CNN with average pooling", "settings": {}, "preset": "cnn-seed003",
                    "train": {"epochs": 10}, "reported": 89.66, "seeds": 3},
    "seed002": {"about": "seed 002: CNN features -> MLP, 'up to 93%'", "settings": {}, "preset": "cnn-seed002",
                "train": {"epochs": 10}, "reported": 93.0, "seeds": 3},
}
SEED_TEMPLATES = ("seed000", "seed001", "seed003-mlp", "seed003-cnn", "seed002")


def template(name: str) -> dict[str, Any]:
    if name not in TEMPLATES:
        raise ConfigError(f"unknown study template {name!r}; choose one of {', '.join(TEMPLATES)}")
    return copy.deepcopy(TEMPLATES[name])
