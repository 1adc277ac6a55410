"""What the Challenge and Beat-the-network pages show, computed (fmnist_core/views/challenge.py,
views/humans.py): the starting point from a pasted link, the tables' text, names hidden from
the class unless the teacher shows them, the two confusion matrices' note."""
from __future__ import annotations

import numpy as np
import pytest

from fmnist_core.challenge import Challenge
from fmnist_core.errors import WorkbenchError
from fmnist_core.views import challenge as cv, humans as hv


def test_the_starting_point_from_a_link_keeps_only_what_differs():
    q = cv.start_query("cnn-demo", "https://host:8501/train?start=mlp-seed000&lr=0.01&epochs=10&bogus=1")
    assert q == {"start": "mlp-seed000", "lr": "0.01"}  # epochs 10 is the preset's own; bogus is no setting
    assert cv.start_query("cnn-demo") == {"start": "cnn-demo"}
    c = Challenge(start=q).validate()
    model, train = cv.start_configs(c)
    assert model["hidden"] == [128] and train["lr"] == 0.01
    assert cv.start_link(c) == "train?start=mlp-seed000&lr=0.01"
    with pytest.raises(WorkbenchError, match="not a preset"):
        cv.start_query("cnn-demo", "?start=nope")


def test_names_stay_hidden_unless_the_teacher_shows_them():
    students = [{"owner_id": "a", "name": "Ada"}, {"owner_id": "b", "name": "Bo"}]
    assert hv.names(students, me_id="b", show_names=False) == ["student 1", "you (Bo)"]
    assert hv.names(students, me_id="x", show_names=True) == ["Ada", "Bo"]


def test_confusion_note_and_figure_rows_in_percent():
    people, net = np.zeros((10, 10), int), np.zeros((10, 10), int)
    people[6, 0], people[6, 6] = 3, 1   # 3 of 4 Shirts called T-shirt/top
    net[6, 6] = 2
    assert hv.confusion_note(people, net) == "The class called 75% of the Shirts a T-shirt/top, the network 0% of them."
    z = np.array(hv.confusion_figure(people, "x").data[0].z, dtype=float)
    assert z[6, 0] == 75 and z[6, 6] == 25 and np.isnan(z[0, 0])  # a row nobody answered is blank, not 0%
