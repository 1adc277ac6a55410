"""Leaderboard and run labels (fmnist_core/views/leaderboard.py, labels.py) on run records as
the store returns them."""
from fmnist_core.models import PRESETS, config_to_dict
from fmnist_core.train import TrainConfig, train_config_to_dict
from fmnist_core.views.labels import changes, model_summary, run_label
from fmnist_core.views.leaderboard import board, parallel_figure


def _run(rid, owner, preset="mlp-seed000", acc=None, secs=None, hidden=False, status="finished", **train):
    p = PRESETS[preset]
    tc = {**train_config_to_dict(TrainConfig(**p["train"])), **train}
    return {"run_id": rid, "owner": owner, "hidden": hidden, "status": status,
            "config": {"preset": preset, "model_config": config_to_dict(p["model"]), "train_config": tc},
            "status_info": {"test_accuracy": acc, "train_seconds": secs, "epochs_run": tc["epochs"]}}


def test_label_names_owner_preset_and_what_differs():
    r = _run("a", "ada", lr=0.01, epochs=5)
    assert run_label(r) == "ada · mlp-seed000 · epochs 5, lr 0.01"
    assert run_label(_run("b", "bo")) == "bo · mlp-seed000"
    assert changes(r["config"]) == [("epochs", 10, 5), ("lr", 0.001, 0.01)]
    assert model_summary(r["config"]["model_config"]) == "MLP 784-128-10"
    assert model_summary(config_to_dict(PRESETS["cnn-fast"]["model"])).startswith("CNN ")


def test_board_ranks_by_accuracy_then_seconds_and_hides():
    runs = [_run("slow", "ada", acc=0.88, secs=100), _run("fast", "bo", acc=0.88, secs=40),
            _run("best", "cy", acc=0.91, secs=300), _run("training", "di", status="running"),
            _run("hid", "ed", acc=0.99, secs=1, hidden=True)]
    df = board(runs)
    assert list(df["run_id"]) == ["best", "fast", "slow"] and list(df["rank"]) == [1, 2, 3]
    assert df.loc[0, "parameters"] == 101_770
    assert list(board(runs, show_hidden=True)["run_id"])[0] == "hid"
    fig = parallel_figure(df)
    labels = [d["label"] for d in fig.data[0]["dimensions"]]
    assert labels[-1] == "test accuracy %" and "learning rate (log)" in labels
    assert board([]).empty
