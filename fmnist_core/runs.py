"""The run store: every training run is an MLflow run, wherever it trained.

One store for everything that shows runs (Train's live view, Results, the queue, the
leaderboard, `python -m fmnist_core runs`):

  embedded default   nothing configured: SQLite at artifacts/mlflow.db, artifacts under
                     artifacts/mlartifacts/ (git-ignored); `make mlflow-ui` shows the same runs
  a tracking server  FMNIST_TRACKING_URI (or MLflow's own MLFLOW_TRACKING_URI) = http://host:5000,
                     e.g. `mlflow server` on PostgreSQL with --serve-artifacts: a class server
                     and Ray workers on other machines log into the same runs

What a run holds, in MLflow's terms:
  params     the whole model and training config flattened (model.hidden, train.lr...),
             preset, engine; `fmnist.spec` (tag) keeps the exact JSON that rebuilds it
  metrics    per epoch with step = epoch: train/val loss and accuracy, lr, epoch seconds;
             the live curve points: point_train_loss / point_train_accuracy (the epoch's
             running mean every few dozen batches) with step = fractional epoch x POINT_SCALE;
             at the end test_accuracy, test_loss
  tags       fmnist.status (queued, running, finished, failed, diverged, cancelled,
             interrupted: finer than MLflow's own RUNNING/FINISHED/FAILED/KILLED, which is
             kept in step), fmnist.owner / fmnist.owner_id, fmnist.label, progress fields
             (fmnist.epoch, fmnist.progress, ...), fmnist.heartbeat, fmnist.cancel, fmnist.hidden
  artifacts  best.pt (the best checkpoint so far, uploaded at every new best, so a killed run
             keeps it), epoch_confusion.json (each epoch's validation confusion matrix,
             rewritten at every epoch end), and at the end metrics.json, confusion.csv, per_class.csv,
             history.csv, log.txt

Guarantees kept from the folder registry this replaces: a kill -9 leaves a readable run that
`mark_orphans` marks `interrupted` (its process is gone, or its heartbeat stopped when it ran
on another machine) with its best checkpoint loadable; cancel is a flag the trainer polls;
delete and cancel take a run id of this store and nothing else (never a path).

Left out: nested runs, MLflow's model registry, autologging (the trainer logs exactly what
the dashboard reads).
"""
from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

from .data import ARTIFACTS
from .errors import WorkbenchError
from .files import copy_atomic, read_json

EXPERIMENT = "fmnist-workbench"
STATUSES = ("queued", "running", "finished", "failed", "diverged", "cancelled", "interrupted")
ACTIVE = ("queued", "running")
MLFLOW_STATUS = {"finished": "FINISHED", "failed": "FAILED", "diverged": "FAILED",
                 "cancelled": "KILLED", "interrupted": "KILLED"}
# a run on another machine whose heartbeat is older than this is taken for dead (the trainer
# beats at least every HEARTBEAT_SECONDS, also while it waits in the queue)
HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 90.0
# ids are what MLflow makes (32 hex digits) or at least letters, digits, '-' and '_': an id
# can never name a path ('.', '..', '/' and absolute paths all fail this)
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
HISTORY_KEYS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "epoch_seconds",
                "watch_loss", "watch_accuracy")
POINT_KEYS = ("train_loss", "train_accuracy")  # stored as point_<key>
POINT_SCALE = 10000  # MLflow steps are integers: step = round(fractional epoch * POINT_SCALE)
CONFUSION_KEYS = ("val_confusion", "watch_confusion")
CONFUSION_FILE = "epoch_confusion.json"
HOST = socket.gethostname()
# what a store answers for an id it does not have (SQL stores and the REST API differ)
NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "BAD_REQUEST", "NOT_FOUND")
T = "fmnist."  # our tag prefix


# --- where the store is -------------------------------------------------------------------

def tracking_uri() -> str:
    uri = os.environ.get("FMNIST_TRACKING_URI") or os.environ.get("MLFLOW_TRACKING_URI")
    return uri or f"sqlite:///{ARTIFACTS / 'mlflow.db'}"


def is_embedded(uri: str | None = None) -> bool:
    return (uri or tracking_uri()).startswith("sqlite:")


