"""The class against the network (fmnist_core/humans.py): answers stored per student in a real
run store, and the projector's figures recomputed here independently (numpy loops, sklearn's
confusion matrix, the shipped CNN run by hand) from the real test images."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix

from fmnist_core import humans, roles, runs
from fmnist_core.models import load_model
from fmnist_core.views.shared import SHIPPED_DIR

ADA = roles.User("Ada", roles.user_id("a" * 32))
BO = roles.User("Bo", roles.user_id("b" * 32))
CY = roles.User("Cy", roles.user_id("c" * 32))
TEACHER = roles.User("Teacher", roles.user_id("t" * 32), teacher=True)
SHIRT, TSHIRT = 6, 0


@pytest.fixture
def classroom(store, monkeypatch):
    monkeypatch.setenv("FMNIST_TEACHER_PASSWORD", "pw")
    return store


@pytest.fixture(scope="module")
def cnn():
    return load_model(SHIPPED_DIR / "cnn.pt")


def test_image_sets(ds):
    act = humans.Activity()
    a = humans.image_set(act, ADA.id, ds.y_test)
    assert len(a) == len(set(a)) == 20
    assert np.bincount(ds.y_test[a], minlength=10).tolist() == [2] * 10  # two of each class
    assert humans.image_set(act, BO.id, ds.y_test) == a                    # the same for the class
    own = humans.Activity(same_set=False)
    assert humans.image_set(own, ADA.id, ds.y_test) != humans.image_set(own, BO.id, ds.y_test)
    assert humans.image_set(own, ADA.id, ds.y_test) == humans.image_set(own, ADA.id, ds.y_test)
    assert humans.image_set(humans.Activity(seed=1), ADA.id, ds.y_test) != a
    assert len(humans.image_set(humans.Activity(n_images=13), ADA.id, ds.y_test)) == 13


def test_answers_are_stored_per_student_bounded_and_apart_from_runs(classroom, ds):
    y = ds.y_test
    mine = humans.image_set(humans.activity(), ADA.id, y)
    outside = next(i for i in range(10_000) if i not in mine)
    with pytest.raises(humans.WorkbenchError, match=f"test image {outside} is not in your set"):
        humans.record_answer(ADA, y, outside, 3)
    with pytest.raises(humans.WorkbenchError, match="class number 0 to 9"):
        humans.record_answer(ADA, y, mine[0], 10)
    humans.record_answer(ADA, y, mine[0], 3)
    assert humans.record_answer(ADA, y, mine[0], 4) == {mine[0]: 4}  # a second answer replaces the first
    for i in mine:
        humans.record_answer(ADA, y, i, 1)
    assert len(humans.my_answers(ADA)) == 20          # bounded by the set, however often one clicks
    assert runs.list_runs() == []                      # never among the training runs
    # the teacher only changes the activity; a new round leaves old answers stored but uncounted
    with pytest.raises(roles.PermissionDenied):
        humans.set_activity(ADA, seed=5)
    with pytest.raises(humans.WorkbenchError, match="1 to 100"):
        humans.set_activity(TEACHER, n_images=500)
    humans.set_activity(TEACHER, seed=5, show_names=True)
    assert humans.activity() == humans.Activity(seed=5, show_names=True)
    assert humans.my_answers(ADA) == {} and humans.class_answers() == []
    humans.set_activity(TEACHER, seed=0)
    assert len(humans.class_answers()[0]["answers"]) == 20
    # two tabs of Ada's racing to make her run: the second is never read nor written
    import json
    client = runs.store().client
    dup = client.create_run(humans._experiment_id(), start_time=2**41,
                            tags={humans.OWNER_ID_TAG: ADA.id, humans.OWNER_TAG: "Ada",
                                  humans.ANSWERS_TAG: json.dumps({"round": "0-20-same", "answers": {str(mine[0]): 9}})})
    humans.record_answer(ADA, y, mine[1], 2)
    assert [(s["name"], len(s["answers"]), s["answers"][mine[1]]) for s in humans.class_answers()] == [("Ada", 20, 2)]
    assert dup.info.run_id
    with pytest.raises(roles.PermissionDenied):
        humans.clear_answers(BO)
    assert humans.clear_answers(TEACHER) == 2 and humans.class_answers() == []


def test_network_answers_match_the_model_run_by_hand(ds, cnn):
    idx = humans.image_set(humans.Activity(), ADA.id, ds.y_test)
    got = humans.network_answers(cnn, ds.x_test, ds.y_test, idx)
    with torch.no_grad():
        p = cnn.eval()(torch.from_numpy(ds.x_test[idx].astype(np.float32)[:, None] / 255.0)).softmax(1).numpy()
    assert [got[i][0] for i in idx] == p.argmax(1).tolist()
    np.testing.assert_allclose([got[i][1] for i in idx], p[np.arange(len(idx)), ds.y_test[idx]], atol=1e-5)


def test_class_figures_from_stored_answers(classroom, ds, cnn):
    y = ds.y_test
    idx = humans.image_set(humans.activity(), ADA.id, y)
    net = humans.network_answers(cnn, ds.x_test, y, idx)
    rng = np.random.default_rng(7)
    given = {
        # Ada: right, except that she calls the Shirts T-shirts (do people?)
        ADA: {i: (TSHIRT if y[i] == SHIRT else int(y[i])) for i in idx},
        # Bo: only half of the images, answering what the network answers
        BO: {i: net[i][0] for i in idx[:10]},
        # Cy: guesses
        CY: {i: int(rng.integers(10)) for i in idx},
    }
    for user, answers in given.items():
        for i, a in answers.items():
            humans.record_answer(user, y, i, a)
    stored = humans.class_answers()
    assert [s["name"] for s in stored] == ["Ada", "Bo", "Cy"]
    f = humans.class_figures(stored, y, net)

    # recomputed here, independently
    acc = [np.mean([a == y[i] for i, a in given[u].items()]) for u in (ADA, BO, CY)]
    assert [s["accuracy"] for s in f["students"]] == pytest.approx(acc)
    assert f["students"][0]["accuracy"] == pytest.approx(0.9)  # 2 Shirts of 20 called T-shirt
    assert f["mean"] == pytest.approx(np.mean(acc)) and f["spread"] == pytest.approx(np.std(acc))
    votes, score = {}, []
    for i in idx:
        counts = np.bincount([given[u][i] for u in (ADA, BO, CY) if i in given[u]], minlength=10)
        votes[i] = tuple(np.flatnonzero(counts == counts.max()).tolist())
        score.append(counts[y[i]] == counts.max() and 1 / len(votes[i]))  # a fair draw among the tied
    assert f["votes"] == votes
    assert f["majority"] == pytest.approx(np.mean(score))
    pairs = [(int(y[i]), a) for u in (ADA, BO, CY) for i, a in given[u].items()]
    np.testing.assert_array_equal(f["human_confusion"],
                                  confusion_matrix([t for t, _ in pairs], [a for _, a in pairs], labels=range(10)))
    assert f["human_confusion"][SHIRT, TSHIRT] >= 2
    np.testing.assert_array_equal(f["network_confusion"],
                                  confusion_matrix(y[idx], [net[i][0] for i in idx], labels=range(10)))
    assert f["network"] == pytest.approx(np.mean([net[i][0] == y[i] for i in idx]))
    # Bo answered what the network answered: his score is the network's on his 10 images
    assert f["students"][1]["accuracy"] == f["students"][1]["network_accuracy"]
    # hardest for the class: the most wrong answers first; for the network: what it got wrong
    shares = [h["wrong_share"] for h in f["hardest_humans"]]
    assert shares == sorted(shares, reverse=True) and shares[0] > 0
    assert all(net[h["index"]][0] != y[h["index"]] for h in f["hardest_network"])
    assert len(f["hardest_network"]) == min(8, sum(net[i][0] != y[i] for i in idx))


def test_majority_vote_and_its_ties():
    votes = humans.majority_vote({1: [3, 5], 2: [7, 7, 2], 3: [9]})
    assert votes == {1: (3, 5), 2: (7,), 3: (9,)}
    # true classes 5, 2, 9: a tie with the truth in it scores 1/2, a lost vote 0, a won vote 1
    assert humans.vote_accuracy(votes, np.array([0, 5, 2, 9])) == pytest.approx((0.5 + 0 + 1) / 3)
    assert humans.vote_accuracy({}, np.array([0])) is None
