"""Chart axes people can read, computed from the values they show (Plotly settings as plain
dicts; the pages apply them):

  * accuracy_axis  a range that fits the data inside 0..100% (one point gets a small window,
                   not 0..150%) and a tick step with enough decimals that no two labels repeat
                   (84.2%, 84.4%... rather than 84%, 84%, 85%, 85%)
  * loss_axis      linear, or log when one curve is 100x the others (a diverged run at 10,000
                   would flatten every other curve to 0), with a sentence saying so
  * log_ticks      ticks at 1-2-5 steps with their numbers written out, for log axes whose own
                   minor labels ("9 8 7 6 5 4 3 2") crowd each other

Left out: colours, fonts and legends (ui/common.style).
"""
from __future__ import annotations

import itertools
import math
from typing import Any, Iterable

NICE_STEPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.25)
MAX_TICKS = 7
LOG_SPAN = 100.0  # largest / smallest loss above this: a log axis


def _finite(values: Iterable[Any]) -> list[float]:
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.append(f)
    return out


def accuracy_axis(values: Iterable[Any]) -> dict[str, Any]:
    """{"range", "dtick", "tickformat"} for accuracies in 0..1."""
    v = [min(max(x, 0.0), 1.0) for x in _finite(values)]
    if not v:
        return {"range": [0.0, 1.0], "dtick": 0.2, "tickformat": ".0%"}
    lo, hi = min(v), max(v)
    pad = max(0.01, (hi - lo) * 0.08)
    lo, hi = max(0.0, lo - pad), min(1.0, hi + pad)
    step = next((s for s in NICE_STEPS if (hi - lo) / s <= MAX_TICKS), 0.25)
    decimals = 0 if step >= 0.01 else 1
    return {"range": [lo, hi], "dtick": step, "tickformat": f".{decimals}%"}


def loss_axis(values: Iterable[Any], names: Iterable[str] | None = None) -> dict[str, Any]:
    """{"type": "linear" | "log", "range", "note"} for losses (>= 0). `names`, one per value,
    lets the note name the run that went off the scale."""
    pairs = [(float(v), n) for v, n in zip(values, names if names is not None else itertools.repeat(None))
             if _finite([v]) and float(v) >= 0]
    pos = [v for v, _ in pairs if v > 0]
    if not pairs:
        return {"type": "linear", "range": None, "note": None}
    lo, hi = min(v for v, _ in pairs), max(v for v, _ in pairs)
    if pos and min(pos) > 0 and hi / min(pos) > LOG_SPAN:
        worst = max(pairs, key=lambda p: p[0])[1]
        big = f"{hi:,.0f}" if hi >= 1000 else f"{hi:.4g}"
        note = (f"Log scale: {'the run ' + worst if worst else 'one run'} reached a loss of {big} "
                f"(it diverged); on a linear scale every other curve would lie flat at 0.")
        return {"type": "log", "range": [math.log10(min(pos)) - 0.1, math.log10(hi) + 0.1], "note": note}
    pad = max((hi - lo) * 0.08, hi * 0.05, 1e-3)
    return {"type": "linear", "range": [max(0.0, lo - pad), hi + pad], "note": None}


def log_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    """Tick values at 1, 2, 5 x 10^k between lo and hi (> 0), and their labels ('0.5', '20',
    '1,000'); only the powers of ten when that would be more than eight ticks."""
    if not (lo > 0 and hi > 0):
        return [], []
    lo, hi = min(lo, hi), max(lo, hi)
    vals = []
    for k in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 2):
        vals += [m * 10.0 ** k for m in (1, 2, 5)]
    inside = [v for v in vals if lo / 1.0001 <= v <= hi * 1.0001]
    if len(inside) > 8:
        inside = [v for v in inside if math.isclose(math.log10(v), round(math.log10(v)))]
    if len(inside) < 2:  # a narrow range: the 1-2-5 neighbours either side
        below = [v for v in vals if v < lo][-1:]
        above = [v for v in vals if v > hi][:1]
        inside = below + inside + above
    return inside, [f"{v:,.3g}" if v < 1000 else f"{v:,.0f}" for v in inside]
