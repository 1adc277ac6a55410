"""The run store on a real tracking server, and training on a real Ray cluster.

* a PostgreSQL-backed `mlflow server --serve-artifacts` on loopback: a CLI training logs into
  it (params, per-epoch metrics, status, checkpoint as a served artifact) and the dashboard's
  readers read it back, the checkpoint downloaded and loaded with weights_only;
* the tracking server is killed mid-run and started again: the run finishes and its history
  has every epoch (the trainer's writer waits and retries; nothing is lost);
* a local Ray cluster (`ray start --head --num-cpus 2`): three runs launched with the
  dashboard's own launch function (submit.submit) are started by the dispatcher as Ray tasks,
  log into the same tracking server and end with full histories; a fourth is stopped through
  submit.stop_run while it trains, and a fifth while it still waits for a Ray worker (the
  dispatcher, which submitted it, takes it off Ray's queue with ray.cancel).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from fmnist_core import roles, runs, submit
from fmnist_core.errors import WorkbenchError
from fmnist_core.spec import run_spec
from fmnist_core.models import MLPConfig, load_model
from fmnist_core.train import TrainConfig

from conftest import ROOT, wait_for
from servers import (RAY_CLIENT_ENV, mlflow_server, postgres_missing, postgres_server, ray_cluster,
                     sqlalchemy_uri)

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
pytestmark = pytest.mark.skipif(postgres_missing() is not None and os.environ.get("CI") != "true",
                                reason=f"{postgres_missing()}: tracking-server tests skipped")
TEACHER = roles.User("teacher", roles.user_id("t" * 32), teacher=True)
# the client gives up on a dead server sooner than MLflow's default ~4 minutes: the writer
# thread retries on its own, and a test should not hang that long
FAST_RETRY = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
              "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("tracking")
    with postgres_server(base / "pg") as dsn:
        with mlflow_server(sqlalchemy_uri(dsn), base / "served-artifacts") as (url, handle):
            yield url, handle


@pytest.fixture
def remote(server, tmp_path, monkeypatch):
    """This process and its children use the tracking server as the run store."""
    url, handle = server
    monkeypatch.setenv("FMNIST_TRACKING_URI", url)
    monkeypatch.setenv("FMNIST_ARTIFACTS", str(tmp_path))
    monkeypatch.setattr(runs, "ARTIFACTS", tmp_path)
    for k, v in FAST_RETRY.items():
        monkeypatch.setenv(k, v)
    real_data = ROOT / "artifacts" / "data"
    if real_data.is_dir():
        (tmp_path / "data").symlink_to(real_data, target_is_directory=True)
    return url, handle


def _train_cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "fmnist_core", "train", *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_a_training_logs_into_a_postgres_backed_tracking_server(remote):
    url, _ = remote
    p = _train_cli("--preset", "mlp-seed000", "--epochs", "2", "--train-limit", "4000")
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-2000:]
    rid = runs.list_runs()[0]["run_id"]
    r = runs.load_run(rid)
    assert r["status"] == "finished" and [h["epoch"] for h in r["history"]] == [1, 2]
    assert r["artifact_uri"].startswith("mlflow-artifacts:")  # served by the tracking server
    assert r["metrics"]["accuracy"] > 0.6
    ck = load_model(runs.ensure_checkpoint(r["checkpoint"]))  # downloaded, weights_only
    assert ck is not None and str(runs.ARTIFACTS / "cache" / "runs" / rid) in r["checkpoint"]
    mr = runs.store().client.get_run(rid)
    assert mr.info.status == "FINISHED" and mr.data.params["preset"] == "mlp-seed000"
    with pytest.raises(WorkbenchError, match="no run named"):  # the REST API's "not found", in our words
        runs.get_run("0" * 32)


def test_the_tracking_server_restarts_mid_run_and_no_epoch_is_lost(remote):
    url, handle = remote
    epochs = 12
    p = _train_cli("--preset", "mlp-seed000", "--epochs", epochs, "--train-limit", "12000")
    try:
        rid = wait_for(lambda: [r["run_id"] for r in runs.list_runs() if r["status"] == "running"],
                    what="the run to start")[0]
        wait_for(lambda: len(runs.read_history(rid)) >= 2, what="two epochs")
        logged = len(runs.read_history(rid))
        handle.kill()                       # the tracking server dies mid-run
        down_at = time.time()
        # the trainer was running when the server died: its process alive, epochs still to come
        # (a run that had finished before the kill would make this test prove nothing)
        assert p.poll() is None and logged < epochs, (p.poll(), logged)
        time.sleep(6)                       # the outage itself, not a wait for something
        assert p.poll() is None, "the trainer died with the tracking server"
        handle.start()                      # and comes back on the same port and stores
        print(f"\n[timing] tracking server down {time.time() - down_at:.1f} s")
        out, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err[-2000:]
    r = runs.load_run(rid)
    assert r["status"] == "finished"
    assert [h["epoch"] for h in r["history"]] == list(range(1, epochs + 1))  # every epoch, once
    assert len(r["history"]) > logged  # epochs written after the outage arrived too
    assert r["metrics"]["accuracy"] > 0.7


@pytest.fixture(scope="module")
def cluster():
    saved = {k: os.environ.get(k) for k in RAY_CLIENT_ENV}
    os.environ.update(RAY_CLIENT_ENV)  # before `import ray` in this process
    try:
        with ray_cluster(num_cpus=2) as address:
            yield address
            import ray
            if ray.is_initialized():
                ray.shutdown()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.mark.slow
def test_runs_train_on_a_ray_cluster_and_one_is_stopped(remote, cluster, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", cluster)
    monkeypatch.setenv("FMNIST_EXECUTOR", "ray")
    spec = run_spec(MLPConfig(hidden=(32,)), TrainConfig(epochs=2, batch_size=128, device="cpu"),
                    train_limit=4000)
    roles.set_class_settings(TEACHER, max_concurrent=4)  # Ray places them: two CPUs in this cluster
    ids = [submit.submit(spec, label=f"ray-{k}", user=TEACHER) for k in range(3)]
    long_spec = run_spec(MLPConfig(hidden=(64,)), TrainConfig(epochs=200, device="cpu"), train_limit=20000)
    long_id = submit.submit(long_spec, label="ray-long", user=TEACHER)
    done = wait_for(lambda: all(runs.load_run(i, history=False)["status"] not in runs.ACTIVE for i in ids) and ids,
                 timeout=300, what="three Ray runs")
    for i in done:
        r = runs.load_run(i)
        assert r["status"] == "finished", r["status_info"]
        assert [h["epoch"] for h in r["history"]] == [1, 2] and r["status_info"]["host"]
        assert r["status_info"]["executor"] == "ray" and r["metrics"]["accuracy"] > 0.6
    wait_for(lambda: runs.load_run(long_id, history=False)["status"] == "running", timeout=120,
          what="the long run to start")
    # two more long ones: one takes the second CPU, the other waits in Ray's queue
    more = [submit.submit(long_spec, label=f"ray-long-{k}", user=TEACHER) for k in range(2)]
    wait_for(lambda: sorted(runs.load_summary(i)["status"] for i in more) == ["queued", "running"]
             and all(runs.load_summary(i)["status_info"].get("ray_task") for i in more), timeout=180,
             what="one more running, one waiting for a Ray worker")
    waiting_id = next(i for i in more if runs.load_summary(i)["status"] == "queued")
    submit.stop_run(TEACHER, waiting_id)
    wait_for(lambda: runs.load_summary(waiting_id)["status"] == "cancelled", timeout=60,
             what="the waiting Ray task to be cancelled")
    assert not runs.load_summary(waiting_id)["status_info"].get("started")  # it never trained
    for i in (long_id, *more):
        submit.stop_run(TEACHER, i)
    wait_for(lambda: runs.load_run(long_id, history=False)["status"] == "cancelled", timeout=120,
          what="the stop to reach the Ray task")
