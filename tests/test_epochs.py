"""fmnist_core.epochs: the contract both trainers share (events, statuses, messages, the best
epoch), tested on its own and through both trainers on the real dataset."""
import pytest

from fmnist_core import models
from fmnist_core.epochs import BestEpoch, EpochLog, diverged_message
from fmnist_core.train import TrainConfig, train
from fmnist_core.twin import train_numpy


def _log(**kw):
    events, best = [], []
    log = EpochLog(TrainConfig(**kw), events.append, lambda sd, row: best.append((sd, row["epoch"])))
    return log, events, best


def test_a_run_sends_start_batch_epoch_end_and_keeps_the_best_weights():
    log, events, best = _log(epochs=3, progress_every=2, patience=1)
    log.start(4, 256, 64, "cpu", "fp32")
    snapshots = iter([{"w": 1}, {"w": 2}, {"w": 3}])
    for epoch, acc in [(1, 0.5), (2, 0.7), (3, 0.6)]:
        for b in range(1, 5):
            assert not log.after_batch(epoch, b, 4, lambda: (1.0, 0.25 * b), should_stop=None)
        stop = log.end_epoch({"epoch": epoch, "val_accuracy": acc}, lambda: next(snapshots))
    assert stop and log.message.startswith("early stop after epoch 3") and "best was epoch 2" in log.message
    assert best == [({"w": 1}, 1), ({"w": 2}, 2)] and log.best_state == {"w": 2}
    res = log.finish(model=None, seconds=1.5, device="cpu", precision="fp32")
    assert res.status == "finished" and res.best_epoch == 2 and res.best_val_accuracy == 0.7
    assert res.epochs_run == 3 and res.message == log.message
    kinds = [e["event"] for e in events]
    assert kinds == ["start"] + (["batch"] * 2 + ["epoch"]) * 3 + ["end"]
    # a batch event is a point of the live curves: running loss and accuracy at a fractional epoch
    assert events[1] == {"event": "batch", "epoch": 1, "batch": 2, "steps": 4, "x": 0.5, "loss": 1.0,
                         "accuracy": 0.5, "elapsed": events[1]["elapsed"]}
    assert [e["x"] for e in events if e["event"] == "batch"] == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert events[3]["best_epoch"] == 1 and events[3]["epochs"] == 3 and "elapsed" in events[3]


def test_cancel_time_limit_and_divergence_say_why():
    log, events, _ = _log(epochs=2)
    assert log.after_batch(1, 10, 20, lambda: (0.0, 0.0), should_stop=lambda: True)
    assert (log.status, log.message) == ("cancelled", "cancelled in epoch 1, batch 10")
    assert not _log()[0].after_batch(1, 9, 20, lambda: (0.0, 0.0), should_stop=lambda: True)  # polled every 10

    log, _, _ = _log(max_seconds=1e-9)
    assert log.after_batch(2, 1, 20, lambda: (0.0, 0.0), should_stop=None)
    assert log.status == "finished" and log.message == "time limit of 1e-09 s reached in epoch 2"

    log, _, _ = _log(lr=0.5)
    log.diverged(3, 7)
    assert log.status == "diverged" and log.message == diverged_message(3, 7, 0.5)
    assert "epoch 3, batch 7" in log.message and "(now 0.5)" in log.message

    log, _, _ = _log()
    assert log.finish(None, 2.04, "cpu", "fp32").message == "finished 0 epochs in 2.0 s"


def test_on_the_loss_a_run_stops_sooner_and_keeps_an_earlier_epoch():
    """Seed 003's disagreement on a crafted history: the loss turns up after epoch 2 while the
    accuracy still creeps up to epoch 4."""
    rows = [(1, 0.80, 0.60), (2, 0.84, 0.45), (3, 0.85, 0.47), (4, 0.86, 0.50), (5, 0.855, 0.55)]
    ends = {}
    for on in ("val_accuracy", "val_loss"):
        log, _, best = _log(epochs=5, patience=2, early_stop_on=on)
        for epoch, acc, loss in rows:
            if log.end_epoch({"epoch": epoch, "val_accuracy": acc, "val_loss": loss}, lambda: {"w": epoch}):
                break
        res = log.finish(model=None, seconds=1.0, device="cpu", precision="fp32")
        ends[on] = (res.best_epoch, res.epochs_run, res.best_val_accuracy, [e for _, e in best], res.message)
    assert ends["val_accuracy"][:4] == (4, 5, 0.86, [1, 2, 3, 4])
    assert ends["val_accuracy"][4] == "finished 5 epochs in 1.0 s"
    # on the loss: best is epoch 2 (its accuracy is what the kept model scores), patience out after 4
    assert ends["val_loss"][:4] == (2, 4, 0.84, [1, 2])
    assert ends["val_loss"][4] == ("early stop after epoch 4: no better validation loss for 2 epochs; "
                                   "best was epoch 2")


