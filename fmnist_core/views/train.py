"""What the Train page shows: the form and a run's progress.

  * the form      widget values <-> (model config, train config) for a preset or a blank
                  MLP/CNN, the fields changed from the preset, every problem as one sentence
                  before launch, and the run spec the launcher takes; the class limits said
                  where they apply (roles.check_limits enforces them at Launch)
  * progress      progress fraction, epoch x/y, last epoch time, elapsed and ETA of a run
  * the queue     how a place in line reads (the places and waits: fmnist_core.queue)
  * the price     what a run would cost on this server before Launch (fmnist_core.cost)
  * the end       what a teacher would say about a run that ended (fmnist_core.diagnose)

Left out: launching (fmnist_core.submit) and the layer table (shared.layer_summary).
"""
from __future__ import annotations

import time
from typing import Any

from .. import runs
from ..errors import ConfigError

CUSTOM = {"mlp": "custom MLP", "cnn": "custom CNN", "resnet": "custom ResNet"}

# --- the form's fields: their own choices and ranges ----------------------------------------
# The page's widgets are built from these, and a settings link is checked against them
# (views/share.py), so a link can only ask for what the form itself could show.
# form field -> how the page names it, where the code name would not read well
FIELD_NAMES = {"arch": "architecture", "hidden": "hidden layers", "fc": "fully connected layers",
               "lr": "learning rate", "l2": "L2", "l1": "L1", "val_fraction": "validation split",
               "augment_flip": "flips", "augment_shift": "shifts", "train_limit": "training images",
               "early_stop_on": "early stopping on"}
ARCHS = ("mlp", "cnn", "resnet")
KERNELS = (1, 3, 5, 7)
POOLS = ("max", "avg")
PRECISIONS = ("auto", "fp32", "bf16")
ENGINES = {"torch": "PyTorch", "numpy": "NumPy twin (MLP, ResNet)"}
# sliders: (low, high); number inputs without bounds of their own still hold only what a
# browser's number can (2^53), so a link with 10^30 epochs is refused, not a crash
RANGES: dict[str, tuple[float, float]] = {"val_fraction": (0.0, 0.5), "augment_shift": (0, 4),
                                          "train_limit": (0, 2**53 - 1)}
NUMBER_LIMIT = 2**53 - 1
WIDTHS_FIELDS = ("hidden", "channels", "fc", "stages")  # comma-separated whole numbers


def field_choices() -> dict[str, tuple]:
    """Each choice field of the form -> the values its widget offers."""
    from ..device import DEVICES
    from ..models import ACTIVATIONS
    from ..train import EARLY_STOP_ON, OPTIMIZERS, SCHEDULES
    return {"early_stop_on": EARLY_STOP_ON, "arch": ARCHS, "kernel": KERNELS, "pool": POOLS, "activation": ACTIVATIONS,
            "optimizer": OPTIMIZERS, "schedule": SCHEDULES, "device": DEVICES,
            "precision": PRECISIONS, "engine": tuple(ENGINES)}


# --- the form ------------------------------------------------------------------------------

