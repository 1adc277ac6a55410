"""fmnist_core.views.format: durations, moments and counts written for people."""
from fmnist_core.views.format import format_seconds, plural


def test_plural():
    assert [plural(1, "epoch"), plural(2, "epoch"), plural(10000, "image"), plural(0, "run")] == \
        ["1 epoch", "2 epochs", "10,000 images", "0 runs"]


def test_format_seconds():
    assert [format_seconds(None), format_seconds(4.24), format_seconds(35), format_seconds(125),
            format_seconds(3780)] == ["—", "4.2 s", "35 s", "2 min 05 s", "1 h 03 min"]
