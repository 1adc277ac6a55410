"""Training as a job: submit a run to an executor, and execute it (in whatever process the
executor picked), logging everything into the run store (runs.py) as it goes.

Executors (FMNIST_EXECUTOR, or `--executor` on the CLI):
  local   the embedded default, no daemon: each run is `python -m fmnist_core train --run ID`
          as its own process on this machine. It waits in status `queued` until it is the
          oldest waiting run of the whole store and one of N slot locks
          (artifacts/.slots/slot-K.lock, fcntl.flock) is free; a lock dies with its process,
          so a crash never leaves a slot taken. N is the class setting "concurrent trainings"
          (roles.py), read while waiting, so the teacher's change applies to the queue at once.
  ray     each run is a Ray task on the cluster at RAY_ADDRESS, with num_cpus and, when the run
          asks for CUDA, a fraction of a GPU (executors_ray.py). Ray is imported only there.

Live curves: every batch event (each `progress_every` batches) is a point of the running
training loss and accuracy at a fractional epoch; the points are sent in bunches, at most one
write a second (runs.log_points), and each epoch's confusion matrices (validation, and the
watched test set of `make models`) go to the artifact epoch_confusion.json.

The trainer never waits for the store: progress, epochs and checkpoints go through one
background writer (RunReporter) in order, so a tracking server that restarts mid-run delays
the curves, not the training; the writer retries and everything arrives. Cancel is a flag in
the store that the writer polls once a second.
"""
from __future__ import annotations

import collections
import fcntl
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from . import runs
from .data import ARTIFACTS, PROJECT_ROOT, load
from .device import machine_info
from .epochs import TrainResult
from .errors import WorkbenchError
from .evaluate import evaluate
from .files import copy_atomic, write_json_atomic
from .models import ModelConfig, build_model, config_from_dict, config_to_dict, save_checkpoint
from .train import TrainConfig, train, train_config_from_dict, train_config_to_dict

ENGINES = ("torch", "numpy")
EXECUTORS = ("local", "ray")
SLOTS_DIR = ARTIFACTS / ".slots"


def run_spec(model_config: ModelConfig, train_config: TrainConfig, preset: str | None = None,
             engine: str = "torch", train_limit: int | None = None) -> dict[str, Any]:
    if engine not in ENGINES:
        raise WorkbenchError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "numpy":
        from .twin import check_trainable
        check_trainable(model_config, train_config)  # refuse before any run exists
    from .models import plan_parameters
    return {"model_config": config_to_dict(model_config), "train_config": train_config_to_dict(train_config),
            "preset": preset, "engine": engine, "train_limit": train_limit,
            "parameters": plan_parameters(model_config)}


# --- the writer between trainer and store ----------------------------------------------------

