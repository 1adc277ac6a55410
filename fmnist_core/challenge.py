"""A class challenge: a goal, rules, a deadline and a starting point, set by the teacher; which
runs obey, each student's best entry, the ranking and its CSV — all from what runs recorded.

  the challenge   `Challenge(title, goal, rules, deadline, start, opens)`, kept as a tag of the
                  run store's experiment (like the class settings in roles.py), so every server
                  of a class reads the same one; only the teacher sets or ends it
  the rules       `Rules`: at most N parameters, these model kinds only, at most S seconds of
                  training, no augmentation, these engines only, at most E epochs. Each is read
                  from the run's stored spec (`config`: model_config, train_config, engine,
                  parameters priced at submit) and its final status (`status_info`:
                  train_seconds, test_accuracy) — never from what a page shows
  lateness        a run launched (created) after the deadline is late: it still counts, marked,
                  and ranks below every entry made in time
  entries         finished runs with a test accuracy, launched after the challenge opened
                  (older runs belong to earlier lessons); hidden runs are left out

`check_run(challenge, run)` lists the broken rules, `standings(challenge, runs)` ranks each
student's best entry (students are told apart by `owner_id`, not by the name they typed) and
lists the rule-breaking runs apart, `results_csv(standings)` is the teacher's export.

Left out: a challenge history (setting a new one replaces the old; export before), and
per-student deadlines.
"""
from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import WorkbenchError

CHALLENGE_TAG = "fmnist.challenge"
KINDS = ("mlp", "cnn", "resnet")
# the rule names a broken rule is reported under (the page and the CSV show them)
RULE_NAMES = {"parameters": "parameters", "kinds": "model kind", "seconds": "training seconds",
              "augmentation": "augmentation", "engines": "engine", "epochs": "epochs",
              "deadline": "deadline"}


@dataclass(frozen=True)
class Rules:
    max_parameters: int | None = None     # priced at submit (spec["parameters"]): small models
    kinds: tuple[str, ...] = ()           # e.g. ("mlp",): "MLPs only"; empty: any model
    max_seconds: float | None = None      # training seconds the run recorded on this server
    no_augmentation: bool = False         # neither flips nor shifts: the model must learn it
    engines: tuple[str, ...] = ()         # e.g. ("numpy",): the hand-written twin only; empty: any
    max_epochs: int | None = None         # epochs asked for in the recorded train_config

    def describe(self) -> list[str]:
        """The rules as short sentences, for the page and the CSV header."""
        out = []
        if self.max_parameters:
            out.append(f"at most {self.max_parameters:,} parameters")
        if self.kinds:
            out.append(" or ".join(k.upper() if k != "resnet" else "ResNet" for k in self.kinds) + " only")
        if self.max_seconds:
            out.append(f"at most {self.max_seconds:g} s of training")
        if self.no_augmentation:
            out.append("no augmentation (no flips, no shifts)")
        if self.engines:
            out.append(" or ".join(f"the {'NumPy' if e == 'numpy' else 'PyTorch'} engine" for e in self.engines)
                       + " only")
        if self.max_epochs:
            out.append(f"at most {self.max_epochs} epochs")
        return out


