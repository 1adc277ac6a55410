"""What several pages show: the models there are, names of models and runs, the job queue,
layer tables, and pictures upscaled (alone or as a grid of tiles) so each pixel stays a crisp
square on a projector.

  * shipped models    artifacts/models/{mlp,cnn}.pt and what their checkpoints say
  * the model list    shipped models and runs as picker entries (Results, Predict, Inside),
                      the default choice, a checkpoint loaded as PyTorch model + NumPy twin
  * names             a model config or a run in a few words, for tables, legends and pickers
  * runs              the job queue the sidebar shows, curves of runs as one long table
  * data and inputs   where the data came from, crisp pictures and tile grids, a 28x28
                      image as a model input, softmax, a random test image

Left out: what only one page shows (that page's module), and anything that trains.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import runs
from ..data import IMAGE_SIZE, NUM_CLASSES, PROJECT_ROOT
from ..errors import WorkbenchError
from . import labels
from .format import clock

# shipped in git next to the code (not under $FMNIST_ARTIFACTS, which moves the runs)
SHIPPED_DIR = PROJECT_ROOT / "artifacts" / "models"
SHIPPED = {"mlp": "mlp.pt", "cnn": "cnn.pt", "resnet": "resnet.pt", "course-mlp": "mlp-seed000.pt"}
# how pickers name them: the course MLP (mlp-seed000, 784-128-10) is the one Home and Timings
# talk about; "the MLP" alone would be three different models
SHIPPED_TITLES = {"mlp": "MLP", "cnn": "CNN", "resnet": "ResNet", "course-mlp": "course MLP"}


# --- shipped models --------------------------------------------------------------------

def shipped_models(folder: Path | None = None) -> list[dict[str, Any]]:
    """One dict per shipped model: name, path, available, and what its checkpoint says."""
    from ..models import build_model, config_from_dict, count_parameters, read_checkpoint
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
    elif c.get("kind") == "resnet":
        text = (f"ResNet stem {c.get('stem')}, residual stages {'-'.join(str(w) for w in c.get('stages', []))}"
                f" ({c.get('blocks', 1)} block(s) each, batchnorm), global average pool, {act}")
    else:
        fc = c.get("fc", [])
        text = (f"CNN conv {'-'.join(str(w) for w in c.get('channels', []))} "
                f"(k{c.get('kernel')}, {c.get('pool')} pool)"
                + (f", fc {'-'.join(str(w) for w in fc)}" if fc else "") + f", {act}")
    return ", ".join([text, *extras])


def layer_summary(model_config) -> pd.DataFrame:
    """One row per layer: name, type, output shape, parameters (a dummy forward pass)."""
    import torch
    from ..models import build_model
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


# --- which models there are ------------------------------------------------------------

def model_list(shipped: list[dict[str, Any]], run_list: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every model a page can show, key -> entry: the shipped models whose file is there, then
    every run in the order given (runs.list_runs: newest first).

    `shipped` is shipped_models(), `run_list` is runs.list_runs(). An entry holds "source"
    ("shipped" | "run"), "name" (short, for legends), "label" (for pickers), "checkpoint"
    (None for a run without one yet), "model_config", "arch" ("mlp" | "cnn"), "status"
    ("shipped", or the run's), "history" (per-epoch rows; a shipped model's from its checkpoint),
    "points" (live curve points), "train_config", "metrics"
    (the run's test metrics; None for a shipped model, which is evaluated when shown), "info"
    (what the checkpoint or the run's status says: test accuracy, epochs, message), and for
    a run "run_id", "owner" and "owner_id" (the hash roles.User.owns compares); "stem": the name
    its downloads get (labels.file_stem: owner, preset, what differs, date).
    """
    out: dict[str, dict[str, Any]] = {}
    for m in shipped:
        if m.get("available"):
            out[f"shipped:{m['name']}"] = {
                "source": "shipped", "name": f"shipped {m['name']}",
                "label": shipped_label(m),
                "checkpoint": m["path"], "model_config": m["model_config"],
                "arch": (m["model_config"] or {}).get("kind"), "status": "shipped",
                # checkpoints from `make models` carry their per-epoch history and curve points
                "history": (m.get("metrics") or {}).get("history") or [],
                "points": (m.get("metrics") or {}).get("points") or [],
                "train_config": (m.get("metrics") or {}).get("train_config") or {},
                "metrics": None, "info": m.get("metrics") or {},
                "stem": labels.safe_name(f"shipped-{m['name']}_{(m.get('metrics') or {}).get('preset') or ''}",
                                         f"shipped-{m['name']}")}
    for r in run_list:
        cfg = (r.get("config") or {}).get("model_config")
        out[f"run:{r['run_id']}"] = {
            "source": "run", "name": run_short_name(r), "label": f"run {run_label(r, shape=True)}",
            "checkpoint": r.get("checkpoint"), "model_config": cfg, "arch": (cfg or {}).get("kind"),
            "status": r["status"], "history": r.get("history") or [], "points": r.get("points") or [],
            "train_config": (r.get("config") or {}).get("train_config") or {}, "metrics": r.get("metrics"),
            "info": r.get("status_info") or {}, "run_id": r["run_id"], "owner": r.get("owner", ""),
            "owner_id": r.get("owner_id", ""), "stem": labels.file_stem(r)}
    return out


