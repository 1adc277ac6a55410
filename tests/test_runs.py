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
    runs.request_cancel(d.name, runs_root)
    summary = execute_run(d)
    assert summary["status"] == "cancelled"
    assert runs.load_run(d)["status"] == "cancelled"


def test_active_run_cannot_be_deleted(runs_root):
    d = runs.create_run({"x": 1}, root=runs_root)
    runs.set_status(d, "running", pid=os.getpid())
    with pytest.raises(Exception, match="still running"):
        runs.delete_run(d.name, runs_root)


# --- only a run id in the store is ever deleted or cancelled (issue 15) ---------------------

@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A run store beside folders that are not runs: victim/keep.txt, etc/keep.txt, and a run."""
    from fmnist_core import cli  # noqa: F401 (the commands below run in this process)
    store = tmp_path / "artifacts" / "runs"
    store.mkdir(parents=True)
    monkeypatch.setattr(runs, "RUNS_DIR", store)
    victims = []
    for d in (tmp_path / "victim", tmp_path / "etc", tmp_path / "artifacts" / "victim", store / "notarun"):
        d.mkdir()
        (d / "keep.txt").write_text("precious")
        victims.append(d)
    (tmp_path / "victim" / "sub").mkdir()
    real = runs.create_run({"x": 1}, root=store, label="real")
    return tmp_path, store, victims, real


def _cli(*argv) -> int:
    from fmnist_core.cli import main
    return main([str(a) for a in argv])


def test_runs_delete_and_cancel_refuse_paths_from_every_working_directory(sandbox, monkeypatch, capsys):
    tmp, store, victims, real = sandbox
    victim = tmp / "victim"
    cwds = [tmp, store, tmp / "artifacts", victim, victim / "sub", ROOT]
    tried = 0
    for cwd in cwds:
        monkeypatch.chdir(cwd)
        targets = {".", "..", "../..", str(victim), os.path.relpath(victim, cwd), "../etc",
                   os.path.relpath(tmp / "etc", cwd), "../victim", "notarun", str(store / "notarun"),
                   str(store / real.name), f"{real.name}/..", f"../runs/{real.name}", "", "~"}
        for target in sorted(targets):
            for flag in ("--delete", "--cancel"):
                assert _cli("runs", flag, target) == 2, (cwd, flag, target)
                assert _cli("runs", "--root", store, flag, target) == 2, (cwd, flag, target)
                tried += 2
    err = capsys.readouterr().err
    assert "is not a run id" in err and "no run named 'notarun'" in err
    for d in victims:
        assert (d / "keep.txt").read_text() == "precious", d
        assert not (d / "cancel").exists(), d
    assert (store / real.name / "config.json").is_file() and not (store / real.name / "cancel").exists()
    assert tried > 300
    # the one accepted form: the id of a run in the store
    assert _cli("runs", "--cancel", real.name) == 0 and (real / "cancel").exists()
    assert _cli("runs", "--delete", real.name) == 0 and not real.exists()
    assert all((d / "keep.txt").is_file() for d in victims)


def test_runs_delete_refuses_a_path_in_a_real_process(sandbox):
    """The same through `python -m fmnist_core`, run from beside the victim: exit 2, one line."""
    tmp, store, victims, real = sandbox
    for target in ("../victim", str(tmp / "victim"), "."):
        p = subprocess.run([sys.executable, "-m", "fmnist_core", "runs", "--delete", target],
                           cwd=tmp / "victim" / "sub" if target == "../victim" else tmp / "victim",
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT),
                                                                "FMNIST_ARTIFACTS": str(tmp / "artifacts")})
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
    assert (tmp / "victim" / "keep.txt").read_text() == "precious"


def test_a_symlinked_run_folder_is_not_followed(sandbox):
    tmp, store, victims, real = sandbox
    (tmp / "victim" / "config.json").write_text("{}")
    (store / "link").symlink_to(tmp / "victim", target_is_directory=True)
    with pytest.raises(Exception, match="no run named 'link'"):
        runs.delete_run("link")
    assert (tmp / "victim" / "keep.txt").is_file()


@pytest.mark.parametrize("argv", [
    ("train", "--preset", "mlp-seed000", "--save", "{victim}/keep.txt"),
    ("train", "--preset", "mlp-seed000", "--save", "{victim}"),
    ("train", "--preset", "mlp-seed000", "--save", "."),
    ("train", "--preset", "mlp-seed000", "--run-dir", "{victim}"),
    ("train", "--preset", "mlp-seed000", "--run-dir", "."),
    ("train", "--preset", "mlp-seed000", "--run-dir", "{victim}/keep.txt"),
    ("bench", "--quick", "--out", "{victim}/keep.txt"),
    ("bench", "--quick", "--out", "{victim}"),
    ("bench-train", "--quick", "--out", "{victim}/keep.txt"),
])
def test_output_paths_never_overwrite_what_is_not_ours(sandbox, monkeypatch, argv):
    """--save / --out / --run-dir name a new file or folder of their kind; refused before any work."""
    tmp, store, victims, real = sandbox
    monkeypatch.chdir(tmp / "victim")
    t0 = time.time()
    assert _cli(*[a.format(victim=tmp / "victim") for a in argv]) == 2
    assert time.time() - t0 < 20  # refused up front, not after a training or a benchmark
    assert (tmp / "victim" / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in (tmp / "victim").iterdir()) == ["keep.txt", "sub"]
