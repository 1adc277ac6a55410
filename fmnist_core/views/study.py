"""The Study page's answer, computed: each point's mean ± std across seeds, a picture and a
sentence that reads the result with its uncertainty.

  points      one row per point (the settings' values): mean, std and n of the metric over the
              seeds that finished, mean training seconds, parameters, the owners of its trials
  sentence    the best point against the next (or a seed's reported figure against ours), and
              says when the spread across seeds is larger than the effect
  figures     one setting -> the metric against it with error bars, training seconds on a second
              axis, each trial a dot named by its owner; two -> a heatmap of the means; more ->
              parallel coordinates, Optuna's fANOVA importance and the Pareto front (accuracy
              against parameters and seconds)

  vary        "Vary this setting" from the Train page: the settings a form's model can vary, a
              suggestion of values for each, and the study opened with the form's spec as its base

Everything here reads `trials(study)` (plain dicts) so the rules can be tested on crafted
results. Not here: taking trials (fmnist_core/studies.py), layout (pages/study.py, pages/train.py).
"""
from __future__ import annotations

import json
import statistics
from typing import Any

from ..studies import METRICS, Study

# a seed's figure and ours agree when they are within this many of our standard deviations,
# and never closer than the floor (one seed, or seeds that happen to agree, say little)
AGREE_SIGMAS = 2.0
STD_FLOOR = {"test_accuracy": 0.003, "val_accuracy": 0.003, "train_seconds": 0.5, "parameters": 0.0}


def trials(st: Study, run_index: dict[str, dict] | None = None) -> list[dict[str, Any]]:
    """Every trial of the study: number, state, params, value, owner, run id, seconds, message.
    `run_index`: run id -> summary (a page's one cached search of the store); else each trial's
    run is read on its own."""
    from .. import runs
    out = []
    for t in st.optuna().get_trials(deepcopy=False):
        row = {"trial": t.number, "state": t.state.name.lower(), "params": dict(t.params),
               "value": t.value, "owner": t.user_attrs.get("owner", ""), "run_id": t.user_attrs.get("run_id"),
               "refused": bool(t.user_attrs.get("refused")), "seconds": None, "parameters": None,
               "message": t.user_attrs.get("error", ""), "epochs": len(t.intermediate_values)}
        if row["refused"] or t.state.name == "WAITING":
            continue
        if row["run_id"]:
            try:
                r = run_index[row["run_id"]] if run_index is not None and row["run_id"] in run_index \
                    else runs.load_summary(row["run_id"])
                row["seconds"] = r["status_info"].get("train_seconds")
                row["parameters"] = r["config"].get("parameters")
                row["message"] = r["status_info"].get("message") or ""
                row["run_status"] = r["status"]
            except Exception:  # a deleted run: the trial still shows, without its figures
                row["message"] = "its run was deleted"
        out.append(row)
    return out


def point_key(params: dict[str, Any], settings: list[str]) -> tuple:
    return tuple(json.dumps(params.get(s)) for s in settings)


