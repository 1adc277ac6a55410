"""The class challenge (fmnist_core/challenge.py): rules checked on what crafted runs recorded,
then the ranking, the teacher-only setting and the CSV on a real run store."""
from __future__ import annotations

import csv
import io
import time

import pytest

from fmnist_core import challenge as ch, roles, runs
from fmnist_core.spec import run_spec
from fmnist_core.models import CNNConfig, MLPConfig
from fmnist_core.train import TrainConfig

ADA = roles.User("Ada", roles.user_id("a" * 32))
BO = roles.User("Bo", roles.user_id("b" * 32))
CY = roles.User("Cy", roles.user_id("c" * 32))
DEE = roles.User("Dee", roles.user_id("d" * 32))
TEACHER = roles.User("Teacher", roles.user_id("t" * 32), teacher=True)
T0 = 1_800_000_000.0

RULES = ch.Rules(max_parameters=50_000, kinds=("mlp",), max_seconds=120, no_augmentation=True,
                 engines=("numpy",))


def _crafted(model=MLPConfig(hidden=(32,)), engine="numpy", secs=60.0, created=T0, acc=0.9, **train):
    spec = run_spec(model, TrainConfig(**train), engine="torch")  # priced as submit prices it
    spec = {**spec, "engine": engine, "created": created}
    return {"run_id": "r", "owner": "Ada", "owner_id": ADA.id, "status": "finished", "config": spec,
            "status_info": {"test_accuracy": acc, "train_seconds": secs}}


def _challenge(**kw):
    return ch.Challenge(title="Small and fast", goal=0.85, rules=RULES, deadline=T0 + 3600,
                        start={"start": "mlp-seed000"}, opens=T0 - 3600, **kw).validate()


def test_an_obeying_run_breaks_nothing():
    assert ch.check_run(_challenge(), _crafted()) == []


def test_a_rule_broken_by_parameters():
    run = _crafted(model=MLPConfig(hidden=(128,)))  # 101,770 parameters
    assert [(b.rule, b.text) for b in ch.check_run(_challenge(), run)] == [
        ("parameters", "101,770 parameters, the rule allows 50,000")]
    # counted from the stored model config when the record has no priced count (older runs)
    del run["config"]["parameters"]
    assert [b.rule for b in ch.check_run(_challenge(), run)] == ["parameters"]


def test_a_rule_broken_by_engine_and_by_kind():
    broken = ch.check_run(_challenge(), _crafted(engine="torch"))
    assert [b.rule for b in broken] == ["engines"] and "torch engine" in broken[0].text
    cnn = _crafted(model=CNNConfig(channels=(4,), fc=()))
    assert "kinds" in [b.rule for b in ch.check_run(_challenge(), cnn)]


def test_a_rule_broken_by_seconds_and_by_augmentation():
    assert [str(b) for b in ch.check_run(_challenge(), _crafted(secs=120.5))] == [
        "training seconds: trained 120.5 s, the rule allows 120 s"]
    assert ch.check_run(_challenge(), _crafted(secs=120.0)) == []  # at most: the limit itself obeys
    no_secs = _crafted()
    del no_secs["status_info"]["train_seconds"]
    assert [b.rule for b in ch.check_run(_challenge(), no_secs)] == ["seconds"]
    assert [b.text for b in ch.check_run(_challenge(), _crafted(augment_shift=2))] == [
        "trained with shifts, the rule allows none"]


def test_a_rule_broken_by_lateness():
    late = _crafted(created=T0 + 3600 + 90)
    assert [(b.rule, b.text) for b in ch.check_run(_challenge(), late)] == [
        ("deadline", "launched 1 min 30 s after the deadline")]
    assert ch.is_late(_challenge(), late) and not ch.is_late(_challenge(), _crafted())
    assert ch.check_run(ch.Challenge(rules=RULES, deadline=None), late) == []  # no deadline, never late


def test_rules_read_the_record_not_anything_else():
    """Changing what a page would show (the label, the owner's name) changes nothing; changing
    the stored spec does."""
    run = _crafted()
    run["label"] = "tiny numpy mlp"
    assert ch.check_run(_challenge(), run) == []
    run["config"]["train_config"]["augment_flip"] = True
    assert [b.rule for b in ch.check_run(_challenge(), run)] == ["augmentation"]


