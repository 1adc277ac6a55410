"""Studies (fmnist_core/studies.py) on a real run store and real trainings of the real data:
grid / random / TPE hand out the trials they should, each an ordinary run under the taker's
name nested under the study's parent run; a refused launch puts its point back in line; a failed
trial is told FAIL and the study goes on; a study survives the kill of the process that ran it
(a new process opens it and continues) and its pruner stops a hopeless trial, which says so;
the storage is a database of its own beside MLflow's on one PostgreSQL server."""
from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys

import pytest

from fmnist_core import roles, runs, studies, submit
from fmnist_core.errors import ConfigError, WorkbenchError
from fmnist_core.study_settings import base_spec

from conftest import ROOT, wait_for

TEACHER = roles.User("teacher", roles.user_id("t" * 32), teacher=True)


def tiny(epochs=1, limit=500, **train):
    """A 784-128-10 MLP on the first `limit` real training images, one thread."""
    return base_spec("mlp-seed000", epochs=epochs, train_limit=limit, threads=1, device="cpu",
                     **{"batch_size": 100, **train})


@pytest.fixture(scope="module")
def classroom(tmp_path_factory):
    """One class run store (and study storage) for the tests that train nothing: creating an
    MLflow database costs seconds, and each test's studies and students have names of their own.
    No dispatcher is started here, so the runs stay records."""
    mp = pytest.MonkeyPatch()
    tmp = tmp_path_factory.mktemp("studies")
    mp.setenv("FMNIST_TRACKING_URI", f"sqlite:///{tmp / 'store' / 'mlflow.db'}")
    mp.setenv("FMNIST_ARTIFACTS", str(tmp))
    mp.setattr(runs, "ARTIFACTS", tmp)
    mp.setenv("FMNIST_TEACHER_PASSWORD", "correct horse")
    yield runs.store()
    mp.undo()


def student(name: str) -> roles.User:
    return roles.User(name, roles.user_id(name * 8), address=roles.user_id(f"addr:{name}"))


def _trials(name):
    return studies.load_study(name).optuna().get_trials(deepcopy=False)


def test_a_grid_hands_out_every_point_and_seed_once_as_runs_of_the_taker(classroom):
    st = studies.create_study("depths", {"depth": [0, 1, 2]}, seeds=2, base=tiny(), user=TEACHER, for_class=True)
    ADA, BO = student("ada"), student("bo")
    roles.set_class_settings(TEACHER, max_active_per_student=3)
    taken = [studies.take_trial("depths", u, start_dispatcher=False) for u in (ADA, BO, ADA, BO, ADA, BO)]
    # seed-major: every depth's first seed before any second, so the answer spreads first
    assert [t["params"]["seed"] for t in taken] == [0, 0, 0, 1, 1, 1]
    assert sorted((t["params"]["depth"], t["params"]["seed"]) for t in taken) == \
        sorted(itertools.product([0, 1, 2], [0, 1]))
    with pytest.raises(WorkbenchError, match="every point of its grid"):
        studies.take_trial("depths", ADA, start_dispatcher=False)
    for t in taken:
        r = runs.get_run(t["run_id"])
        spec = runs.load_summary(t["run_id"])["config"]
        assert r.data.tags["mlflow.parentRunId"] == st.parent_run_id
        assert r.data.tags["fmnist.study"] == "depths" and r.data.tags["fmnist.trial"] == str(t["trial"])
        assert spec["model_config"]["hidden"] == [128] * t["params"]["depth"]
        assert spec["train_config"]["seed"] == t["params"]["seed"]
    assert [runs.load_summary(t["run_id"])["owner"] for t in taken] == ["ada", "bo"] * 3
    # the parent run is a heading, not a run of the Results page
    assert st.parent_run_id not in {r["run_id"] for r in runs.list_runs()}
    # a student opens no class study; a bad question is one sentence, nothing created
    with pytest.raises(roles.PermissionDenied):
        studies.create_study("mine", {"depth": [1]}, user=ADA, for_class=True)
    with pytest.raises(ConfigError, match="depth is a setting of MLPs"):
        studies.create_study("cnn-depth", {"depth": [1, 2]}, base=base_spec("cnn-seed003", epochs=1), user=TEACHER)
    with pytest.raises(WorkbenchError, match="no study named"):
        studies.load_study("cnn-depth")


