"""What delete does (fmnist_core/trash.py, roles.py): a student's delete hides the run, the
teacher can restore it, and the teacher's purge removes its record and every file for good;
and hide_run is the teacher's alone. Real embedded stores, real files on disk."""
from __future__ import annotations

import pytest

from conftest import ADA, BO, TEACHER, classroom, random_checkpoint  # noqa: F401 (a fixture)
from fmnist_core import roles, runs, submit, trash
from fmnist_core.errors import WorkbenchError
from fmnist_core.spec import run_spec
from fmnist_core.models import MLPConfig
from fmnist_core.train import TrainConfig

def _finished_run_with_files(tmp_path, user=ADA) -> tuple[str, list]:
    cfg = MLPConfig(hidden=(8,))
    rid = runs.create_run(run_spec(cfg, TrainConfig(epochs=1)), label="x", owner=user.name, owner_id=user.id)
    ckpt = random_checkpoint(tmp_path / "best.pt", cfg)
    runs.store().client.log_artifact(rid, str(ckpt))
    runs.set_status(rid, "finished")
    r = runs.load_run(rid, history=False)
    art = runs._local_artifacts(r["artifact_uri"])
    work = runs.work_dir(rid)
    (work / "best.pt").write_bytes(ckpt.read_bytes())
    cache = runs.ARTIFACTS / "cache" / "runs" / rid
    cache.mkdir(parents=True)
    (cache / "best.pt").write_bytes(ckpt.read_bytes())
    copies = [art / "best.pt", work / "best.pt", cache / "best.pt"]
    assert all(p.is_file() for p in copies)  # the three copies of best.pt the review found
    return rid, copies


def test_delete_hides_the_teacher_restores_and_purge_removes_for_good(classroom, tmp_path):
    rid, copies = _finished_run_with_files(tmp_path)
    (tmp_path / "bo").mkdir()
    keep, keep_copies = _finished_run_with_files(tmp_path / "bo", BO)
    submit.delete_run(ADA, rid)
    assert rid not in {r["run_id"] for r in runs.list_runs()}
    assert [r["run_id"] for r in trash.deleted_runs()] == [rid]
    assert all(p.is_file() for p in copies)  # a delete alone is undoable: nothing removed yet
    for who in (ADA, BO):  # not even the owner restores or purges
        with pytest.raises(roles.PermissionDenied, match="only the teacher"):
            submit.restore_run(who, rid)
        with pytest.raises(roles.PermissionDenied, match="only the teacher"):
            submit.purge_deleted(who)
    submit.restore_run(TEACHER, rid)
    assert runs.load_run(rid, history=False)["status"] == "finished" and trash.deleted_runs() == []
    submit.delete_run(ADA, rid)
    assert submit.purge_deleted(TEACHER) == [rid]
    assert not any(p.exists() for p in copies)  # every copy of the checkpoint is gone
    with pytest.raises(WorkbenchError, match="no run named"):
        runs.get_run(rid)
    with pytest.raises(WorkbenchError, match="no deleted run"):
        submit.restore_run(TEACHER, rid)  # the record itself is gone from the store
    assert trash.deleted_runs() == [] and submit.purge_deleted(TEACHER) == []
    assert all(p.is_file() for p in keep_copies)  # another's run is untouched
    assert runs.load_run(keep, history=False)["status"] == "finished"


def test_purge_on_a_tracking_server_says_who_does_it(classroom, monkeypatch, tmp_path):
    rid, _ = _finished_run_with_files(tmp_path)
    submit.delete_run(ADA, rid)
    monkeypatch.setattr(runs, "is_embedded", lambda uri=None: False)
    with pytest.raises(WorkbenchError, match="its administrator: `mlflow gc"):
        submit.purge_deleted(TEACHER)


def test_hiding_a_run_is_the_teachers_alone(classroom, tmp_path):
    rid, _ = _finished_run_with_files(tmp_path)
    for who in (ADA, BO):  # the owner neither: the leaderboard is the teacher's
        with pytest.raises(roles.PermissionDenied, match="only the teacher can hide runs"):
            submit.hide_run(who, rid)
    assert runs.get_run(rid).data.tags.get("fmnist.hidden") is None
    submit.hide_run(TEACHER, rid)
    assert runs.get_run(rid).data.tags["fmnist.hidden"] == "1"
    submit.hide_run(TEACHER, rid, hidden=False)
    assert runs.get_run(rid).data.tags["fmnist.hidden"] == "0"