def points(st: Study, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per point with its finished trials' mean and std (std None under two seeds)."""
    names = list(st.settings)
    by: dict[tuple, dict] = {}
    for r in rows:
        if not r["params"]:
            continue
        k = point_key(r["params"], names)
        p = by.setdefault(k, {"values": {n: r["params"].get(n) for n in names}, "trials": []})
        p["trials"].append(r)
    out = []
    for p in by.values():
        done = [t for t in p["trials"] if t["state"] == "complete" and t["value"] is not None]
        vals = [float(t["value"]) for t in done]
        secs = [float(t["seconds"]) for t in done if t["seconds"] is not None]
        out.append({**p, "n": len(vals), "mean": statistics.fmean(vals) if vals else None,
                    "std": statistics.stdev(vals) if len(vals) > 1 else None,
                    "seconds": statistics.fmean(secs) if secs else None,
                    "parameters": next((t["parameters"] for t in p["trials"] if t["parameters"]), None),
                    "owners": sorted({t["owner"] for t in p["trials"] if t["owner"]}),
                    "label": ", ".join(f"{n}={_short(v)}" for n, v in p["values"].items()) or "the model"})
    return sorted(out, key=lambda p: [_order(p["values"][n]) for n in names])


def _order(v):
    return (0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0, str(v))


def _short(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


# --- the sentence -------------------------------------------------------------------------------

def fmt(metric: str, v: float | None, std: float | None = None) -> str:
    """89.0 ± 0.2% for accuracies, 12.3 ± 0.4 s for seconds, 101,770 for parameters."""
    if v is None:
        return "—"
    if metric in ("test_accuracy", "val_accuracy"):
        return f"{100 * v:.1f}%" if std is None else f"{100 * v:.1f} ± {100 * std:.1f}%"
    if metric == "train_seconds":
        return f"{v:.1f} s" if std is None else f"{v:.1f} ± {std:.1f} s"
    return f"{v:,.0f}"


def _diff(metric: str, d: float) -> str:
    return f"{100 * d:.1f} points" if metric.endswith("accuracy") else (f"{d:.1f} s" if metric == "train_seconds"
                                                                        else f"{d:,.0f}")


def agrees(metric: str, mean: float, std: float | None, reported: float) -> bool:
    """A seed's reported figure (%) and our mean agree: within AGREE_SIGMAS of our std across
    seeds, the std never taken below the metric's floor."""
    sd = max(std or 0.0, STD_FLOOR.get(metric, 0.0))
    return abs(mean - reported / 100) <= AGREE_SIGMAS * sd


def sentence(metric: str, pts: list[dict[str, Any]], reported: float | None = None) -> str:
    """The answer in words, with its uncertainty (the rules the tests pin down)."""
    what = metric.replace("_", " ")
    done = [p for p in pts if p["mean"] is not None]
    if not done:
        return "No trial has finished yet: the answer forms as trials finish."
    best_first = sorted(done, key=lambda p: p["mean"], reverse=METRICS[metric][1] == "maximize")
    best = best_first[0]
    if reported is not None and len(pts) == 1:
        ours = fmt(metric, best["mean"], best["std"])
        gap = best["mean"] - reported / 100
        seeds = f"{best['n']} seed{'s' if best['n'] != 1 else ''}"
        if agrees(metric, best["mean"], best["std"], reported):
            return f"Ours, {ours} over {seeds}, agrees with the reported {reported:.2f}%."
        side = "above" if gap > 0 else "below"
        return (f"Ours, {ours} over {seeds}, is {_diff(metric, abs(gap))} {side} the reported "
                f"{reported:.2f}%: they do not agree.")
    if len(done) == 1:
        return f"{best['label']}: {fmt(metric, best['mean'], best['std'])} ({what}); no other point has finished yet."
    second = best_first[1]
    a, b = fmt(metric, best["mean"], best["std"]), fmt(metric, second["mean"], second["std"])
    effect = abs(best["mean"] - second["mean"])
    stds = [p["std"] for p in (best, second) if p["std"] is not None]
    head = f"{best['label']} is best on {what}: {a} vs {b} for {second['label']}"
    if len(stds) < 2:
        return (head + ". With a single finished seed at a point the spread across seeds is unknown: "
                "take more seeds before reading a small difference.")
    spread = max(stds)
    if effect <= spread:
        return (head + f". The spread across seeds ({_diff(metric, spread)}) is larger than the effect "
                f"({_diff(metric, effect)}): on this evidence the two do not differ.")
    return head + f": a difference of {_diff(metric, effect)}, larger than the spread across seeds ({_diff(metric, spread)})."


def answer(st: Study, run_index: dict[str, dict] | None = None) -> dict[str, Any]:
    """Everything the page shows: points, trials, sentence, counts."""
    rows = trials(st, run_index)
    pts = points(st, rows)
    states: dict[str, int] = {}
    for r in rows:
        states[r["state"]] = states.get(r["state"], 0) + 1
    return {"study": st, "trials": rows, "points": pts, "states": states,
            "sentence": sentence(st.metric, pts, st.reported),
            "shape": {0: "single", 1: "one", 2: "two"}.get(len(st.settings), "many"),
            "budget": st.trial_budget()}


# --- the seeds' results reproduced: their figure beside ours ------------------------------------

def reproduce_row(st: Study, pts: list[dict[str, Any]]) -> dict[str, Any]:
    """One line of the table: a seed's experiment (a study of a seed's template), its reported
    figure, ours (mean ± std over the seeds that finished), seeds, epochs, and whether they agree
    (`agrees`, the sentence's rule); "—" until a seed has finished."""
    from ..study_settings import TEMPLATES
    p = next((p for p in pts if p["mean"] is not None), None)
    verdict = "—" if p is None else ("agrees" if agrees(st.metric, p["mean"], p["std"], st.reported)
                                     else "does not agree")
    if p is not None and verdict != "agrees":
        gap = p["mean"] - st.reported / 100
        verdict += f" ({_diff(st.metric, abs(gap))} {'above' if gap > 0 else 'below'})"
    return {"experiment": TEMPLATES.get(st.template or "", {}).get("about", st.template),
            "reported": f"{st.reported:.2f}%", "ours": fmt(st.metric, p["mean"], p["std"]) if p else "—",
            "seeds": f"{p['n'] if p else 0} of {st.seeds}", "epochs": st.base["train_config"]["epochs"],
            "verdict": verdict, "study": st.name}


def reproduce_table(listed: list[dict[str, Any]], run_index: dict[str, dict] | None = None) -> list[dict[str, Any]]:
    """The table for every study of a seed's template in the storage (`studies.list_studies()`),
    newest first: `make reproduce` and the teacher's own reproductions alike."""
    from ..studies import load_study
    from ..study_settings import SEED_TEMPLATES
    out = []
    for s in listed:
        if s.get("template") not in SEED_TEMPLATES:
            continue
        st = load_study(s["name"])
        if st.reported is None or st.settings:
            continue  # a seed's template varied by hand asks another question than the seed's
        out.append(reproduce_row(st, points(st, trials(st, run_index))))
    return out


# --- figures --------------------------------------------------------------------------------------

def figure(a: dict[str, Any]):
    """The answer's picture for its shape (None when nothing has finished)."""
    st, pts = a["study"], a["points"]
    if not any(p["mean"] is not None for p in pts):
        return None
    return {"single": _one, "one": _one, "two": _heatmap, "many": _parcoords}[a["shape"]](st, pts, a["trials"])


def _scale(metric: str) -> float:
    return 100.0 if metric.endswith("accuracy") else 1.0


def _one(st: Study, pts, rows):
    """The metric against the setting with error bars; each trial a dot with its owner's name;
    mean training seconds on a second axis."""
    import plotly.graph_objects as go
    k = _scale(st.metric)
    x = [p["label"].split("=", 1)[-1] for p in pts]
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=x, y=[p["mean"] * k if p["mean"] is not None else None for p in pts], mode="lines+markers",
        name="mean over seeds", marker=dict(size=11, color="#1f77b4"),
        error_y=dict(type="data", array=[(p["std"] or 0) * k for p in pts], visible=True)))
    tx, ty, tt = [], [], []
    for p, lab in zip(pts, x):
        for t in p["trials"]:
            if t["state"] == "complete" and t["value"] is not None:
                tx.append(lab)
                ty.append(t["value"] * k)
                tt.append(f"{t['owner'] or '—'} (seed {t['params'].get('seed')})")
    fig.add_trace(go.Scatter(x=tx, y=ty, mode="markers+text", text=tt, textposition="middle right",
                             name="trials (owner)", marker=dict(size=7, color="#ff7f0e", opacity=0.8)))
    secs = [p["seconds"] for p in pts]
    if any(s is not None for s in secs) and st.metric != "train_seconds":
        fig.add_trace(go.Bar(x=x, y=secs, name="training seconds", yaxis="y2", opacity=0.25,
                             marker_color="#7f7f7f"))
    unit = " (%)" if k == 100 else ""
    fig.update_layout(xaxis=dict(title=", ".join(st.settings) or "", type="category"),
                      yaxis=dict(title=st.metric.replace("_", " ") + unit),
                      yaxis2=dict(title="training seconds", overlaying="y", side="right", showgrid=False),
                      legend=dict(orientation="h", y=-0.2), margin=dict(t=30), height=460)
    return fig


