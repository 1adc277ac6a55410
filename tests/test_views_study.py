"""The study's answer in words (fmnist_core/views/study.py) on crafted points: the best point
against the next with their uncertainty, the spread across seeds larger than the effect, one
seed per point, a seed's reported figure beside ours, a metric to minimise; and the Pareto front."""
from __future__ import annotations

import statistics

from fmnist_core.views.study import pareto, reproduce_row, sentence


def point(label, values, seconds=1.0, parameters=1000):
    """A point as views.study.points makes it, from its seeds' values."""
    return {"label": label, "n": len(values), "mean": statistics.fmean(values) if values else None,
            "std": statistics.stdev(values) if len(values) > 1 else None, "seconds": seconds,
            "parameters": parameters}


def test_a_clear_effect_is_named_with_both_uncertainties():
    pts = [point("depth=1", [0.880, 0.882, 0.884]), point("depth=2", [0.890, 0.892, 0.894]),
           point("depth=3", [0.860, 0.861, 0.862])]
    s = sentence("test_accuracy", pts)
    assert s == ("depth=2 is best on test accuracy: 89.2 ± 0.2% vs 88.2 ± 0.2% for depth=1: a difference "
                 "of 1.0 points, larger than the spread across seeds (0.2 points).")


def test_a_spread_larger_than_the_effect_is_said_so():
    # the example: a third hidden layer adds nothing, 89.0 ± 0.2% vs 88.9 ± 0.3%
    pts = [point("depth=2", [0.888, 0.890, 0.892]), point("depth=3", [0.886, 0.889, 0.892])]
    s = sentence("test_accuracy", pts)
    assert s.startswith("depth=2 is best on test accuracy: 89.0 ± 0.2% vs 88.9 ± 0.3% for depth=3.")
    assert "The spread across seeds (0.3 points) is larger than the effect (0.1 points): on this evidence " \
           "the two do not differ." in s


def test_one_seed_per_point_says_the_spread_is_unknown():
    s = sentence("test_accuracy", [point("lr=0.001", [0.85]), point("lr=0.01", [0.84])])
    assert "spread across seeds is unknown" in s and "85.0%" in s and "84.0%" in s


def test_seconds_are_best_when_lowest():
    s = sentence("train_seconds", [point("batch_size=32", [20.0, 22.0]), point("batch_size=256", [5.0, 5.2])])
    assert s.startswith("batch_size=256 is best on train seconds: 5.1 ± 0.1 s vs 21.0 ± 1.4 s for batch_size=32")


def test_a_seeds_reported_figure_agrees_or_not():
    ours = [point("the model", [0.8880, 0.8890, 0.8870])]
    assert sentence("test_accuracy", ours, reported=88.88) == \
        "Ours, 88.8 ± 0.1% over 3 seeds, agrees with the reported 88.88%."
    low = [point("the model", [0.860, 0.861, 0.862])]
    assert sentence("test_accuracy", low, reported=88.88) == \
        "Ours, 86.1 ± 0.1% over 3 seeds, is 2.8 points below the reported 88.88%: they do not agree."


def test_nothing_finished_and_one_point_finished():
    assert sentence("test_accuracy", [point("depth=1", [])]).startswith("No trial has finished yet")
    s = sentence("test_accuracy", [point("depth=1", [0.8]), point("depth=2", [])])
    assert s == "depth=1: 80.0% (test accuracy); no other point has finished yet."


def test_the_pareto_front_keeps_only_the_unbeaten():
    a = point("a", [0.90], seconds=10, parameters=100_000)
    b = point("b", [0.88], seconds=2, parameters=10_000)   # cheaper: on the front
    c = point("c", [0.87], seconds=5, parameters=50_000)   # beaten by b on all three
    assert [p["label"] for p in pareto([a, b, c])] == ["a", "b"]


def _seed_study(reported=87.45, seeds=3, epochs=10):
    from fmnist_core.studies import Study
    return Study("reproduce-seed001", {}, "test_accuracy", seeds, "grid", "none", 0, 0.0,
                 {"train_config": {"epochs": epochs}}, "teacher", "t", False, 0.0, "", "seed001", reported)


def test_the_reproduce_table_puts_the_seeds_figure_beside_ours_with_the_sentences_rule():
    st = _seed_study()
    # 0.55 points above with a spread of 0.1: the std is floored at 0.3 points, so 2 x 0.3 covers it
    ours = [point("the model", [0.8800, 0.8790, 0.8810])]
    assert reproduce_row(st, ours) == {
        "experiment": "seed 001: 784-128-64-10, batch 32, 10 epochs", "reported": "87.45%",
        "ours": "88.0 ± 0.1%", "seeds": "3 of 3", "epochs": 10, "verdict": "agrees", "study": "reproduce-seed001"}
    assert "agrees with the reported 87.45%" in sentence("test_accuracy", ours, reported=87.45)
    # 1.0 point below, a spread of 0.05: past 2 x the floor; the sentence says the same
    low = [point("the model", [0.8640, 0.8645, 0.8650])]
    assert reproduce_row(st, low)["verdict"] == "does not agree (1.0 points below)"
    assert sentence("test_accuracy", low, reported=87.45).endswith("they do not agree.")
    # a wide spread across seeds makes a 1.0-point gap agree (2 x 0.6 points)
    wide = [point("the model", [0.8585, 0.8645, 0.8705])]
    assert reproduce_row(st, wide)["verdict"] == "agrees"
    assert "agrees" in sentence("test_accuracy", wide, reported=87.45)
    # one seed of three finished; nothing finished yet: no verdict
    assert reproduce_row(st, [point("the model", [0.8700])])["seeds"] == "1 of 3"
    assert reproduce_row(st, [point("the model", [])])["verdict"] == "—"
