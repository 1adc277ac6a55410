"""fmnist_core.views.axes (and ui.common.curves_figure, which applies it): accuracy axes that
fit inside 0..100% with labels that never repeat, loss axes that switch to a log scale when
one run diverged, log ticks written out at 1-2-5 steps; and legends below a chart that never
cover its axis title."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from fmnist_core.views import axes


def tick_labels(ax: dict) -> list[str]:
    lo, hi = ax["range"]
    k = math.ceil(lo / ax["dtick"] - 1e-9)
    out = []
    while k * ax["dtick"] <= hi + 1e-12:
        v = k * ax["dtick"]
        decimals = int(ax["tickformat"][1])
        out.append(f"{v * 100:.{decimals}f}%")
        k += 1
    return out


@pytest.mark.parametrize("values", [[0.842, 0.845, 0.848, 0.851], [0.81], [0.1, 0.5, 0.93], [0.9990, 1.0],
                                    [0.0, 0.0]])
def test_accuracy_axis_fits_and_never_repeats_a_label(values):
    ax = axes.accuracy_axis(values)
    lo, hi = ax["range"]
    assert 0.0 <= lo <= min(values) and max(values) <= hi <= 1.0  # never 0..150% for one point
    labels = tick_labels(ax)
    assert 2 <= len(labels) <= axes.MAX_TICKS + 1 and len(set(labels)) == len(labels), labels


def test_loss_axis_goes_log_when_one_run_diverged():
    ax = axes.loss_axis([0.6, 0.4, 0.35, 0.5, 10_000.0, 9_000.0], ["a", "a", "a", "b", "c", "c"])
    assert ax["type"] == "log" and "the run c" in ax["note"] and "10,000" in ax["note"]
    assert ax["range"][0] < math.log10(0.35) and ax["range"][1] > math.log10(10_000)
    plain = axes.loss_axis([0.6, 0.4, 0.35])
    assert plain["type"] == "linear" and plain["note"] is None and plain["range"][0] <= 0.35
    assert axes.loss_axis([float("nan"), float("inf"), 0.5])["type"] == "linear"  # non-finite: ignored


def test_log_ticks_are_written_out_at_1_2_5():
    ticks, text = axes.log_ticks(9.0, 540.0)
    assert ticks == [10, 20, 50, 100, 200, 500] and text == ["10", "20", "50", "100", "200", "500"]
    ticks, text = axes.log_ticks(0.01, 600.0)  # five decades: powers of ten only
    assert text == ["0.01", "0.1", "1", "10", "100"]
    assert axes.log_ticks(20.0, 3000.0)[1][-1] == "2,000"


def runs_long(n_runs: int, epochs: int) -> pd.DataFrame:
    rows = [{"run": f"student{r} · mlp-seed000 · lr 0.0{r + 1} @ 10:0{r}:00", "epoch": e, "metric": m,
             "split": s, "value": (0.8 + 0.01 * e) if m == "accuracy" else 0.5 - 0.01 * e}
            for r in range(n_runs) for e in range(1, epochs + 1) for m in ("loss", "accuracy")
            for s in ("train", "validation")]
    return pd.DataFrame(rows)


def test_curves_figure_one_epoch_and_many_runs():
    from ui import common
    fig = common.curves_figure(runs_long(1, 1), "accuracy", by_split=True)
    lo, hi = fig.layout.yaxis.range
    assert 0 <= lo < 0.81 <= hi <= 1.0  # one epoch: a window around the point, not 0..150%
    many = common.curves_figure(runs_long(8, 3), "loss")
    # eight long run names: eight legend rows under the axis title, the chart grows to hold them
    assert many.layout.legend.yref == "container" and many.layout.legend.yanchor == "bottom"
    assert many.layout.margin.b >= common.AXIS_BAND + 8 * common.LEGEND_ROW
    assert many.layout.height - many.layout.margin.b - many.layout.margin.t >= 300  # the plot keeps its size
