"""The one dispatcher: which waiting job starts next, and when.

A waiting run is a record in the run store (status `queued`), not a process: submit.py
creates it and nothing runs until the dispatcher starts it. One dispatcher per server
(`python -m fmnist_core.queue`, started by the web server and by submit when none is alive)
holds an exclusive lock (artifacts/.dispatcher.lock, fcntl: it dies with its process), so a
second one exits at once; it beats into artifacts/.dispatcher.json, and whoever finds it dead
starts another. Everything it knows is in the store, so a killed dispatcher loses nothing: the
next one reads the same records and goes on in the same order.

Each tick (every second) it
  * puts back in line a run it had started whose trainer died before it began training (three
    tries, then the run fails with the reason), and marks `interrupted` a running one whose
    process died (its best checkpoint stays);
  * starts nothing while the teacher's benchmark waits for or holds the machine (`exclusive`);
  * takes waiting runs in the fair order (`fair_order`: round-robin across students, then by
    time) and starts the first when a training slot is free (the class setting "concurrent
    trainings") AND the sum of the estimated peaks (cost.py, recorded at submit) of what runs
    plus its own fits the memory budget (memory_budget_mb). Strict order: a large run at
    the head waits for room rather than being overtaken for ever;
  * starts waiting analysis jobs (analysis.py) the same way, one at a time, in the same budget.

Executors act (executors/local: a trainer process; executors/ray: a Ray task with num_cpus and
memory from the price); this module only decides. The queue's order, positions and estimated
waits are computed here (`estimates`) and read by the sidebar, Train and the CLI.
"""
from __future__ import annotations

import fcntl
import heapq
import os
import statistics
import sys
import time
from typing import Any, Callable

from . import runs
from .errors import WorkbenchError
from .files import read_json, write_json_atomic

TICK_S = 1.0            # a look at the store a second: a waiting run starts within about a second
# a dispatcher with nothing to do for this long exits (the next submit or page view starts one)
IDLE_EXIT_S = float(os.environ.get("FMNIST_DISPATCHER_IDLE_S", "300"))
BEAT_STALE_S = 10.0      # a dispatcher that has not beaten for this long is taken for dead
MAX_TRIES = 3            # starts of one run whose trainer died before training, before it fails
BENCH_MARK = "benchmark.json"  # {"pid", "state": waiting | running, "since"}


def _dir():
    return runs.ARTIFACTS  # the store's artifacts folder (tests point it elsewhere)


def lock_path():
    return _dir() / ".dispatcher.lock"


def state_path():
    return _dir() / ".dispatcher.json"


# --- the order ---------------------------------------------------------------------------------

def owner_key(r: dict[str, Any]) -> str:
    return r.get("owner_id") or r.get("owner") or "?"


def served_path():
    return _dir() / ".dispatcher-served.json"


def served() -> dict[str, float]:
    """owner -> when the dispatcher last started one of their runs (kept across restarts)."""
    got = read_json(served_path())
    return got if isinstance(got, dict) else {}


def _mark_served(r: dict[str, Any]) -> None:
    s = served()
    s[owner_key(r)] = time.time()
    keep = dict(sorted(s.items(), key=lambda kv: kv[1])[-2000:])  # bounded: recent students only
    write_json_atomic(served_path(), keep, indent=None)


