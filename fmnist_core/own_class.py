"""A class of your own: 10-30 pictures of something new, an 11-class model in seconds.

Teachable Machine's core on Fashion-MNIST. A student's pictures (uploads or camera shots) are
preprocessed to 28x28 exactly as Predict does (preprocess.py), a third of them is held out,
and the rest, with their mirror images and 2-pixel shifts, go through the pretrained
EfficientNet-Lite0 (64 px, pooled: backbones.py). An 11-class linear head is then trained on
those features next to the cached features of Fashion-MNIST (features.py) and, for the honest
comparison, a 10-class head the same way without them. What the student sees: the held-out
pictures' accuracy on the new class, and the ten classes' test accuracy with and without it,
the 11x11 confusion matrix (the Fashion-MNIST test features plus the held-out pictures, whose
true class is the new one), and a map: a 2-D PCA of the pooled features of the first MAP_IMAGES
test images with every picture of the student's projected onto it as a star.

Bounded so the web process can do it (the features are the minutes of work, computed once as
a shared job): at most 30 pictures, the first 12,000 Fashion-MNIST features, a linear head,
5 epochs, one thread: a few seconds (`price` says how many before the button is pressed); the
matrix and the map are cheap (a prediction over the cached test features, a randomized PCA of
at most 3,000 x 1,280 floats: a few hundredths of a second).

The result is a run in the store owned by the student (label "class of your own: NAME"):
the 11-class checkpoint (its classes end with NAME), the 28x28 pictures (pictures.npz,
uint8, no pickle) and own_class.json (the numbers, the matrix, the map). Only the owner (or the
teacher) opens it here; deleting the run deletes it.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import backbones, features, runs
from .data import CLASSES
from .errors import WorkbenchError

MIN_PICTURES, MAX_PICTURES = 10, 30
FM_IMAGES = 12_000       # Fashion-MNIST training features the heads see: 1,200 a class
EPOCHS = 5               # a linear head on pooled features is near its best after a few epochs
BATCH = 256
LR = 3e-3
SHIFTS = ((0, 0), (2, 0), (-2, 0), (0, 2), (0, -2))  # (rows, cols) a training picture is moved by
TAG = "own_class"        # the run tag holding the class's name
# one training at a time in a process: it is seconds of CPU, done in the web process for the
# student waiting on it; thirty students pressing Train at once queue here instead of sharing
# two cores thirty ways, and one who waited WAIT_S is told so rather than left spinning
_ONE_AT_A_TIME = threading.Lock()
WAIT_S = 90.0
BACKBONE, RESOLUTION, LAYER = backbones.PRETRAINED, 64, "pooled"
MAP_IMAGES = 3_000       # test images on the map: ten clear clouds, a PCA in hundredths of a second


def cached_features() -> tuple[str, dict[str, Any]] | None:
    """(source, params) of the pretrained features this server has: all of them, else the
    largest computed subset (a test server), else None."""
    best = None
    root = runs.ARTIFACTS / "cache" / "features"
    source, params = features.params_for(BACKBONE, RESOLUTION, LAYER)
    if features.cached(source, params):
        return source, params
    for meta_file in root.glob("*/meta.json") if root.is_dir() else []:
        meta = json.loads(meta_file.read_text())
        if (meta.get("backbone"), meta.get("resolution"), meta.get("layer")) != (BACKBONE, RESOLUTION, LAYER):
            continue
        s, p = features.params_for(BACKBONE, RESOLUTION, LAYER, images=int(meta.get("images") or 0))
        if features.folder(s, p) == meta_file.parent and features.cached(s, p):
            if best is None or p["images"] > best[1]["images"]:
                best = (s, p)
    return best


def check_name(name: str) -> str:
    name = " ".join(str(name or "").split())
    if not name:
        raise WorkbenchError("name your class first (e.g. cap, sock, my sneaker)")
    if len(name) > 30:
        raise WorkbenchError("a class name is at most 30 characters")
    if name.lower() in (c.lower() for c in CLASSES):
        raise WorkbenchError(f"{name!r} is already one of the ten classes: name something new")
    return name


def preprocess_pictures(pictures: list) -> np.ndarray:
    """Each picture (bytes, file, PIL, array) -> (N, 28, 28) uint8, as Predict preprocesses."""
    from .preprocess import preprocess
    if not MIN_PICTURES <= len(pictures) <= MAX_PICTURES:
        raise WorkbenchError(f"give {MIN_PICTURES} to {MAX_PICTURES} pictures of your class, not {len(pictures)}")
    out = []
    for i, p in enumerate(pictures, 1):
        try:
            out.append(np.round(preprocess(p) * 255).astype(np.uint8))
        except WorkbenchError as exc:
            raise WorkbenchError(f"picture {i}: {exc}") from None
    return np.stack(out)


def variants(x: np.ndarray) -> np.ndarray:
    """(N, 28, 28) -> (N * 10, 28, 28): each picture and its mirror, each moved by SHIFTS."""
    both = np.concatenate([x, x[:, :, ::-1]])
    return np.concatenate([np.roll(both, s, axis=(1, 2)) for s in SHIFTS])


def price(n_pictures: int, fm_images: int = FM_IMAGES) -> dict[str, float]:
    """About how long and how much memory, before anything runs: the backbone on the pictures'
    variants, then two heads over the features (timed constants of this CPU, scaled)."""
    from .cost import matmul_gflops
    rate = matmul_gflops() * 1e9 * 0.05  # depthwise convolutions reach a few % of a GEMM's rate
    backbone_s = n_pictures * len(SHIFTS) * 2 * 2 * backbones.macs_per_image(BACKBONE, RESOLUTION) / rate
    n = fm_images + n_pictures * 10
    head_s = 2 * EPOCHS * n * 1280 * 11 * 2 * 3 / (matmul_gflops() * 1e9 * 0.2)
    mb = 400 + n * 1280 * 4 * 3 / 2**20  # the backbone's batch, the heads' float32 features, copies
    return {"seconds": round(1.0 + backbone_s + head_s, 1), "mb": round(mb)}


def _head(cfg, x: np.ndarray, y: np.ndarray, seed: int):
    from .heads import FeatureData
    from .train import TrainConfig, train
    # one thread: the web server's other core stays free, and tiny steps do not split well
    tc = TrainConfig(epochs=EPOCHS, batch_size=BATCH, lr=LR, val_fraction=0.0, seed=seed, threads=1,
                     device="cpu", precision="fp32")
    empty = np.zeros((0, x.shape[1]), np.float32)
    return train(cfg, tc, FeatureData(x, y, empty, np.zeros(0, np.int64))).model


def _predict(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(np.asarray(x, dtype=np.float32))).argmax(1).numpy()


def train_own(pictures: list, name: str, net: torch.nn.Module | None = None, seed: int = 0,
              data=None) -> dict[str, Any]:
    """Train the 11-class head (and the 10-class one beside it); nothing is stored here. One at a
    time in this process (a second caller waits its turn, up to WAIT_S)."""
    if not _ONE_AT_A_TIME.acquire(timeout=WAIT_S):
        raise WorkbenchError("the server is busy training other students' classes of their own; "
                             "press Train again in a minute (your pictures are kept)")
    try:
        return _train_own(pictures, name, net, seed, data)
    finally:
        _ONE_AT_A_TIME.release()


def _train_own(pictures: list, name: str, net: torch.nn.Module | None, seed: int, data) -> dict[str, Any]:
    from .data import load
    from .features import run_backbone
    from .heads import head_config
    t0 = time.perf_counter()
    name = check_name(name)
    found = cached_features()
    if found is None:
        raise WorkbenchError("the pretrained features of Fashion-MNIST are not computed yet: ask for them "
                             "first (a shared job of a few minutes, once for everyone)")
    source, params = found
    x = preprocess_pictures(pictures)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    n_held = max(3, len(x) // 3)
    held, kept = np.sort(order[:n_held]), np.sort(order[n_held:])
    net = net or backbones.build(BACKBONE, RESOLUTION, LAYER)
    train_x = variants(x[kept])
    f_train = run_backbone(net, train_x, np.empty((len(train_x), 1280), np.float32), False, 64)
    f_held = run_backbone(net, x[held], np.empty((len(held), 1280), np.float32), False, 64)
    fm_train, fm_test, meta = features.load(source, params)
    ds = data or load()
    n_fm = min(FM_IMAGES, len(fm_train))
    xf, yf = np.asarray(fm_train[:n_fm], dtype=np.float32), ds.y_train[:n_fm].astype(np.int64)
    xt, yt = np.asarray(fm_test, dtype=np.float32), ds.y_test[:len(fm_test)]
    # the new class as often as a Fashion-MNIST class: its variants repeated up to n_fm / 10
    reps = max(1, round(n_fm / 10 / len(f_train)))
    x11 = np.concatenate([xf, np.repeat(f_train, reps, axis=0)])
    y11 = np.concatenate([yf, np.full(len(f_train) * reps, 10, np.int64)])
    cfg11 = head_config(BACKBONE, RESOLUTION, LAYER, images=params["images"], classes=11)
    cfg10 = head_config(BACKBONE, RESOLUTION, LAYER, images=params["images"])
    t_heads = time.perf_counter()
    model11 = _head(cfg11, x11, y11, seed)
    model10 = _head(cfg10, xf, yf, seed)
    heads_s = time.perf_counter() - t_heads
    held_pred = _predict(model11, f_held)
    test_pred = _predict(model11, xt)
    own = np.empty((len(x), f_held.shape[1]), np.float32)  # every picture's features, in upload order
    own[kept], own[held] = f_train[:len(kept)], f_held  # variants() starts with the pictures unmoved
    return {"name": name, "model": model11, "config": cfg11, "pictures": x, "held_out": held.tolist(),
            "held_predicted": [(list(CLASSES) + [name])[i] for i in held_pred],
            "own_accuracy": float((held_pred == 10).mean()),
            "ten_accuracy_with": float((test_pred == yt).mean()),
            "ten_accuracy_without": float((_predict(model10, xt) == yt).mean()),
            "test_images": int(len(yt)), "fm_images": int(n_fm), "training_variants": int(len(train_x)),
            "heads_seconds": round(heads_s, 2),
            "confusion_matrix": confusion(yt, test_pred, held_pred).tolist(),
            "map": place(fm_test, ds.y_test, own, held), "seconds": round(time.perf_counter() - t0, 2)}


def confusion(y_test: np.ndarray, test_pred: np.ndarray, held_pred: np.ndarray) -> np.ndarray:
    """(11, 11) counts, rows true class, columns predicted: the test images in rows 0-9, the
    held-out pictures (true class: the new one) in row 10."""
    cm = np.zeros((11, 11), np.int64)
    np.add.at(cm, (np.asarray(y_test, np.int64), np.asarray(test_pred, np.int64)), 1)
    np.add.at(cm[10], np.asarray(held_pred, np.int64), 1)
    return cm


def place(fm_test: np.ndarray, y_test: np.ndarray, own: np.ndarray, held: np.ndarray,
          n: int = MAP_IMAGES) -> dict[str, Any]:
    """The map: a PCA fitted on the first `n` test images' features only (the student's few
    pictures do not bend Fashion-MNIST's axes), each picture projected onto it. The projection
    (mean, components) is kept so anyone can place a picture again."""
    from sklearn.decomposition import PCA
    xs = np.asarray(fm_test[:n], dtype=np.float32)
    # randomized: 0.04 s against 1 s for the full SVD on 3,000 x 1,280; seeded, so repeatable
    pca = PCA(2, svd_solver="randomized", random_state=0).fit(xs)
    return {"xy": np.round(pca.transform(xs), 4).tolist(), "labels": np.asarray(y_test[:len(xs)]).tolist(),
            "stars": np.round(pca.transform(np.asarray(own, np.float32)), 4).tolist(),
            "held_out": np.isin(np.arange(len(own)), held).tolist(),
            "mean": pca.mean_.tolist(), "components": pca.components_.tolist(),
            "explained": pca.explained_variance_ratio_.tolist()}


def save_run(result: dict[str, Any], user) -> str:
    """The result as a finished run owned by `user`: checkpoint, pictures, metrics."""
    from .files import write_json_atomic
    from .models import save_checkpoint
    from .spec import RunSpec
    from .train import TrainConfig
    spec = RunSpec(result["config"], TrainConfig(epochs=EPOCHS, batch_size=BATCH, lr=LR, val_fraction=0.0)).validate()
    run_id = runs.create_run(spec.to_dict(), label=f"class of your own: {result['name']}", owner=user.name,
                             owner_id=user.id, extra_tags={f"fmnist.{TAG}": result["name"]})
    work = runs.work_dir(run_id)
    metrics = {k: result[k] for k in ("own_accuracy", "ten_accuracy_with", "ten_accuracy_without", "seconds",
                                      "heads_seconds", "fm_images", "test_images", "held_out", "held_predicted")}
    save_checkpoint(work / "best.pt", result["model"], metrics={**metrics, "test_accuracy": result["ten_accuracy_with"]},
                    classes=list(CLASSES) + [result["name"]])

    def pics(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, pictures=result["pictures"], held_out=np.asarray(result["held_out"], np.int64))
    from .files import write_atomic
    write_atomic(work / "pictures.npz", pics)
    # the matrix and the map beside the numbers (JSON: read back without unpickling anything)
    write_json_atomic(work / "own_class.json", {**metrics, "confusion_matrix": result["confusion_matrix"],
                                                "map": result["map"]})
    for f in ("best.pt", "pictures.npz", "own_class.json"):
        runs.log_artifact(run_id, work / f)
    runs.log_final(run_id, {"test_accuracy": result["ten_accuracy_with"], "own_accuracy": result["own_accuracy"]})
    runs.set_status(run_id, "finished", finished=time.time(), progress=1.0, test_accuracy=result["ten_accuracy_with"],
                    message=f"{result['name']}: {result['own_accuracy']:.0%} of the held-out pictures right")
    return run_id


def my_runs(user) -> list[dict[str, Any]]:
    """This user's classes of their own, newest first (the teacher sees everyone's)."""
    out = [r for r in runs.list_runs(statuses=("finished",)) if r["label"].startswith("class of your own: ")
           and (user.teacher or user.owns(r))]
    return sorted(out, key=lambda r: -r["config"].get("created", 0))


def open_run(run: dict[str, Any], user) -> tuple[torch.nn.Module, list[str], np.ndarray]:
    """(the 11-class model, its classes, the 28x28 pictures) of a run this user may open."""
    from .models import load_model, read_checkpoint
    from .roles import PermissionDenied
    if not (user.teacher or user.owns(run)):
        raise PermissionDenied("these pictures are another student's: only they and the teacher open them")
    path = runs.checkpoint_path(run)
    pics = runs.artifact_file(run, "pictures.npz")
    if not path or not pics:
        raise WorkbenchError("this run's files are missing")
    with np.load(pics, allow_pickle=False) as z:
        pictures = z["pictures"]
    return load_model(path), list(read_checkpoint(path).get("classes") or []), pictures


def details(run: dict[str, Any], user) -> dict[str, Any]:
    """own_class.json of a run this user may open: the numbers, the 11x11 matrix, the map (runs
    saved before the matrix and the map were stored lack them)."""
    from .roles import PermissionDenied
    if not (user.teacher or user.owns(run)):
        raise PermissionDenied("these pictures are another student's: only they and the teacher open them")
    path = runs.artifact_file(run, "own_class.json")
    if not path:
        raise WorkbenchError("this run's files are missing")
    return json.loads(Path(path).read_text())


def probabilities(model: torch.nn.Module, x28: np.ndarray) -> np.ndarray:
    """(28, 28) in [0, 1] -> (classes,) softmax of the 11-class model (backbone in front)."""
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(np.asarray(x28, np.float32))[None, None]), 1)[0].numpy()
