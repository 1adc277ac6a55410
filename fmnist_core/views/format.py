"""Times and counts written for people, for every page: how long something took or will take
(format_seconds), when something happened (clock), and how many of something (plural:
"1 epoch", "2 epochs", never "1 epochs").

The one time formatter of the views: a page or a view module that shows a duration imports
it from here rather than writing its own.

Not here: the benchmark's own sub-millisecond figures (milliseconds and microseconds with the
precision a timing table needs), which its module writes.
"""
from __future__ import annotations

import time


def format_seconds(s: float | None) -> str:
    """A duration: '4.2 s', '35 s', '2 min 05 s', '1 h 03 min'; '—' when unknown (None)."""
    if s is None:
        return "—"
    s = max(0.0, float(s))
    if s < 60:
        return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def clock(t: float, with_date: bool = False) -> str:
    """A moment (seconds since the epoch) in local time: '14:03:12', or '05-01 14:03:12'."""
    return time.strftime("%m-%d %H:%M:%S" if with_date else "%H:%M:%S", time.localtime(t))


def plural(n: int | float, word: str, many: str | None = None) -> str:
    """'1 epoch', '2 epochs', '10,000 images'; `many` for irregular words ('1 run at once')."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"