def form_defaults(start: str) -> dict[str, Any]:
    """Widget values for a preset name, or 'custom MLP' / 'custom CNN' / 'custom ResNet'."""
    from ..models import CNNConfig, MLPConfig, ResNetConfig, preset
    from ..train import TrainConfig
    if start == CUSTOM["mlp"]:
        mcfg, tdict = MLPConfig(), {}
    elif start == CUSTOM["cnn"]:
        mcfg, tdict = CNNConfig(), {}
    elif start == CUSTOM["resnet"]:
        mcfg, tdict = ResNetConfig(), {}
    else:
        p = preset(start)
        mcfg, tdict = p["model"], p["train"]
    t = TrainConfig(**tdict)
    cnn = mcfg if isinstance(mcfg, CNNConfig) else CNNConfig()
    mlp = mcfg if isinstance(mcfg, MLPConfig) else MLPConfig()
    res = mcfg if isinstance(mcfg, ResNetConfig) else ResNetConfig()
    return {
        "arch": mcfg.kind,
        "hidden": ", ".join(str(w) for w in mlp.hidden),
        "channels": ", ".join(str(w) for w in cnn.channels), "kernel": cnn.kernel, "pool": cnn.pool,
        "pool_every": cnn.pool_every, "max_pools": cnn.max_pools, "pool_first": bool(cnn.pool_first),
        "fc": ", ".join(str(w) for w in cnn.fc),
        "stem": res.stem, "stages": ", ".join(str(w) for w in res.stages), "blocks": res.blocks,
        "activation": mcfg.activation, "dropout": float(mcfg.dropout),
        "batchnorm": bool(getattr(mcfg, "batchnorm", True)),  # a ResNet always has it
        "epochs": t.epochs, "batch_size": t.batch_size, "optimizer": t.optimizer, "lr": float(t.lr),
        "momentum": float(t.momentum), "l2": float(t.weight_decay), "l1": float(t.l1),
        "schedule": t.schedule, "val_fraction": float(t.val_fraction), "augment_flip": t.augment_flip,
        "label_smoothing": float(t.label_smoothing),
        "augment_shift": t.augment_shift, "patience": t.patience,
        "early_stop_on": t.early_stop_on, "seed": t.seed,
        "device": t.device, "precision": t.precision, "engine": "torch", "train_limit": 0,
        # the speedrun presets' settings (speedrun.py): no widgets of their own, carried from the
        # preset into the spec so a speedrun started here trains as the preset says
        "whiten": cnn.whiten, "flip_alternate": t.flip_alternate, "ema": float(t.ema),
        "bn_bias_lr": float(t.bn_bias_lr),
    }


def changed_fields(values: dict[str, Any]) -> list[str]:
    """Form fields that differ from what values['start'] (a preset or a blank model) set."""
    base = form_defaults(values["start"])
    return [k for k, v in base.items() if k in values and values[k] != v]


def parse_widths(text: str, what: str, allow_empty: bool = False) -> tuple[int, ...]:
    """'256, 128' -> (256, 128), with a plain message for anything else."""
    parts = [p.strip() for p in str(text).replace(";", ",").split(",") if p.strip()]
    try:
        widths = tuple(int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"{what}: write whole numbers separated by commas, e.g. 256, 128 "
                          f"(got {text!r})") from None
    if not widths and not allow_empty:
        raise ConfigError(f"{what}: give at least one layer width")
    return widths


def model_config_from_form(v: dict[str, Any]):
    """Form values -> MLPConfig / CNNConfig / ResNetConfig, validated (raises ConfigError)."""
    from ..models import CNNConfig, MLPConfig, ResNetConfig, validate_config
    common = {"activation": v["activation"], "dropout": float(v["dropout"]), "batchnorm": bool(v["batchnorm"])}
    if v["arch"] == "mlp":
        cfg = MLPConfig(hidden=parse_widths(v["hidden"], "hidden layers", allow_empty=True), **common)
    elif v["arch"] == "cnn":
        cfg = CNNConfig(channels=parse_widths(v["channels"], "conv channels"), kernel=int(v["kernel"]),
                        pool=v["pool"], pool_every=int(v["pool_every"]), max_pools=int(v.get("max_pools", 2)),
                        pool_first=bool(v.get("pool_first", False)), whiten=_int(v.get("whiten", 0), "whiten"),
                        fc=parse_widths(v["fc"], "fully connected layers", allow_empty=True), **common)
    elif v["arch"] == "resnet":
        cfg = ResNetConfig(stem=_int(v["stem"], "stem channels"),
                           stages=parse_widths(v["stages"], "residual stages"),
                           blocks=_int(v["blocks"], "blocks per stage"),
                           activation=v["activation"], dropout=float(v["dropout"]))
    else:
        raise ConfigError(f"architecture must be mlp, cnn or resnet, got {v['arch']!r}")
    validate_config(cfg)
    return cfg


def _int(v: Any, what: str) -> int:
    f = float(v)
    if not f.is_integer():
        raise ConfigError(f"{what} must be a whole number, got {v}")
    return int(f)