def shipped_label(m: dict[str, Any]) -> str:
    """'shipped MLP — mlp-best, MLP 784-512-256-10, bn, dropout 0.2 — test 89.8%': which shipped
    model, the preset it was trained from and its shape (one of shipped_models())."""
    meta = m.get("metrics") or {}
    acc = meta.get("test_accuracy")
    title = SHIPPED_TITLES.get(m["name"], m["name"])
    what = ", ".join(p for p in (meta.get("preset"), labels.model_summary(m.get("model_config") or {})) if p)
    return f"shipped {title} — {what}" + (f" — test {acc:.1%}" if isinstance(acc, (int, float)) else "")


def model_choices(entries: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The entries of model_list a model can be loaded from: shipped models, and finished runs
    with a checkpoint. Runs still training, failed or cancelled are left out: their checkpoint
    may change or be missing."""
    return {k: e for k, e in entries.items()
            if e["source"] == "shipped" or (e["status"] == "finished" and e["checkpoint"])}


def default_choice(choices: dict[str, dict[str, Any]]) -> str | None:
    """The shipped CNN if there is one, else the shipped MLP, else the newest finished run."""
    for key in ("shipped:cnn", "shipped:mlp"):
        if key in choices:
            return key
    return next(iter(choices), None)


def load_pair(path: str | Path):
    """(PyTorch model, its NumPy twin) of one checkpoint: models.load_model (eval mode, on the
    CPU), then the twin built from that model's very weights. Both are shared by every
    dashboard session: nothing here or in the pages changes them after this."""
    from ..twin import ManualNet, state_dict_to_numpy
    from ..models import load_model
    from ..errors import WorkbenchError
    model = load_model(path)
    if model.config.kind == "head":  # the twin runs the workbench's own layers, not EfficientNet
        raise WorkbenchError("this is a head on a frozen backbone: try it on the page “A class of your "
                             "own”, or see its curves and confusion matrix on Results")
    for p in model.parameters():
        p.requires_grad_(False)  # shared and read-only: no autograd bookkeeping either
    return model, ManualNet(model.config, state_dict_to_numpy(model.state_dict()))


# --- the data and the inputs -----------------------------------------------------------

def data_origin(source: str) -> str:
    """Where the dataset was read from, in words, without the server's folders (the page is
    read in every student's browser; `python -m fmnist_core data` prints the path)."""
    from ..data import DEBIAN_DIR, DOWNLOAD_ROOT
    src = Path(source)
    if os.environ.get("FMNIST_DATA_DIR") and src == Path(os.environ["FMNIST_DATA_DIR"]):
        return "from the folder $FMNIST_DATA_DIR names"
    if src == DEBIAN_DIR:
        return "from Debian's dataset-fashion-mnist package"
    if src.is_relative_to(DOWNLOAD_ROOT):
        return "downloaded by torchvision"
    return f"from a local folder ({src.name})"


_SQLITE_URI = re.compile(r"\s*\(sqlite:///[^)]*\)|sqlite:///[^\s)'\"]+")
_ABS_PATH = re.compile(r"(?<![\w.:/])/(?:[\w.@+-]+/)*[\w.@+-]+")


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$&])")