class StoreNotAnswering(WorkbenchError):
    """A tracking server that does not answer (down, restarting, unreachable)."""


# the dashboard asks before reading: MLflow's own client retries a dead server for minutes
# (7 retries with backoff), which would hang every page's sidebar. The answer is kept a few
# seconds, so a class of browsers asks the server once, not once each.
ANSWER_TIMEOUT_S, ANSWER_TTL_S = 3.0, 5.0
_answers: dict[str, tuple[float, bool]] = {}


def answering(uri: str | None = None) -> bool:
    """Does the run store answer now? (always, for the embedded one)"""
    import urllib.request
    uri = uri or tracking_uri()
    if not uri.startswith(("http://", "https://")):
        return True
    when, ok = _answers.get(uri, (0.0, False))
    if time.monotonic() - when < ANSWER_TTL_S:
        return ok
    try:  # /health needs no login, also on a basic-auth server
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=ANSWER_TIMEOUT_S) as resp:
            ok = resp.status == 200
    except Exception:
        ok = False
    _answers[uri] = (time.monotonic(), ok)
    return ok


def check_answering(uri: str | None = None) -> None:
    """Raise StoreNotAnswering, one sentence, when the run store does not answer."""
    uri = uri or tracking_uri()
    if not answering(uri):
        raise StoreNotAnswering(f"the run store at {uri} is not answering")


_stores: dict[str, "Store"] = {}
_stores_lock = threading.Lock()


def store() -> "Store":
    """The store for the configured URI (one per process and URI: its client keeps a pool)."""
    uri = tracking_uri()
    with _stores_lock:
        if uri not in _stores:
            _stores[uri] = Store(uri)
        return _stores[uri]


class Store:
    def __init__(self, uri: str):
        import logging
        import mlflow  # noqa: F401 (imported here: the CLI's other commands never pay for it)
        from mlflow.tracking import MlflowClient
        # "Creating initial MLflow database tables..." and the like are not for our users
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        self.uri = uri
        if is_embedded(uri):
            _prepare_sqlite(uri)
        self.client = MlflowClient(tracking_uri=uri)
        self.experiment_id = self._experiment()

    def _experiment(self) -> str:
        from mlflow.exceptions import MlflowException
        exp = self.client.get_experiment_by_name(EXPERIMENT)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        # the embedded store keeps its artifacts beside its database file
        location = (_sqlite_path(self.uri).parent / "mlartifacts").resolve().as_uri() if is_embedded(self.uri) else None
        try:
            return self.client.create_experiment(EXPERIMENT, artifact_location=location)
        except MlflowException:  # created meanwhile by another process
            return self.client.get_experiment_by_name(EXPERIMENT).experiment_id


def _prepare_sqlite(uri: str) -> None:
    """The embedded database in WAL mode: trainers write while the dashboard reads, and
    readers no longer wait for a writer (MLflow leaves SQLite in its default rollback mode)."""
    import sqlite3
    path = _sqlite_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path, timeout=30) as con:
        con.execute("PRAGMA journal_mode=WAL")


def _sqlite_path(uri: str) -> Path:
    return Path(uri.removeprefix("sqlite:///"))


# --- writing a run ----------------------------------------------------------------------------

def create_run(spec: dict[str, Any], label: str = "run", owner: str | None = None,
               owner_id: str | None = None, extra_tags: dict[str, str] | None = None) -> str:
    """A new run in status `queued` (a record: nothing runs until the dispatcher starts it);
    returns its id. `spec` is a RunSpec's to_dict(), validated again here."""
    from mlflow.entities import Param
    from .spec import RunSpec
    params = RunSpec.from_dict(spec).params()
    s = store()
    now = time.time()
    tags = {f"{T}spec": json.dumps(spec), f"{T}label": label, f"{T}owner": owner or "",
            f"{T}owner_id": owner_id or "", f"{T}status": "queued", f"{T}created": repr(now),
            f"{T}message": "waiting to start", f"{T}heartbeat": repr(now), **(extra_tags or {})}
    run = s.client.create_run(s.experiment_id, run_name=label, start_time=int(now * 1000), tags=tags)
    s.client.log_batch(run.info.run_id, params=[Param(k, v[:6000]) for k, v in params.items()])
    return run.info.run_id