def train_config_from_form(v: dict[str, Any]):
    """Form values -> TrainConfig, validated with TrainConfig.validate()."""
    from ..train import TrainConfig
    cfg = TrainConfig(epochs=_int(v["epochs"], "epochs"), batch_size=_int(v["batch_size"], "batch size"),
                      optimizer=v["optimizer"], lr=float(v["lr"]), momentum=float(v["momentum"]),
                      weight_decay=float(v["l2"]), l1=float(v["l1"]), schedule=v["schedule"],
                      val_fraction=float(v["val_fraction"]), augment_flip=bool(v["augment_flip"]),
                      augment_shift=_int(v["augment_shift"], "shift"), patience=_int(v["patience"], "patience"),
                      early_stop_on=v.get("early_stop_on", "val_accuracy"),
                      label_smoothing=float(v.get("label_smoothing", 0.0)),
                      seed=_int(v["seed"], "seed"), device=v["device"], precision=v["precision"],
                      flip_alternate=bool(v.get("flip_alternate", False)), ema=float(v.get("ema", 0.0)),
                      bn_bias_lr=float(v.get("bn_bias_lr", 1.0)))
    cfg.validate()
    return cfg


def check_form(v: dict[str, Any], devices: dict[str, str | None]) -> tuple[dict | None, str, list[str]]:
    """(run spec or None, run label, problems). Every problem is one plain sentence.

    `devices` is device.available_devices(): device -> None or the reason it is missing.
    """
    from ..models import config_to_dict, preset
    from ..spec import RunSpec
    problems: list[str] = []
    mcfg = tcfg = None
    try:
        mcfg = model_config_from_form(v)
    except (ConfigError, ValueError, TypeError) as exc:
        problems.append(f"Model: {exc}")
    try:
        tcfg = train_config_from_form(v)
    except (ConfigError, ValueError, TypeError) as exc:
        problems.append(f"Training: {exc}")
    limit = v.get("train_limit") or 0
    if limit < 0 or not float(limit).is_integer():
        problems.append(f"Training images: give a whole number >= 0 (0 = all), got {limit}")
    dev = v.get("device", "auto")
    if dev != "auto" and devices.get(dev) is not None:
        problems.append(f"Device {dev} is not available: {devices[dev]}.")
    if v.get("engine") == "numpy":
        if v["arch"] not in ("mlp", "resnet"):
            problems.append("The NumPy engine trains MLPs and ResNets only; choose PyTorch for a CNN.")
        elif mcfg is not None and tcfg is not None:
            # the twin's own rules (device, precision...), so the form and the trainer agree
            from ..twin import check_trainable
            try:
                check_trainable(mcfg, tcfg)
            except ConfigError as exc:
                msg = str(exc)
                problems.append(f"{msg[:1].upper()}{msg[1:]}.")
    if problems:
        return None, "", problems
    start = v.get("start", "")
    label = f"custom-{mcfg.kind}"
    preset_name = None
    if start not in CUSTOM.values():
        try:
            if config_to_dict(preset(start)["model"]) == config_to_dict(mcfg):
                preset_name, label = start, start
        except ConfigError:
            pass
    if v.get("engine") == "numpy":
        label += "-numpy"
    try:
        spec = RunSpec(mcfg, tcfg, preset=preset_name, engine=v.get("engine", "torch"),
                       train_limit=int(limit) or None).validate().to_dict()
    except ConfigError as exc:
        msg = str(exc)
        return None, "", [f"{msg[:1].upper()}{msg[1:]}."]
    return spec, label, []


def price_text(spec: dict[str, Any], limits: dict[str, Any] | None = None) -> tuple[str, list[str]]:
    """("≈ 1.1 GB, ≈ 45 s here", [the class limits this run would break]) before Launch."""
    from ..cost import format_mb, price
    p = price(spec)
    over = []
    if limits:
        if p.peak_mb > limits.get("max_job_mb", float("inf")):
            over.append(f"about {format_mb(p.peak_mb)} of memory is over the class limit of "
                        f"{format_mb(limits['max_job_mb'])} per job")
        if p.seconds > 60 * limits.get("max_est_minutes", float("inf")):
            over.append(f"about {p.seconds / 60:.0f} minutes is over the class limit of "
                        f"{limits['max_est_minutes']:g} minutes per run")
    return p.sentence(), over


