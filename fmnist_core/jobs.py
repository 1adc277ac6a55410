"""Training as a job: run it into a run folder (in this process, for the CLI), or
launch it as its own process (for the dashboard), with a simple job queue.

The queue needs no daemon: each launched process waits in status `queued`
until it is the oldest waiting run and one of N slot locks
(artifacts/runs/.slots/slot-K.lock, fcntl.flock) is free. A lock dies with
its process, so a crash never leaves a slot taken. N comes from the launcher
(default 1: on a 2-core machine two trainings only slow each other down).
"""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from . import runs
from .data import PROJECT_ROOT, load
from .device import machine_info
from .epochs import TrainResult
from .errors import WorkbenchError
from .evaluate import evaluate
from .models import ModelConfig, build_model, config_from_dict, config_to_dict, save_checkpoint
from .train import TrainConfig, train, train_config_from_dict, train_config_to_dict

ENGINES = ("torch", "numpy")


def run_spec(model_config: ModelConfig, train_config: TrainConfig, preset: str | None = None,
             engine: str = "torch", train_limit: int | None = None) -> dict[str, Any]:
    if engine not in ENGINES:
        raise WorkbenchError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "numpy":
        from .twin import check_trainable
        check_trainable(model_config, train_config)  # refuse before any run folder exists
    return {"model_config": config_to_dict(model_config), "train_config": train_config_to_dict(train_config),
            "preset": preset, "engine": engine, "train_limit": train_limit}


def _acquire_slot(run_dir: Path, max_concurrent: int, poll: float = 0.5):
    """Block until this run is first in line and a slot is free; return the open lock file."""
    slots = run_dir.parent / ".slots"
    slots.mkdir(exist_ok=True)
    while True:
        if runs.cancel_requested(run_dir):
            return None
        waiting = [r for r in runs.list_runs(run_dir.parent)
                   if r["status"] == "queued" and runs.pid_alive(r["status_info"].get("pid"))]
        mine = run_dir.name
        ahead = [r for r in waiting if r["config"].get("created", 0) < _created(run_dir)
                 and r["run_id"] != mine]
        if not ahead:
            for k in range(max_concurrent):
                f = open(slots / f"slot-{k}.lock", "w")
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return f
                except BlockingIOError:
                    f.close()
        runs.set_status(run_dir, "queued", pid=os.getpid(), queue_position=len(ahead) + 1,
                        message=f"waiting in the queue: position {len(ahead) + 1}")
        time.sleep(poll)


def _created(run_dir: Path) -> float:
    return (runs.read_json(run_dir / "config.json", {}) or {}).get("created", 0)


def execute_run(run_dir: str | Path, callback: Callable[[dict], None] | None = None,
                max_concurrent: int = 0) -> dict[str, Any]:
    """Train the run described by run_dir/config.json, writing everything as it goes.

    Returns the CLI's summary dict. max_concurrent > 0 waits for a queue slot first.
    """
    run_dir = Path(run_dir)
    spec = runs.read_json(run_dir / "config.json")
    if not spec:
        raise WorkbenchError(f"{run_dir}: no config.json, not a run folder")
    runs.set_status(run_dir, "queued", pid=os.getpid(), message="waiting to start")
    slot = None
    if max_concurrent > 0:
        slot = _acquire_slot(run_dir, max_concurrent)
        if slot is None:
            runs.set_status(run_dir, "cancelled", message="cancelled while queued")
            return _summary(run_dir, "cancelled", None)
    try:
        return _execute(run_dir, spec, callback)
    except BaseException as exc:
        msg = str(exc) if isinstance(exc, WorkbenchError) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, KeyboardInterrupt):
            runs.set_status(run_dir, "interrupted", message="interrupted (Ctrl-C)")
        else:
            runs.set_status(run_dir, "failed", message=msg)
        raise
    finally:
        if slot is not None:
            slot.close()


