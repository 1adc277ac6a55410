"""What the dashboard shows, computed: tables, summaries, images, the Train form.

The Streamlit pages are thin: they collect widget values and lay out what this
module returns (pandas frames, NumPy images, PNG/CSV bytes, plain dicts). Keeping
it here means the numbers on screen are testable without a browser and the core
still never imports streamlit.

Pieces:
  * shipped models    artifacts/models/{mlp,cnn}.pt and what their checkpoints say
  * data views        sample indices per class, mean image per class, class balance
  * the Train form    widget values <-> (model config, train config), checked before launch
  * run views         a light scan of the job queue, progress with epoch time and ETA,
                      curves as a long table, best/final metrics per run
  * result views      confusion matrix (counts, row-normalised) as CSV and a PNG drawn
                      with Pillow, per-class report, the test images behind one cell

Left out: anything that trains, and any styling (fonts, colours of the charts live
in the pages).
"""
from __future__ import annotations

import importlib
import io
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import runs
from .data import CLASSES, IMAGE_SIZE, NUM_CLASSES, PROJECT_ROOT, FashionMNIST, class_counts
from .errors import ConfigError, WorkbenchError

# shipped in git next to the code (not under $FMNIST_ARTIFACTS, which moves the runs)
SHIPPED_DIR = PROJECT_ROOT / "artifacts" / "models"
SHIPPED = {"mlp": "mlp.pt", "cnn": "cnn.pt"}
CUSTOM = {"mlp": "custom MLP", "cnn": "custom CNN"}


# --- shipped models --------------------------------------------------------------------

def shipped_models(folder: Path | None = None) -> list[dict[str, Any]]:
    """One dict per shipped model: name, path, available, and what its checkpoint says."""
    from .models import build_model, config_from_dict, count_parameters, read_checkpoint
    folder = Path(folder) if folder else SHIPPED_DIR
    out = []
    for name, fname in SHIPPED.items():
        path = folder / fname
        row: dict[str, Any] = {"name": name, "path": str(path), "available": False,
                               "metrics": {}, "model_config": None, "error": None}
        if path.is_file():
            try:
                ck = read_checkpoint(path)
                cfg = config_from_dict(ck["model_config"])
                row.update(available=True, metrics=ck.get("metrics") or {},
                           model_config=ck["model_config"],
                           parameters=count_parameters(build_model(cfg)))
            except WorkbenchError as exc:
                row["error"] = str(exc)
        out.append(row)
    return out


def describe_model(model_config: dict[str, Any] | None) -> str:
    """'MLP 784-128-64-10, relu' / 'CNN conv 32-64 (k3, max pool), fc 128, relu'."""
    if not model_config:
        return "?"
    c = model_config
    extras = []
    if c.get("dropout"):
        extras.append(f"dropout {c['dropout']:g}")
    if c.get("batchnorm"):
        extras.append("batchnorm")
    act = c.get("activation", "relu")
    if c.get("kind") == "mlp":
        widths = [IMAGE_SIZE * IMAGE_SIZE, *c.get("hidden", []), NUM_CLASSES]
        text = f"MLP {'-'.join(str(w) for w in widths)}, {act}"
    else:
        fc = c.get("fc", [])
        text = (f"CNN conv {'-'.join(str(w) for w in c.get('channels', []))} "
                f"(k{c.get('kernel')}, {c.get('pool')} pool)"
                + (f", fc {'-'.join(str(w) for w in fc)}" if fc else "") + f", {act}")
    return ", ".join([text, *extras])


# --- data views --------------------------------------------------------------------------

def data_origin(source: str) -> str:
    """Where the dataset was read from, in words."""
    from .data import DEBIAN_DIR, DOWNLOAD_ROOT
    src = Path(source)
    if os.environ.get("FMNIST_DATA_DIR") and src == Path(os.environ["FMNIST_DATA_DIR"]):
        return f"from $FMNIST_DATA_DIR ({src})"
    if src == DEBIAN_DIR:
        return f"from Debian's dataset-fashion-mnist package ({src})"
    if src.is_relative_to(DOWNLOAD_ROOT):
        return f"downloaded by torchvision into {src}"
    return f"from {src}"


