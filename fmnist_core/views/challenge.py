"""The Challenge page, computed: the challenge in sentences, its starting point as a settings
link and as the configs runs are compared with, the ranking (each student's best entry within
the rules) and the runs that broke a rule, as tables. The checking itself is
fmnist_core/challenge.py's, on what each run recorded.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pandas as pd

from ..challenge import Challenge
from .format import clock, format_seconds
from .labels import describe_changes, model_summary
from .share import form_from_query, link
from .train import form_defaults, model_config_from_form, train_config_from_form


def start_query(preset: str, settings_link: str = "") -> dict[str, str]:
    """The starting point from the teacher's form: a preset, or a pasted Share link (its own
    `start` and settings win). Only settings the Train form knows are kept."""
    query = dict(parse_qsl(urlsplit(settings_link.strip()).query)) if settings_link.strip() else {}
    query.setdefault("start", preset)
    from ..errors import WorkbenchError
    values, _ = form_from_query(query, form_defaults)  # a value that does not fit is left out
    if not values:
        raise WorkbenchError(f"the settings link starts from {query['start']!r}, which is not a preset")
    base = form_defaults(values["start"])
    return {k: str(query[k]) for k in values if k == "start" or values[k] != base[k]}


def start_configs(c: Challenge) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model_config, train_config) of the starting point, built as the Train form builds them."""
    from ..models import config_to_dict
    from ..train import train_config_to_dict
    values = {**form_defaults(c.start["start"]), **form_from_query(c.start, form_defaults)[0]}
    return (config_to_dict(model_config_from_form(values)), train_config_to_dict(train_config_from_form(values)))


def start_link(c: Challenge) -> str:
    """A link relative to any page of the app: it opens Train with the starting point filled."""
    return link("train", c.start)


def start_text(c: Challenge) -> str:
    extra = {k: v for k, v in c.start.items() if k != "start"}
    return c.start["start"] + (" with " + ", ".join(f"{k} {v}" for k, v in extra.items()) if extra else "")


def deadline_text(c: Challenge, now: float) -> str:
    if c.deadline is None:
        return "no deadline"
    left = c.deadline - now
    when = clock(c.deadline, with_date=True)
    return f"{when} (in {format_seconds(left)})" if left > 0 else f"{when} (passed: later runs are marked late)"


def _differs(row: dict[str, Any], base: tuple[dict, dict]) -> str:
    spec = row["spec"]
    kind, base_kind = (spec.get("model_config") or {}).get("kind", "mlp"), base[0].get("kind", "mlp")
    text = describe_changes(spec, most=4, base=base)
    if kind != base_kind:  # the settings of another kind do not compare: say what the model is
        text = model_summary(spec.get("model_config") or {})
    if spec.get("engine", "torch") != "torch":
        text = ", ".join(p for p in (text, f"{spec['engine']} engine") if p)
    return text or "nothing: the starting point as it is"


RANKED_COLUMNS = ["rank", "student", "accuracy", "goal", "short_by", "parameters", "seconds", "late",
                  "differs", "run_id"]


def ranked_table(c: Challenge, table: dict[str, list]) -> pd.DataFrame:
    """One row per student, best first: accuracy, whether it met the goal and how far off it is
    (percentage points), parameters, seconds, late, what differs from the starting point."""
    base = start_configs(c)
    rows = []
    for r in table["ranked"]:
        late = "late" if r["late"] else ""
        if r.get("late_best") is not None:
            late = f"a late run reached {r['late_best']:.2%}"
        rows.append({"rank": r["rank"], "student": r["student"], "accuracy": r["accuracy"],
                     "goal": "met" if r["met"] else "not yet", "short_by": None if r["met"] else r["gap"] * 100,
                     "parameters": r["parameters"], "seconds": r["seconds"], "late": late,
                     "differs": _differs(r, base), "run_id": r["run_id"]})
    return pd.DataFrame(rows, columns=RANKED_COLUMNS)


def broken_table(table: dict[str, list]) -> pd.DataFrame:
    """The runs that broke a rule, newest first, with each broken rule named."""
    rows = [{"student": r["student"], "accuracy": r["accuracy"], "broken": "; ".join(r["broken"]),
             "late": "late" if r["late"] else "", "run_id": r["run_id"]} for r in table["broken"]]
    return pd.DataFrame(rows, columns=["student", "accuracy", "broken", "late", "run_id"])


def for_table(df: pd.DataFrame) -> pd.DataFrame:
    """A ranked or broken table as text for st.table (readable on a projector, and in the page's
    HTML for the browser test): percentages, thousands separators, "—" for what is missing."""
    out = df.drop(columns=[c for c in ("run_id",) if c in df]).copy()
    if "accuracy" in out:
        out["accuracy"] = [f"{a:.2%}" for a in out["accuracy"]]
    if "short_by" in out:
        out["short_by"] = ["—" if pd.isna(s) else f"{s:.2f} points" for s in out["short_by"]]
    if "parameters" in out:
        out["parameters"] = ["—" if pd.isna(p) else f"{int(p):,}" for p in out["parameters"]]
    if "seconds" in out:
        out["seconds"] = [format_seconds(None if pd.isna(s) else s) for s in out["seconds"]]
    if "late" in out:
        out["late"] = [s or "—" for s in out["late"]]
    names = {"rank": "#", "short_by": "short of the goal by", "differs": "what differs from the starting point",
             "broken": "broken rules"}
    return out.rename(columns=names).astype(str)
