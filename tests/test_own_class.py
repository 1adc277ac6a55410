"""A class of your own (fmnist_core/own_class.py) in the web process: one training at a time, and a
student who waited too long gets a sentence, not a spinner. The training itself, end to end on
real pictures, is tests/test_browser_own.py."""
from __future__ import annotations

import threading

import pytest

from fmnist_core import own_class
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
