"""Leaderboard and run labels (fmnist_core/views/leaderboard.py, labels.py) on run records as
the store returns them."""
from fmnist_core.models import PRESETS, config_to_dict
from fmnist_core.train import TrainConfig, train_config_to_dict
from fmnist_core.views.labels import changes, model_summary, run_label
from fmnist_core.views.leaderboard import board, constant_settings, hidden_note, parallel_figure, table, visible


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
    # the teacher's board: the hidden run listed last, unranked and marked; the ranks are the students'
    t = board(runs, show_hidden=True)
    assert list(t["run_id"]) == ["best", "fast", "slow", "hid"] and list(t["rank"][:3]) == [1, 2, 3]
    assert t["rank"].isna().iloc[-1] and list(visible(t)["run_id"]) == list(df["run_id"])
    assert list(table(t, teacher=True)["board"]) == ["shown", "shown", "shown", "HIDDEN"]
    assert "board" not in table(df) and "ed · MLP 784-128-10 · 99.00%" in hidden_note(t) and hidden_note(df) == ""
    assert board([]).empty


def test_parallel_chart_and_table_leave_out_what_all_runs_share():
    runs = [_run("a", "ada", acc=0.88, secs=100, lr=0.01), _run("b", "bo", acc=0.90, secs=40),
            _run("c", "cy", "cnn-fast", acc=0.91, secs=300)]
    df = board(runs)
    same = constant_settings(df)
    # "all runs: ..." holds exactly the settings with one value across the three runs
    for key, text in same.items():
        assert df[key].astype(str).nunique() == 1, key
    assert "model" not in " ".join(same.values())  # two kinds: an axis with their names
    fig = parallel_figure(df)
    dims = {d["label"]: d for d in fig.data[0]["dimensions"]}
    assert list(dims["model"]["ticktext"]) == ["cnn", "mlp"]
    assert dims["learning rate (log)"] and list(dims)[-1] == "test accuracy %"
    assert not any(label.startswith(v.split(" ")[0]) for v in same.values() for label in dims if label != "model")
    assert not set(same) & set(table(df).columns)
    # two MLPs that differ only in the learning rate: one axis besides seconds and accuracy
    two = board(runs[:2])
    assert constant_settings(two)["batch_size"] == "batch size 64"
    assert [d["label"] for d in parallel_figure(two).data[0]["dimensions"]] == [
        "learning rate (log)", "seconds", "test accuracy %"]


def test_download_names_say_owner_preset_changes_and_date():
    """Issue 25, item 12: downloads named by what the run is, in characters any system accepts."""
    from fmnist_core.views.labels import file_stem, safe_name
    r = _run("912f0c4f", "Zoë O'Neil", lr=0.01, epochs=5)
    r["config"]["created"] = 1764925920.0  # 2025-12-05 09:12 UTC
    stem = file_stem(r)
    assert stem == "Zoe-O-Neil_mlp-seed000_epochs-5-lr-0.01_2025-12-05-0912", stem
    assert "912f0c4f" not in stem
    assert safe_name("../../etc/passwd", "run") == "etc-passwd" and safe_name("...", "run") == "run"
    assert file_stem({"config": {}}) == "MLP-784-10"
