"""The benchmark's progress as structured events: what a `bench` process tells whoever started it.

run.run_benchmark reports through a callback that receives one dict per event; the CLI's
`bench --events FILE` writes them to FILE as JSON lines (one object per line, flushed as it
goes), and job.py reads them back. Nobody counts log lines or parses paths out of them: stderr
carries the same progress in words, for people (every event with a "message" is printed there).

  {"event": "plan", "total": N, "message": "benchmarking ..."}  first: the N rows this run will
                                                                deliver, from its own plan
  {"event": "step", "message": "..."}                           a stage starts: a peak
                                                                measurement, a row, the headline
  {"event": "row", "done": k, "total": N, "row": {...}}         row k of N is finished
  {"event": "saved", "paths": ["...", ...]}                     the results files written
  {"event": "end", "status": "finished"}                        last; or "status": "failed" with
                                                                "error": one line

Left out: a process killed by a signal writes no "end" (job.py knows it stopped it).
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import WorkbenchError

Event = dict[str, Any]


@contextlib.contextmanager
def event_stream(path: str | Path | None, say: Callable[[str], None]) -> Iterator[Callable[[Event], None]]:
    """A progress callback: prints each event's message with `say` and, when `path` is given,
    writes every event to it as a JSON line. The block's end is the last event: finished, or
    failed with the exception that ended it (which passes on)."""
    f = open(path, "w", encoding="utf-8") if path else None

    def report(event: Event) -> None:
        if event.get("message"):
            say(event["message"])
        if f is not None:
            f.write(json.dumps(event) + "\n")
            f.flush()  # the reader polls the file while this process runs

    try:
        yield report
    except BaseException as exc:
        error = str(exc) if isinstance(exc, WorkbenchError) else f"{type(exc).__name__}: {exc}"
        # the error goes in "error", not "message": the CLI prints it once, as its last line
        report({"event": "end", "status": "failed", "error": error})
        raise
    else:
        report({"event": "end", "status": "finished"})
    finally:
        if f is not None:
            f.close()


def read_events(path: str | Path) -> list[Event]:
    """The events written so far (none when the file is not there yet)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    events = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            break  # the line being written right now
        if isinstance(event, dict):
            events.append(event)
    return events


def summarize(events: list[Event]) -> dict[str, Any]:
    """What the events add up to: {"total", "done", "message" (the latest), "paths" (saved),
    "end" (the end event or None)}."""
    out: dict[str, Any] = {"total": None, "done": 0, "message": None, "paths": [], "end": None}
    for ev in events:
        kind = ev.get("event")
        if kind == "plan":
            out["total"] = ev.get("total")
        elif kind == "row":
            out["done"] = ev.get("done", out["done"] + 1)
        elif kind == "saved":
            out["paths"] = list(ev.get("paths") or [])
        elif kind == "end":
            out["end"] = ev
        if ev.get("message"):
            out["message"] = ev["message"]
    return out
