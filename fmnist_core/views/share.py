"""The Train form's settings as a link: `.../train?start=mlp-seed000&lr=0.01&epochs=5`.

Only what differs from the preset (or blank model) the form started from goes into the link,
so a teacher's "start from this" reads at a glance. Opening the link fills the form; every
value is parsed with the type of the form field it belongs to, and anything unknown or
unparseable is left out (the form then shows that preset's value), so a mangled link never
breaks the page nor reaches the trainer unchecked: launching still goes through the form's
own checks and the class limits.
"""
from __future__ import annotations

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


def _parse(text: str, like: Any) -> Any:
    if isinstance(like, bool):
        if text.lower() in ("true", "1", "yes", "on"):
            return True
        if text.lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError(text)
    if isinstance(like, int):
        return int(text)
    if isinstance(like, float):
        v = float(text)
        if v != v or v in (float("inf"), float("-inf")):
            raise ValueError(text)
        return v
    return str(text)[:200]


def form_from_query(params: dict[str, str], defaults: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """Form values from a link's query parameters ({} when the link has no settings in it)."""
    start = params.get(START)
    if not start:
        return {}
    try:
        base = defaults(start)
    except Exception:  # an unknown preset name: nothing to fill
        return {}
    out: dict[str, Any] = {START: start}
    for k, text in params.items():
        if k == START or k not in base:
            continue
        try:
            out[k] = _parse(text, base[k])
        except (TypeError, ValueError):
            continue
    return out