def plain_text(text: str) -> str:
    """`text` escaped for st.error / st.warning / st.caption, which render Markdown: every
    Markdown and HTML character gets a backslash, so a link, an image, a heading, an emoji
    code or a formula in text someone typed (or a URL carried) shows as the characters it is."""
    return _MARKDOWN.sub(r"\\\1", str(text))


def for_browser(text: str | None) -> str | None:
    """A message for a page: the server's folders left out. Paths inside the project read
    relative to it (artifacts/models/cnn.pt), any other absolute path as '…/' and its last
    part; an SQLite store's address is left out. Messages from the core name paths for the
    command line; a browser in a class needs the file, not where it lives on the server."""
    from ..data import ARTIFACTS
    if not text:
        return text
    text = _SQLITE_URI.sub(lambda m: "" if m.group(0).lstrip().startswith("(") else "the run store", text)
    for root, shown in ((ARTIFACTS, "artifacts/"), (PROJECT_ROOT, "")):
        text = text.replace(f"{root}/", shown)
    return _ABS_PATH.sub(lambda m: "…/" + m.group(0).rsplit("/", 1)[-1], text)


def upscale(img: np.ndarray, factor: int = 3) -> np.ndarray:
    """Nearest-neighbour upscaling of a (h, w) gray or (h, w, 3) RGB image: crisp pixels on a
    projector instead of a blur. Values outside 0..255 are clipped to uint8."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    return np.repeat(np.repeat(img, factor, axis=0), factor, axis=1)


def tile_grid(tiles: np.ndarray, cols: int | None = None, factor: int = 1, gap: int = 4,
              gap_colour: int | tuple[int, int, int] = 128) -> np.ndarray:
    """(N, h, w) gray or (N, h, w, 3) RGB tiles -> one uint8 image, `cols` per row (default: one
    row), each upscaled by `factor` (upscale), `gap` pixels of `gap_colour` between them."""
    tiles = np.asarray(tiles)
    n, h, w = tiles.shape[:3]
    cols = max(1, min(cols or n, n))
    rows = -(-n // cols)
    th, tw = h * factor, w * factor
    out = np.empty((rows * th + (rows - 1) * gap, cols * tw + (cols - 1) * gap, *tiles.shape[3:]), np.uint8)
    out[:] = gap_colour
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        out[r * (th + gap):r * (th + gap) + th, c * (tw + gap):c * (tw + gap) + tw] = upscale(t, factor)
    return out


def as_input(x: np.ndarray) -> np.ndarray:
    """A (28, 28) image, uint8 or float in [0, 1] -> float32 (28, 28) in [0, 1]; copies."""
    x = np.asarray(x)
    if x.shape != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"expected one 28x28 image, got shape {x.shape}")
    if x.dtype == np.uint8:
        return np.multiply(x, 1 / 255.0, dtype=np.float32)
    return np.array(x, dtype=np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities along the last axis (float32), computed in float64 without overflow."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def random_test_index(y: np.ndarray, class_index: int | None = None, rng=None) -> int:
    """A random test-set index, of one class if given."""
    rng = rng or np.random.default_rng()
    pool = np.arange(len(y)) if class_index is None else np.flatnonzero(np.asarray(y) == class_index)
    return int(rng.choice(pool))


# --- runs ----------------------------------------------------------------------------------

def active_runs(run_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Queued and running runs of a runs.list_runs() result, oldest first, for the queue panel.

    A run whose process is gone is left out (mark_orphans labels it at the next start-up)."""
    out = []
    for r in run_list:
        if r["status"] not in runs.ACTIVE or not runs.alive(r):
            continue
        st = r["status_info"]
        out.append({"run_id": r["run_id"], "status": r["status"], "created": r["config"]["created"],
                    "progress": st.get("progress"), "message": st.get("message", ""),
                    "label": labels.run_label(r), "owner_id": r.get("owner_id") or ""})
    out.sort(key=lambda r: r["created"])
    return out