def test_a_refused_launch_puts_its_point_back_for_the_next_taker(classroom):
    studies.create_study("widths", {"width": [16, 32, 64]}, base=tiny(), user=TEACHER, for_class=True)
    roles.set_class_settings(TEACHER, max_active_per_student=2)
    ADA, BO = student("cy"), student("di")
    a = [studies.take_trial("widths", ADA, start_dispatcher=False) for _ in range(2)]
    with pytest.raises(WorkbenchError, match="waiting or running"):  # ada's class limit: 2 at once
        studies.take_trial("widths", ADA, start_dispatcher=False)
    b = studies.take_trial("widths", BO, start_dispatcher=False)
    assert sorted(t["params"]["width"] for t in a + [b]) == [16, 32, 64]
    assert runs.load_summary(b["run_id"])["owner"] == "di"


@pytest.mark.parametrize("search", ["random", "tpe"])
def test_random_and_tpe_stay_in_the_range_give_each_point_every_seed_and_keep_the_budget(classroom, search):
    st = studies.create_study(f"lr-{search}", {"train.lr": {"low": 1e-4, "high": 1e-1, "log": True},
                                               "model.batchnorm": [False, True]},
                              seeds=2, search=search, max_trials=6, base=tiny(), user=TEACHER)
    taken = [studies.take_trial(st.name, TEACHER, start_dispatcher=False) for _ in range(6)]
    with pytest.raises(WorkbenchError, match="budget of 6 trials"):
        studies.take_trial(st.name, TEACHER, start_dispatcher=False)
    points = {}
    for t in taken:
        assert 1e-4 <= t["params"]["train.lr"] <= 1e-1
        spec = runs.load_summary(t["run_id"])["config"]
        assert spec["train_config"]["lr"] == t["params"]["train.lr"]
        points.setdefault((t["params"]["train.lr"], t["params"]["model.batchnorm"]), set()).add(t["params"]["seed"])
    assert len(points) == 3 and all(s == {0, 1} for s in points.values())
    sampler = type(st.optuna().sampler).__name__
    assert sampler == {"random": "RandomSampler", "tpe": "TPESampler"}[search]
    with pytest.raises(ConfigError, match="needs a budget"):
        studies.create_study(f"nobudget-{search}", {"train.lr": {"low": 1e-4, "high": 1e-1}}, search=search,
                             base=tiny(), user=TEACHER)


def test_a_failed_trial_is_told_fail_and_the_study_goes_on(classroom):
    studies.create_study("fails", {"model.dropout": [0.0, 0.5]}, base=tiny(), user=TEACHER)
    first = studies.take_trial("fails", TEACHER, start_dispatcher=False)
    submit.stop_run(TEACHER, first["run_id"])  # its run ends without a value
    assert studies.sync("fails") == 1
    assert _trials("fails")[first["trial"]].state.name == "FAIL"
    second = studies.take_trial("fails", TEACHER, start_dispatcher=False)  # the study goes on
    assert second["params"]["model.dropout"] != first["params"]["model.dropout"]
    assert studies.sync("fails") == 0  # a waiting run is no end


@pytest.mark.slow
def test_the_study_resumes_in_a_new_process_after_a_kill_and_prunes_a_hopeless_trial(store):
    # lr 1e-7 barely moves the weights: its epoch-1 validation accuracy is far below the two
    # trials before it, so the median pruner stops it in epoch 2 of 2
    # (batches of 25: the trainer looks at its stop flag every 10 batches, so epoch 2 is cut at 10 of 20)
    studies.create_study("resume", {"train.lr": [1e-3, 3e-3, 1e-7]}, pruner="median",
                         base=tiny(epochs=2, batch_size=25))
    env = {**os.environ}
    first = subprocess.Popen([sys.executable, "-m", "fmnist_core", "study", "run", "resume"], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: any(t.state.name == "COMPLETE" for t in _trials("resume")), timeout=240,
                 what="the first trial to finish", every=0.5)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the study's runner dies (its trainer runs on)
        first.wait()
    # this test's process opened no study before: a new process opens it and takes the rest
    ended = studies.run_study("resume", poll=0.3)
    assert [t["params"]["train.lr"] for t in ended][-1] == 1e-7
    ts = sorted(_trials("resume"), key=lambda t: t.number)
    assert [t.params["train.lr"] for t in ts] == [1e-3, 3e-3, 1e-7]
    assert [t.state.name for t in ts] == ["COMPLETE", "COMPLETE", "PRUNED"], [t.state for t in ts]
    assert all(t.value > 0.5 for t in ts[:2])
    hopeless = runs.load_summary(ts[2].user_attrs["run_id"])
    assert hopeless["status"] == "cancelled"
    assert hopeless["status_info"]["message"] == "pruned at epoch 1: below the median of the other trials"
    assert hopeless["status_info"]["epochs_run"] == 1
    assert studies.sync("resume") == 0  # every trial was told by its trainer, the killed runner's too


