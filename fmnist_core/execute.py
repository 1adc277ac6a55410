"""The trainer side of a run: train it as its stored spec says, writing everything to the
run store as it goes. This is what runs in the process an executor started (the local
executor: `python -m fmnist_core.execute RUN_ID`; Ray: a task on a worker).

Live curves: every batch event (each `progress_every` batches) is a point of the running
training loss and accuracy at a fractional epoch; the points are sent in bunches, at most one
write a second (runs.log_points), and each epoch's confusion matrices (validation, and the
watched test set of `make models`) go to the artifact epoch_confusion.json.

The trainer never waits for the store: progress, epochs and checkpoints go through one
background writer (RunReporter) in order, so a tracking server that restarts mid-run delays
the curves, not the training; the writer retries and everything arrives. Cancel is a flag in
the store that the writer polls once a second.

Before any work the stored spec is read back through RunSpec (validated again) and, for a
student's run, checked against the class limits once more: a spec rewritten in the store after
submit is refused here, not trained.

Not here: when a run starts (queue.py, the dispatcher), where (executors/), submitting (submit.py).
"""
from __future__ import annotations

import collections
import os
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from . import runs
from .data import load
from .device import machine_info
from .epochs import TrainResult
from .errors import WorkbenchError
from .evaluate import evaluate
from .files import copy_atomic, write_json_atomic
from .models import build_model, save_checkpoint
from .spec import RunSpec
from .train import trainer as trainer_of


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


# --- executing a run (in whatever process the executor picked) ----------------------------------

def execute_run(run_id: str, callback: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Train the run `run_id` as its spec says, writing everything to the store as it goes.
    Returns the CLI's summary dict."""
    r = runs.load_summary(run_id)
    if r["status"] not in runs.ACTIVE:
        raise WorkbenchError(f"run {run_id} is already {r['status']}; launch a new one")
    reporter = RunReporter(run_id)
    here = {"pid": os.getpid(), "host": runs.HOST}
    try:
        if runs.cancel_requested(run_id):
            reporter.status("cancelled", message="cancelled before it started", queue_position=None)
            return _summary(run_id, "cancelled", None)
        spec = _checked_spec(r)
        if not spec.train.threads and r["status_info"].get("dispatched"):  # a run of the class queue
            spec = replace(spec, train=replace(spec.train, threads=queue_threads()))
        return _execute(run_id, spec, callback, reporter, here, _trial_hook(r))
    except BaseException as exc:
        msg = str(exc) if isinstance(exc, WorkbenchError) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, KeyboardInterrupt):
            reporter.status("interrupted", message="interrupted (Ctrl-C)")
        else:
            reporter.status("failed", message=msg)
        raise
    finally:
        reporter.close()


def _checked_spec(r: dict[str, Any]) -> RunSpec:
    """The stored spec, validated again, and within the class limits unless the teacher launched it."""
    from .roles import check_spec_limits, class_settings
    spec = RunSpec.from_dict({k: v for k, v in r["config"].items() if k not in ("run_id", "created")})
    if r["status_info"].get("by_teacher") not in (True, 1, "1", "true"):
        check_spec_limits(spec, class_settings())
    return spec