def _heatmap(st: Study, pts, rows):
    import plotly.graph_objects as go
    a, b = list(st.settings)
    xs = sorted({json.dumps(p["values"][a]) for p in pts}, key=lambda v: _order(json.loads(v)))
    ys = sorted({json.dumps(p["values"][b]) for p in pts}, key=lambda v: _order(json.loads(v)))
    k = _scale(st.metric)
    z = [[None] * len(xs) for _ in ys]
    text = [[""] * len(xs) for _ in ys]
    for p in pts:
        i, j = ys.index(json.dumps(p["values"][b])), xs.index(json.dumps(p["values"][a]))
        if p["mean"] is not None:
            z[i][j] = p["mean"] * k
            text[i][j] = fmt(st.metric, p["mean"], p["std"])
    fig = go.Figure(go.Heatmap(z=z, x=[str(json.loads(v)) for v in xs], y=[str(json.loads(v)) for v in ys],
                               text=text, texttemplate="%{text}", colorscale="Blues"))
    fig.update_layout(xaxis=dict(title=a, type="category"), yaxis=dict(title=b, type="category"),
                      margin=dict(t=30), height=460)
    return fig


def _parcoords(st: Study, pts, rows):
    import plotly.graph_objects as go
    done = [p for p in pts if p["mean"] is not None]
    dims = []
    for n in st.settings:
        vals = [p["values"][n] for p in done]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            dims.append(dict(label=n, values=vals, **({"range": [min(vals), max(vals)]} if vals else {})))
        else:
            cats = sorted({str(v) for v in vals})
            dims.append(dict(label=n, values=[cats.index(str(v)) for v in vals],
                             tickvals=list(range(len(cats))), ticktext=cats))
    k = _scale(st.metric)
    dims.append(dict(label=st.metric.replace("_", " "), values=[p["mean"] * k for p in done]))
    fig = go.Figure(go.Parcoords(line=dict(color=[p["mean"] for p in done], colorscale="Viridis"), dimensions=dims))
    fig.update_layout(margin=dict(t=40), height=420)
    return fig


