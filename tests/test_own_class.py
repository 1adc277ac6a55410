"""A class of your own (fmnist_core/own_class.py) in the web process: one training at a time, and a
student who waited too long gets a sentence, not a spinner; what a training stores with the run
(the 11x11 confusion matrix, the map placing the pictures), on real pictures and the real features of the first 1,000
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


def test_the_stored_matrix_and_map_place_the_held_out_pictures_and_every_picture(store, tmp_path,
                                                                                 lite0_features, ds):
    from sklearn.decomposition import PCA

    from fmnist_core import backbones, features
    link_features(lite0_features, tmp_path)
    net = backbones.build(own_class.BACKBONE, own_class.RESOLUTION, own_class.LAYER)
    result = own_class.train_own([star_png(i) for i in range(12)], "star", net=net, data=ds)
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
    # the map: Fashion-MNIST's test features in 2-D by PCA, the stars the pictures' own features
    # projected onto the same axes, picture i the i-th star
    m = stored["map"]
    fm = np.asarray(features.load(lite0_features["source"], lite0_features["params"])[1], np.float64)
    assert m["labels"] == ds.y_test[:len(fm)].tolist() and len(m["xy"]) == len(fm)
    mean, axes = np.asarray(m["mean"]), np.asarray(m["components"])
    np.testing.assert_allclose(m["xy"], (fm - mean) @ axes.T, atol=2e-3)
    reference = PCA(2, svd_solver="full").fit(fm).components_  # the two axes a PCA finds, up to sign
    assert np.all(np.abs(np.sum(reference * axes, axis=1)) > 0.99)
    _, _, pictures = own_class.open_run(run, ADA)
    own = features.run_backbone(net, pictures, np.empty((len(pictures), 1280), np.float32), False, 64)
    np.testing.assert_allclose(m["stars"], (own - mean) @ axes.T, atol=2e-3)
    assert m["held_out"] == [i in held for i in range(12)]
