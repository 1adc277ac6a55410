"""The benchmark as a background job (fmnist_core/bench/job.py): its status is read back from the
process's progress events as none / running / finished / failed / cancelled, never from log lines.

A real launch is tested with the Timings page (tests/test_pages_more.py), the event stream of a
real run in tests/test_bench_run.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fmnist_core.bench import job, results


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _events(*events, partial: str = "") -> str:
    return "".join(json.dumps(e) + "\n" for e in events) + partial


@pytest.fixture
def slot(tmp_path, monkeypatch):
    """The job slot of an empty results folder, removed afterwards (it lives in the temp dir)."""
    monkeypatch.setattr(results, "BENCH_DIR", tmp_path / "benchmarks")
    assert job.job_status()["state"] == "none"
    jd = job.job_dir()
    jd.mkdir(parents=True, exist_ok=True)
    yield jd
    for f in jd.iterdir():
        f.unlink()
    jd.rmdir()


def _state(jd, **kw):
    state = {"pid": _dead_pid(), "started": 1.0, "quick": True, "preset": "mlp-seed000", "cancelled": False}
    state.update(kw)
    (jd / "state.json").write_text(json.dumps(state))


def test_job_status_reads_every_state(slot, tmp_path):
    jd = slot
    _state(jd)
    # died before saying anything: the end of its stderr says why
    (jd / "log.txt").write_text("benchmarking x\nstep 1\nTraceback...\nValueError: boom\n")
    s = job.job_status()
    assert s["state"] == "failed" and "ValueError: boom" in s["error"]
    # failed and said so: the end event's error
    (jd / job.EVENTS).write_text(_events({"event": "plan", "total": 4, "message": "benchmarking x"},
                                         {"event": "end", "status": "failed", "error": "ValueError: boom"}))
    s = job.job_status()
    assert s["state"] == "failed" and s["error"] == "ValueError: boom"
    # finished: the results file is the first saved path, from the saved event
    (tmp_path / "a.json").write_text("{}")
    (jd / job.EVENTS).write_text(_events({"event": "plan", "total": 1, "message": "benchmarking x"},
                                         {"event": "row", "done": 1, "total": 1, "row": {}},
                                         {"event": "saved", "paths": [str(tmp_path / "a.json"), str(jd / "o.json")]},
                                         {"event": "end", "status": "finished"}))
    s = job.job_status()
    assert s["state"] == "finished" and s["results_path"] == str(tmp_path / "a.json") and s["progress"] == 1.0
    _state(jd, pid=_dead_pid(), cancelled=True)
    assert job.job_status()["state"] == "cancelled"


def test_job_status_reads_progress_from_events(slot):
    jd = slot
    _state(jd, pid=os.getpid())  # alive: this very process
    s = job.job_status()
    assert s["state"] == "running" and s["progress"] == 0.0 and s["message"] == "starting Python and PyTorch…"
    (jd / "log.txt").write_text("noise on stderr\n" * 50)  # words for people: never counted
    (jd / job.EVENTS).write_text(_events(
        {"event": "plan", "total": 4, "message": "benchmarking x"},
        {"event": "step", "message": "step 1"},
        {"event": "row", "done": 1, "total": 4, "row": {}},
        {"event": "row", "done": 2, "total": 4, "row": {}},
        {"event": "step", "message": "step 2"},
        partial='{"event": "row", "do'))  # the line being written right now
    s = job.job_status()
    assert s["state"] == "running" and s["progress"] == 0.5 and s["message"] == "step 2"
    # every row done, the headline still running: the bar stops short of full
    (jd / job.EVENTS).write_text(_events({"event": "plan", "total": 1, "message": "benchmarking x"},
                                         {"event": "row", "done": 1, "total": 1, "row": {}},
                                         {"event": "step", "message": "the headline"}))
    s = job.job_status()
    assert s["progress"] == 0.99 and s["message"] == "the headline"