# each trainer's own small run (seeded, one thread: the same every time) in which the two disagree
@pytest.mark.parametrize("trainer, limit, epochs, batch, lr", [(train, 500, 5, 50, 3e-3),
                                                               (train_numpy, 300, 10, 30, 1e-3)],
                         ids=["torch", "numpy"])
def test_both_trainers_keep_the_epoch_of_lowest_validation_loss(trainer, limit, epochs, batch, lr, ds):
    """A wide MLP on a few hundred real images overfits: its validation loss bottoms out epochs
    before its accuracy peaks. With early_stop_on="val_loss" the kept epoch is the loss's."""
    cfg = TrainConfig(epochs=epochs, batch_size=batch, lr=lr, val_fraction=0.05, early_stop_on="val_loss",
                      device="cpu", threads=1)
    res = trainer(models.MLPConfig(hidden=(256,)), cfg, ds, train_limit=limit)
    losses = [r["val_loss"] for r in res.history]
    accs = [r["val_accuracy"] for r in res.history]
    by_loss = losses.index(min(losses)) + 1
    assert by_loss != accs.index(max(accs)) + 1, (losses, accs)  # the run disagrees, so the test can tell
    assert res.best_epoch == by_loss and res.best_val_accuracy == accs[by_loss - 1]


def test_without_validation_every_epoch_is_the_best():
    b = BestEpoch(patience=1)
    assert b.update({"epoch": 1}) and b.update({"epoch": 2})
    assert b.best_epoch == 2 and b.best_val_accuracy is None and b.stop_message(2) == ""


@pytest.mark.parametrize("trainer", [train, train_numpy], ids=["torch", "numpy"])
def test_both_trainers_stop_at_the_time_limit_with_the_epoch_recorded(trainer, ds):
    events = []
    res = trainer(models.MLPConfig(hidden=(32,)), TrainConfig(epochs=3, max_seconds=1e-9, device="cpu"), ds,
                  callback=events.append, train_limit=640)
    assert res.status == "finished" and res.message == "time limit of 1e-09 s reached in epoch 1"
    assert res.epochs_run == 1 and res.best_epoch == 1 and "val_accuracy" in res.history[0]
    assert [e["event"] for e in events] == ["start", "epoch", "end"]


def test_messages_count_in_words():
    """'finished 1 epoch', 'for 1 epoch': never '1 epochs' (issue 14)."""
    log, _, _ = _log(epochs=1, patience=1)
    log.start(4, 256, 64, "cpu", "fp32")
    log.end_epoch({"epoch": 1, "val_accuracy": 0.5}, lambda: {"w": 1})
    assert log.finish(model=None, seconds=2.0, device="cpu", precision="fp32").message == "finished 1 epoch in 2.0 s"
    log, _, _ = _log(epochs=3, patience=1)
    log.start(4, 256, 64, "cpu", "fp32")
    for epoch, acc in [(1, 0.5), (2, 0.4)]:
        log.end_epoch({"epoch": epoch, "val_accuracy": acc}, lambda: {"w": epoch})
    assert "for 1 epoch;" in log.message



@pytest.mark.parametrize("trainer", [train, train_numpy], ids=["torch", "numpy"])
def test_both_trainers_send_curve_points_and_each_epochs_validation_confusion(trainer, ds):
    events = []
    cfg = TrainConfig(epochs=2, batch_size=64, progress_every=5, val_fraction=0.1, device="cpu")
    res = trainer(models.MLPConfig(hidden=(32,)), cfg, ds, callback=events.append, train_limit=640)
    pts = [e for e in events if e["event"] == "batch"]
    assert [p["x"] for p in pts] == [0.5, 1.0, 1.5, 2.0]  # 10 batches an epoch, a point every 5
    for epoch, row in enumerate(res.history, 1):
        end = pts[2 * epoch - 1]  # the running mean at the epoch's last batch is the epoch's figure
        assert end["loss"] == pytest.approx(row["train_loss"]) and end["accuracy"] == pytest.approx(row["train_accuracy"])
        assert 0 <= pts[2 * epoch - 2]["accuracy"] <= 1
        cm = row["val_confusion"]
        assert len(cm) == 10 and all(len(r) == 10 for r in cm) and sum(map(sum, cm)) == 6000
        assert sum(cm[i][i] for i in range(10)) / 6000 == pytest.approx(row["val_accuracy"], abs=1e-6)
    assert res.history[0]["val_confusion"] != res.history[1]["val_confusion"]
