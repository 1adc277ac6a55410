"""Deleted runs: what "delete" means, and the teacher's restore and purge.

  delete    (runs.delete_run, by the owner or the teacher) MLflow's soft delete: the run leaves
            every list and page at once, but its record and files stay, so a slip can be undone
  restore   the teacher brings a deleted run back (`restore_run`), until the next purge
  purge     the teacher removes every deleted run for good (`purge`): MLflow's own `mlflow gc`
            on the embedded store deletes the records and their artifact folders (best.pt,
            history, metrics), and this machine's copies (the trainer's work folder, the
            download cache) go with them. On a tracking server the records live in its
            database, which this process cannot reach: its administrator runs `mlflow gc` there.

Who may: checked in roles.py (restore and purge are the teacher's).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Any

from . import runs
from .errors import WorkbenchError


def deleted_runs() -> list[dict[str, Any]]:
    """The runs deleted and not yet purged, newest first (the teacher's bin)."""
    from mlflow.entities import ViewType
    s = runs.store()
    out, token = [], None
    while True:
        page = s.client.search_runs([s.experiment_id], run_view_type=ViewType.DELETED_ONLY, max_results=1000,
                                    page_token=token, order_by=["attributes.start_time DESC"])
        out += [runs.summary(r) for r in page]
        token = page.token
        if not token:
            return out


def _deleted(run_id: str):
    from mlflow.exceptions import MlflowException
    if not runs.RUN_ID.fullmatch(str(run_id)):
        raise WorkbenchError(f"{run_id!r} is not a run id")
    s = runs.store()
    try:
        run = s.client.get_run(run_id)
    except MlflowException:
        run = None
    if run is None or run.info.experiment_id != s.experiment_id or run.info.lifecycle_stage != "deleted":
        raise WorkbenchError(f"no deleted run named {run_id!r} (it was restored or purged already)")
    return run


def restore_run(run_id: str) -> None:
    _deleted(run_id)
    runs.store().client.restore_run(run_id)


def purge(run_ids: list[str] | None = None) -> list[str]:
    """Remove deleted runs (all, or these) for good; returns the ids removed."""
    ids = [r["run_id"] for r in deleted_runs()] if run_ids is None else [_deleted(i).info.run_id for i in run_ids]
    if not ids:
        return []
    uri = runs.store().uri
    if not runs.is_embedded(uri):
        raise WorkbenchError("on a tracking server, deleted runs are removed by its administrator: "
                             "`mlflow gc --backend-store-uri <its database>` on that machine")
    done = subprocess.run([sys.executable, "-m", "mlflow", "gc", "--backend-store-uri", uri,
                           "--run-ids", ",".join(ids)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MLFLOW_TRACKING_URI": uri})
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1][:300]
        raise WorkbenchError(f"mlflow gc could not remove the deleted runs ({last})")
    for i in ids:  # this machine's copies: the trainer's scratch folder and downloads
        for folder in (runs.ARTIFACTS / "work" / i, runs.ARTIFACTS / "cache" / "runs" / i):
            shutil.rmtree(folder, ignore_errors=True)
    return ids