@dataclass(frozen=True)
class Challenge:
    title: str = "Class challenge"
    goal: float = 0.90                    # test accuracy to reach, as a fraction (0.92 = 92%)
    rules: Rules = field(default_factory=Rules)
    deadline: float | None = None         # unix seconds; runs launched later are late
    start: dict[str, str] = field(default_factory=lambda: {"start": "mlp-seed000"})  # a settings link's query
    opens: float = 0.0                    # unix seconds it was set: earlier runs are not entries

    def validate(self) -> "Challenge":
        from .models import PRESETS
        r = self.rules
        if not (isinstance(self.goal, (int, float)) and 0 < self.goal <= 1):
            raise WorkbenchError(f"the goal is a test accuracy between 0% and 100%, got {self.goal!r}")
        if not str(self.title).strip() or len(str(self.title)) > 80:
            raise WorkbenchError("the challenge needs a title of 1 to 80 characters")
        for name in ("max_parameters", "max_seconds", "max_epochs"):
            v = getattr(r, name)
            if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v < 1):
                raise WorkbenchError(f"{name.replace('_', ' ')} must be a number >= 1 or none, got {v!r}")
        if bad := [k for k in r.kinds if k not in KINDS]:
            raise WorkbenchError(f"unknown model kind {bad[0]!r}: choose from {', '.join(KINDS)}")
        if bad := [e for e in r.engines if e not in ("torch", "numpy")]:
            raise WorkbenchError(f"unknown engine {bad[0]!r}: choose torch or numpy")
        if self.deadline is not None and not math.isfinite(self.deadline):
            raise WorkbenchError("the deadline must be a date and time")
        if not isinstance(self.start, dict) or self.start.get("start") not in PRESETS:
            raise WorkbenchError(f"the starting point must name a preset ({', '.join(PRESETS)}), "
                                 f"got {(self.start or {}).get('start')!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Challenge":
        """The one translator from stored JSON; unknown keys (a newer version's) are dropped."""
        rk = {f.name for f in fields(Rules)}
        raw = dict(d.get("rules") or {})
        rules = Rules(**{k: tuple(v) if k in ("kinds", "engines") else v for k, v in raw.items() if k in rk})
        known = {f.name for f in fields(cls)} - {"rules"}
        top = {k: v for k, v in d.items() if k in known}
        if "start" in top:
            top["start"] = {str(k): str(v) for k, v in dict(top["start"]).items()}
        return cls(rules=rules, **top).validate()


# --- kept in the run store, set by the teacher ----------------------------------------------

def get_challenge() -> Challenge | None:
    """The class's current challenge, or None when the teacher has set none (or ended it)."""
    from . import runs
    s = runs.store()
    raw = s.client.get_experiment(s.experiment_id).tags.get(CHALLENGE_TAG)
    if not raw:
        return None
    try:
        return Challenge.from_dict(json.loads(raw))
    except (TypeError, ValueError, WorkbenchError):
        return None  # written by an incompatible version: as if none were set


def set_challenge(user, challenge: Challenge) -> Challenge:
    """Replace the class's challenge (the teacher only); `opens` is now unless given."""
    from . import runs
    from .roles import require_teacher
    require_teacher(user, "set the class challenge")
    if not challenge.opens:
        challenge = Challenge(**{**{f.name: getattr(challenge, f.name) for f in fields(Challenge)},
                                 "opens": time.time()})
    challenge.validate()
    s = runs.store()
    s.client.set_experiment_tag(s.experiment_id, CHALLENGE_TAG, json.dumps(challenge.to_dict()))
    return challenge


def end_challenge(user) -> None:
    from . import runs
    from .roles import require_teacher
    require_teacher(user, "end the class challenge")
    s = runs.store()
    s.client.set_experiment_tag(s.experiment_id, CHALLENGE_TAG, "")


# --- the rules, checked on what a run recorded -------------------------------------------------

@dataclass(frozen=True)
class Broken:
    rule: str   # a key of RULE_NAMES
    text: str   # the sentence shown: what the run recorded against what the rule allows

    def __str__(self) -> str:
        return f"{RULE_NAMES[self.rule]}: {self.text}"


def recorded_parameters(spec: dict[str, Any]) -> int | None:
    """The parameter count priced at submit; counted from the stored model config for runs
    recorded before submit priced it (spec.RunSpec.to_dict)."""
    if spec.get("parameters"):
        return int(spec["parameters"])
    from .models import config_from_dict, plan_parameters
    try:
        return plan_parameters(config_from_dict(spec.get("model_config") or {}))
    except Exception:  # a config this version cannot read: the rule reports "not recorded"
        return None


def is_late(challenge: Challenge, run: dict[str, Any]) -> bool:
    created = (run.get("config") or {}).get("created")
    return challenge.deadline is not None and created is not None and float(created) > challenge.deadline


def check_run(challenge: Challenge, run: dict[str, Any]) -> list[Broken]:
    """Every rule the run broke, lateness included (rule "deadline"), from its stored record."""
    r = challenge.rules
    spec = run.get("config") or {}
    mc, tc = spec.get("model_config") or {}, spec.get("train_config") or {}
    info = run.get("status_info") or {}
    out: list[Broken] = []
    if r.max_parameters:
        n = recorded_parameters(spec)
        if n is None:
            out.append(Broken("parameters", "the run recorded no parameter count"))
        elif n > r.max_parameters:
            out.append(Broken("parameters", f"{n:,} parameters, the rule allows {r.max_parameters:,}"))
    if r.kinds and mc.get("kind", "mlp") not in r.kinds:
        out.append(Broken("kinds", f"a {mc.get('kind', 'mlp')}, the rule allows {' or '.join(r.kinds)} only"))
    if r.max_seconds:
        secs = info.get("train_seconds")
        if secs is None:
            out.append(Broken("seconds", "the run recorded no training time"))
        elif float(secs) > r.max_seconds:
            out.append(Broken("seconds", f"trained {float(secs):.1f} s, the rule allows {r.max_seconds:g} s"))
    if r.no_augmentation:
        used = [n for n, on in (("flips", tc.get("augment_flip")), ("shifts", tc.get("augment_shift"))) if on]
        if used:
            out.append(Broken("augmentation", f"trained with {' and '.join(used)}, the rule allows none"))
    if r.engines and spec.get("engine", "torch") not in r.engines:
        out.append(Broken("engines", f"trained by the {spec.get('engine', 'torch')} engine, the rule allows "
                                     f"{' or '.join(r.engines)} only"))
    if r.max_epochs and int(tc.get("epochs") or 0) > r.max_epochs:
        out.append(Broken("epochs", f"{tc.get('epochs')} epochs, the rule allows {r.max_epochs}"))
    if is_late(challenge, run):
        from .views.format import format_seconds  # the one duration formatter (pure, no streamlit)
        late_by = float(spec["created"]) - challenge.deadline
        out.append(Broken("deadline", f"launched {format_seconds(late_by)} after the deadline"))
    return out


# --- the ranking ----------------------------------------------------------------------------------

def is_entry(challenge: Challenge, run: dict[str, Any], show_hidden: bool = False) -> bool:
    """A finished run with a test accuracy, launched since the challenge opened."""
    info = run.get("status_info") or {}
    created = float((run.get("config") or {}).get("created") or 0)
    return (info.get("test_accuracy") is not None and created >= challenge.opens
            and (show_hidden or not run.get("hidden")))


def _row(challenge: Challenge, run: dict[str, Any], broken: list[Broken]) -> dict[str, Any]:
    spec, info = run.get("config") or {}, run.get("status_info") or {}
    acc = float(info["test_accuracy"])
    return {"student": run.get("owner") or "—", "owner_id": run.get("owner_id") or "", "run_id": run["run_id"],
            "accuracy": acc, "parameters": recorded_parameters(spec),
            "seconds": None if info.get("train_seconds") is None else float(info["train_seconds"]),
            "met": acc >= challenge.goal, "gap": max(0.0, challenge.goal - acc),
            "late": any(b.rule == "deadline" for b in broken), "created": float(spec.get("created") or 0),
            "broken": [str(b) for b in broken if b.rule != "deadline"], "spec": spec}


def _order(row: dict[str, Any]) -> tuple:
    # in time before late, then accuracy, then fewer seconds (who got there faster)
    secs = row["seconds"] if row["seconds"] is not None else math.inf
    return (row["late"], -row["accuracy"], secs, row["created"])


def standings(challenge: Challenge, all_runs: list[dict[str, Any]], show_hidden: bool = False) -> dict[str, list]:
    """{"ranked": each student's best obeying entry, best first, with "rank" (and "late_best":
                  the accuracy of a better run launched after the deadline, or None);
        "broken": every entry that broke a rule (other than lateness), newest first;
        "students": every student with an entry, for the CSV (best obeying row or None)}"""
    obeying: dict[str, list] = {}
    broken_rows = []
    names: dict[str, str] = {}
    for run in all_runs:
        if not is_entry(challenge, run, show_hidden):
            continue
        row = _row(challenge, run, check_run(challenge, run))
        key = row["owner_id"] or row["student"]  # students are their token's hash, not their typed name
        names.setdefault(key, row["student"])
        if row["broken"]:
            broken_rows.append(row)
        else:
            obeying.setdefault(key, []).append(row)
    best = []
    for rows in obeying.values():
        top = min(rows, key=_order)  # the best run in time; a late one only when none was in time
        later = [r["accuracy"] for r in rows if r["late"] and r["accuracy"] > top["accuracy"]]
        best.append({**top, "late_best": max(later) if later else None})
    best.sort(key=_order)
    for k, row in enumerate(best, 1):
        row["rank"] = k
    broken_rows.sort(key=lambda r: -r["created"])
    by_key = {r["owner_id"] or r["student"]: r for r in best}
    students = [(names[k], by_key.get(k), [r for r in broken_rows if (r["owner_id"] or r["student"]) == k])
                for k in names]
    students.sort(key=lambda s: (s[1] is None, _order(s[1]) if s[1] else (), s[0].lower()))
    return {"ranked": best, "broken": broken_rows, "students": students}


CSV_COLUMNS = ("student", "best run", "accuracy", "parameters", "seconds", "met goal", "late", "note")


def results_csv(table: dict[str, list]) -> str:
    """The teacher's export: one line per student with an entry (best obeying run, or a note
    naming the rules every entry of theirs broke)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for name, best, broke in table["students"]:
        if best is not None:
            w.writerow([name, best["run_id"], f"{best['accuracy']:.4f}", best["parameters"] or "",
                        "" if best["seconds"] is None else f"{best['seconds']:.1f}",
                        "yes" if best["met"] else "no", "yes" if best["late"] else "no", ""])
        else:
            rules = sorted({b.split(":")[0] for r in broke for b in r["broken"]})
            w.writerow([name, "", "", "", "", "no", "", "no run within the rules (broke: " + ", ".join(rules) + ")"])
    return buf.getvalue()