def epochs_lowered(start: str, asked: int, limit: int) -> str:
    """The note beside Epochs when the form was set to the class limit."""
    return (f"{start} trains {asked} epochs; the class limit is {limit} per run, so the form asks {limit}. "
            "It keeps its best epoch, as any run does.")


def limits_caption(limits: dict[str, Any], parameters: int) -> str:
    """One line under the parameter count: the class limits a launch is checked against."""
    from .format import format_seconds
    return (f"Class limits: {parameters:,} of {limits['max_parameters']:,} parameters · at most "
            f"{limits['max_epochs']} epochs · training stops after {format_seconds(limits['max_seconds'])} "
            f"(keeping its best epoch) · {limits['max_active_per_student']} run(s) of yours waiting or "
            "running at once" + (f" · at most {limits['max_job_mb']:,.0f} MB and {limits['max_est_minutes']:g} "
                                 "minutes estimated per run" if "max_job_mb" in limits else "") + ".")


def over_parameter_limit(parameters: int, limits: dict[str, Any]) -> str | None:
    """The problem that blocks Launch when the model is past the class's parameter limit."""
    if parameters > limits["max_parameters"]:
        return (f"This model has {parameters:,} parameters; the class limit is {limits['max_parameters']:,}: "
                "make it narrower or shallower.")
    return None


# --- progress ------------------------------------------------------------------------------

def progress_info(run: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """Progress fraction, epoch x/y, last epoch time, elapsed (wall clock since the start), the
    training time alone (train_seconds) and ETA of a run."""
    now = now or time.time()
    st = run.get("status_info") or {}
    hist = run.get("history") or []
    status = run["status"]
    epochs = st.get("epochs") or (run["config"].get("train_config") or {}).get("epochs")
    progress = st.get("progress")
    if status == "finished":
        progress = 1.0
    if not isinstance(progress, (int, float)):
        progress = len(hist) / epochs if epochs else 0.0
    started = st.get("started")
    end = st.get("finished") if status not in runs.ACTIVE else None
    elapsed = ((end or now) - started) if started else None
    eta = None
    if status == "running" and elapsed and progress > 0.01:
        eta = elapsed * (1 - progress) / progress
    epoch_seconds = hist[-1].get("epoch_seconds") if hist else None
    # the epochs' own time (what the run's message gives), apart from loading and the final test
    train_seconds = st.get("train_seconds") or (sum(h.get("epoch_seconds") or 0.0 for h in hist) or None)
    text = st.get("message") or status
    if status == "queued" and st.get("queue_position"):
        text = f"waiting in the queue: position {st['queue_position']}"
    return {"status": status, "progress": min(max(progress, 0.0), 1.0), "epoch": st.get("epoch") or len(hist),
            "epochs": epochs, "epoch_seconds": epoch_seconds, "elapsed": elapsed, "eta": eta,
            "train_seconds": train_seconds,
            "text": text, "active": status in runs.ACTIVE,
            "batch_loss": st.get("batch_loss") if status == "running" else None}


def diagnosis(run: dict[str, Any]) -> list:
    """diagnose.Finding's for a run that has ended ([] while it is active)."""
    from ..diagnose import diagnose
    if run["status"] in runs.ACTIVE:
        return []
    info = run.get("status_info") or {}
    lr = ((run.get("config") or {}).get("train_config") or {}).get("lr")
    return diagnose(run.get("history") or [], info.get("test_accuracy"), run["status"], lr)


# --- the queue: place in line and the wait ------------------------------------------------------

def queue_text(q: dict[str, Any] | None) -> str:
    """'waiting in the queue: position 2 — starts in about 1 min 20 s', for the live view and the
    sidebar (q: one entry of queue.estimates)."""
    from .format import format_seconds
    if not q:
        return "waiting in the queue"
    if q["ahead"] == 0 and q["wait"] is not None and q["wait"] < 1:
        return "first in line, a training slot is free: starting (Python and PyTorch load in a few seconds)"
    text = f"waiting in the queue: position {q['position']}"
    if q["wait"] is not None:
        return text + f" — starts in about {format_seconds(max(q['wait'], 1.0))}"
    return text + " — no estimate yet: no run like the ones ahead has finished"