class RunReporter:
    """Everything a running trainer tells the store, sent by one background thread in order.

    `progress(**fields)` keeps only the newest pending progress (a slow store sees fewer,
    never stale, updates); `epoch`, `artifact` and `status` calls are all delivered. A failed
    call is retried until it goes through (a tracking server restarting) or `close` gives up
    after `give_up_s`. `cancelled` turns True once the store says someone asked to stop.
    """

    def __init__(self, run_id: str, poll_cancel_s: float = 1.0, give_up_s: float = 600.0):
        self.run_id, self.poll_cancel_s, self.give_up_s = run_id, poll_cancel_s, give_up_s
        self.cancelled = False
        self.errors = 0
        self._queue: collections.deque = collections.deque()
        self._progress: dict | None = None
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name=f"reporter-{run_id[:8]}", daemon=True)
        self._thread.start()

    # the trainer's side: never blocks on the store
    def progress(self, status: str = "running", **fields: Any) -> None:
        with self._cond:
            self._progress = {"status": status, **fields}
            self._cond.notify()

    def call(self, fn: Callable, *args, **kwargs) -> None:
        with self._cond:
            self._queue.append((fn, args, kwargs))
            self._cond.notify()

    def epoch(self, row: dict) -> None:
        self.call(runs.log_epoch, self.run_id, row)

    def status(self, status: str, **fields: Any) -> None:
        with self._cond:
            self._progress = None  # a final status supersedes any progress still pending
        self.call(runs.set_status, self.run_id, status, **fields)

    def close(self) -> None:
        """Deliver everything still pending (waits for a store that is down, up to give_up_s)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(self.give_up_s)

    # the writer's side
    def _loop(self) -> None:
        next_poll = 0.0
        while True:
            with self._cond:
                while not (self._queue or self._progress or self._closing) and time.time() < next_poll:
                    self._cond.wait(max(0.0, next_poll - time.time()))
                if self._closing and not self._queue and not self._progress:
                    return
                if self._progress is not None and not any(q[0] is runs.set_status for q in self._queue):
                    item = (runs.set_status, (self.run_id, self._progress.pop("status")), self._progress)
                    self._progress = None
                elif self._queue:
                    item = self._queue.popleft()
                else:
                    item = None
            if item is not None:
                self._deliver(*item)
            if time.time() >= next_poll and not self._closing:
                next_poll = time.time() + self.poll_cancel_s
                try:
                    self.cancelled = self.cancelled or runs.cancel_requested(self.run_id)
                except Exception:  # the store is down: ask again next time
                    self.errors += 1

    def _deliver(self, fn, args, kwargs) -> None:
        deadline = time.time() + self.give_up_s
        delay = 0.5
        while True:
            try:
                fn(*args, **kwargs)
                return
            except WorkbenchError as exc:  # the store refused it for good (the run was deleted)
                print(f"warning: the run store refused {getattr(fn, '__name__', fn)}: {exc}", file=sys.stderr)
                return
            except Exception as exc:  # a store that is unreachable for a while: wait, retry
                self.errors += 1
                if time.time() > deadline:
                    print(f"warning: could not write to the run store for {self.give_up_s:.0f} s, "
                          f"dropped {getattr(fn, '__name__', fn)}: {exc}", file=sys.stderr)
                    return
                time.sleep(delay)
                delay = min(delay * 2, 10.0)


# --- executing a run (in the process the executor chose) ----------------------------------------

def execute_run(run_id: str, callback: Callable[[dict], None] | None = None, queue: bool = False,
                poll: float = 1.0) -> dict[str, Any]:
    """Train the run `run_id` as its spec says, writing everything to the store as it goes.

    Returns the CLI's summary dict. queue=True waits for a local queue slot first.
    """
    r = runs.load_run(run_id, history=False)
    if r["status"] not in runs.ACTIVE:
        raise WorkbenchError(f"run {run_id} is already {r['status']}; launch a new one")
    spec = r["config"]
    reporter = RunReporter(run_id)
    here = {"pid": os.getpid(), "host": runs.HOST}
    reporter.progress("queued", **here, message="waiting to start")
    slot = None
    try:
        if runs.cancel_requested(run_id) or (queue and (slot := _acquire_slot(run_id, reporter, poll)) is None):
            reporter.status("cancelled", message="cancelled while queued", queue_position=None)
            return _summary(run_id, "cancelled", None)
        if queue and not spec["train_config"].get("threads"):
            spec = {**spec, "train_config": {**spec["train_config"], "threads": queue_threads()}}
        return _execute(run_id, spec, callback, reporter, here)
    except BaseException as exc:
        msg = str(exc) if isinstance(exc, WorkbenchError) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, KeyboardInterrupt):
            reporter.status("interrupted", message="interrupted (Ctrl-C)")
        else:
            reporter.status("failed", message=msg)
        raise
    finally:
        reporter.close()
        if slot is not None:
            slot.close()


def queue_threads() -> int:
    """Torch threads for a training from the queue that did not ask for a number: the cores
    shared by the trainings that may run at once, one core left to the web server. (On a busy
    2-core machine a second intra-op thread mostly waits: measured, a 2-thread MLP epoch took
    up to 20x longer than a 1-thread one while other work ran.)"""
    from .roles import class_settings
    return max(1, ((os.cpu_count() or 1) - 1) // max(1, class_settings().max_concurrent))


def _acquire_slot(run_id: str, reporter: RunReporter, poll: float):
    """Block until this run is first in line and a slot is free; return the open lock file."""
    from .roles import class_settings
    SLOTS_DIR.mkdir(parents=True, exist_ok=True)
    last_pos = None
    while True:
        if reporter.cancelled:
            return None
        queued = [r for r in runs.list_runs(statuses=("queued",)) if runs._alive(r)]
        mine = next((r for r in queued if r["run_id"] == run_id), None)
        created = mine["config"]["created"] if mine else time.time()
        ahead = [r for r in queued if r["config"]["created"] < created and r["run_id"] != run_id]
        if not ahead and benchmark_state() is None:  # the teacher's benchmark goes first
            for k in range(class_settings().max_concurrent):
                f = open(SLOTS_DIR / f"slot-{k}.lock", "w")
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return f
                except BlockingIOError:
                    f.close()
        pos = len(ahead) + 1
        msg = f"waiting in the queue: position {pos}" + (
            " (the teacher's benchmark goes first)" if benchmark_state() else "")
        if (pos, msg) != last_pos or time.time() - float(
                mine["status_info"].get("heartbeat", 0) if mine else 0) > runs.HEARTBEAT_SECONDS:
            last_pos = (pos, msg)
            reporter.progress("queued", queue_position=pos, message=msg)
        time.sleep(poll)


# --- the benchmark in the same queue ------------------------------------------------------------

BENCH_MARK = "benchmark.json"  # {"pid", "state": waiting | running, "since"}: read by the queue panel


def benchmark_state() -> dict[str, Any] | None:
    """The benchmark job waiting for or holding the queue's slots, or None."""
    from .files import read_json
    st = read_json(SLOTS_DIR / BENCH_MARK)
    return st if st and runs.pid_alive(st.get("pid")) else None