def test_the_cli_refuses_bad_input_with_one_sentence(classroom, capsys):
    from fmnist_core.cli import main
    assert main(["study", "create", "x", "--vary", "depth=0..3"]) == 2
    assert capsys.readouterr().err.strip() == "error: depth: a grid needs values, not a range (or choose random or tpe)"
    assert main(["study", "show", "nope"]) == 2
    assert capsys.readouterr().err.strip() == "error: no study named 'nope'"
    assert main(["study", "create", "x", "--vary", "depth=1,two"]) == 2
    assert capsys.readouterr().err.strip() == "error: depth=two: depth cannot be 'two'"
    assert main(["study", "create", "x", "--vary", "train.seed=1,2"]) == 2
    assert "cannot vary 'train.seed'" in capsys.readouterr().err


def test_the_storage_is_never_mlflows_own_database(classroom, monkeypatch):
    monkeypatch.setenv("FMNIST_OPTUNA_URI", runs.tracking_uri())
    with pytest.raises(ConfigError, match="its own database"):
        studies.storage_uri()


@pytest.mark.slow
def test_optuna_and_mlflow_keep_their_own_schema_in_two_databases_of_one_postgres(tmp_path, monkeypatch):
    """Both use alembic's alembic_version table (mlflow/mlflow#3374): in one database they would
    fight over one version row. A class server gives Optuna a database of its own on the same
    server; after both have created their schema, each database holds its own and both open."""
    from conftest import skip_unless_ci
    from servers import postgres_missing, postgres_server, sqlalchemy_uri
    if postgres_missing():
        skip_unless_ci(postgres_missing())
    import psycopg2
    with postgres_server(tmp_path, dbname="mlflow") as dsn:
        host = dsn.rsplit("/", 1)[0]
        con = psycopg2.connect(host="127.0.0.1", port=int(host.rsplit(":", 1)[1]), user="postgres", dbname="postgres")
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute('CREATE DATABASE "optuna"')
        con.close()
        mlflow_uri, optuna_uri = sqlalchemy_uri(dsn), sqlalchemy_uri(f"{host}/optuna")
        monkeypatch.setenv("FMNIST_TRACKING_URI", mlflow_uri)
        monkeypatch.setenv("FMNIST_ARTIFACTS", str(tmp_path))
        monkeypatch.setattr(runs, "ARTIFACTS", tmp_path)
        monkeypatch.setenv("FMNIST_OPTUNA_URI", optuna_uri)
        st = studies.create_study("pg", {"depth": [1, 2]}, base=tiny(), user=TEACHER)
        t = studies.take_trial("pg", TEACHER, start_dispatcher=False)

        def tables(db):
            c = psycopg2.connect(host="127.0.0.1", port=int(host.rsplit(":", 1)[1]), user="postgres", dbname=db)
            with c.cursor() as cur:
                cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                names = {r[0] for r in cur.fetchall()}
                cur.execute("SELECT version_num FROM alembic_version")
                versions = [r[0] for r in cur.fetchall()]
            c.close()
            return names, versions
        m_tables, m_version = tables("mlflow")
        o_tables, o_version = tables("optuna")
        assert {"experiments", "runs", "tags"} <= m_tables and "studies" not in m_tables
        assert {"studies", "trials", "trial_params"} <= o_tables and "runs" not in o_tables
        assert len(m_version) == 1 and len(o_version) == 1 and m_version != o_version
        # both open again as their own library expects (a clash would fail the version check)
        from mlflow.tracking import MlflowClient
        assert MlflowClient(tracking_uri=mlflow_uri).get_run(t["run_id"]).data.tags["mlflow.parentRunId"] == \
            st.parent_run_id
        import optuna
        assert len(optuna.load_study(study_name="pg", storage=optuna_uri).trials) == 2
        # MLflow's own database as the study storage is refused with the reason
        monkeypatch.setenv("FMNIST_OPTUNA_URI", dsn)  # the same database, written another way
        with pytest.raises(ConfigError, match="alembic_version"):
            studies.storage_uri()


def test_the_early_stopping_template_varies_what_the_trainer_stops_on(classroom):
    """Seed 003's question as a study: its two trials differ only in train.early_stop_on."""
    from fmnist_core.study_settings import template
    t = template("early-stopping")
    train = {k: v for k, v in t["train"].items() if k != "epochs"}
    studies.create_study("stop-on", t["settings"], base=base_spec(t["preset"], epochs=3, train_limit=500, **train),
                         user=TEACHER, template="early-stopping")
    specs = [runs.load_summary(studies.take_trial("stop-on", TEACHER, start_dispatcher=False)["run_id"])["config"]
             ["train_config"] for _ in range(2)]
    assert [s["early_stop_on"] for s in specs] == ["val_accuracy", "val_loss"]
    assert all(s["patience"] == 2 and s["val_fraction"] > 0 for s in specs)