def queue_threads() -> int:
    """Torch threads for a training from the queue that did not ask for a number: the cores
    shared by the trainings that may run at once, one core left to the web server. (On a busy
    2-core machine a second intra-op thread mostly waits: measured, a 2-thread MLP epoch took
    up to 20x longer than a 1-thread one while other work ran.)"""
    from .roles import class_settings
    return max(1, ((os.cpu_count() or 1) - 1) // max(1, class_settings().max_concurrent))


def _trial_hook(r: dict[str, Any]):
    """A study's trial reports its epochs to Optuna (studies.TrialHook); None for other runs.
    A study that cannot be read never stops the training: the trial is told later (sync)."""
    if not r["status_info"].get("study"):
        return None
    try:
        from .studies import TrialHook
        return TrialHook.for_run(r)
    except Exception as exc:
        print(f"warning: the run's study cannot be read, it is trained without pruning: {exc}", file=sys.stderr)
        return None


def _execute(run_id: str, spec: RunSpec, callback, reporter: RunReporter, here: dict,
             hook=None) -> dict[str, Any]:
    mcfg, tcfg = spec.model, spec.train
    started = time.time()
    reporter.progress("running", **here, started=started, message="loading data", queue_position=None)
    data = load()
    if mcfg.kind == "head":  # a head trains on its backbone's cached features (heads.py)
        from .heads import feature_data
        data = feature_data(mcfg, data)
    work = runs.work_dir(run_id)
    last_write = [0.0]
    points: list[dict] = []     # every curve point of the run (for the checkpoint)
    unsent: list[dict] = []     # those not handed to the writer yet
    confusions: list[dict] = []  # per epoch: {"epoch", "val_confusion"?, "watch_confusion"?}
    pruned = [False]             # a study's pruner stopped this trial

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
            if hook is not None and hook.epoch(ev):  # the pruner says stop: should_stop below
                pruned[0] = True
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

    trainer = trainer_of(spec.engine)
    # `make models`: the test set scored at each epoch end, for the record (see train.train)
    watch = {"watch": (data.x_test, data.y_test)} if spec.watch_test else {}
    result: TrainResult = trainer(mcfg, tcfg, data, callback=on_event, should_stop=lambda: reporter.cancelled or pruned[0],
                                  on_best=on_best, train_limit=spec.train_limit, **watch)
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
            "preset": spec.preset, "engine": spec.engine,
            "train_config": spec.to_dict()["train_config"], "device": result.device, "precision": result.precision,
            "machine": machine_info(), "trained": time.strftime("%Y-%m-%d %H:%M:%S"), "run_id": run_id,
            "history": result.history, "points": points, "watch_test": spec.watch_test})
        for name, path in _report_files(work, m, result.history).items():
            reporter.call(runs.log_artifact, run_id, path)
        reporter.call(_upload_best, run_id, final)
        reporter.call(runs.log_final, run_id, {"test_accuracy": m["accuracy"], "test_loss": m["loss"],
                                               "train_seconds": result.train_seconds})
    message = hook.message() if hook is not None and pruned[0] else result.message
    reporter.status(result.status, message=message, finished=time.time(), **({"pruned": 1} if pruned[0] else {}),
                    progress=1.0 if result.status == "finished" else None, test_accuracy=test_acc,
                    best_val_accuracy=result.best_val_accuracy, epochs_run=result.epochs_run,
                    train_seconds=round(result.train_seconds, 2), device=result.device,
                    precision=result.precision, queue_position=None)
    if hook is not None:
        try:
            hook.finish(result.status, {"test_accuracy": test_acc, "best_val_accuracy": result.best_val_accuracy,
                                        "train_seconds": result.train_seconds}, spec.parameters())
        except Exception as exc:  # the study's database is down: sync() tells the trial later
            print(f"warning: could not tell the study this trial's end: {exc}", file=sys.stderr)
    summary = _summary(run_id, result.status, result, test_acc)
    summary["message"] = message
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


def _summary(run_id: str, status: str, result: TrainResult | None, test_acc: float | None = None) -> dict:
    return {"run_id": run_id, "status": status,
            "message": result.message if result else "",
            "test_accuracy": test_acc,
            "best_val_accuracy": result.best_val_accuracy if result else None,
            "epochs_run": result.epochs_run if result else 0,
            "train_seconds": round(result.train_seconds, 2) if result else 0.0,
            "checkpoint": None}


def main(argv: list[str] | None = None) -> int:
    """`python -m fmnist_core.execute RUN_ID`: what the local executor starts for a run."""
    import json
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m fmnist_core.execute RUN_ID", file=sys.stderr)
        return 2
    try:
        summary = execute_run(args[0])
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0 if summary["status"] in ("finished", "cancelled") else 1


if __name__ == "__main__":
    sys.exit(main())