class all_slots:
    """`with all_slots(): ...` holds every slot of the local queue: the benchmark times the
    machine alone. It waits for the trainings running now; trainings that arrive meanwhile
    wait for it (it says so in the queue), so a class's queue cannot starve it."""

    def __init__(self, poll: float = 0.5, say: Callable[[str], None] | None = None):
        self.poll, self.say, self.held = poll, say or (lambda m: None), []

    def _mark(self, state: str) -> None:
        write_json_atomic(SLOTS_DIR / BENCH_MARK, {"pid": os.getpid(), "state": state, "since": time.time()})

    def __enter__(self):
        from .roles import class_settings
        SLOTS_DIR.mkdir(parents=True, exist_ok=True)
        self._mark("waiting")
        told = False
        while True:
            n = max(class_settings().max_concurrent, 1)
            for k in range(n):
                if k < len(self.held):
                    continue
                f = open(SLOTS_DIR / f"slot-{k}.lock", "w")
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    self.held.append(f)
                except BlockingIOError:
                    f.close()
                    break
            if len(self.held) >= n:
                self._mark("running")
                return self
            if not told:
                self.say("waiting for the trainings running now to finish (they keep the machine busy)")
                told = True
            time.sleep(self.poll)

    def __exit__(self, *exc) -> None:
        for f in self.held:
            f.close()
        (SLOTS_DIR / BENCH_MARK).unlink(missing_ok=True)


