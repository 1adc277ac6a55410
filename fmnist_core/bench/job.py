"""The benchmark as a background job for the dashboard: start it, stop it, read its status.

The job is `python -m fmnist_core bench [--quick] --events FILE` as its own process (its own
session, launched with executors.local.spawn_detached), never inside the Streamlit server: timing code
sets torch's process-wide thread count, which would slow down or disturb everyone's
predictions, and a server thread would be timed against the server's own work. One benchmark
at a time per results folder (two at once would time each other).

Its slot is a folder in the temp dir (git never sees it): state.json (pid, start, what was
asked), events.jsonl (the process's progress events, see events.py: the status reads its
progress, current step and saved files from them) and log.txt (stderr, words for people: shown
as they are when the process failed, never parsed).

Left out: measuring (run.py), reading results files (results.py), drawing (pages/timings.py).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..files import write_json_atomic
from ..executors.local import spawn_detached
from .config import DEFAULT_PRESET
from .events import read_events, summarize
from .results import results_dir

EVENTS = "events.jsonl"
LOG = "log.txt"


def job_dir(bench_dir: str | Path | None = None) -> Path:
    """The one job slot of a results folder: in the temp dir (git never sees the log), named
    after the folder, so two servers with different artifacts folders do not share it."""
    base = results_dir(bench_dir).resolve()
    digest = hashlib.sha1(str(base).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"fmnist-bench-job-{digest}"


def _read_state(jd: Path) -> dict[str, Any] | None:
    try:
        return json.loads((jd / "state.json").read_text())
    except (OSError, ValueError):
        return None


def _write_state(jd: Path, state: dict[str, Any]) -> None:
    write_json_atomic(jd / "state.json", state)


def _alive(pid: int | None) -> bool:
    from ..runs import pid_alive
    return bool(pid) and pid_alive(pid)


def start_job(quick: bool = True, preset: str = DEFAULT_PRESET, bench_dir: str | Path | None = None,
              label: str | None = None, impls: tuple[str, ...] = (),
              devices: tuple[str, ...] = (), user=None) -> dict[str, Any]:
    """Launch the benchmark unless one is already running for this results folder; returns
    the job's status either way (see `job_status`). impls/devices: only these (empty = all).

    The benchmark is the teacher's job (on a laptop, the single user's): it slows every
    training on the machine, so it joins the training queue (`bench --queue`) and a student
    can neither start nor stop it."""
    from ..roles import require_teacher, single_user
    require_teacher(user or single_user(), "start the benchmark")
    bench_dir = results_dir(bench_dir)
    jd = job_dir(bench_dir)
    jd.mkdir(parents=True, exist_ok=True)
    with open(jd / "launch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two sessions clicking at once start one job
        state = _read_state(jd)
        if state and _alive(state.get("pid")):
            return job_status(bench_dir)
        for name in (LOG, EVENTS):
            with contextlib.suppress(FileNotFoundError):
                (jd / name).unlink()
        cmd = [sys.executable, "-m", "fmnist_core", "bench", "--preset", preset,
               "--events", str(jd / EVENTS), "--save-dir", str(bench_dir), "--queue"]
        if quick:
            cmd.append("--quick")
        if label:
            cmd += ["--label", label]
        for name in impls:
            cmd += ["--impl", name]
        for name in devices:
            cmd += ["--device", name]
        pid = spawn_detached(cmd, jd / LOG, stdout_to_log=False)
        _write_state(jd, {"pid": pid, "started": time.time(), "quick": quick, "preset": preset,
                          "cancelled": False})
    return job_status(bench_dir)


def stop_job(bench_dir: str | Path | None = None, user=None) -> None:
    """Stop the running benchmark (its process group: the CLI and nothing else); the teacher's."""
    from ..roles import require_teacher, single_user
    require_teacher(user or single_user(), "stop the benchmark")
    jd = job_dir(bench_dir)
    state = _read_state(jd)
    if not state or not _alive(state.get("pid")):
        return
    state["cancelled"] = True
    _write_state(jd, state)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(int(state["pid"]), signal.SIGTERM)


def job_status(bench_dir: str | Path | None = None) -> dict[str, Any]:
    """{"state": none | running | finished | failed | cancelled, "progress" 0..1, "message",
    "elapsed", "quick", "preset", "results_path" (finished), "error" (failed), "started"}."""
    jd = job_dir(bench_dir)
    state = _read_state(jd)
    if not state:
        return {"state": "none", "progress": 0.0, "message": "", "elapsed": None}
    ev = summarize(read_events(jd / EVENTS))
    out = {"quick": state.get("quick"), "preset": state.get("preset"), "started": state.get("started"),
           "elapsed": time.time() - state.get("started", time.time())}
    if _alive(state.get("pid")):
        # rows done of the rows planned; the stages after the last row (the headline) keep it short of 1
        frac = min(ev["done"] / ev["total"], 0.99) if ev["total"] else 0.0
        return {**out, "state": "running", "progress": frac,
                "message": ev["message"] or "starting Python and PyTorch…"}
    if state.get("cancelled"):
        return {**out, "state": "cancelled", "progress": 0.0, "message": "stopped", "elapsed": None}
    end = ev["end"] or {}
    if end.get("status") == "finished":
        saved = next((p for p in ev["paths"] if Path(p).is_file()), None)
        return {**out, "state": "finished", "progress": 1.0, "message": "finished",
                "results_path": saved, "elapsed": None}
    return {**out, "state": "failed", "progress": 0.0, "message": "failed",
            "error": end.get("error") or _log_tail(jd), "elapsed": None}


def _log_tail(jd: Path, n: int = 6) -> str:
    """The last lines of the job's stderr, for a process that died without saying why."""
    try:
        lines = [ln for ln in (jd / LOG).read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    return "\n".join(lines[-n:]) or "the benchmark process ended without output"
