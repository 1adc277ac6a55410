"""Owners, the teacher and the class limits (fmnist_core/roles.py), checked in the core against
a real run store; and the local queue, first come first served, through jobs.submit."""
from __future__ import annotations

import time

import pytest

from fmnist_core import jobs, roles, runs
from fmnist_core.jobs import run_spec
from fmnist_core.models import MLPConfig
from fmnist_core.train import TrainConfig

ADA = roles.User("ada", roles.user_id("a" * 32))
BO = roles.User("bo", roles.user_id("b" * 32))
TEACHER = roles.User("teacher", roles.user_id("t" * 32), teacher=True)


@pytest.fixture
def classroom(store, monkeypatch):
    monkeypatch.setenv("FMNIST_TEACHER_PASSWORD", "correct horse")
    return store


def _run_of(user, status="finished"):
    rid = runs.create_run(run_spec(MLPConfig(hidden=(8,)), TrainConfig(epochs=1)), label="x",
                          owner=user.name, owner_id=user.id)
    runs.set_status(rid, status)
    return rid


def test_only_the_owner_or_the_teacher_may_stop_or_delete(classroom):
    ada_run, bo_run = _run_of(ADA), _run_of(BO)
    with pytest.raises(roles.PermissionDenied, match="only ada .* or the teacher can delete"):
        roles.delete_run(BO, ada_run)
    with pytest.raises(roles.PermissionDenied, match="can stop"):
        roles.stop_run(BO, ada_run)
    assert not runs.cancel_requested(ada_run)
    assert {r["run_id"] for r in runs.list_runs()} == {ada_run, bo_run}  # nothing touched
    roles.delete_run(ADA, ada_run)         # the owner may
    roles.stop_run(TEACHER, bo_run)        # the teacher may
    assert runs.cancel_requested(bo_run)
    roles.delete_run(TEACHER, bo_run)
    assert runs.list_runs() == []


def test_a_forged_owner_name_is_not_ownership(classroom):
    rid = _run_of(ADA)
    impostor = roles.User("ada", roles.user_id("x" * 32))  # same name, another browser's token
    with pytest.raises(roles.PermissionDenied):
        roles.delete_run(impostor, rid)


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
        jobs.submit(huge, user=ADA)
    with pytest.raises(roles.PermissionDenied, match="40 epochs asked; the class limit is 30"):
        jobs.submit(run_spec(MLPConfig(), TrainConfig(epochs=40)), user=ADA)
    assert runs.list_runs() == []  # refused before any run exists
    # training time is capped, not refused
    spec = roles.check_submit(ADA, run_spec(MLPConfig(), TrainConfig(epochs=2)))
    assert spec["train_config"]["max_seconds"] == 900.0
    # runs at once per student
    for _ in range(2):
        _run_of(ADA, status="queued")
    with pytest.raises(roles.PermissionDenied, match="already have 2 run"):
        roles.check_submit(ADA, run_spec(MLPConfig(), TrainConfig(epochs=2)))
    roles.check_submit(BO, run_spec(MLPConfig(), TrainConfig(epochs=2)))  # another student may
    roles.check_submit(TEACHER, huge)  # the teacher has no class limits


@pytest.mark.slow
def test_the_queue_is_first_come_first_served_across_students(classroom):
    """Three tiny runs of two students through jobs.submit with one slot: they wait with the
    right positions, run one at a time, in launch order, and all finish."""
    roles.set_class_settings(TEACHER, max_concurrent=1)
    spec = run_spec(MLPConfig(hidden=(16,)), TrainConfig(epochs=1, batch_size=256, device="cpu"),
                    train_limit=3000)
    ids = []
    for user in (ADA, BO, ADA):
        ids.append(jobs.submit(spec, label="tiny", user=user))
        time.sleep(0.05)
    seen_positions, overlap = set(), False
    deadline = time.time() + 240
    while time.time() < deadline:
        rs = {r["run_id"]: r for r in runs.list_runs()}
        running = [i for i in ids if rs[i]["status"] == "running"]
        overlap |= len(running) > 1
        for i in ids:
            if rs[i]["status"] == "queued" and rs[i]["status_info"].get("queue_position"):
                seen_positions.add((ids.index(i), rs[i]["status_info"]["queue_position"]))
        if all(rs[i]["status"] not in runs.ACTIVE for i in ids):
            break
        time.sleep(0.3)
    rs = {r["run_id"]: r for r in runs.list_runs()}
    assert [rs[i]["status"] for i in ids] == ["finished"] * 3, [rs[i]["status_info"] for i in ids]
    assert not overlap
    started = [rs[i]["status_info"]["started"] for i in ids]
    assert started == sorted(started)  # first come, first served
    assert (2, 2) in seen_positions or (2, 1) in seen_positions  # the third waited with its place shown
    assert [rs[i]["owner"] for i in ids] == ["ada", "bo", "ada"]
