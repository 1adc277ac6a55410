"""Owners, the teacher and the class limits (fmnist_core/roles.py), checked in the core against
a real run store through submit.py's actions. The dispatcher's own tests: test_queue.py."""
from __future__ import annotations

import pytest

from conftest import ADA, BO, TEACHER, classroom  # noqa: F401 (a fixture)
from fmnist_core import roles, runs, submit
from fmnist_core.spec import run_spec
from fmnist_core.models import MLPConfig
from fmnist_core.train import TrainConfig

def _run_of(user, status="finished"):
    rid = runs.create_run(run_spec(MLPConfig(hidden=(8,)), TrainConfig(epochs=1)), label="x",
                          owner=user.name, owner_id=user.id)
    runs.set_status(rid, status)
    return rid


def test_only_the_owner_or_the_teacher_may_stop_or_delete(classroom):
    ada_run, bo_run = _run_of(ADA), _run_of(BO)
    with pytest.raises(roles.PermissionDenied, match="only ada .* or the teacher can delete"):
        submit.delete_run(BO, ada_run)
    with pytest.raises(roles.PermissionDenied, match="can stop"):
        submit.stop_run(BO, ada_run)
    assert not runs.cancel_requested(ada_run)
    assert {r["run_id"] for r in runs.list_runs()} == {ada_run, bo_run}  # nothing touched
    submit.delete_run(ADA, ada_run)         # the owner may
    submit.stop_run(TEACHER, bo_run)        # the teacher may
    assert runs.cancel_requested(bo_run)
    submit.delete_run(TEACHER, bo_run)
    assert runs.list_runs() == []


def test_a_forged_owner_name_is_not_ownership(classroom):
    rid = _run_of(ADA)
    impostor = roles.User("ada", roles.user_id("x" * 32))  # same name, another browser's token
    with pytest.raises(roles.PermissionDenied):
        submit.delete_run(impostor, rid)


def test_teacher_password_from_env_or_secrets(store, monkeypatch, tmp_path):
    monkeypatch.delenv("FMNIST_TEACHER_PASSWORD", raising=False)
    monkeypatch.setattr(roles, "SECRETS_FILE", tmp_path / "secrets.toml")
    assert not roles.class_mode() and roles.single_user().teacher  # a laptop: the user is the teacher
    assert not roles.check_teacher_password("")
    (tmp_path / "secrets.toml").write_text('teacher_password = "s3cret"\n')
    assert roles.class_mode() and not roles.single_user().teacher
    assert roles.check_teacher_password("s3cret") and not roles.check_teacher_password("s3cre")
    monkeypatch.setenv("FMNIST_TEACHER_PASSWORD", "env wins")
    assert roles.check_teacher_password("env wins") and not roles.check_teacher_password("s3cret")


def test_only_the_teacher_sets_the_class_limits_and_everyone_reads_them(classroom):
    assert roles.class_settings() == roles.ClassSettings()
    with pytest.raises(roles.PermissionDenied, match="only the teacher"):
        roles.set_class_settings(ADA, max_concurrent=4)
    roles.set_class_settings(TEACHER, max_concurrent=3, max_epochs=5)
    fresh = roles.class_settings()  # read back from the store, as another server would
    assert fresh.max_concurrent == 3 and fresh.max_epochs == 5
    with pytest.raises(Exception, match="must be a number >= 1"):
        roles.set_class_settings(TEACHER, max_concurrent=0)


def test_limits_are_enforced_where_the_job_is_submitted(classroom):
    huge = run_spec(MLPConfig(hidden=(8192,) * 50), TrainConfig(epochs=1))
    with pytest.raises(roles.PermissionDenied, match="parameters; the class limit is 5,000,000"):
        submit.submit(huge, user=ADA, start_dispatcher=False)
    with pytest.raises(roles.PermissionDenied, match="40 epochs asked; the class limit is 30"):
        submit.submit(run_spec(MLPConfig(), TrainConfig(epochs=40)), user=ADA, start_dispatcher=False)
    assert runs.list_runs() == []  # refused before any run exists
    # training time is capped, not refused
    rid = submit.submit(run_spec(MLPConfig(), TrainConfig(epochs=2)), user=ADA, start_dispatcher=False)
    assert runs.load_summary(rid)["config"]["train_config"]["max_seconds"] == 900.0
    # runs at once per student
    _run_of(ADA, status="queued")
    with pytest.raises(roles.PermissionDenied, match="already have 2 run"):
        submit.submit(run_spec(MLPConfig(), TrainConfig(epochs=2)), user=ADA, start_dispatcher=False)
    submit.submit(run_spec(MLPConfig(), TrainConfig(epochs=2)), user=BO, start_dispatcher=False)  # another student may
    submit.submit(run_spec(MLPConfig(hidden=(2048,) * 2), TrainConfig(epochs=2)), user=TEACHER,
                  start_dispatcher=False)  # the teacher has no class limits