def test_a_bad_challenge_is_one_sentence():
    with pytest.raises(Exception, match="goal is a test accuracy"):
        ch.Challenge(goal=92).validate()
    with pytest.raises(Exception, match="unknown model kind 'rnn'"):
        ch.Challenge(rules=ch.Rules(kinds=("rnn",))).validate()
    with pytest.raises(Exception, match="must name a preset"):
        ch.Challenge(start={"start": "nope"}).validate()


# --- on a real store --------------------------------------------------------------------------------

def _record(user, model, acc, secs, engine="numpy", **train):
    """A real record in the store, as submit creates it and the trainer ends it."""
    spec = run_spec(model, TrainConfig(epochs=1, **train), engine=engine)
    rid = runs.create_run(spec, label="entry", owner=user.name, owner_id=user.id)
    runs.set_status(rid, "finished", test_accuracy=acc, train_seconds=secs, epochs_run=1)
    return rid


def test_ranking_and_csv_on_a_real_store(store, monkeypatch):
    monkeypatch.setenv("FMNIST_TEACHER_PASSWORD", "pw")
    small = MLPConfig(hidden=(32,))                                # 25,450 parameters
    old = _record(ADA, small, 0.99, 10)                            # before the challenge: not an entry
    time.sleep(0.02)
    with pytest.raises(roles.PermissionDenied, match="only the teacher can set the class challenge"):
        ch.set_challenge(ADA, ch.Challenge(goal=0.85, rules=RULES))
    assert ch.get_challenge() is None
    c = ch.set_challenge(TEACHER, ch.Challenge(title="Small and fast", goal=0.85, rules=RULES,
                                               deadline=time.time() + 3600))
    assert ch.get_challenge() == c and c.opens > 0  # read back from the store, as another server would
    ada_ok = _record(ADA, small, 0.86, 30)
    ada_better = _record(ADA, small, 0.87, 40)
    bo_ok = _record(BO, small, 0.84, 20)
    bo_big = _record(BO, MLPConfig(hidden=(128,)), 0.97, 25)       # breaks the parameter rule
    cy_torch = _record(CY, small, 0.88, 15, engine="torch")       # breaks the engine rule
    # after the deadline: Bo launches once more (a better run, marked, that does not replace his
    # entry in time); Dee launches for the first time (her only entry: ranked, late, below)
    ch.set_challenge(TEACHER, ch.Challenge(**{**c.__dict__, "deadline": time.time()}))
    time.sleep(0.02)
    bo_late = _record(BO, small, 0.90, 20)
    dee_late = _record(DEE, small, 0.95, 20)
    t = ch.standings(ch.get_challenge(), runs.list_runs())
    ranked = [(r["rank"], r["student"], r["run_id"], r["late"], r["met"], r["late_best"]) for r in t["ranked"]]
    assert ranked == [(1, "Ada", ada_better, False, True, None), (2, "Bo", bo_ok, False, False, 0.90),
                      (3, "Dee", dee_late, True, True, None)]
    assert t["ranked"][0]["gap"] == 0.0 and t["ranked"][1]["gap"] == pytest.approx(0.01)
    assert {r["run_id"]: r["broken"] for r in t["broken"]} == {
        bo_big: ["parameters: 101,770 parameters, the rule allows 50,000"],
        cy_torch: ["engine: trained by the torch engine, the rule allows numpy only"]}
    assert old not in {r["run_id"] for r in t["ranked"] + t["broken"]} and ada_ok and bo_late

    rows = list(csv.DictReader(io.StringIO(ch.results_csv(t))))
    assert [r["student"] for r in rows] == ["Ada", "Bo", "Dee", "Cy"]
    assert rows[0] == {"student": "Ada", "best run": ada_better, "accuracy": "0.8700", "parameters": "25450",
                       "seconds": "40.0", "met goal": "yes", "late": "no", "note": ""}
    assert (rows[1]["best run"], rows[1]["late"], rows[1]["met goal"]) == (bo_ok, "no", "no")
    assert (rows[2]["best run"], rows[2]["late"], rows[2]["met goal"]) == (dee_late, "yes", "yes")
    assert rows[3]["best run"] == "" and rows[3]["note"] == "no run within the rules (broke: engine)"

    # a hidden run is no entry for the class; the teacher ends the challenge
    runs.set_hidden(ada_better, True)
    assert ch.standings(ch.get_challenge(), runs.list_runs())["ranked"][0]["run_id"] == ada_ok
    with pytest.raises(roles.PermissionDenied):
        ch.end_challenge(BO)
    ch.end_challenge(TEACHER)
    assert ch.get_challenge() is None
