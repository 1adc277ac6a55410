"""The run store (fmnist_core/runs.py on MLflow) and the trainer side (execute.py), on real data."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from fmnist_core import execute, runs
from fmnist_core.files import write_json_atomic
from fmnist_core.execute import execute_run
from fmnist_core.spec import run_spec
from fmnist_core.models import MLPConfig, load_model
from fmnist_core.train import TrainConfig

from conftest import ROOT, wait_for

TINY_SPEC = run_spec(MLPConfig(hidden=(8,)), TrainConfig(epochs=1))  # a record, never trained here


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "status.json"
    write_json_atomic(p, {"status": "running"})
    with pytest.raises(TypeError):
        write_json_atomic(p, {"bad": object()})
    assert json.loads(p.read_text()) == {"status": "running"}
    assert [f.name for f in tmp_path.iterdir()] == ["status.json"]  # no temp file left behind


def test_execute_run_writes_a_complete_run(store):
    spec = run_spec(MLPConfig(hidden=(32,)), TrainConfig(epochs=2, batch_size=128, device="cpu"),
                    train_limit=5000)
    rid = runs.create_run(spec, label="t", owner="ada")
    assert runs.load_run(rid)["status"] == "queued"
    summary = execute_run(rid)
    assert summary["status"] == "finished" and summary["test_accuracy"] > 0.7
    r = runs.load_run(rid)
    assert r["status"] == "finished" and r["owner"] == "ada" and r["label"] == "t"
    assert [h["epoch"] for h in r["history"]] == [1, 2]
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "epoch_seconds"} <= set(r["history"][0])
    assert r["metrics"]["accuracy"] == summary["test_accuracy"]
    assert len(r["metrics"]["confusion_matrix"]) == 10
    ck = torch.load(r["checkpoint"], weights_only=True)
    assert ck["metrics"]["test_accuracy"] == summary["test_accuracy"]
    assert ck["metrics"]["machine"]["cpu"] and ck["metrics"]["epochs_run"] == 2
    # the same run as MLflow shows it: params, per-epoch metrics with steps, status, artifacts
    mr = store.client.get_run(rid)
    assert mr.info.status == "FINISHED" and mr.data.params["model.hidden"] == "32"
    assert mr.data.params["train.epochs"] == "2" and mr.data.params["engine"] == "torch"
    assert [m.step for m in store.client.get_metric_history(rid, "val_accuracy")] == [1, 2]
    assert mr.data.metrics["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    names = {a.path for a in store.client.list_artifacts(rid)}
    assert {"best.pt", "metrics.json", "confusion.csv", "per_class.csv", "history.csv"} <= names
    assert [x["run_id"] for x in runs.list_runs()] == [rid]
    runs.delete_run(rid)
    assert runs.list_runs() == []


def test_killed_run_stays_readable_and_is_marked_interrupted(store):
    """SIGKILL in the middle of training: the run reads, its best checkpoint loads, and it is
    marked interrupted."""
    proc = subprocess.Popen([sys.executable, "-m", "fmnist_core", "train", "--preset", "mlp-seed000",
                             "--epochs", "50"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        rid = wait_for(lambda: [r["run_id"] for r in runs.list_runs()], what="the run")[0]
        wait_for(lambda: len(runs.load_run(rid)["history"]) >= 2 and runs.load_run(rid)["checkpoint"],
                  what="two epochs")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    r = runs.load_run(rid)
    assert r["status"] == "running" and len(r["history"]) >= 2
    load_model(r["checkpoint"])  # the best weights so far survive the kill
    assert runs.mark_orphans() == [rid]
    assert runs.load_run(rid)["status"] == "interrupted"
    assert store.client.get_run(rid).info.status == "KILLED"


def test_cancel_flag_stops_a_run(store):
    rid = runs.create_run(run_spec(MLPConfig(), TrainConfig(epochs=30, device="cpu")))
    runs.request_cancel(rid)
    summary = execute_run(rid)
    assert summary["status"] == "cancelled"
    assert runs.load_run(rid)["status"] == "cancelled"


def test_cancel_reaches_a_running_trainer(store):
    rid = runs.create_run(run_spec(MLPConfig(), TrainConfig(epochs=30, device="cpu")))
    out = {}
    t = __import__("threading").Thread(target=lambda: out.update(execute_run(rid)))
    t.start()
    wait_for(lambda: runs.load_run(rid, history=False)["status_info"].get("batch"), what="training")
    runs.request_cancel(rid)
    t.join(60)
    assert out["status"] == "cancelled" and runs.load_run(rid)["status"] == "cancelled"


def test_active_run_cannot_be_deleted(store):
    rid = runs.create_run(TINY_SPEC)
    runs.set_status(rid, "running", pid=os.getpid(), host=runs.HOST)
    with pytest.raises(Exception, match="still running"):
        runs.delete_run(rid)
    runs.set_status(rid, "running", pid=2 ** 22 + 12345, host=runs.HOST)  # a pid that is not there
    runs.delete_run(rid)


def test_a_run_of_another_experiment_is_not_ours(store):
    other = store.client.create_experiment("someone-elses")
    rid = store.client.create_run(other).info.run_id
    for fn in (runs.delete_run, runs.request_cancel, runs.load_run):
        with pytest.raises(Exception, match="no run named"):
            fn(rid)
    assert store.client.get_run(rid).info.lifecycle_stage == "active"


# --- only a run id in the store is ever deleted or cancelled (issue 15) ---------------------

@pytest.fixture
def sandbox(tmp_path, store):
    """The run store beside folders that are not runs: victim/keep.txt, etc/keep.txt; one real run."""
    from fmnist_core import cli  # noqa: F401 (the commands below run in this process)
    victims = []
    for d in (tmp_path / "victim", tmp_path / "etc", tmp_path / "store" / "victim",
              tmp_path / "store" / "mlartifacts"):
        d.mkdir(parents=True, exist_ok=True)
        (d / "keep.txt").write_text("precious")
        victims.append(d)
    (tmp_path / "victim" / "sub").mkdir()
    real = runs.create_run(TINY_SPEC, label="real")
    return tmp_path, victims, real


def _cli(*argv) -> int:
    from fmnist_core.cli import main
    return main([str(a) for a in argv])


def test_runs_delete_and_cancel_refuse_paths_from_every_working_directory(sandbox, monkeypatch, capsys):
    tmp, victims, real = sandbox
    victim = tmp / "victim"
    cwds = [tmp, tmp / "store", victim, victim / "sub", ROOT]
    tried = 0
    for cwd in cwds:
        monkeypatch.chdir(cwd)
        targets = {".", "..", "../..", str(victim), os.path.relpath(victim, cwd), "../etc",
                   os.path.relpath(tmp / "etc", cwd), "../victim", "victim", "mlartifacts",
                   str(tmp / "store" / "mlartifacts"), f"{real}/..", f"../{real}", "", "~", real.upper() + "x"}
        for target in sorted(targets):
            for flag in ("--delete", "--cancel"):
                assert _cli("runs", flag, target) == 2, (cwd, flag, target)
                tried += 1
    err = capsys.readouterr().err
    assert "is not a run id" in err and "no run named 'victim'" in err
    for d in victims:
        assert (d / "keep.txt").read_text() == "precious", d
        assert not (d / "cancel").exists(), d
    assert tried > 140
    # the one accepted form: the id of a run in the store
    assert runs.load_run(real)["status"] == "queued" and not runs.cancel_requested(real)
    runs.set_status(real, "running", pid=os.getpid(), host=runs.HOST)  # a live trainer
    assert _cli("runs", "--delete", real) == 2  # still running: stop it first
    assert _cli("runs", "--cancel", real) == 0 and runs.cancel_requested(real)
    runs.set_status(real, "cancelled")
    assert _cli("runs", "--delete", real) == 0 and runs.list_runs() == []
    assert all((d / "keep.txt").is_file() for d in victims)


def test_runs_delete_refuses_a_path_in_a_real_process(sandbox):
    """The same through `python -m fmnist_core`, run from beside the victim: exit 2, one line."""
    tmp, victims, real = sandbox
    for target in ("../victim", str(tmp / "victim"), "."):
        p = subprocess.run([sys.executable, "-m", "fmnist_core", "runs", "--delete", target],
                           cwd=tmp / "victim" / "sub" if target == "../victim" else tmp / "victim",
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
    assert (tmp / "victim" / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize("argv", [
    ("train", "--preset", "mlp-seed000", "--save", "{victim}/keep.txt"),
    ("train", "--preset", "mlp-seed000", "--save", "{victim}"),
    ("train", "--preset", "mlp-seed000", "--save", "."),
    ("train", "--run", "../victim"),
    ("train", "--run", "{victim}"),
    ("bench", "--quick", "--out", "{victim}/keep.txt"),
    ("bench", "--quick", "--out", "{victim}"),
    ("bench-train", "--quick", "--out", "{victim}/keep.txt"),
])
def test_output_paths_never_overwrite_what_is_not_ours(sandbox, monkeypatch, argv):
    """--save / --out name a file of their kind, --run an id; refused before any work."""
    tmp, victims, real = sandbox
    monkeypatch.chdir(tmp / "victim")
    t0 = time.time()
    assert _cli(*[a.format(victim=tmp / "victim") for a in argv]) == 2
    assert time.time() - t0 < 20  # refused up front, not after a training or a benchmark
    assert (tmp / "victim" / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in (tmp / "victim").iterdir()) == ["keep.txt", "sub"]


def test_list_runs_by_status_searches_the_store(store):
    ids = {}
    for st in ("queued", "running", "finished", "queued"):
        rid = runs.create_run(TINY_SPEC, label=st)
        runs.set_status(rid, st, pid=os.getpid(), host=runs.HOST)
        ids.setdefault(st, []).append(rid)
        time.sleep(0.01)
    queued = runs.list_runs(statuses=("queued",))
    assert [r["run_id"] for r in queued] == ids["queued"][::-1]  # newest first
    active = runs.list_runs(statuses=runs.ACTIVE)
    assert {r["run_id"] for r in active} == set(ids["queued"] + ids["running"])
    assert len(runs.list_runs()) == 4


def test_an_unreachable_store_is_not_a_missing_run(tmp_path, monkeypatch):
    """A tracking server that does not answer must not read as "no such run": the trainer's
    writer retries on the first and would give up on the second."""
    from mlflow.exceptions import MlflowException
    monkeypatch.setenv("FMNIST_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    s = runs.store()

    def down(run_id):
        raise MlflowException("API request failed: connection refused", error_code="TEMPORARILY_UNAVAILABLE")
    monkeypatch.setattr(s.client, "get_run", down)
    with pytest.raises(MlflowException):
        runs.get_run("0" * 32)
    reporter = execute.RunReporter("0" * 32, give_up_s=2)
    calls = []
    reporter.call(lambda: (calls.append(1), runs.get_run("0" * 32)))
    reporter.close()  # retried until it gave up, the writer thread survived and closed
    assert len(calls) >= 2
