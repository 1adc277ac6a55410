"""A run store that does not answer: the CLI says so in one line and the pages in a sentence,
within seconds instead of MLflow's minutes of retries, and keep serving what needs no store.
And the other side of "not answering": a remote run whose heartbeat went stale is marked
interrupted, a fresh one is left alone."""
from __future__ import annotations

import contextlib
import socket
import time

import pytest

from conftest import run_cli
from fmnist_core import runs
from fmnist_core.spec import run_spec
from fmnist_core.models import MLPConfig
from fmnist_core.train import TrainConfig
from page_util import page_app, texts


@contextlib.contextmanager
def silent_server():
    """A port that accepts connections and never answers: a hung tracking server."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def _closed_port() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connections are refused
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("how", ["refused", "silent"])
def test_the_cli_says_the_store_is_not_answering_in_one_line(how, tmp_path):
    with silent_server() if how == "silent" else contextlib.nullcontext(_closed_port()) as uri:
        # timeout: before, MLflow's 7 retries with backoff kept `runs` busy for minutes
        out = run_cli("runs", timeout=90, env={"FMNIST_TRACKING_URI": uri, "FMNIST_ARTIFACTS": str(tmp_path)})
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [f"error: the run store at {uri} is not answering"]


def test_pages_say_the_store_is_not_answering_and_keep_serving(tmp_path, monkeypatch):
    with silent_server() as uri:
        monkeypatch.setenv("FMNIST_TRACKING_URI", uri)
        monkeypatch.setenv("FMNIST_ARTIFACTS", str(tmp_path))
        monkeypatch.setattr(runs, "ARTIFACTS", tmp_path)
        runs._answers.clear()
        at = page_app("train")
        at.default_timeout = 60  # before: the sidebar's run list hung here for minutes
        at.run()
        assert not at.exception
        warning = " ".join(w.value for w in at.warning).replace("\\", "")
        assert f"The run store at {uri} is not answering" in warning
        assert at.metric and at.metric[0].label == "Trainable parameters"  # the form still works
        for name in ("results", "leaderboard"):
            other = page_app(name)
            other.default_timeout = 60
            other.run()
            assert not other.exception, name
            assert "is not answering" in texts(other).replace("\\", ""), name


def test_a_remote_run_whose_heartbeat_went_stale_is_interrupted(store):
    spec = run_spec(MLPConfig(hidden=(8,)), TrainConfig(epochs=1))
    stale, fresh, local_dead = (runs.create_run(spec, label=x) for x in ("stale", "fresh", "local"))
    now = time.time()
    # on another machine: only the heartbeat tells whether it lives
    runs.set_status(stale, "running", host="gpu-box-7", pid=12345, heartbeat=now - runs.STALE_SECONDS - 5)
    runs.set_status(fresh, "running", host="gpu-box-7", pid=12345, heartbeat=now - 5)
    # on this machine: the pid tells, whatever the heartbeat (a pid that is not running)
    runs.set_status(local_dead, "running", host=runs.HOST, pid=2**22 + 17, heartbeat=now)
    assert sorted(runs.mark_orphans()) == sorted([stale, local_dead])
    assert runs.load_run(stale, history=False)["status"] == "interrupted"
    assert runs.load_run(local_dead, history=False)["status"] == "interrupted"
    assert runs.load_run(fresh, history=False)["status"] == "running"