def importance(st: Study) -> dict[str, float] | None:
    """Optuna's fANOVA importance of each setting (None under 3 finished trials)."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances
    from optuna.trial import TrialState
    ost = st.optuna()
    if len(ost.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 3:
        return None
    try:
        imp = get_param_importances(ost, evaluator=FanovaImportanceEvaluator(seed=0),
                                    params=list(st.settings))
    except (RuntimeError, ValueError, optuna.exceptions.OptunaError):
        return None  # e.g. a setting with one value among the finished trials
    return dict(imp)


def pareto(pts: list[dict[str, Any]], metric: str = "test_accuracy") -> list[dict[str, Any]]:
    """The points no other point beats on the metric, parameters and seconds at once."""
    sign = 1 if METRICS[metric][1] == "maximize" else -1
    cand = [p for p in pts if p["mean"] is not None and p["seconds"] is not None and p["parameters"] is not None]

    def beats(q, p):
        ge = sign * q["mean"] >= sign * p["mean"] and q["parameters"] <= p["parameters"] and q["seconds"] <= p["seconds"]
        gt = sign * q["mean"] > sign * p["mean"] or q["parameters"] < p["parameters"] or q["seconds"] < p["seconds"]
        return ge and gt
    return [p for p in cand if not any(beats(q, p) for q in cand if q is not p)]


def study_rows(studies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The list of studies as the page's table shows it."""
    from .format import clock
    return [{"study": s["name"], "question": ", ".join(s["settings"]) or "one model, several seeds",
             "metric": s["metric"].replace("_", " "), "search": s["search"], "seeds": s["seeds"],
             "trials": s["trials"], "owner": s["owner"] + (" (class)" if s["class"] else ""),
             "opened": clock(s["created"], with_date=True)} for s in studies]