def sample_indices(y: np.ndarray, per_class: int = 10, seed: int = 0) -> np.ndarray:
    """(10, per_class) indices into y: a seeded random pick of each class."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.choice(np.flatnonzero(y == k), per_class, replace=False)
                     for k in range(NUM_CLASSES)])


def mean_images(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(10, 28, 28) float32 in [0, 255]: the average image of each class."""
    return np.stack([x[y == k].mean(axis=0, dtype=np.float64) for k in range(NUM_CLASSES)]).astype(np.float32)


def class_balance(ds: FashionMNIST) -> pd.DataFrame:
    return pd.DataFrame({"class": list(CLASSES), "train": class_counts(ds.y_train),
                         "test": class_counts(ds.y_test)})


def upscale(img: np.ndarray, factor: int = 3) -> np.ndarray:
    """Nearest-neighbour upscaling: crisp pixels on a projector instead of a blur."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    return np.repeat(np.repeat(img, factor, axis=-2), factor, axis=-1)


def montage(images: np.ndarray, cols: int | None = None, factor: int = 3, gap: int = 2) -> np.ndarray:
    """(N, 28, 28) uint8 -> one uint8 image, images side by side (gap in grey)."""
    images = np.asarray(images)
    n = len(images)
    cols = cols or n
    rows = -(-n // cols)
    s = IMAGE_SIZE * factor
    out = np.full((rows * s + (rows - 1) * gap, cols * s + (cols - 1) * gap), 128, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        out[r * (s + gap):r * (s + gap) + s, c * (s + gap):c * (s + gap) + s] = upscale(img, factor)
    return out


# --- the Train form ----------------------------------------------------------------------

def form_defaults(start: str) -> dict[str, Any]:
    """Widget values for a preset name, or 'custom MLP' / 'custom CNN'."""
    from .models import CNNConfig, MLPConfig, preset
    from .train import TrainConfig
    if start == CUSTOM["mlp"]:
        mcfg, tdict = MLPConfig(), {}
    elif start == CUSTOM["cnn"]:
        mcfg, tdict = CNNConfig(), {}
    else:
        p = preset(start)
        mcfg, tdict = p["model"], p["train"]
    t = TrainConfig(**tdict)
    cnn = mcfg if isinstance(mcfg, CNNConfig) else CNNConfig()
    mlp = mcfg if isinstance(mcfg, MLPConfig) else MLPConfig()
    return {
        "arch": mcfg.kind,
        "hidden": ", ".join(str(w) for w in mlp.hidden),
        "channels": ", ".join(str(w) for w in cnn.channels), "kernel": cnn.kernel, "pool": cnn.pool,
        "pool_every": cnn.pool_every, "max_pools": cnn.max_pools, "pool_first": bool(cnn.pool_first),
        "fc": ", ".join(str(w) for w in cnn.fc),
        "activation": mcfg.activation, "dropout": float(mcfg.dropout), "batchnorm": bool(mcfg.batchnorm),
        "epochs": t.epochs, "batch_size": t.batch_size, "optimizer": t.optimizer, "lr": float(t.lr),
        "momentum": float(t.momentum), "l2": float(t.weight_decay), "l1": float(t.l1),
        "schedule": t.schedule, "val_fraction": float(t.val_fraction), "augment_flip": t.augment_flip,
        "label_smoothing": float(t.label_smoothing),
        "augment_shift": t.augment_shift, "patience": t.patience, "seed": t.seed,
        "device": t.device, "precision": t.precision, "engine": "torch", "train_limit": 0,
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
    """Form values -> MLPConfig / CNNConfig, validated (raises ConfigError)."""
    from .models import CNNConfig, MLPConfig, validate_config
    common = {"activation": v["activation"], "dropout": float(v["dropout"]), "batchnorm": bool(v["batchnorm"])}
    if v["arch"] == "mlp":
        cfg = MLPConfig(hidden=parse_widths(v["hidden"], "hidden layers", allow_empty=True), **common)
    elif v["arch"] == "cnn":
        cfg = CNNConfig(channels=parse_widths(v["channels"], "conv channels"), kernel=int(v["kernel"]),
                        pool=v["pool"], pool_every=int(v["pool_every"]), max_pools=int(v.get("max_pools", 2)),
                        pool_first=bool(v.get("pool_first", False)),
                        fc=parse_widths(v["fc"], "fully connected layers", allow_empty=True), **common)
    else:
        raise ConfigError(f"architecture must be mlp or cnn, got {v['arch']!r}")
    validate_config(cfg)
    return cfg


def _int(v: Any, what: str) -> int:
    f = float(v)
    if not f.is_integer():
        raise ConfigError(f"{what} must be a whole number, got {v}")
    return int(f)


def train_config_from_form(v: dict[str, Any]):
    """Form values -> TrainConfig, validated with TrainConfig.validate()."""
    from .train import TrainConfig
    cfg = TrainConfig(epochs=_int(v["epochs"], "epochs"), batch_size=_int(v["batch_size"], "batch size"),
                      optimizer=v["optimizer"], lr=float(v["lr"]), momentum=float(v["momentum"]),
                      weight_decay=float(v["l2"]), l1=float(v["l1"]), schedule=v["schedule"],
                      val_fraction=float(v["val_fraction"]), augment_flip=bool(v["augment_flip"]),
                      augment_shift=_int(v["augment_shift"], "shift"), patience=_int(v["patience"], "patience"),
                      label_smoothing=float(v.get("label_smoothing", 0.0)),
                      seed=_int(v["seed"], "seed"), device=v["device"], precision=v["precision"])
    cfg.validate()
    return cfg


def numpy_engine_problem() -> str | None:
    """None when the NumPy twin can train, else why not (it is written separately)."""
    try:
        manual = importlib.import_module(f"{__package__}.twin")
    except ImportError as exc:
        return f"the NumPy twin (fmnist_core/twin/) cannot be imported: {exc}"
    if not hasattr(manual, "train_numpy"):
        return "the NumPy twin has no trainer yet (fmnist_core.twin.train_numpy)"
    return None


def check_form(v: dict[str, Any], devices: dict[str, str | None]) -> tuple[dict | None, str, list[str]]:
    """(run spec or None, run label, problems). Every problem is one plain sentence.

    `devices` is device.available_devices(): device -> None or the reason it is missing.
    """
    from .jobs import run_spec
    from .models import config_to_dict, preset
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
        why = numpy_engine_problem()
        if v["arch"] != "mlp":
            problems.append("The NumPy engine trains MLPs only; choose PyTorch for a CNN.")
        elif why:
            problems.append(f"NumPy engine unavailable: {why}.")
        elif mcfg is not None and tcfg is not None:
            # the twin's own rules (device, precision...), so the form and the trainer agree
            check = getattr(importlib.import_module(f"{__package__}.twin"), "check_trainable", None)
            try:
                if check is not None:
                    check(mcfg, tcfg)
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
    spec = run_spec(mcfg, tcfg, preset=preset_name, engine=v.get("engine", "torch"),
                    train_limit=int(limit) or None)
    return spec, label, []


def layer_summary(model_config) -> pd.DataFrame:
    """One row per layer: name, type, output shape, parameters (a dummy forward pass)."""
    import torch
    from .models import build_model
    model = build_model(model_config).eval()
    kinds = {s.name: s.kind for s in model.plan}
    rows = []
    x = torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        for name, mod in model.named_children():
            x = mod(x)
            rows.append({"layer": name, "type": kinds.get(name, type(mod).__name__),
                         "output shape": " × ".join(str(d) for d in x.shape[1:]),
                         "parameters": sum(p.numel() for p in mod.parameters())})
    return pd.DataFrame(rows)


# --- run views ----------------------------------------------------------------------------

def active_runs(root: str | Path | None = None) -> list[dict[str, Any]]:
    """Queued and running runs, oldest first, reading only small files (the sidebar polls it).

    A run whose process is gone is left out (mark_orphans labels it at the next start-up),
    except in its first seconds, before the launcher has written the pid.
    """
    base = runs.runs_dir(root)
    if not base.is_dir():
        return []
    out = []
    now = time.time()
    for d in base.iterdir():
        st = runs.read_json(d / "status.json")
        if not st or st.get("status") not in runs.ACTIVE:
            continue
        if not runs.pid_alive(st.get("pid")) and now - st.get("updated", 0) > 15:
            continue
        cfg = runs.read_json(d / "config.json", {}) or {}
        out.append({"run_id": d.name, "run_dir": str(d), "status": st["status"],
                    "created": cfg.get("created", 0), "progress": st.get("progress"),
                    "message": st.get("message", ""), "label": run_title(cfg),
                    "queue_position": st.get("queue_position")})
    out.sort(key=lambda r: r["created"])
    for pos, r in enumerate((r for r in out if r["status"] == "queued"), 1):
        r["queue_position"] = r["queue_position"] or pos
    return out


def run_title(config: dict[str, Any]) -> str:
    """'mlp-seed000' or 'custom MLP 784-32-10, relu' (+ ', NumPy')."""
    name = config.get("preset") or describe_model(config.get("model_config"))
    return name + (", NumPy" if config.get("engine") == "numpy" else "")


def run_short_name(run: dict[str, Any]) -> str:
    """For legends and tables: 'mlp-seed000 @ 14:03:12'."""
    created = run["config"].get("created")
    when = time.strftime("%H:%M:%S", time.localtime(created)) if created else run["run_id"]
    return f"{run_title(run['config'])} @ {when}"


def run_label(run: dict[str, Any]) -> str:
    """For pickers: '14:03:12 mlp-seed000 — finished, test 88.1%'."""
    created = run["config"].get("created")
    when = time.strftime("%m-%d %H:%M:%S", time.localtime(created)) if created else run["run_id"]
    acc = (run.get("status_info") or {}).get("test_accuracy")
    tail = f", test {acc:.1%}" if isinstance(acc, (int, float)) else ""
    return f"{when} {run_title(run['config'])} — {run['status']}{tail}"


def format_seconds(s: float | None) -> str:
    if s is None:
        return "—"
    s = max(0.0, float(s))
    if s < 60:
        return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def progress_info(run: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """Progress fraction, epoch x/y, last epoch time, elapsed and ETA of a run."""
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
    text = st.get("message") or status
    if status == "queued" and st.get("queue_position"):
        text = f"waiting in the queue: position {st['queue_position']}"
    return {"status": status, "progress": min(max(progress, 0.0), 1.0), "epoch": st.get("epoch") or len(hist),
            "epochs": epochs, "epoch_seconds": epoch_seconds, "elapsed": elapsed, "eta": eta,
            "text": text, "active": status in runs.ACTIVE,
            "batch_loss": st.get("batch_loss") if status == "running" else None}


def history_frame(history: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(history)


def curves_long(named_histories: list[tuple[str, list[dict[str, Any]]]]) -> pd.DataFrame:
    """Long table for overlaid curves: run, epoch, metric (loss | accuracy), split, value."""
    rows = []
    for name, hist in named_histories:
        for h in hist:
            for metric in ("loss", "accuracy"):
                for split in ("train", "val"):
                    v = h.get(f"{split}_{metric}")
                    if v is not None:
                        rows.append({"run": name, "epoch": h["epoch"], "metric": metric,
                                     "split": "validation" if split == "val" else "train", "value": v})
    return pd.DataFrame(rows, columns=["run", "epoch", "metric", "split", "value"])


def summary_row(name: str, history: list[dict], status: str, test: dict | None,
                model_config: dict | None, info: dict | None = None) -> dict[str, Any]:
    """Best and final numbers of one run (or shipped model) for the comparison table."""
    info = info or {}
    vals = [h for h in history if h.get("val_accuracy") is not None]
    best = max(vals, key=lambda h: h["val_accuracy"]) if vals else None
    last = history[-1] if history else {}
    test = test or {}
    secs = info.get("train_seconds") or (last.get("elapsed") if last else None)
    return {"run": name, "model": describe_model(model_config), "status": status,
            "epochs": len(history) or info.get("epochs_run"),
            "best val acc": best["val_accuracy"] if best else info.get("best_val_accuracy"),
            "at epoch": best["epoch"] if best else info.get("best_epoch"),
            "last train acc": last.get("train_accuracy"), "last val acc": last.get("val_accuracy"),
            "test acc": test.get("accuracy", info.get("test_accuracy")),
            "test loss": test.get("loss", info.get("test_loss")),
            "time (s)": round(secs, 1) if isinstance(secs, (int, float)) else None}


# --- result views -------------------------------------------------------------------------

def confusion(metrics: dict[str, Any], normalise: bool = False) -> np.ndarray:
    """(10, 10): rows true class, columns predicted; row-normalised = recall per row."""
    cm = np.asarray(metrics["confusion_matrix"], dtype=np.float64)
    if normalise:
        cm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    return cm


def confusion_csv(cm: np.ndarray) -> str:
    df = pd.DataFrame(cm, index=[f"true {c}" for c in CLASSES], columns=[f"pred {c}" for c in CLASSES])
    return df.to_csv(float_format="%.4f")


def _font(size: int):
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the tiny bitmap font
        return ImageFont.load_default()


def confusion_png(cm: np.ndarray, title: str = "", normalised: bool = False, cell: int = 64) -> bytes:
    """The confusion matrix as a PNG drawn with Pillow (no kaleido / matplotlib needed)."""
    from PIL import Image, ImageDraw
    cm = np.asarray(cm, dtype=np.float64)
    n = len(cm)
    font, small = _font(16), _font(14)
    label_h = 110  # room for the sideways column labels
    title_h = 36 if title else 8
    left, top = 130, title_h + label_h
    w, h = left + n * cell + 20, top + n * cell + 50
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    if title:
        draw.text((10, 8), title, fill="black", font=_font(20))
    # diagonal cells dominate: colour by the share of the row so mistakes stay visible
    frac = cm / np.maximum(cm.max(), 1e-12) if normalised else cm / np.maximum(cm.sum(1, keepdims=True), 1)
    lo, hi = np.array([247, 251, 255]), np.array([8, 48, 107])
    for i in range(n):
        for j in range(n):
            f = float(np.clip(frac[i, j], 0, 1)) ** 0.6
            colour = tuple(int(v) for v in lo + (hi - lo) * f)
            x0, y0 = left + j * cell, top + i * cell
            draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=colour, outline=(200, 200, 200))
            txt = f"{cm[i, j]:.2f}" if normalised else f"{int(cm[i, j])}"
            tw = draw.textlength(txt, font=small)
            draw.text((x0 + (cell - tw) / 2, y0 + cell / 2 - 8), txt, font=small,
                      fill="white" if f > 0.55 else "black")
    for i, name in enumerate(CLASSES[:n]):
        tw = draw.textlength(name, font=small)
        draw.text((left - tw - 8, top + i * cell + cell / 2 - 8), name, font=small, fill="black")
        # column labels written sideways: draw on a strip, rotate it, paste it
        strip = Image.new("RGB", (label_h - 6, cell), "white")
        ImageDraw.Draw(strip).text((4, cell / 2 - 8), name, font=small, fill="black")
        strip = strip.rotate(90, expand=True)  # the text's start ends up at the bottom, by the grid
        img.paste(strip, (left + i * cell, title_h))
    draw.text((left, top + n * cell + 12), "columns: predicted class · rows: true class",
              font=font, fill="black")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def per_class_frame(metrics: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(metrics["per_class"])[["class", "precision", "recall", "f1", "support"]]


def cell_indices(y_true: np.ndarray, y_pred: np.ndarray, true_class: int, pred_class: int) -> np.ndarray:
    """Test-set indices whose true class is true_class and prediction pred_class."""
    return np.flatnonzero((np.asarray(y_true) == true_class) & (np.asarray(y_pred) == pred_class))


def test_predictions(checkpoint: str | Path, ds: FashionMNIST) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class, confidence) for the 10,000 test images, on the CPU."""
    from .evaluate import predict_logits
    from .models import load_model
    model = load_model(checkpoint)
    probs = predict_logits(model, ds.x_test, batch_size=2000).softmax(1)
    conf, pred = probs.max(1)
    pred, conf = pred.numpy().astype(np.int64), conf.numpy()
    pred.setflags(write=False)
    conf.setflags(write=False)
    return pred, conf


def evaluate_checkpoint(checkpoint: str | Path, ds: FashionMNIST) -> dict[str, Any]:
    """Test metrics of a checkpoint (for shipped models, which carry no metrics.json)."""
    from .evaluate import evaluate
    from .models import load_model
    return evaluate(load_model(checkpoint), ds.x_test, ds.y_test)
