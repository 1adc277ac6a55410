"""Nothing the project starts sends usage data, and `make run` serves this machine only: read
from /proc/PID/environ and /proc/PID/cmdline of the real processes (a trainer the launcher
spawned, the dashboard and MLflow's UI as the Makefile starts them), each started from an
environment that had none of the variables, so only our own code can have set them."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, wait_for
from fmnist_core import TELEMETRY_OFF

CLEAN = {k: v for k, v in os.environ.items() if k not in TELEMETRY_OFF}
VENV = Path(sys.executable).parent.parent


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(e.decode(errors="replace").split("=", 1) for e in raw if b"=" in e)


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _assert_off(pid: int, what: str) -> None:
    env = _environ(pid)
    for k, v in TELEMETRY_OFF.items():
        assert env.get(k) == v, f"{what} (pid {pid}) runs with {k}={env.get(k)!r}"


@contextlib.contextmanager
def _make(target: str, *args: str, env: dict | None = None):
    proc = subprocess.Popen(["make", "-s", target, f"VENV={VENV}", *args], cwd=ROOT, env={**CLEAN, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        yield proc
    finally:  # make and everything it started are in the session started here
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except Exception:
        return False


def test_the_package_turns_telemetry_off_for_its_children():
    out = subprocess.run([sys.executable, "-c", "import fmnist_core, os, json; "
                          "print(json.dumps({k: os.environ.get(k) for k in fmnist_core.TELEMETRY_OFF}))"],
                         cwd=ROOT, env={**CLEAN, "MLFLOW_DISABLE_TELEMETRY": "false"},
                         capture_output=True, text=True, timeout=120)
    import json
    assert json.loads(out.stdout) == TELEMETRY_OFF  # an inherited "false" does not turn it back on
    # the names are the ones the installed libraries read
    from mlflow.telemetry.utils import is_telemetry_disabled
    from ray._common.usage.usage_constants import USAGE_STATS_ENABLED_ENV_VAR
    assert USAGE_STATS_ENABLED_ENV_VAR in TELEMETRY_OFF and is_telemetry_disabled()


def test_a_spawned_trainer_runs_with_telemetry_off(store):
    code = ("from fmnist_core import submit; from fmnist_core.spec import run_spec; "
            "from fmnist_core.models import MLPConfig; "
            "from fmnist_core.train import TrainConfig; "
            "print(submit.submit(run_spec(MLPConfig(hidden=(8,)), TrainConfig(epochs=1)), label='env'))")
    env = {**CLEAN, "FMNIST_TRACKING_URI": os.environ["FMNIST_TRACKING_URI"],
           "FMNIST_ARTIFACTS": os.environ["FMNIST_ARTIFACTS"]}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    from fmnist_core import queue, runs
    from conftest import wait_for
    rid = out.stdout.strip().splitlines()[-1]
    # the dispatcher the launch started, then the trainer it starts for the run
    dispatcher = int(wait_for(lambda: (queue.read_json(queue.state_path()) or {}).get("pid"), timeout=60,
                              what="the dispatcher"))
    _assert_off(dispatcher, "the dispatcher")
    pid = int(wait_for(lambda: runs.load_summary(rid)["status_info"].get("pid"), timeout=120,
                       what="the trainer"))
    try:
        assert "fmnist_core.execute" in _cmdline(pid) and rid in _cmdline(pid)  # it is the trainer
        _assert_off(pid, "the trainer")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


@pytest.mark.slow
def test_make_run_serves_loopback_only_with_telemetry_off(tmp_path):
    from browser_util import free_port
    port = free_port()
    with _make("run", f"PORT={port}") as proc:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/_stcore/health") or proc.poll() is not None,
                 timeout=240, what="make run to serve")
        assert proc.poll() is None, "make run exited"
        servers = [p for p in _descendants(proc.pid) if "streamlit" in " ".join(_cmdline(p))]
        assert servers, "no streamlit process under make run"
        for pid in servers:
            cmd = _cmdline(pid)
            assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
            _assert_off(pid, "the dashboard (make run)")


@pytest.mark.slow
def test_make_mlflow_ui_runs_with_telemetry_off(tmp_path):
    from browser_util import free_port
    port = free_port()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with _make("mlflow-ui", f"MLFLOW_PORT={port}", env={"FMNIST_TRACKING_URI": uri}) as proc:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/health") or proc.poll() is not None,
                 timeout=240, what="make mlflow-ui to serve")
        assert proc.poll() is None, "make mlflow-ui exited"
        pids = [p for p in _descendants(proc.pid)[1:] if "mlflow" in " ".join(_cmdline(p)) or
                "uvicorn" in " ".join(_cmdline(p))]  # [1:]: make itself, not what it started
        assert pids
        for pid in pids:
            _assert_off(pid, "make mlflow-ui: " + " ".join(_cmdline(pid))[:80])