def _execute(run_id: str, spec: dict, callback, reporter: RunReporter, here: dict) -> dict[str, Any]:
    mcfg = config_from_dict(spec["model_config"])
    tcfg = train_config_from_dict(spec["train_config"])
    started = time.time()
    reporter.progress("running", **here, started=started, message="loading data", queue_position=None)
    data = load()
    work = runs.work_dir(run_id)
    last_write = [0.0]
    points: list[dict] = []     # every curve point of the run (for the checkpoint)
    unsent: list[dict] = []     # those not handed to the writer yet
    confusions: list[dict] = []  # per epoch: {"epoch", "val_confusion"?, "watch_confusion"?}

    def send_points() -> None:
        if unsent:
            reporter.call(runs.log_points, run_id, list(unsent))
            unsent.clear()

    def on_event(ev: dict) -> None:
        now = time.time()
        if ev["event"] == "batch":
            pt = {"x": ev["x"], "train_loss": ev["loss"], "train_accuracy": ev["accuracy"]}
            points.append(pt)
            unsent.append(pt)
        if ev["event"] == "epoch":
            send_points()
            reporter.epoch({k: v for k, v in ev.items() if k not in ("event", "epochs", "best_epoch")})
            cms = {k: ev[k] for k in runs.CONFUSION_KEYS if k in ev}
            if cms:
                confusions.append({"epoch": ev["epoch"], **cms})
                path = write_json_atomic(work / runs.CONFUSION_FILE, {"epochs": confusions})
                reporter.call(runs.log_artifact, run_id, path)
            reporter.progress("running", epoch=ev["epoch"], epochs=ev["epochs"], batch=None,
                              progress=ev["epoch"] / ev["epochs"], best_epoch=ev["best_epoch"],
                              epoch_seconds=ev.get("epoch_seconds"),
                              val_accuracy=ev.get("val_accuracy"), train_accuracy=ev.get("train_accuracy"),
                              message=f"epoch {ev['epoch']}/{ev['epochs']} done")
        elif ev["event"] == "batch" and now - last_write[0] > 1.0:
            last_write[0] = now
            send_points()
            epochs = tcfg.epochs
            reporter.progress("running", epoch=ev["epoch"], epochs=epochs, batch=ev["batch"],
                              steps=ev["steps"], batch_loss=ev["loss"],
                              progress=((ev["epoch"] - 1) + ev["batch"] / ev["steps"]) / epochs,
                              message=f"epoch {ev['epoch']}/{epochs}, batch {ev['batch']}/{ev['steps']}")
        elif ev["event"] == "start":
            reporter.progress("running", device=ev["device"], precision=ev["precision"], message="training")
        if callback is not None:
            callback(ev)

    model_for_ckpt = build_model(mcfg)

    def on_best(state: dict, row: dict) -> None:
        # a new name per epoch: the upload of an older best may still be under way
        path = work / f"best-epoch{row['epoch']}.pt"
        save_checkpoint(path, model_for_ckpt, state_dict=state,
                        metrics={"best_val_accuracy": row.get("val_accuracy"), "epoch": row["epoch"],
                                 "partial": True})
        reporter.call(_upload_best, run_id, path)

    trainer = _trainer(spec.get("engine", "torch"))
    # `make models`: the test set scored at each epoch end, for the record (see train.train)
    watch = {"watch": (data.x_test, data.y_test)} if spec.get("watch_test") else {}
    result: TrainResult = trainer(mcfg, tcfg, data, callback=on_event, should_stop=lambda: reporter.cancelled,
                                  on_best=on_best, train_limit=spec.get("train_limit"), **watch)
    send_points()
    test_acc = None
    if result.epochs_run > 0 and result.status in ("finished", "cancelled"):
        reporter.progress("running", message="evaluating on the test set")
        m = evaluate(result.model, data.x_test, data.y_test)
        test_acc = m["accuracy"]
        final = work / "best.pt"
        save_checkpoint(final, result.model, metrics={
            "test_accuracy": m["accuracy"], "test_loss": m["loss"],
            "best_val_accuracy": result.best_val_accuracy, "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run, "train_seconds": round(result.train_seconds, 2),
            "preset": spec.get("preset"), "engine": spec.get("engine", "torch"),
            "train_config": spec["train_config"], "device": result.device, "precision": result.precision,
            "machine": machine_info(), "trained": time.strftime("%Y-%m-%d %H:%M:%S"), "run_id": run_id,
            "history": result.history, "points": points, "watch_test": bool(spec.get("watch_test"))})
        for name, path in _report_files(work, m, result.history).items():
            reporter.call(runs.log_artifact, run_id, path)
        reporter.call(_upload_best, run_id, final)
        reporter.call(runs.log_final, run_id, {"test_accuracy": m["accuracy"], "test_loss": m["loss"],
                                               "train_seconds": result.train_seconds})
    reporter.status(result.status, message=result.message, finished=time.time(),
                    progress=1.0 if result.status == "finished" else None, test_accuracy=test_acc,
                    best_val_accuracy=result.best_val_accuracy, epochs_run=result.epochs_run,
                    train_seconds=round(result.train_seconds, 2), device=result.device,
                    precision=result.precision, queue_position=None)
    summary = _summary(run_id, result.status, result, test_acc)
    summary["checkpoint"] = str(final) if test_acc is not None else _newest_best(work)
    return summary


def _upload_best(run_id: str, path: Path) -> None:
    """Store a checkpoint as the run's best.pt (the writer thread runs these one at a time)."""
    staged = path.parent / "stage" / "best.pt"
    copy_atomic(path, staged)
    runs.log_artifact(run_id, staged)
    if path.name != "best.pt":
        path.unlink(missing_ok=True)