def _tag_value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def set_status(run_id: str, status: str, **fields: Any) -> None:
    """Status plus any progress fields (as fmnist.<name> tags), and a heartbeat, in one call."""
    from mlflow.entities import RunTag
    if status not in STATUSES:
        raise ValueError(f"unknown status {status}")
    fields = {"heartbeat": time.time(), **fields}
    tags = [RunTag(f"{T}status", status)] + [RunTag(f"{T}{k}", _tag_value(v)) for k, v in fields.items()]
    s = store()
    s.client.log_batch(run_id, tags=tags)
    if status in MLFLOW_STATUS:
        s.client.set_terminated(run_id, MLFLOW_STATUS[status])


def log_epoch(run_id: str, row: dict[str, Any]) -> None:
    """One finished epoch: its figures as metrics with step = epoch."""
    from mlflow.entities import Metric
    ts, step = int(time.time() * 1000), int(row["epoch"])
    metrics = [Metric(k, float(row[k]), ts, step) for k in HISTORY_KEYS if row.get(k) is not None]
    store().client.log_batch(run_id, metrics=metrics)


def log_points(run_id: str, points: list[dict[str, Any]]) -> None:
    """Live curve points {"x": fractional epoch, "train_loss", "train_accuracy"}, one request."""
    from mlflow.entities import Metric
    ts = int(time.time() * 1000)
    metrics = [Metric(f"point_{k}", float(p[k]), ts, round(p["x"] * POINT_SCALE))
               for p in points for k in POINT_KEYS if p.get(k) is not None]
    if metrics:
        store().client.log_batch(run_id, metrics=metrics)


def log_artifact(run_id: str, path: str | Path) -> None:
    """Add a file to the run's artifacts. On this machine's disk (the embedded store) it is
    copied atomically, so a kill mid-copy never leaves a half checkpoint for readers."""
    local = _local_artifacts(get_run(run_id).info.artifact_uri)
    if local is not None:
        copy_atomic(path, local / Path(path).name)
    else:
        store().client.log_artifact(run_id, str(path))


def log_final(run_id: str, metrics: dict[str, float]) -> None:
    from mlflow.entities import Metric
    ts = int(time.time() * 1000)
    store().client.log_batch(run_id, metrics=[Metric(k, float(v), ts, 0) for k, v in metrics.items()
                                              if v is not None])


def work_dir(run_id: str) -> Path:
    """This machine's scratch folder for a run it trains (checkpoint before upload, log)."""
    d = ARTIFACTS / "work" / run_id
    d.mkdir(parents=True, exist_ok=True)
    return d


# --- reading runs ---------------------------------------------------------------------------

def _tags(run) -> dict[str, str]:
    return {k[len(T):]: v for k, v in run.data.tags.items() if k.startswith(T)}


def _decode(v: str) -> Any:
    try:
        return json.loads(v)
    except ValueError:
        return v


def summary(run) -> dict[str, Any]:
    """A run as the pages and the CLI read it (no history: `load_run` adds that)."""
    tags = _tags(run)
    info = {k: _decode(v) for k, v in tags.items() if k not in ("spec", "label", "owner", "owner_id")}
    spec = _decode(tags.get("spec", "{}")) or {}
    created = float(tags.get("created") or run.info.start_time / 1000)
    status = tags.get("status", "interrupted")
    for k in ("test_accuracy", "test_loss"):
        if k in run.data.metrics and info.get(k) is None:
            info[k] = run.data.metrics[k]
    r = {"run_id": run.info.run_id, "label": tags.get("label", run.info.run_name),
         "owner": tags.get("owner") or "", "owner_id": tags.get("owner_id") or "",
         "config": {**spec, "run_id": run.info.run_id, "created": created},
         "status": status if status in STATUSES else "interrupted", "status_info": info,
         "hidden": tags.get("hidden") == "1", "artifact_uri": run.info.artifact_uri}
    r["checkpoint"] = _checkpoint_guess(r)
    return r


def _checkpoint_guess(r: dict[str, Any]) -> str | None:
    """Where the run's best.pt is or will be, without a request: on this disk, the file (if
    there); from a tracking server, its place in the download cache (`ensure_checkpoint`
    fetches it there when a page needs the model)."""
    local = _local_artifacts(r["artifact_uri"])
    if local is not None:
        p = local / "best.pt"
        return str(p) if p.is_file() else None
    if r["status"] == "finished" or r["status_info"].get("best_epoch"):
        return str(ARTIFACTS / "cache" / "runs" / r["run_id"] / "best.pt")
    return None


