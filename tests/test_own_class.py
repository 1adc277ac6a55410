"""A class of your own (fmnist_core/own_class.py) in the web process: one training at a time, and a
student who waited too long gets a sentence, not a spinner; what a training stores with the run
(the 11x11 confusion matrix), on real pictures and the real features of the first 1,000
Fashion-MNIST images of each split. The page, end to end, is tests/test_browser_own.py."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from conftest import ADA, BO, link_features, star_png
from fmnist_core import own_class, runs
from fmnist_core.data import CLASSES
from fmnist_core.errors import WorkbenchError


def test_a_second_training_waits_its_turn_and_is_told_when_it_waited_too_long(monkeypatch):
    monkeypatch.setattr(own_class, "WAIT_S", 0.2)
    calls = []
    monkeypatch.setattr(own_class, "_train_own", lambda *a: calls.append(a) or {"ok": True})
    held = threading.Event()
    release = threading.Event()

    def busy():  # another student's training, holding the server's one turn
        with own_class._ONE_AT_A_TIME:
            held.set()
            release.wait(5)
    t = threading.Thread(target=busy)
    t.start()
    held.wait(5)
    try:
        with pytest.raises(WorkbenchError, match="busy training other students"):
            own_class.train_own([b"x"] * 15, "cap")
        assert calls == []
    finally:
        release.set()
        t.join()
    assert own_class.train_own([b"x"] * 15, "cap") == {"ok": True}  # its turn once the other ended
    assert len(calls) == 1


def test_the_stored_matrix_counts_the_held_out_pictures_in_the_new_class_row(store, tmp_path, lite0_features, ds):
    link_features(lite0_features, tmp_path)
    result = own_class.train_own([star_png(i) for i in range(12)], "star", data=ds)
    held = result["held_out"]
    assert len(held) == 4  # a third of 12
    run = runs.load_summary(own_class.save_run(result, ADA))
    stored = own_class.details(run, ADA)  # read back from the run's own_class.json
    cm = np.asarray(stored["confusion_matrix"])
    assert cm.shape == (11, 11)
    # the new class's row: exactly the held-out pictures, spread as the model called them
    names = CLASSES + ("star",)
    assert cm[10].tolist() == [result["held_predicted"].count(c) for c in names]
    assert cm[10].sum() == len(held) and cm[10, 10] == round(result["own_accuracy"] * len(held))
    # the ten classes' rows: every test image once, in its true row; the diagonal is the accuracy
    y = ds.y_test[:result["test_images"]]
    assert cm[:10].sum(1).tolist() == np.bincount(y, minlength=10).tolist()
    assert np.trace(cm[:10, :10]) == round(result["ten_accuracy_with"] * len(y))
    with pytest.raises(WorkbenchError, match="another student's"):
        own_class.details(run, BO)