def _newest_best(work: Path) -> str | None:
    p = work / "stage" / "best.pt"
    return str(p) if p.is_file() else None


def _report_files(work: Path, m: dict, history: list[dict]) -> dict[str, Path]:
    """metrics.json, confusion.csv, per_class.csv, history.csv in the work folder."""
    import csv
    from .data import CLASSES
    out = {"metrics.json": write_json_atomic(work / "metrics.json", m)}
    with open(work / "confusion.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["true \\ predicted", *CLASSES])
        for name, row in zip(CLASSES, m["confusion_matrix"]):
            w.writerow([name, *[int(v) for v in row]])
    out["confusion.csv"] = work / "confusion.csv"
    with open(work / "per_class.csv", "w", newline="") as f:
        w = csv.writer(f)
        keys = list(m["per_class"][0].keys()) if m.get("per_class") else []
        w.writerow(keys)
        for row in m.get("per_class", []):
            w.writerow([row[k] for k in keys])
    out["per_class.csv"] = work / "per_class.csv"
    keys = sorted({k for row in history for k in row if k not in runs.CONFUSION_KEYS}, key=lambda k: (k != "epoch", k))
    with open(work / "history.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys)
        for row in history:
            w.writerow([row.get(k, "") for k in keys])
    out["history.csv"] = work / "history.csv"
    return out


def _trainer(engine: str):
    if engine == "torch":
        return train
    if engine == "numpy":
        from .twin import train_numpy  # the NumPy twin's own trainer
        return train_numpy
    raise WorkbenchError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")


def _summary(run_id: str, status: str, result: TrainResult | None, test_acc: float | None = None) -> dict:
    return {"run_id": run_id, "status": status,
            "message": result.message if result else "",
            "test_accuracy": test_acc,
            "best_val_accuracy": result.best_val_accuracy if result else None,
            "epochs_run": result.epochs_run if result else 0,
            "train_seconds": round(result.train_seconds, 2) if result else 0.0,
            "checkpoint": None}


# --- submitting --------------------------------------------------------------------------------

def executor_name(name: str | None = None) -> str:
    name = name or os.environ.get("FMNIST_EXECUTOR") or "local"
    if name not in EXECUTORS:
        raise WorkbenchError(f"executor must be one of {', '.join(EXECUTORS)}, got {name!r}")
    return name


def submit(spec: dict[str, Any], label: str = "run", user=None, executor: str | None = None) -> str:
    """Check the class limits for `user` (roles.py), create the run, hand it to the executor;
    returns the run id. The one entry point of the dashboard's Launch button and of tests."""
    from .roles import check_submit, single_user
    user = user or single_user()
    spec = check_submit(user, spec)
    name = executor_name(executor)
    run_id = runs.create_run(spec, label=label, owner=user.name, owner_id=user.id,
                             extra_tags={"fmnist.executor": name})
    if name == "ray":
        from .executors_ray import submit_ray
        submit_ray(run_id, spec)
    else:
        cmd = [sys.executable, "-m", "fmnist_core", "train", "--run", run_id, "--queue"]
        log = runs.work_dir(run_id) / "log.txt"
        pid = spawn_detached(cmd, log)
        runs.set_status(run_id, "queued", pid=pid, host=runs.HOST, message="starting")
    return run_id


def spawn_detached(cmd: list[str], log_path: str | Path, stdout_to_log: bool = True) -> int:
    """Start `cmd` in the project root as its own process and session, outliving the caller;
    stderr (and stdout unless stdout_to_log=False) go to log_path. Returns its pid.

    The one launcher for background jobs (trainings, the benchmark): the server's own
    signals never reach the job, and the child is reaped when it ends so it never lingers
    as a zombie of the server."""
    import subprocess
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, cwd=str(PROJECT_ROOT), stdout=log if stdout_to_log else subprocess.DEVNULL,
                                stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    threading.Thread(target=proc.wait, daemon=True).start()
    return proc.pid


def follow_run(run_id: str, callback: Callable[[dict], None] | None = None, poll: float = 2.0,
               timeout: float | None = None) -> dict[str, Any]:
    """Wait for a run that trains elsewhere (a Ray worker) to end, reporting each new epoch
    to `callback` as an "epoch" event; returns the same summary as execute_run."""
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