def run_title(config: dict[str, Any]) -> str:
    """'mlp-seed000' or 'custom MLP 784-32-10, relu' (+ ', NumPy')."""
    name = config.get("preset") or describe_model(config.get("model_config"))
    return name + (", NumPy" if config.get("engine") == "numpy" else "")


def run_label(run: dict[str, Any], shape: bool = False) -> str:
    """For pickers: '05-01 14:03:12 · ada · mlp-seed000 · lr 0.01 — finished, test 88.1%';
    shape: the model's shape too when the label names a preset ('... · mlp-seed000 (MLP 784-128-10) ...')."""
    created = run["config"].get("created")
    when = clock(created, with_date=True) if created else run["run_id"]
    acc = (run.get("status_info") or {}).get("test_accuracy")
    tail = f", test {acc:.1%}" if isinstance(acc, (int, float)) else ""
    engine = ", NumPy" if run["config"].get("engine") == "numpy" else ""
    text = labels.run_label(run)
    preset = run["config"].get("preset")
    if shape and preset:
        text = text.replace(preset, f"{preset} ({labels.model_summary(run['config'].get('model_config') or {})})", 1)
    return f"{when} · {text}{engine} — {run['status']}{tail}"


def run_short_name(run: dict[str, Any]) -> str:
    """For legends and tables: 'ada · mlp-seed000 · lr 0.01 @ 14:03:12'."""
    created = run["config"].get("created")
    return f"{labels.run_label(run)} @ {clock(created) if created else run['run_id']}"


SPLITS = {"train": "train", "val": "validation", "watch": "test (watched)"}


def curves_long(named_histories: list[tuple[str, list[dict[str, Any]]]],
                points: dict[str, list[dict[str, Any]]] | None = None) -> pd.DataFrame:
    """Long table for overlaid curves: run, epoch (fractional for live points), metric (loss |
    accuracy), split (train | validation | test (watched)), value, end (True at an epoch's end).

    points: run name -> its live curve points ({"x", "train_loss", "train_accuracy"}, the
    running mean of the epoch so far): the training curve moves within an epoch, the held-out
    split is measured at each epoch's end."""
    rows = []
    order = list(SPLITS.values())
    for name, hist in named_histories:
        mine = []
        for p in (points or {}).get(name) or []:
            for metric in ("loss", "accuracy"):
                v = p.get(f"train_{metric}")
                if v is not None and float(p["x"]) % 1:  # whole epochs: the epoch row says it
                    mine.append({"run": name, "epoch": float(p["x"]), "metric": metric, "split": "train",
                                 "value": v, "end": False})
        for h in hist:
            for metric in ("loss", "accuracy"):
                for split, split_name in SPLITS.items():
                    v = h.get(f"{split}_{metric}")
                    if v is not None:
                        mine.append({"run": name, "epoch": h["epoch"], "metric": metric,
                                     "split": split_name, "value": v, "end": True})
        rows += sorted(mine, key=lambda r: (r["metric"], order.index(r["split"]), r["epoch"]))
    return pd.DataFrame(rows, columns=["run", "epoch", "metric", "split", "value", "end"])