def trial_rows(a: dict[str, Any]) -> list[dict[str, Any]]:
    st = a["study"]
    return [{"trial": r["trial"], **{n: _short(r["params"].get(n)) for n in st.settings},
             "seed": r["params"].get("seed"), "owner": r["owner"], "state": r["state"],
             st.metric.replace("_", " "): fmt(st.metric, r["value"]) if r["state"] == "complete" else "",
             "note": r["message"]} for r in a["trials"]]


def point_words(params: dict[str, Any]) -> str:
    """depth=2, seed 1 (how a trial is named to the student who took it)."""
    pts = [f"{k}={_short(v)}" for k, v in params.items() if k != "seed"]
    return ", ".join(pts + [f"seed {params.get('seed', 0)}"])


def question_words(st: Study) -> str:
    """What the study asks, in a line."""
    if not st.settings:
        return "One model, " + (f"the seed's reported {st.reported:.2f}% beside ours" if st.reported else "several seeds")
    return "Varying " + "; ".join(
        f"{n} over {', '.join(_short(v) for v in d['values'])}" if "values" in d
        else f"{n} from {_short(d['low'])} to {_short(d['high'])}{' (log)' if d.get('log') else ''}"
        for n, d in st.settings.items())


# --- "Vary this setting" from the Train page -------------------------------------------------------
# setting -> the values offered at first (the student edits them); the MLP-only ones are offered
# for MLPs only (study_settings.apply refuses them on other models)
VARY_SUGGESTED = {"train.lr": "0.0003, 0.001, 0.003", "train.batch_size": "32, 64, 128, 256",
                  "model.dropout": "0, 0.2, 0.4", "model.batchnorm": "false, true", "depth": "0, 1, 2, 3",
                  "width": "64, 128, 256", "regularization": "none, l1, l2",
                  "train.early_stop_on": "val_accuracy, val_loss", "augmentation": "false, true",
                  "train.epochs": "1, 2, 4", "engine": "torch, numpy"}
MLP_ONLY = ("depth", "width")


def vary_choices(spec: dict[str, Any]) -> list[str]:
    """The settings the Train form's model can vary, in the order offered."""
    kind = spec["model_config"].get("kind")
    return [n for n in VARY_SUGGESTED if kind == "mlp" or n not in MLP_ONLY]


def vary_name(setting: str, now: float | None = None) -> str:
    """A study name when none is typed: the setting and the time, e.g. train-lr-1412."""
    import time
    return f"{setting.replace('.', '-')}-{time.strftime('%H%M%S', time.localtime(now))}"


def vary_from_form(spec: dict[str, Any] | None, setting: str, values_text: str, name: str, user,
                   seeds: int = 1, for_class: bool = False) -> Study:
    """A study of one setting with the Train form's spec (`view.check_form`) as its base, every
    other setting as the form has it; a bad value or name is one sentence (ConfigError)."""
    from ..errors import ConfigError
    from ..studies import create_study
    from ..study_settings import parse_values
    if spec is None:
        raise ConfigError("fix the problems in the form first: the study starts from its settings")
    if setting not in vary_choices(spec):
        raise ConfigError(f"this model cannot vary {setting!r} here; choose one of {', '.join(vary_choices(spec))}")
    values = parse_values(values_text)
    return create_study(name.strip() or vary_name(setting), {setting: {"values": values}}, seeds=int(seeds),
                        base=spec, user=user, for_class=for_class)
