"""fmnist_core.diagnose: each rule on a crafted history, a healthy run that gets no warning,
and a real short run with learning rate 10 that must be told its learning rate is too high."""
import pytest

from fmnist_core import models
from fmnist_core.diagnose import diagnose
from fmnist_core.evaluate import evaluate
from fmnist_core.train import TrainConfig, train


def _rows(train_acc, val_acc=None, train_loss=None, val_loss=None, split="val"):
    rows = []
    for i, ta in enumerate(train_acc):
        row = {"epoch": i + 1, "train_accuracy": ta,
               "train_loss": train_loss[i] if train_loss else 1.5 - ta}
        if val_acc:
            row[f"{split}_accuracy"] = val_acc[i]
            row[f"{split}_loss"] = val_loss[i] if val_loss else 1.5 - val_acc[i]
        rows.append(row)
    return rows


def _rules(findings, severities=("error", "warning", "info")):
    return {f.rule for f in findings if f.severity in severities}


def test_a_healthy_run_gets_no_warning():
    h = _rows([0.82, 0.87, 0.89, 0.90], [0.84, 0.87, 0.885, 0.89])
    f = diagnose(h, test_accuracy=0.885, lr=1e-3)
    assert _rules(f) == set() and [x.rule for x in f] == ["healthy"]
    assert f[0].severity == "ok" and "88.5%" in f[0].text


def test_near_chance_says_the_learning_rate_is_too_high():
    # the example: lr 10 ends at 12.8% under a green "finished" box
    h = _rows([0.10, 0.11], [0.10, 0.10], train_loss=[2.4, 2.35], val_loss=[2.31, 2.31])
    f = diagnose(h, test_accuracy=0.128, lr=10)
    assert f[0].severity == "error" and f[0].rule == "chance"
    assert "12.8%" in f[0].text and "learning rate is too high (now 10)" in f[0].text


def test_diverged_run_is_an_error_about_the_learning_rate():
    f = diagnose(_rows([0.3]), status="diverged", lr=5)
    assert f[0].rule == "diverged" and f[0].severity == "error" and "too high (now 5)" in f[0].text


@pytest.mark.parametrize("losses,severity", [([0.6, 0.5, 0.45, 0.7], "warning"), ([0.6, 0.9, 1.8], "error")],
                         ids=["rising", "exploding"])
def test_rising_or_exploding_training_loss(losses, severity):
    h = _rows([0.8] * len(losses), train_loss=losses)
    f = [x for x in diagnose(h, lr=0.5) if x.rule == "loss_rising"]
    assert len(f) == 1 and f[0].severity == severity and "learning rate (now 0.5)" in f[0].text


def test_training_far_above_validation_is_overfitting():
    h = _rows([0.90, 0.95, 0.98], [0.88, 0.89, 0.89])
    f = diagnose(h, test_accuracy=0.885)
    assert _rules(f) == {"overfitting"}
    assert "98.0%" in f[0].text and "89.0%" in f[0].text and "dropout" in f[0].text


def test_validation_loss_climbing_is_overfitting_beginning():
    h = _rows([0.88, 0.90, 0.91, 0.92], [0.88, 0.89, 0.89, 0.895], val_loss=[0.33, 0.30, 0.32, 0.36])
    f = diagnose(h)
    assert _rules(f) == {"overfitting"} and "lowest at epoch 2" in f[0].text


def test_both_low_and_still_rising_says_train_longer():
    h = _rows([0.70, 0.76, 0.80], [0.72, 0.78, 0.81])
    f = diagnose(h, test_accuracy=0.80)
    assert _rules(f) == {"train_longer"} and f[0].severity == "info" and "more epochs" in f[0].text
    # the same curves flat at the end: nothing to say
    assert _rules(diagnose(_rows([0.70, 0.80, 0.80], [0.72, 0.81, 0.81]))) == set()


def test_without_validation_the_watched_test_split_is_the_held_out_one():
    h = _rows([0.90, 0.95, 0.99], [0.88, 0.89, 0.89], split="watch")
    f = diagnose(h, test_accuracy=0.89)
    assert _rules(f) == {"overfitting"} and "on the test images" in f[0].text
    assert [x.rule for x in diagnose(_rows([0.85, 0.9]))] == ["healthy"]  # no held-out split at all
    assert diagnose([]) == []


def test_a_real_run_with_learning_rate_10_is_told_its_learning_rate_is_too_high(ds):
    cfg = TrainConfig(epochs=2, batch_size=64, optimizer="adam", lr=10.0, device="cpu", threads=1)
    res = train(models.MLPConfig(hidden=(64,)), cfg, ds, train_limit=3000)
    test_acc = evaluate(res.model, ds.x_test, ds.y_test, top_misclassified=0)["accuracy"] \
        if res.status == "finished" else None
    f = diagnose(res.history, test_acc, res.status, cfg.lr)
    assert f[0].severity == "error" and f[0].rule in ("chance", "diverged", "loss_rising")
    assert "learning rate is too high (now 10)" in " ".join(x.text for x in f)