def fair_order(queued: list[dict[str, Any]], last_served: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """Round-robin across students, then by time: every student's k-th waiting run goes after
    every student's (k-1)-th; within a round, the student served longest ago (never: first)
    goes first, then the earlier launch."""
    last_served = served() if last_served is None else last_served
    by_owner: dict[str, list] = {}
    for r in sorted(queued, key=lambda r: r["config"]["created"]):
        by_owner.setdefault(owner_key(r), []).append(r)
    ranked = [(k, last_served.get(o, 0.0), r["config"]["created"], r["run_id"], r)
              for o, rs in by_owner.items() for k, r in enumerate(rs)]
    return [x[-1] for x in sorted(ranked, key=lambda x: x[:4])]


def dispatched(r: dict[str, Any]) -> bool:
    """Started by the dispatcher (a trainer process or Ray task exists or existed for it)."""
    return r["status"] == "running" or bool(r["status_info"].get("dispatched"))


def waiting(run_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs waiting for the dispatcher, in the order it will start them."""
    return fair_order([r for r in run_list if r["status"] == "queued" and not dispatched(r)])


def occupying(run_list: list[dict[str, Any]], now: float | None = None) -> list[dict[str, Any]]:
    """Runs that hold a slot: running, or started and not yet running, with a live process."""
    return [r for r in run_list if r["status"] in runs.ACTIVE and dispatched(r) and runs.alive(r, now)]


def memory_budget_mb() -> float:
    """What the running jobs of this server may use together: FMNIST_MEMORY_BUDGET_MB, else
    60% of the machine's memory (the web server, the dispatcher and the system keep the rest)."""
    env = os.environ.get("FMNIST_MEMORY_BUDGET_MB")
    if env:
        return float(env)
    try:
        with open("/proc/meminfo") as f:
            total_kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
        return 0.6 * total_kb / 1024
    except (OSError, StopIteration, ValueError):
        return 8 * 1024.0


def price_mb(r: dict[str, Any]) -> float:
    p = r["status_info"].get("price") or {}
    return float(p.get("peak_mb") or 0.0) if isinstance(p, dict) else 0.0


def _here_mb(r: dict[str, Any]) -> float:
    """What a run takes of this server's memory budget: a Ray run is Ray's to place (its price
    goes to Ray as the task's `memory`)."""
    return 0.0 if r["status_info"].get("executor") == "ray" else price_mb(r)


# --- the wait, as everyone reads it -------------------------------------------------------------

def _spec_key(run: dict[str, Any], same_model_only: bool = False) -> str:
    import json
    c = run.get("config") or {}
    keep = ("model_config", "train_limit", "engine") if same_model_only else (
        "model_config", "train_config", "train_limit", "engine")
    return json.dumps({k: c.get(k) for k in keep}, sort_keys=True, default=str)


class History:
    """How long finished runs took, by their settings and by their model: built once per
    estimate, so placing 60 waiting runs does not compare every pair of runs again."""

    def __init__(self, finished: list[dict[str, Any]]):
        self.same: dict[str, list[float]] = {}
        self.per_epoch: dict[str, list[float]] = {}
        for r in finished:
            st = r.get("status_info") or {}
            if not (st.get("finished") and st.get("started")):
                continue
            wall = st["finished"] - st["started"]
            self.same.setdefault(_spec_key(r), []).append(wall)
            self.per_epoch.setdefault(_spec_key(r, True), []).append(wall / max(st.get("epochs_run") or 1, 1))

    def expected(self, run: dict[str, Any]) -> float | None:
        same = self.same.get(_spec_key(run))
        if same:
            return statistics.median(same)
        per_epoch = self.per_epoch.get(_spec_key(run, True))
        if per_epoch:
            epochs = ((run.get("config") or {}).get("train_config") or {}).get("epochs") or 1
            return statistics.median(per_epoch) * epochs
        p = (run.get("status_info") or {}).get("price") or {}
        return float(p["seconds"]) if isinstance(p, dict) and p.get("seconds") else None


def _time_left(r: dict[str, Any], history: History, now: float) -> float | None:
    st = r.get("status_info") or {}
    started, progress = st.get("started"), st.get("progress")
    if r["status"] == "running" and started and isinstance(progress, (int, float)) and progress > 0.01:
        elapsed = now - started
        return elapsed * (1 - progress) / progress
    total = history.expected(r)
    return None if total is None else max(total - ((now - started) if started else 0.0), 0.0)


def estimates(run_list: list[dict[str, Any]], slots: int, now: float | None = None,
              blocked: bool = False) -> dict[str, dict[str, Any]]:
    """run_id -> {"position", "ahead", "wait"} for every waiting run, in the dispatcher's order.

    wait (seconds, or None when unknown): the runs holding slots finish at their ETA, then
    each run ahead takes a slot for as long as runs like it took (or its price says), `slots`
    at a time. blocked: the teacher's benchmark goes first (its length is unknown)."""
    now = now or time.time()
    history = History([r for r in run_list if r["status"] == "finished"])
    free = [_time_left(r, history, now) for r in occupying(run_list, now)]
    unknown = blocked or any(f is None for f in free)
    free = sorted(f for f in free if f is not None)
    free += [0.0] * max(slots - len(free), 0)
    heapq.heapify(free)
    out = {}
    for pos, r in enumerate(waiting(run_list), 1):
        start = heapq.heappop(free) if free else 0.0
        out[r["run_id"]] = {"position": pos, "ahead": pos - 1, "wait": None if unknown else start}
        took = history.expected(r)
        if took is None:
            unknown = True
        heapq.heappush(free, start + (took or 0.0))
    return out


# --- the benchmark's priority -----------------------------------------------------------------

def benchmark_state() -> dict[str, Any] | None:
    """The benchmark job waiting for or holding the machine, or None."""
    st = read_json(_dir() / ".slots" / BENCH_MARK)
    return st if st and runs.pid_alive(st.get("pid")) else None


class exclusive:
    """`with exclusive(): ...` has the machine to itself: the benchmark times it alone. From
    the moment it waits, the dispatcher starts nothing; it waits for the trainings running
    now to end. Trainings that arrive meanwhile wait for it, so a class cannot starve it."""

    def __init__(self, poll: float = 0.5, say: Callable[[str], None] | None = None):
        self.poll, self.say = poll, say or (lambda m: None)

    def _mark(self, state: str) -> None:
        write_json_atomic(_dir() / ".slots" / BENCH_MARK, {"pid": os.getpid(), "state": state, "since": time.time()})

    def __enter__(self):
        self._mark("waiting")
        told = False
        while occupying([r for r in runs.list_runs(statuses=runs.ACTIVE) if r["status_info"].get("host") == runs.HOST]):
            if not told:
                self.say("waiting for the trainings running now to finish (they keep the machine busy)")
                told = True
            time.sleep(self.poll)
        self._mark("running")
        return self

    def __exit__(self, *exc) -> None:
        (_dir() / ".slots" / BENCH_MARK).unlink(missing_ok=True)


# --- the dispatcher ----------------------------------------------------------------------------

def dispatcher_alive() -> bool:
    st = read_json(state_path())
    return bool(st) and runs.pid_alive(st.get("pid")) and time.time() - float(st.get("beat", 0)) < BEAT_STALE_S


def ensure_dispatcher() -> bool:
    """Start a dispatcher for this server unless one is alive; True when one was started.
    Cheap (a small file read): the web server calls it on page views, submit on every launch."""
    if dispatcher_alive():
        return False
    from .executors.local import spawn_detached
    log = _dir() / "work" / "dispatcher.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    pid = spawn_detached([sys.executable, "-m", "fmnist_core.queue"], log)
    # say so at once, so the page views of this second do not start more (a second one would
    # find the lock taken and exit anyway)
    write_json_atomic(state_path(), {"pid": pid, "beat": time.time(), "starting": True})
    return True


class Dispatcher:
    def __init__(self, tick_s: float = TICK_S, idle_exit_s: float = IDLE_EXIT_S,
                 say: Callable[[str], None] | None = None):
        self.tick_s, self.idle_exit_s = tick_s, idle_exit_s
        self.say = say or (lambda m: print(m, file=sys.stderr, flush=True))
        self._lock = None

    def acquire(self) -> bool:
        lock_path().parent.mkdir(parents=True, exist_ok=True)
        f = open(lock_path(), "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            return False
        self._lock = f
        self.beat()
        return True

    def beat(self) -> None:
        write_json_atomic(state_path(), {"pid": os.getpid(), "beat": time.time()})

    def run(self, until: Callable[[], bool] | None = None) -> int:
        if not self.acquire():
            self.say("another dispatcher holds this server's queue: exiting")
            return 0
        self.say(f"dispatcher {os.getpid()} started")
        idle_since = time.time()
        while not (until and until()):
            try:
                busy = self.tick()
            except Exception as exc:  # the store is down for a moment: try again next tick
                self.say(f"tick failed: {type(exc).__name__}: {exc}")
                busy = False  # a store gone for good (a deleted test folder) must not keep it alive
            if not lock_path().exists():
                self.say("the server's folder is gone: exiting")
                break
            self.beat()
            if busy:
                idle_since = time.time()
            elif time.time() - idle_since > self.idle_exit_s:
                self.say("nothing to do: exiting")
                break
            time.sleep(self.tick_s)
        self._lock.close()
        return 0

    def tick(self) -> bool:
        """One look at the store; starts what may start. True while anything waits or runs."""
        from . import analysis
        from .executors import executor_for
        from .roles import class_settings
        now = time.time()
        active = runs.list_runs(statuses=runs.ACTIVE)
        if sum(self._tidy(r, now) for r in active):  # something changed: read the line again
            active = runs.list_runs(statuses=runs.ACTIVE)
        holding = occupying(active, now)
        jobs_running = analysis.running()
        used = sum(_here_mb(r) for r in holding) + sum(j.get("price_mb", 0) for j in jobs_running)
        budget = memory_budget_mb()
        line = waiting(active)
        jobs_waiting = analysis.waiting()
        if benchmark_state() is not None:
            return True
        # analysis jobs first: they are shared by everyone who asked, and short
        if jobs_waiting and not jobs_running:
            j = jobs_waiting[0]
            if used + j.get("price_mb", 0) <= budget or not (holding or jobs_running):
                analysis.start(j)
                used += j.get("price_mb", 0)
        free = class_settings().max_concurrent - len(holding)
        for r in line:
            if free <= 0 or used + _here_mb(r) > budget:
                break  # strict order: the head waits for room rather than being overtaken
            _mark_served(r)
            try:
                executor_for(r).start(r)
            except WorkbenchError as exc:  # an executor that cannot take it (Ray not configured): say so
                runs.set_status(r["run_id"], "failed", message=f"could not start: {exc}", finished=time.time())
                continue
            self.say(f"started {r['run_id']} ({r['owner'] or '?'}, {price_mb(r):.0f} MB)")
            free -= 1
            used += _here_mb(r)
        return bool(active or jobs_waiting or jobs_running)

    def _tidy(self, r: dict[str, Any], now: float) -> bool:
        """A run asked to stop before it started: cancelled. A run this server started whose
        process is gone: back in line, or interrupted. True when it changed the run."""
        info = r["status_info"]
        if r["status"] == "queued" and info.get("cancel") in (1, "1"):
            if not dispatched(r) or (info.get("executor") == "ray" and _ray_cancel(r["run_id"])):
                runs.set_status(r["run_id"], "cancelled", message="cancelled while waiting in the queue",
                                finished=now)
                return True
        if not dispatched(r) or runs.alive(r, now):
            return False
        if r["status"] == "queued":  # the trainer died before it began: try again, a few times
            tries = int(info.get("tries") or 0)
            if tries >= MAX_TRIES:
                runs.set_status(r["run_id"], "failed", message=f"the trainer process ended {tries} times "
                                "before training began; see artifacts/work/<run id>/log.txt")
            else:
                runs.set_status(r["run_id"], "queued", dispatched="", pid="", message="waiting to start")
        else:
            runs.set_status(r["run_id"], "interrupted", message="the training process ended without finishing "
                            "(server restart or crash); the best checkpoint so far is kept")
        return True


def _ray_cancel(run_id: str) -> bool:
    from .executors import ray
    return ray.cancel_waiting(run_id)


def main() -> int:
    return Dispatcher().run()


if __name__ == "__main__":
    sys.exit(main())
