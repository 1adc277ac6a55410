"""The Train form's settings as a link: `.../train?start=mlp-seed000&lr=0.01&epochs=5`.

Only what differs from the preset (or blank model) the form started from goes into the link,
so a teacher's "start from this" reads at a glance. Opening the link fills the form; every
value is checked against the form field it belongs to: its type, its choices (a selectbox's
options) and its range (a slider's ends; views/train.py declares both, and the page's widgets
are built from the same). A value that does not fit is left out (the form shows the preset's
value) and named in one plain sentence made of our own words, never the link's text, so a
mangled link never breaks the page, and a crafted one cannot show a classmate a message or a
link of its choosing. Launching still goes through the form's own checks and the class limits.
"""
from __future__ import annotations

import re
from typing import Any, Callable
from urllib.parse import urlencode

START = "start"


def query_from_form(values: dict[str, Any], defaults: Callable[[str], dict[str, Any]]) -> dict[str, str]:
    base = defaults(values[START])
    out = {START: str(values[START])}
    for k, v in values.items():
        if k != START and k in base and v != base[k]:
            out[k] = str(v).lower() if isinstance(v, bool) else str(v)
    return out


def link(base_url: str, query: dict[str, str]) -> str:
    return f"{base_url}?{urlencode(query)}"


# what a bad value should have been, for the sentence that names it
def _expected(k: str, like: Any) -> str:
    from .train import NUMBER_LIMIT, RANGES, WIDTHS_FIELDS, field_choices
    choices = field_choices().get(k)
    if choices is not None:
        return "one of " + ", ".join(str(c) for c in choices)
    if k in RANGES and RANGES[k][1] < NUMBER_LIMIT:
        lo, hi = RANGES[k]
        return f"a number from {lo:g} to {hi:g}"
    if k in WIDTHS_FIELDS:
        return "whole numbers separated by commas"
    if isinstance(like, bool):
        return "true or false"
    if isinstance(like, int):
        return "a whole number" + (" of at least 0" if k in RANGES else "")
    if isinstance(like, float):
        return "a number"
    return "short text"


def _parse(k: str, text: str, like: Any) -> Any:
    """One value of the link, checked against its form field's own type, choices and range;
    ValueError when it does not fit."""
    from .train import NUMBER_LIMIT, RANGES, WIDTHS_FIELDS, field_choices
    if len(text) > 200:
        raise ValueError(k)
    if isinstance(like, bool):
        if text.lower() in ("true", "1", "yes", "on"):
            return True
        if text.lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError(k)
    if isinstance(like, int):
        v: Any = int(text)
        if abs(v) > NUMBER_LIMIT:
            raise ValueError(k)
    elif isinstance(like, float):
        v = float(text)
        if v != v or abs(v) > NUMBER_LIMIT:  # nan, inf, or past what a browser's number holds
            raise ValueError(k)
    else:
        v = str(text)
        if k in WIDTHS_FIELDS and not re.fullmatch(r"[0-9 ,;]*", v):
            raise ValueError(k)
    choices = field_choices().get(k)
    if choices is not None and v not in choices:
        raise ValueError(k)
    if k in RANGES and not RANGES[k][0] <= v <= RANGES[k][1]:
        raise ValueError(k)
    return v


def form_from_query(params: dict[str, str], defaults: Callable[[str], dict[str, Any]],
                    names: dict[str, str] | None = None) -> tuple[dict[str, Any], list[str]]:
    """(form values, problems) from a link's query parameters: ({}, []) when the link has no
    settings in it. A value that does not fit its field is left out (the form keeps the
    preset's value) and named in one plain sentence built from our own words only: nothing of
    the link's text is repeated, so a link cannot put a fake message or a link on the page.
    `names`: how the page calls a field, where the code name would not read well."""
    names = names or {}
    start = params.get(START)
    if not start:
        return {}, []
    try:
        base = defaults(start)
    except Exception:  # an unknown preset name: nothing to fill
        return {}, ["The link starts from a preset this workbench does not have, so none of its "
                    "settings were used."]
    out: dict[str, Any] = {START: start}
    problems, unknown = [], 0
    for k, text in params.items():
        if k == START:
            continue
        if k not in base:
            unknown += 1
            continue
        try:
            out[k] = _parse(k, str(text), base[k])
        except (TypeError, ValueError, OverflowError):
            name = names.get(k, k.replace("_", " "))
            problems.append(f"The link's {name} is not {_expected(k, base[k])}: the preset's value is kept.")
    if unknown:
        problems.append(f"{unknown} setting{'s' if unknown > 1 else ''} in the link "
                        f"{'are' if unknown > 1 else 'is'} not on this form and {'were' if unknown > 1 else 'was'} left out.")
    return out, problems
