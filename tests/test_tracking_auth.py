"""The multi-machine mode's run store behind MLflow's own authentication (`mlflow server
--app-name basic-auth`), on loopback: nobody without a login reads or writes anything, a login
without a grant gets nothing, and the users the README sets up (the dashboard server's and the
workers') do their work through the workbench's own code (runs, roles)."""
from __future__ import annotations

import json
import os
import secrets
import urllib.error
import urllib.request

import pytest

from fmnist_core import roles, runs
from fmnist_core.spec import run_spec
from fmnist_core.models import MLPConfig
from fmnist_core.train import TrainConfig
from servers import mlflow_server

pytestmark = pytest.mark.slow  # a tracking server starts (10-40 s on a busy machine)
TEACHER = roles.User("teacher", roles.user_id("t" * 32), teacher=True)


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("auth")
    admin_pw = secrets.token_urlsafe(12)
    ini = base / "basic_auth.ini"
    ini.write_text("[mlflow]\ndefault_permission = NO_PERMISSIONS\n"
                   f"database_uri = sqlite:///{base / 'auth.db'}\n"
                   f"admin_username = admin\nadmin_password = {admin_pw}\n"
                   "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    saved = {k: os.environ.get(k) for k in ("MLFLOW_AUTH_CONFIG_PATH", "MLFLOW_FLASK_SERVER_SECRET_KEY")}
    os.environ["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)
    os.environ["MLFLOW_FLASK_SERVER_SECRET_KEY"] = secrets.token_hex(16)
    try:
        with mlflow_server(f"sqlite:///{base / 'store.db'}", base / "artifacts",
                           extra_args=("--app-name", "basic-auth")) as (url, handle):
            yield url, admin_pw
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def _as(monkeypatch, user: str | None, password: str | None = None) -> None:
    """Who this process's MLflow client is (read by MLflow at every request)."""
    for k, v in (("MLFLOW_TRACKING_USERNAME", user), ("MLFLOW_TRACKING_PASSWORD", password)):
        monkeypatch.delenv(k, raising=False) if v is None else monkeypatch.setenv(k, v)


def _call(url: str, path: str, body: dict, user: str | None = None, password: str | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    if user:
        import base64
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, {}


def test_basic_auth_keeps_the_network_out_and_lets_the_class_servers_users_work(auth_server, tmp_path, monkeypatch):
    url, admin_pw = auth_server
    monkeypatch.setenv("FMNIST_TRACKING_URI", url)
    monkeypatch.setenv("FMNIST_ARTIFACTS", str(tmp_path))
    monkeypatch.setattr(runs, "ARTIFACTS", tmp_path)
    for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.setenv(k, "1" if "RETRIES" in k else "20")
    runs._stores.clear()
    from mlflow.server.auth.client import AuthServiceClient
    _as(monkeypatch, "admin", admin_pw)
    users = AuthServiceClient(url)
    dash_pw, worker_pw, other_pw = (secrets.token_urlsafe(12) for _ in range(3))
    users.create_user("dashboard", dash_pw)
    users.create_user("worker", worker_pw)
    users.create_user("someone", other_pw)

    # the dashboard server's user creates the class's experiment and a run, sets the class settings
    _as(monkeypatch, "dashboard", dash_pw)
    runs._stores.clear()
    exp = runs.store().experiment_id
    rid = runs.create_run(run_spec(MLPConfig(hidden=(8,)), TrainConfig(epochs=1)), label="x",
                          owner="ada", owner_id=roles.user_id("a" * 32))
    roles.set_class_settings(TEACHER, max_epochs=5)
    # the workers' user, once granted, trains and logs into it
    _as(monkeypatch, "admin", admin_pw)
    users.grant_user_permission("worker", "experiment", exp, "EDIT")
    _as(monkeypatch, "worker", worker_pw)
    runs._stores.clear()
    runs.set_status(rid, "running", epoch=1)
    runs.log_epoch(rid, {"epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5, "val_loss": 1.1,
                         "val_accuracy": 0.5, "lr": 0.01, "epoch_seconds": 1.0})
    assert runs.load_run(rid)["history"][0]["epoch"] == 1

    # the network: no login, a wrong password, or a login without a grant gets nothing
    owner_tag = {"run_id": rid, "key": "fmnist.owner_id", "value": "mine now"}
    settings_tag = {"experiment_id": exp, "key": roles.SETTINGS_TAG, "value": "{}"}
    for who in ((None, None), ("dashboard", "wrong"), ("someone", other_pw)):
        assert _call(url, "/api/2.0/mlflow/runs/set-tag", owner_tag, *who)[0] in (401, 403), who
        assert _call(url, "/api/2.0/mlflow/experiments/set-experiment-tag", settings_tag, *who)[0] in (401, 403), who
        assert _call(url, "/api/2.0/mlflow/runs/delete", {"run_id": rid}, *who)[0] in (401, 403), who
        assert _call(url, "/api/2.0/mlflow/runs/get", {"run_id": rid}, *who)[0] in (401, 403), who
        # a search answers, but with none of the class's runs in it (filtered by permission)
        code, found = _call(url, "/api/2.0/mlflow/runs/search", {"experiment_ids": [exp]}, *who)
        assert code in (401, 403) or not found.get("runs"), (who, code, found)
    # nothing of it landed
    _as(monkeypatch, "dashboard", dash_pw)
    r = runs.load_run(rid, history=False)
    assert r["owner_id"] == roles.user_id("a" * 32)
    assert roles.class_settings().max_epochs == 5
    # and the workbench's own client, without a login, is refused (not a traceback: a message)
    _as(monkeypatch, None)
    runs._stores.clear()
    with pytest.raises(Exception, match="401|Unauthorized|credentials|UNAUTHENTICATED"):
        runs.store()
    runs._stores.clear()