def _execute(run_dir: Path, spec: dict, callback) -> dict[str, Any]:
    mcfg = config_from_dict(spec["model_config"])
    tcfg = train_config_from_dict(spec["train_config"])
    started = time.time()
    runs.set_status(run_dir, "running", pid=os.getpid(), started=started, message="loading data",
                    queue_position=None)
    data = load()
    last_write = [0.0]

    def on_event(ev: dict) -> None:
        if ev["event"] == "epoch":
            runs.append_history(run_dir, {k: v for k, v in ev.items() if k not in ("event", "epochs", "best_epoch")})
            runs.set_status(run_dir, "running", epoch=ev["epoch"], epochs=ev["epochs"], batch=None,
                            progress=ev["epoch"] / ev["epochs"], best_epoch=ev["best_epoch"],
                            message=f"epoch {ev['epoch']}/{ev['epochs']} done")
        elif ev["event"] == "batch" and time.time() - last_write[0] > 0.5:
            last_write[0] = time.time()
            epochs = tcfg.epochs
            runs.set_status(run_dir, "running", epoch=ev["epoch"], epochs=epochs, batch=ev["batch"],
                            steps=ev["steps"], batch_loss=ev["loss"],
                            progress=((ev["epoch"] - 1) + ev["batch"] / ev["steps"]) / epochs,
                            message=f"epoch {ev['epoch']}/{epochs}, batch {ev['batch']}/{ev['steps']}")
        elif ev["event"] == "start":
            runs.set_status(run_dir, "running", device=ev["device"], precision=ev["precision"],
                            message="training")
        if callback is not None:
            callback(ev)

    model_for_ckpt = build_model(mcfg)

    def on_best(state: dict, row: dict) -> None:
        save_checkpoint(run_dir / "best.pt", model_for_ckpt, state_dict=state,
                        metrics={"best_val_accuracy": row.get("val_accuracy"), "epoch": row["epoch"],
                                 "partial": True})

    trainer = _trainer(spec.get("engine", "torch"))
    result: TrainResult = trainer(mcfg, tcfg, data, callback=on_event,
                                  should_stop=lambda: runs.cancel_requested(run_dir),
                                  on_best=on_best, train_limit=spec.get("train_limit"))
    test_acc = None
    if result.epochs_run > 0 and result.status in ("finished", "cancelled"):
        runs.set_status(run_dir, "running", message="evaluating on the test set")
        m = evaluate(result.model, data.x_test, data.y_test)
        test_acc = m["accuracy"]
        runs.write_json_atomic(run_dir / "metrics.json", m)
        save_checkpoint(run_dir / "best.pt", result.model, metrics={
            "test_accuracy": m["accuracy"], "test_loss": m["loss"],
            "best_val_accuracy": result.best_val_accuracy, "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run, "train_seconds": round(result.train_seconds, 2),
            "preset": spec.get("preset"), "engine": spec.get("engine", "torch"),
            "train_config": spec["train_config"], "device": result.device, "precision": result.precision,
            "machine": machine_info(), "trained": time.strftime("%Y-%m-%d %H:%M:%S"),
            "run_id": run_dir.name})
    runs.set_status(run_dir, result.status, message=result.message, finished=time.time(),
                    progress=1.0 if result.status == "finished" else None, test_accuracy=test_acc,
                    best_val_accuracy=result.best_val_accuracy, epochs_run=result.epochs_run,
                    train_seconds=result.train_seconds)
    return _summary(run_dir, result.status, result, test_acc)


def _trainer(engine: str):
    if engine == "torch":
        return train
    if engine == "numpy":
        from .twin import train_numpy  # the NumPy twin's own trainer
        return train_numpy
    raise WorkbenchError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")


def _summary(run_dir: Path, status: str, result: TrainResult | None, test_acc: float | None = None) -> dict:
    ckpt = run_dir / "best.pt"
    return {"run_id": run_dir.name, "run_dir": str(run_dir), "status": status,
            "message": result.message if result else "",
            "test_accuracy": test_acc,
            "best_val_accuracy": result.best_val_accuracy if result else None,
            "epochs_run": result.epochs_run if result else 0,
            "train_seconds": round(result.train_seconds, 2) if result else 0.0,
            "checkpoint": str(ckpt) if ckpt.is_file() else None}


def launch(spec: dict[str, Any], root: str | Path | None = None, label: str = "run",
           max_concurrent: int = 1) -> Path:
    """Start `python -m fmnist_core train --run-dir D` as its own process and return D.

    The process outlives the caller (own session, output to D/log.txt); it waits
    in the queue when `max_concurrent` trainings are already running.
    """
    run_dir = runs.create_run(spec, root=root, label=label)
    cmd = [sys.executable, "-m", "fmnist_core", "train", "--run-dir", str(run_dir),
           "--max-concurrent", str(max(1, int(max_concurrent)))]
    pid = spawn_detached(cmd, run_dir / "log.txt")
    runs.set_status(run_dir, "queued", pid=pid, message="starting")
    return run_dir


def spawn_detached(cmd: list[str], log_path: str | Path, stdout_to_log: bool = True) -> int:
    """Start `cmd` in the project root as its own process and session, outliving the caller;
    stderr (and stdout unless stdout_to_log=False) go to log_path. Returns its pid.

    The one launcher for background jobs (trainings, the benchmark): the server's own
    signals never reach the job, and the child is reaped when it ends so it never lingers
    as a zombie of the server."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, cwd=str(PROJECT_ROOT), stdout=log if stdout_to_log else subprocess.DEVNULL,
                                stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    threading.Thread(target=proc.wait, daemon=True).start()
    return proc.pid
