"""What a user does to runs: launch one, stop it, delete it (and the teacher's restore and
purge), hide it. Each action asks roles.py
whether this user may, then acts on the store (runs.py) or through the run's executor.

Launching: the spec is validated (RunSpec), priced (cost.price), and checked against every
class limit and the server's memory budget together with the runs waiting or running now,
under one lock (artifacts/.submit.lock, fcntl), so N launches at once against a limit of 2
create exactly 2. The run is then a record in the store (`queued`); the dispatcher
(queue.py) starts it when its turn comes and room is free. Nothing is spawned per waiting run.

The lock serializes the launches of one server (the class's dashboard); a second server on
the same tracking store would need its own (one dashboard per class is the design).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Callable

from . import runs
from .files import exclusive
from .errors import WorkbenchError
from .roles import User, authorize, capped, check_limits, class_settings, require_teacher, single_user
from .spec import RunSpec


@contextmanager
def submit_lock():
    with exclusive(runs.ARTIFACTS / ".submit.lock"):
        yield


def submit(spec: dict[str, Any] | RunSpec, label: str = "run", user: User | None = None,
           executor: str | None = None, start_dispatcher: bool = True,
           extra_tags: dict[str, str] | None = None) -> str:
    """Validate, price and check a launch, then create its record; returns the run id. The one
    entry point of the dashboard's Launch, the CLI's `train --queue`, a study's trials
    (`extra_tags`: its study, trial number and MLflow parent run) and the tests."""
    from .cost import price
    from .executors import executor_name
    from .queue import ensure_dispatcher, memory_budget_mb
    user = user or single_user()
    spec = RunSpec.from_dict(spec)
    name = executor_name(executor)
    p = price(spec)
    st = class_settings()
    with submit_lock():
        active = runs.list_runs(statuses=runs.ACTIVE)
        check_limits(user, spec, p, active, st, memory_budget_mb())
        spec = capped(spec, st, user.teacher)
        run_id = runs.create_run(spec.to_dict(), label=label, owner=user.name, owner_id=user.id,
                                 extra_tags={"fmnist.executor": name, "fmnist.price": _json(p.to_dict()),
                                             "fmnist.owner_addr": user.address,
                                             "fmnist.by_teacher": "1" if user.teacher else "0",
                                             **(extra_tags or {})})
    if start_dispatcher:
        ensure_dispatcher()
    return run_id


def _json(d: dict) -> str:
    import json
    return json.dumps(d)


def stop_run(user: User, run_id: str) -> None:
    """Owner or teacher: a waiting run is cancelled at once (it is only a record); a started
    one is asked to stop through the store's flag, which its trainer polls wherever it runs."""
    r = runs.load_summary(run_id)
    authorize(user, "stop", r)
    runs.request_cancel(run_id)
    from .queue import dispatched
    if r["status"] == "queued" and not dispatched(r):
        runs.set_status(run_id, "cancelled", message="cancelled while waiting in the queue",
                        finished=time.time())


def delete_run(user: User, run_id: str) -> None:
    authorize(user, "delete", runs.load_summary(run_id))
    runs.delete_run(run_id)


def hide_run(user: User, run_id: str, hidden: bool = True) -> None:
    require_teacher(user, "hide runs from the leaderboard")
    runs.set_hidden(run_id, hidden)


def restore_run(user: User, run_id: str) -> None:
    from . import trash
    require_teacher(user, "restore deleted runs")
    trash.restore_run(run_id)


def purge_deleted(user: User, run_ids: list[str] | None = None) -> list[str]:
    from . import trash
    require_teacher(user, "remove deleted runs for good")
    return trash.purge(run_ids)


def follow_run(run_id: str, callback: Callable[[dict], None] | None = None, poll: float = 2.0,
               timeout: float | None = None) -> dict[str, Any]:
    """Wait for a run that trains elsewhere (a trainer the dispatcher started, a Ray worker) to
    end, reporting each new epoch to `callback` as an "epoch" event; returns the same summary
    as execute.execute_run."""
    seen, deadline = 0, (time.time() + timeout) if timeout else None
    while True:
        r = runs.load_run(run_id)
        for row in r["history"][seen:]:
            if callback is not None:
                callback({"event": "epoch", **row, "epochs": r["status_info"].get("epochs") or row["epoch"]})
        seen = len(r["history"])
        if r["status"] not in runs.ACTIVE:
            info = r["status_info"]
            return {"run_id": run_id, "status": r["status"], "message": info.get("message", ""),
                    "test_accuracy": info.get("test_accuracy"), "best_val_accuracy": info.get("best_val_accuracy"),
                    "epochs_run": info.get("epochs_run") or 0, "train_seconds": info.get("train_seconds") or 0.0,
                    "checkpoint": r["checkpoint"]}
        if deadline and time.time() > deadline:
            raise WorkbenchError(f"run {run_id} still {r['status']} after {timeout:.0f} s")
        time.sleep(poll)
