import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from fmnist_core import runs
from fmnist_core.jobs import execute_run, run_spec
from fmnist_core.models import MLPConfig, load_model
from fmnist_core.train import TrainConfig

from conftest import ROOT


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "status.json"
    runs.write_json_atomic(p, {"status": "running"})
    with pytest.raises(TypeError):
        runs.write_json_atomic(p, {"bad": object()})
    assert json.loads(p.read_text()) == {"status": "running"}
    assert [f.name for f in tmp_path.iterdir()] == ["status.json"]  # no temp file left behind


def test_execute_run_writes_a_complete_run(runs_root):
    spec = run_spec(MLPConfig(hidden=(32,)), TrainConfig(epochs=2, batch_size=128, device="cpu"),
                    train_limit=5000)
    d = runs.create_run(spec, root=runs_root, label="t")
    assert runs.load_run(d)["status"] == "queued"
    summary = execute_run(d)
    assert summary["status"] == "finished" and summary["test_accuracy"] > 0.7
    r = runs.load_run(d)
    assert r["status"] == "finished" and len(r["history"]) == 2
    assert r["metrics"]["accuracy"] == summary["test_accuracy"]
    ck = torch.load(d / "best.pt", weights_only=True)
    assert ck["metrics"]["test_accuracy"] == summary["test_accuracy"]
    assert ck["metrics"]["machine"]["cpu"] and ck["metrics"]["epochs_run"] == 2
    assert [x["run_id"] for x in runs.list_runs(runs_root)] == [d.name]
    runs.delete_run(d.name, runs_root)
    assert runs.list_runs(runs_root) == []


def test_killed_run_stays_readable_and_is_marked_interrupted(runs_root):
    """SIGKILL in the middle of training: every file still parses, best.pt loads."""
    d = runs_root / "killme"
    proc = subprocess.Popen([sys.executable, "-m", "fmnist_core", "train", "--preset", "mlp-seed000",
                             "--epochs", "50", "--run-dir", str(d)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(runs.read_json(d / "history.json", []) or []) < 2:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    r = runs.load_run(d)
    assert r["status"] == "running" and len(r["history"]) >= 2
    for f in ("config.json", "status.json", "history.json"):
        json.loads((d / f).read_text())
    assert not [f for f in os.listdir(d) if f.endswith(".tmp")]
    load_model(d / "best.pt")  # the best weights so far survive the kill
    assert runs.mark_orphans(runs_root) == ["killme"]
    assert runs.load_run(d)["status"] == "interrupted"


def test_cancel_flag_stops_a_run(runs_root):
    spec = run_spec(MLPConfig(), TrainConfig(epochs=30, device="cpu"))
    d = runs.create_run(spec, root=runs_root)
    runs.request_cancel(d)
    summary = execute_run(d)
    assert summary["status"] == "cancelled"
    assert runs.load_run(d)["status"] == "cancelled"


def test_active_run_cannot_be_deleted(runs_root):
    d = runs.create_run({"x": 1}, root=runs_root)
    runs.set_status(d, "running", pid=os.getpid())
    with pytest.raises(Exception, match="still running"):
        runs.delete_run(d.name, runs_root)
    with pytest.raises(Exception, match="no run named"):
        runs.delete_run("../etc", runs_root)
