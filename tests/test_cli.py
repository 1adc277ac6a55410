import json

import pytest

from conftest import run_cli


def test_data_command_reports_real_counts():
    p = run_cli("data")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["train"] == 60000 and out["test"] == 10000
    assert out["train_class_counts"] == [6000] * 10 and out["test_class_counts"] == [1000] * 10
    assert out["source"]


def test_train_evaluate_runs_round_trip(store):
    p = run_cli("train", "--preset", "mlp-seed000", "--epochs", "1", "--train-limit", "8000")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert set(out) >= {"run_id", "status", "test_accuracy", "best_val_accuracy",
                        "epochs_run", "train_seconds", "checkpoint"}
    assert out["status"] == "finished" and out["epochs_run"] == 1 and out["test_accuracy"] > 0.7
    assert "epoch 1/1" in p.stderr  # human progress goes to stderr
    e = run_cli("evaluate", out["checkpoint"])
    assert e.returncode == 0, e.stderr
    ev = json.loads(e.stdout)
    assert abs(ev["accuracy"] - out["test_accuracy"]) < 1e-9
    assert len(ev["confusion_matrix"]) == 10 and len(ev["per_class"]) == 10
    listed = json.loads(run_cli("runs").stdout)  # the same store, read back
    assert [(r["run_id"], r["status"], r["test_accuracy"]) for r in listed] == [
        (out["run_id"], "finished", out["test_accuracy"])]


def test_runs_lists_presets():
    p = run_cli("runs", "--presets")
    names = {x["name"]: x for x in json.loads(p.stdout)}
    assert names["mlp-seed000"]["parameters"] == 101770


@pytest.mark.parametrize("args,msg", [
    (("train", "--preset", "mlp-seed000", "--lr", "-1"), "learning rate"),
    (("train", "--preset", "mlp-seed000", "--epochs", "0"), "epochs"),
    (("train", "--preset", "no-such"), "unknown preset"),
    (("train", "--preset", "mlp-seed000", "--channels", "3"), "CNN options"),
    (("evaluate", "/nonexistent/x.pt"), "checkpoint not found"),
    (("runs", "--delete", "nope"), "no run named"),
    (("train", "--preset", "cnn-seed003", "--engine", "numpy"), "trains MLPs and ResNets only"),
])
def test_errors_are_one_clear_line(args, msg):
    p = run_cli(*args)
    assert p.returncode != 0
    assert msg in p.stderr and "Traceback" not in p.stderr
    assert p.stderr.strip().count("\n") == 0


def test_help_lists_every_command():
    p = run_cli("--help")
    assert p.returncode == 0, p.stderr
    for name in ("data", "train", "evaluate", "runs", "compare", "bench", "predict", "bench-train"):
        assert f"    {name} " in p.stdout, name
