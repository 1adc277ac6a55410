"""The run registry on disk: artifacts/runs/<run_id>/ holds one training run.

Files of a run (every one written atomically: temp file + os.replace, so a kill
at any moment leaves the old version or the new one, never half a file):
  config.json    model config, training config, preset, engine, created time
  status.json    status, message, pid, progress, timestamps
  history.json   one row per finished epoch (losses, accuracies, lr, seconds)
  best.pt        best checkpoint so far (torch.save; load with weights_only=True)
  metrics.json   final test metrics (accuracy, loss, confusion matrix, per class...)
  cancel         present = the user asked to stop

Statuses: queued, running, finished, failed, diverged, cancelled, interrupted.
A run whose process died while queued/running is marked `interrupted` by
`mark_orphans` (the dashboard calls it at start-up).
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from .data import ARTIFACTS
from .errors import WorkbenchError
from .files import read_json, write_json_atomic  # noqa: F401 (the run store's writers)

RUNS_DIR = ARTIFACTS / "runs"
STATUSES = ("queued", "running", "finished", "failed", "diverged", "cancelled", "interrupted")
ACTIVE = ("queued", "running")
# what new_run_id makes: letters, digits, '-' and '_' only, so an id can never name a path
# outside the run folder ('.', '..', '/' and absolute paths all fail this)
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")


def runs_dir(root: str | Path | None = None) -> Path:
    return Path(root) if root else RUNS_DIR


def new_run_id(label: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in label)[:40] or "run"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}-{secrets.token_hex(2)}"


def create_run(spec: dict[str, Any], root: str | Path | None = None, run_dir: str | Path | None = None,
               label: str = "run") -> Path:
    """Make the run folder with config.json and status `queued`."""
    if run_dir is None:
        run_dir = runs_dir(root) / new_run_id(label)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / "config.json", {**spec, "run_id": run_dir.name, "created": time.time()})
    write_json_atomic(run_dir / "history.json", [])
    set_status(run_dir, "queued", message="waiting to start")
    return run_dir


def set_status(run_dir: Path, status: str, **fields: Any) -> dict:
    if status not in STATUSES:
        raise ValueError(f"unknown status {status}")
    old = read_json(Path(run_dir) / "status.json", {}) or {}
    new = {**old, **fields, "status": status, "updated": time.time()}
    write_json_atomic(Path(run_dir) / "status.json", new)
    return new


def append_history(run_dir: Path, row: dict) -> None:
    hist = read_json(Path(run_dir) / "history.json", []) or []
    hist.append(row)
    write_json_atomic(Path(run_dir) / "history.json", hist)


def cancel_requested(run_dir: Path) -> bool:
    return (Path(run_dir) / "cancel").exists()


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


def load_run(run_dir: str | Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise WorkbenchError(f"no run at {run_dir}")
    status = read_json(run_dir / "status.json", {}) or {}
    return {"run_id": run_dir.name, "run_dir": str(run_dir),
            "config": read_json(run_dir / "config.json", {}) or {},
            "status": status.get("status", "interrupted"), "status_info": status,
            "history": read_json(run_dir / "history.json", []) or [],
            "metrics": read_json(run_dir / "metrics.json"),
            "checkpoint": str(run_dir / "best.pt") if (run_dir / "best.pt").is_file() else None}


def list_runs(root: str | Path | None = None) -> list[dict[str, Any]]:
    """Every run, newest first; queued runs get their position in the queue."""
    base = runs_dir(root)
    if not base.is_dir():
        return []
    out = []
    for d in base.iterdir():
        if d.is_dir() and (d / "config.json").is_file():
            out.append(load_run(d))
    out.sort(key=lambda r: r["config"].get("created", 0), reverse=True)
    queued = sorted((r for r in out if r["status"] == "queued"), key=lambda r: r["config"].get("created", 0))
    for pos, r in enumerate(queued, 1):
        r["queue_position"] = pos
    return out


def resolve_run(run_id: str, root: str | Path | None = None) -> Path:
    """The folder of the run with this id in the run store; anything else is refused.

    Only an id is accepted, never a path: '.', '..', 'a/b' and absolute paths fail the id
    pattern, and the folder must be a run (it has config.json) directly inside the store.
    """
    run_id = str(run_id)
    if not RUN_ID.fullmatch(run_id):
        raise WorkbenchError(f"{run_id!r} is not a run id (ids are letters, digits, '-' and '_'; "
                             "see `python -m fmnist_core runs`)")
    base = runs_dir(root)
    cand = base / run_id
    if not (cand.is_dir() and not cand.is_symlink() and (cand / "config.json").is_file()
            and cand.resolve().parent == base.resolve()):
        raise WorkbenchError(f"no run named {run_id!r} in {base}")
    return cand


def request_cancel(run_id: str, root: str | Path | None = None) -> None:
    """Ask the run with this id to stop (its trainer polls the flag)."""
    (resolve_run(run_id, root) / "cancel").touch()


def delete_run(run_id: str, root: str | Path | None = None) -> None:
    d = resolve_run(run_id, root)
    st = read_json(d / "status.json", {}) or {}
    if st.get("status") in ACTIVE and pid_alive(st.get("pid")):
        raise WorkbenchError(f"run {d.name} is still {st['status']}; stop it before deleting")
    shutil.rmtree(d)


def mark_orphans(root: str | Path | None = None) -> list[str]:
    """Runs left queued/running by a process that no longer exists -> interrupted."""
    marked = []
    base = runs_dir(root)
    if not base.is_dir():
        return marked
    for d in base.iterdir():
        st = read_json(d / "status.json")
        if st and st.get("status") in ACTIVE and not pid_alive(st.get("pid")):
            set_status(d, "interrupted", message="the training process ended without finishing "
                       "(server restart or crash); the best checkpoint so far is kept")
            marked.append(d.name)
    return marked
