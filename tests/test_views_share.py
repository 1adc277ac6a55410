"""The Train form's settings link (fmnist_core/views/share.py): a round trip through a URL
gives back the form exactly, and every mangled link is refused value by value with a plain
sentence that repeats nothing of the link, keeping the preset's value."""
from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from fmnist_core.views import share, train as view

START = "mlp-seed000"


def _open(url: str):
    return share.form_from_query(dict(parse_qsl(urlsplit(url).query, keep_blank_values=True)),
                                 view.form_defaults, view.FIELD_NAMES)


@pytest.mark.parametrize("start", [START, "cnn-seed002", "resnet", view.CUSTOM["cnn"]])
def test_round_trip_through_a_url(start):
    values = {"start": start, **view.form_defaults(start)}
    changed = {**values, "lr": 0.0123, "epochs": 7, "augment_shift": 3, "val_fraction": 0.15,
               "kernel": 5, "pool": "avg", "augment_flip": not values["augment_flip"],
               "hidden": "300, 100", "optimizer": "sgd", "precision": "fp32"}
    url = share.link("http://host:8501/train", share.query_from_form(changed, view.form_defaults))
    got, problems = _open(url)
    assert problems == []
    assert {**values, **got} == changed  # exactly the form: types too (int 7, not "7" or 7.0)
    assert all(type(got[k]) is type(changed[k]) for k in got)
    # only what differs from the start goes into the link
    assert set(got) == {"start"} | {k for k in changed if k != "start" and changed[k] != values[k]}


@pytest.mark.parametrize("query, field, expected", [
    ("augment_shift=100", "shifts", "a number from 0 to 4"),
    ("val_fraction=0.9", "validation split", "a number from 0 to 0.5"),
    ("val_fraction=-0.1", "validation split", "a number from 0 to 0.5"),
    ("kernel=4", "kernel", "one of 1, 3, 5, 7"),
    ("optimizer=lbfgs", "optimizer", "one of adam, adamw, sgd"),
    ("device=tpu", "device", "one of auto, cpu, cuda, mps"),
    ("arch=transformer", "architecture", "one of mlp, cnn, resnet"),
    ("epochs=1e3", "epochs", "a whole number"),
    ("epochs=" + "9" * 30, "epochs", "a whole number"),
    ("lr=nan", "learning rate", "a number"),
    ("lr=inf", "learning rate", "a number"),
    ("batchnorm=maybe", "batchnorm", "true or false"),
    ("train_limit=-5", "training images", "a whole number of at least 0"),
    ("hidden=%5Bclick%5D(http%3A%2F%2Fevil.example)", "hidden layers", "whole numbers separated by commas"),
    ("fc=" + "1," * 150, "fully connected layers", "whole numbers separated by commas"),
])
def test_a_bad_value_is_named_and_the_preset_value_kept(query, field, expected):
    got, problems = _open(f"/train?start={START}&patience=2&{query}")
    assert got["patience"] == 2  # the good values still fill the form
    key = query.split("=")[0]
    assert key not in got  # the form keeps the preset's value
    assert problems == [f"The link's {field} is not {expected}: the preset's value is kept."]
    bad = query.split("=", 1)[1]
    assert all(bad not in p for p in problems)  # nothing of the link's text on the page


def test_unknown_start_and_unknown_keys_get_a_sentence_without_their_text():
    got, problems = _open("/train?start=%5Bphish%5D(http://x)&lr=0.1")
    assert got == {} and len(problems) == 1 and "phish" not in problems[0]
    got, problems = _open(f"/train?start={START}&%21%5Bimg%5D(http://x)=1&zzz=2")
    assert got == {"start": START}
    assert problems == ["2 settings in the link are not on this form and were left out."]
    assert _open("/train") == ({}, []) and _open("/train?lr=0.1") == ({}, [])


def test_every_choice_field_of_the_form_is_checked():
    # each choice field: a value just outside its list is refused, every listed value accepted
    for k, choices in view.field_choices().items():
        for c in choices:
            got, problems = _open(f"/train?start={START}&{k}={c}")
            assert problems == [] and got[k] == c, (k, c)
        assert _open(f"/train?start={START}&{k}=not-a-choice")[1], k