def ensure_checkpoint(path: str | None) -> str | None:
    """A checkpoint path from a run record, downloaded first when it is a cache path of a
    remote run that is not here yet."""
    if not path or Path(path).is_file():
        return path
    p = Path(path)
    if p.parent.parent == ARTIFACTS / "cache" / "runs":
        got = artifact_file({"run_id": p.parent.name, "artifact_uri": ""}, "best.pt", refresh=True)
        return str(got) if got else None
    return None


def get_run(run_id: str):
    """The MLflow run with this id in our experiment, or a one-line refusal (never a path)."""
    from mlflow.exceptions import MlflowException
    run_id = str(run_id)
    if not RUN_ID.fullmatch(run_id):
        raise WorkbenchError(f"{run_id!r} is not a run id (ids are letters, digits, '-' and '_'; "
                             "see `python -m fmnist_core runs`)")
    s = store()
    try:
        run = s.client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code not in NOT_FOUND:
            raise  # the store is unreachable (a tracking server restarting): not "no such run"
        run = None
    if run is None or run.info.experiment_id != s.experiment_id or run.info.lifecycle_stage != "active":
        raise WorkbenchError(f"no run named {run_id!r} in the run store ({s.uri})")
    return run


def load_summary(run_id: str) -> dict[str, Any]:
    """A run's record without its history, metrics or artifacts: one request, no download
    (what authorizing an action and the trainer's start need)."""
    return summary(get_run(run_id))


def load_run(run_id: str, history: bool = True) -> dict[str, Any]:
    run = get_run(run_id)
    r = summary(run)
    r["history"] = read_history(run_id, run) if history else []
    r["points"] = read_points(run_id, run) if history else []
    if history and r["history"]:
        _add_confusions(r)
    r["metrics"] = _final_metrics(r) if r["status"] not in ACTIVE else None
    r["checkpoint"] = checkpoint_path(r)
    return r


def read_history(run_id: str, run=None) -> list[dict[str, Any]]:
    """Per-epoch rows from the metric histories (one request per metric the run has)."""
    run = run or get_run(run_id)
    rows: dict[int, dict] = {}
    for key in HISTORY_KEYS:
        if key not in run.data.metrics:
            continue
        for m in store().client.get_metric_history(run_id, key):
            rows.setdefault(m.step, {"epoch": m.step})[key] = m.value
    return [rows[k] for k in sorted(rows)]


def read_points(run_id: str, run=None) -> list[dict[str, Any]]:
    """The live curve points, in order: {"x": fractional epoch, "train_loss", "train_accuracy"}."""
    run = run or get_run(run_id)
    pts: dict[int, dict] = {}
    for key in POINT_KEYS:
        if f"point_{key}" not in run.data.metrics:
            continue
        for m in store().client.get_metric_history(run_id, f"point_{key}"):
            pts.setdefault(m.step, {"x": m.step / POINT_SCALE})[key] = m.value
    return [pts[k] for k in sorted(pts)]


def _add_confusions(r: dict[str, Any]) -> None:
    """Each epoch's confusion matrices (epoch_confusion.json) into its history row."""
    p = artifact_file(r, CONFUSION_FILE, refresh=r["status"] in ACTIVE)
    stored = (read_json(p) or {}).get("epochs", []) if p else []
    by_epoch = {int(e["epoch"]): e for e in stored if isinstance(e, dict) and "epoch" in e}
    for row in r["history"]:
        for k in CONFUSION_KEYS:
            cm = by_epoch.get(int(row["epoch"]), {}).get(k)
            if cm is not None:
                row[k] = cm


