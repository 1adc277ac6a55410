"""How a run is named wherever runs are listed: its owner, its model in a few words, and what
differs from the preset it started from (not just "preset @ time", which says nothing when 30
students launch the same preset).

    run_label(run)     "ada · mlp-seed000 · lr 0.01, 5 epochs"
    model_summary(cfg) "MLP 784-256-128-10" / "CNN 32-64 k3 max, fc 128, bn"
    changes(spec)      [("lr", 0.001, 0.01), ("epochs", 10, 5)]: (setting, preset's, this run's)
    file_stem(run)     "ada_mlp-seed000_lr-0.01-5-epochs_2026-12-05-0912": download names
"""
from __future__ import annotations

import re
import time
from typing import Any

from ..models import PRESETS, config_to_dict
from ..train import TrainConfig, train_config_to_dict

# names people read, for the settings that differ most often
SHORT = {"lr": "lr", "epochs": "epochs", "batch_size": "batch", "optimizer": "", "weight_decay": "L2",
         "l1": "L1", "schedule": "schedule", "augment_flip": "flip", "augment_shift": "shift",
         "label_smoothing": "smoothing", "patience": "patience", "early_stop_on": "stop on", "dropout": "dropout",
         "hidden": "hidden", "channels": "channels", "kernel": "kernel", "fc": "fc",
         "activation": "", "batchnorm": "batchnorm", "pool": "pool", "seed": "seed"}
IGNORED = {"device", "precision", "threads", "progress_every", "channels_last", "mean", "std", "kind",
           "max_seconds", "compile"}


def model_summary(model_config: dict[str, Any]) -> str:
    c = model_config or {}
    if c.get("kind") == "resnet":
        text = (f"ResNet stem {c.get('stem')}, stages " + "-".join(map(str, c.get("stages", [])))
                + f" x{c.get('blocks', 1)}")
    elif c.get("kind") == "cnn":
        parts = ["CNN " + "-".join(map(str, c.get("channels", []))), f"k{c.get('kernel')}", c.get("pool", "")]
        text = " ".join(p for p in parts if p)
        if c.get("fc"):
            text += ", fc " + "-".join(map(str, c["fc"]))
    else:
        text = "MLP " + "-".join(map(str, [784, *c.get("hidden", []), 10]))
    if c.get("batchnorm"):
        text += ", bn"
    if c.get("dropout"):
        text += f", dropout {c['dropout']:g}"
    if c.get("activation") and c["activation"] != "relu":
        text += f", {c['activation']}"
    return text


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "-".join(map(str, v))
    return str(v)


def changes(spec: dict[str, Any], base: tuple[dict, dict] | None = None) -> list[tuple[str, Any, Any]]:
    """The settings in which a run differs from its preset (or from the defaults without one),
    or from `base` = (model_config, train_config) when given (a challenge's starting point)."""
    preset = PRESETS.get(spec.get("preset") or "")
    if base is not None:
        base_model, base_train = base
    elif preset:
        base_model = config_to_dict(preset["model"])
        base_train = train_config_to_dict(TrainConfig(**preset["train"]))
    else:
        base_model, base_train = {}, train_config_to_dict(TrainConfig())
    out = []
    for ref, mine in ((base_model, spec.get("model_config") or {}), (base_train, spec.get("train_config") or {})):
        for k, v in mine.items():
            if k in IGNORED or k not in ref:
                continue
            if ref[k] != v and not (isinstance(v, list) and list(ref[k]) == v):
                out.append((k, ref[k], v))
    return out


def describe_changes(spec: dict[str, Any], most: int = 3, base: tuple[dict, dict] | None = None) -> str:
    parts = []
    for k, _, v in changes(spec, base):
        name = SHORT.get(k, k.replace("_", " "))
        parts.append(f"{name} {_fmt(v)}".strip() if name else _fmt(v))
    if len(parts) > most:
        parts = parts[:most] + [f"+{len(parts) - most} more"]
    return ", ".join(parts)


def run_label(run: dict[str, Any]) -> str:
    spec = run.get("config") or {}
    base = spec.get("preset") or model_summary(spec.get("model_config") or {})
    diff = describe_changes(spec) if spec.get("preset") else ""
    who = run.get("owner") or ""
    return " · ".join(p for p in (who, base, diff) if p)


def file_stem(run: dict[str, Any]) -> str:
    """A safe file name (no extension) for a run's downloads: owner, preset (or the model), what
    differs from the preset, and when it was launched (minute, UTC), so a student's folder of
    downloads says which is which. Only letters, digits, '.', '-' and '_' (no separators, no
    leading dot), at most 120 characters."""
    spec = run.get("config") or {}
    base = spec.get("preset") or model_summary(spec.get("model_config") or {})
    diff = describe_changes(spec, most=3) if spec.get("preset") else ""
    when = spec.get("created")
    stamp = time.strftime("%Y-%m-%d-%H%M", time.gmtime(float(when))) if when else ""
    return safe_name("_".join(p for p in (run.get("owner") or "", base, diff, stamp) if p), "run")


def safe_name(text: str, fallback: str) -> str:
    """text as a file name every system accepts: accents dropped (Zoë -> Zoe), runs of other
    characters become one '-'."""
    import unicodedata
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = [re.sub(r"[-.]*-[-.]*|\.{2,}", "-", re.sub(r"[^A-Za-z0-9.]+", "-", part)).strip("-.")
             for part in text.split("_")]
    name = "_".join(w for w in words if w)[:120].strip("-._")
    return name or fallback