def list_runs(statuses: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Every run, newest first (one search, no histories). `statuses`: only runs in these
    (searched in the store, so the dispatcher's tick does not read 500 runs). Places in the
    queue are the dispatcher's to say: queue.estimates."""
    s = store()
    out = []
    for status in statuses or (None,):
        where = f"tags.`{T}status` = '{status}'" if status else ""
        token = None
        while True:
            page = s.client.search_runs([s.experiment_id], filter_string=where, max_results=1000,
                                        page_token=token, order_by=["attributes.start_time DESC"])
            # a study's MLflow parent run (studies.py) is a heading for its trials, not a run
            out += [summary(r) for r in page if r.data.tags.get(f"{T}kind") != "study"]
            token = page.token
            if not token:
                break
    if statuses and len(statuses) > 1:
        out.sort(key=lambda r: r["config"]["created"], reverse=True)
    return out


def _local_artifacts(uri: str) -> Path | None:
    """The folder of a run's artifacts when they are on this machine's disk, else None."""
    if uri.startswith("file://"):
        from urllib.parse import unquote, urlparse
        return Path(unquote(urlparse(uri).path))
    if uri.startswith("/"):
        return Path(uri)
    return None


def artifact_file(r: dict[str, Any], name: str, refresh: bool = False) -> Path | None:
    """A run's artifact as a local file (downloaded once into artifacts/cache/ when the store
    is remote; `refresh` fetches again, for files that change while a run is active)."""
    local = _local_artifacts(r["artifact_uri"])
    if local is not None:
        p = local / name
        return p if p.is_file() else None
    cached = ARTIFACTS / "cache" / "runs" / r["run_id"] / name
    if cached.is_file() and not refresh:
        return cached
    try:
        import mlflow
        got = mlflow.artifacts.download_artifacts(run_id=r["run_id"], artifact_path=name,
                                                  tracking_uri=store().uri)
    except Exception:  # not there (yet): a run without a best epoch, a server that is down
        return cached if cached.is_file() else None
    copy_atomic(got, cached)
    return cached


def checkpoint_path(r: dict[str, Any]) -> str | None:
    p = artifact_file(r, "best.pt", refresh=r["status"] in ACTIVE)
    return str(p) if p else None


def _final_metrics(r: dict[str, Any]) -> dict | None:
    p = artifact_file(r, "metrics.json")
    return read_json(p) if p else None


# --- cancel, delete, orphans ------------------------------------------------------------------

def request_cancel(run_id: str) -> None:
    """Ask the run with this id to stop (its trainer polls the flag)."""
    from mlflow.entities import RunTag
    get_run(run_id)
    store().client.log_batch(run_id, tags=[RunTag(f"{T}cancel", "1")])


def cancel_requested(run_id: str) -> bool:
    return get_run(run_id).data.tags.get(f"{T}cancel") == "1"


def set_hidden(run_id: str, hidden: bool) -> None:
    from mlflow.entities import RunTag
    get_run(run_id)
    store().client.log_batch(run_id, tags=[RunTag(f"{T}hidden", "1" if hidden else "0")])


def delete_run(run_id: str) -> None:
    r = summary(get_run(run_id))
    if r["status"] in ACTIVE and alive(r):
        raise WorkbenchError(f"run {run_id} is still {r['status']}; stop it before deleting")
    store().client.delete_run(run_id)


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child (finished, not yet reaped) is not alive for our purposes
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def alive(r: dict[str, Any], now: float | None = None) -> bool:
    """Is an active run still there? A waiting record always is (nothing runs for it yet); a
    started one on this machine by its pid; elsewhere (a Ray worker, another server) by its
    heartbeat."""
    info = r["status_info"]
    if r["status"] == "queued" and not info.get("dispatched"):
        return True  # a record waiting for the dispatcher
    if info.get("executor") == "ray" and r["status"] == "queued":
        return True  # waiting for a Ray worker: nothing beats until the task starts
    if info.get("host") == HOST and info.get("pid"):
        return pid_alive(info.get("pid"))
    beat = float(info.get("heartbeat") or r["config"]["created"])
    return (now or time.time()) - beat < STALE_SECONDS


def mark_orphans() -> list[str]:
    """Runs left running by a process that no longer exists -> interrupted. (Waiting runs are
    records and stay in line; a started one whose trainer died is the dispatcher's to retry.)"""
    marked = []
    for r in list_runs(statuses=("running",)):
        if not alive(r):
            set_status(r["run_id"], "interrupted", message="the training process ended without finishing "
                       "(server restart or crash); the best checkpoint so far is kept")
            marked.append(r["run_id"])
    return marked
