"""Studies (sweeps): a question asked with many runs, in Optuna, the runs through the class queue.

A study is a question (settings to vary, study_settings.py, with their values or ranges), a
metric, seeds per point, a search (grid | random | tpe), a budget (trials, minutes), an owner
and whether it is the class's. It lives in Optuna with RDB storage (`storage_uri`):

  default        sqlite:///artifacts/optuna.db (git-ignored, beside MLflow's mlflow.db)
  class server   FMNIST_OPTUNA_URI, e.g. postgresql://.../optuna: a SEPARATE database on the same
                 server as MLflow's, never MLflow's own: both keep their schema version in
                 alembic's `alembic_version` table (mlflow/mlflow#3374, #2923), so one database
                 would hold two schemas fighting over one version row

Taking a trial (`take_trial`): Optuna's ask -> the point's values -> a RunSpec ->
submit.submit under the taker's name, so the dispatcher, the price and the class limits apply
as to any run. The run is tagged with the study and trial number and nested under the study's
MLflow parent run (tag `mlflow.parentRunId`). Seeds are a setting of their own (`seed`): a grid
is put in line whole when it is created (every point x seed, each point's first seed first);
random and TPE enqueue a new point's other seeds at once, so each point gets every seed.

The trainer reports each epoch's value to its trial (`TrialHook`, from execute.py) so a
MedianPruner (or Hyperband) can prune it; a pruned run stops and says so in plain words, and the
trainer tells the trial its value (or PRUNED, or FAIL) when the run ends. `sync` tells the
trials whose trainer died without telling, so a study survives a restart: everything is in the
two stores, nothing in a process.

Not here: what a study's answer looks like (views/study.py), the page (pages/study.py).
"""
from __future__ import annotations

import itertools
import json
import math
import os
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from . import runs
from .files import exclusive
from .errors import ConfigError, WorkbenchError
from .roles import PermissionDenied, User, single_user
from .study_settings import apply, base_spec, check_name

SEARCHES = ("grid", "random", "tpe")
PRUNERS = ("none", "median", "hyperband")
# metric -> (what the run's record calls it, Optuna's direction)
METRICS = {"test_accuracy": ("test_accuracy", "maximize"), "val_accuracy": ("best_val_accuracy", "maximize"),
           "train_seconds": ("train_seconds", "minimize"), "parameters": ("parameters", "minimize")}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
PRUNED_WORDS = "below the median of the other trials"
TAG_STUDY, TAG_TRIAL, TAG_PARENT = "fmnist.study", "fmnist.trial", "mlflow.parentRunId"


class StudyDone(WorkbenchError):
    """The study has nothing left to take: its grid, its trials or its minutes are used up."""


# --- storage ----------------------------------------------------------------------------------

def storage_uri() -> str:
    """Optuna's database: FMNIST_OPTUNA_URI, else a SQLite file beside the embedded run store."""
    uri = os.environ.get("FMNIST_OPTUNA_URI") or f"sqlite:///{runs.ARTIFACTS / 'optuna.db'}"
    if _same_database(uri, runs.tracking_uri()):
        raise ConfigError("the study storage (FMNIST_OPTUNA_URI) must be its own database, not MLflow's: "
                          "both keep their schema version in alembic_version")
    return uri


def _same_database(a: str, b: str) -> bool:
    """postgresql+psycopg2://u:pw@h:5432/db and postgresql://u@h:5432/db/ are one database."""
    def norm(u: str) -> str:
        scheme, _, rest = u.partition("://")
        rest = re.sub(r"^[^@/]*@", "", rest)  # who connects does not change the database
        return scheme.split("+")[0] + "://" + rest.rstrip("/")
    return norm(a) == norm(b)


_storages: dict[str, Any] = {}


def storage():
    import optuna
    uri = storage_uri()
    if uri not in _storages:
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "Trial 3 finished" lines for users
        kwargs = {"connect_args": {"timeout": 30}} if uri.startswith("sqlite") else {"pool_pre_ping": True}
        if uri.startswith("sqlite:///"):
            from pathlib import Path
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        _storages[uri] = optuna.storages.RDBStorage(uri, engine_kwargs=kwargs)
    return _storages[uri]


@contextmanager
def _lock():
    """One ask at a time on this server: a grid point or an enqueued seed is handed out once."""
    with exclusive(runs.ARTIFACTS / ".study.lock"):
        yield


# --- a study's record ---------------------------------------------------------------------------

@dataclass
class Study:
    name: str
    settings: dict[str, dict]       # setting -> {"values": [...]} | {"low", "high", "log"}
    metric: str
    seeds: int
    search: str
    pruner: str
    max_trials: int                 # 0: the grid's size (grid) or no limit
    max_minutes: float              # 0: no limit
    base: dict[str, Any]            # the RunSpec dict every trial starts from
    owner: str
    owner_id: str
    for_class: bool
    created: float
    parent_run_id: str
    template: str | None = None
    reported: float | None = None   # a seed's reported figure (%), for its experiment's table

    def to_attrs(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def space(self) -> dict[str, Any]:
        """Optuna distributions: every setting, and the seed."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
        out = {}
        for name, d in self.settings.items():
            if "values" in d:
                out[name] = CategoricalDistribution(list(d["values"]))
            elif isinstance(d["low"], int) and isinstance(d["high"], int) and not d.get("float"):
                out[name] = IntDistribution(d["low"], d["high"], log=bool(d.get("log")))
            else:
                out[name] = FloatDistribution(float(d["low"]), float(d["high"]), log=bool(d.get("log")))
        out["seed"] = CategoricalDistribution(list(range(self.seeds)))
        return out

    def grid(self) -> dict[str, list]:
        return {**{n: list(d["values"]) for n, d in self.settings.items()}, "seed": list(range(self.seeds))}

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid().values())

    def trial_budget(self) -> int:
        if self.search == "grid":
            return min(self.grid_size(), self.max_trials) if self.max_trials else self.grid_size()
        return self.max_trials

    def spec_for(self, params: dict[str, Any]) -> dict[str, Any]:
        """The RunSpec dict of a trial with these values (seed included), validated."""
        from .spec import RunSpec
        s = self.base
        for name in self.settings:
            s = apply(s, name, params[name])
        s = {**s, "train_config": {**s["train_config"], "seed": int(params.get("seed", 0))}}
        return RunSpec.from_dict(s).to_dict()

    def optuna(self):
        import optuna
        return optuna.load_study(study_name=self.name, storage=storage(), sampler=self._sampler(),
                                 pruner=self._pruner())

    def _sampler(self, taken: int = 0):
        """Rebuilt at every load (a sampler is not stored): its seed moves on with the trials
        taken, or each new process would draw the same first point again."""
        import optuna
        seed = int(self.created) % 100_000 + taken  # reproducible per study, different between studies
        if self.search == "grid":
            return optuna.samplers.GridSampler(self.grid(), seed=seed)
        if self.search == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, 2 * self.seeds))

    def _pruner(self):
        import optuna
        if self.pruner == "median":
            # compared only once two other trials have reached the same epoch
            return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
        if self.pruner == "hyperband":
            return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=self.base["train_config"]["epochs"])
        return optuna.pruners.NopPruner()


def create_study(name: str, settings: dict[str, dict], metric: str = "test_accuracy", seeds: int = 1,
                 search: str = "grid", pruner: str | None = None, max_trials: int = 0,
                 max_minutes: float = 0.0, base: dict[str, Any] | None = None, user: User | None = None,
                 for_class: bool = False, template: str | None = None,
                 reported: float | None = None) -> Study:
    """A new study in Optuna's storage and its parent run in MLflow; every trial's spec is
    checked first (a grid's every point; a range's ends), so a bad question is one sentence."""
    import optuna
    user = user or single_user()
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError("a study name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    if for_class and not user.teacher:
        raise PermissionDenied("only the teacher opens a study for the class")
    if metric not in METRICS:
        raise ConfigError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if search not in SEARCHES:
        raise ConfigError(f"search must be one of {', '.join(SEARCHES)}, got {search!r}")
    pruner = pruner or ("none" if search == "grid" else "median")
    if pruner not in PRUNERS:
        raise ConfigError(f"pruner must be one of {', '.join(PRUNERS)}, got {pruner!r}")
    if not isinstance(seeds, int) or not 1 <= seeds <= 10:
        raise ConfigError(f"seeds per point must be 1..10, got {seeds!r}")
    if max_trials < 0 or max_minutes < 0:
        raise ConfigError("the budget (trials, minutes) must be >= 0")
    base = base or base_spec("mlp-seed000", epochs=1)
    settings = _check_settings(settings, base, search)
    if search != "grid" and not max_trials and not max_minutes:
        raise ConfigError(f"a {search} search needs a budget: a number of trials or minutes")
    st = Study(name, settings, metric, seeds, search, pruner, int(max_trials), float(max_minutes), base,
               user.name, user.id, bool(for_class), time.time(), "", template, reported)
    for params in _corners(st):
        try:
            st.spec_for(params)
        except WorkbenchError as exc:
            raise ConfigError(f"{_point_words(params)}: {exc}") from None
    try:
        optuna.create_study(study_name=name, storage=storage(), direction=METRICS[metric][1])
    except optuna.exceptions.DuplicatedStudyError:
        raise ConfigError(f"a study named {name!r} exists already: choose another name") from None
    s = runs.store()
    parent = s.client.create_run(s.experiment_id, run_name=f"study {name}",
                                 tags={"fmnist.kind": "study", TAG_STUDY: name, "fmnist.owner": user.name,
                                       "fmnist.label": f"study {name}"})
    st.parent_run_id = parent.info.run_id
    s.client.log_batch(st.parent_run_id, params=_parent_params(st))
    ost = st.optuna()
    for k, v in st.to_attrs().items():
        ost.set_user_attr(k, v)
    if search == "grid":
        # the whole grid in line at once, seed-major: every point's first seed before any second,
        # so a class's answer spreads over every point first (GridSampler alone shuffles them)
        grid = {n: d["values"] for n, d in settings.items()}
        for seed in range(seeds):
            for combo in itertools.product(*grid.values()):
                ost.enqueue_trial({**dict(zip(grid, combo)), "seed": seed})
    return st


def _check_settings(settings: dict, base: dict, search: str) -> dict[str, dict]:
    if not isinstance(settings, dict):
        raise ConfigError("settings must map each setting to its values or range")
    out = {}
    for name, d in settings.items():
        check_name(name, base)
        if isinstance(d, (list, tuple)):
            d = {"values": list(d)}
        if "values" in d:
            vals = list(d["values"])
            if not vals or len(vals) > 50 or len(set(map(json.dumps, vals))) != len(vals):
                raise ConfigError(f"{name}: give 1 to 50 different values")
            if any(not isinstance(v, (bool, int, float, str)) for v in vals):
                raise ConfigError(f"{name}: values are numbers, true/false or words")
            out[name] = {"values": vals}
        elif "low" in d and "high" in d:
            if search == "grid":
                raise ConfigError(f"{name}: a grid needs values, not a range (or choose random or tpe)")
            lo, hi = d["low"], d["high"]
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (lo, hi)) or lo >= hi \
                    or (d.get("log") and lo <= 0):
                raise ConfigError(f"{name}: a range needs low < high (and low > 0 on a log scale)")
            out[name] = {"low": lo, "high": hi, "log": bool(d.get("log"))}
        else:
            raise ConfigError(f"{name}: give its values or a range (low, high)")
    return out


def _corners(st: Study):
    """The points checked at creation: a grid's every point, a range's two ends."""
    vals = {n: (d["values"] if "values" in d else [d["low"], d["high"]]) for n, d in st.settings.items()}
    for combo in itertools.product(*vals.values()):
        yield dict(zip(vals, combo))


def _parent_params(st: Study):
    from mlflow.entities import Param
    d = {"study.metric": st.metric, "study.seeds": st.seeds, "study.search": st.search,
         "study.settings": json.dumps(st.settings), "study.class": st.for_class}
    return [Param(k, str(v)[:6000]) for k, v in d.items()]


def load_study(name: str) -> Study:
    import optuna
    try:
        ost = optuna.load_study(study_name=name, storage=storage())
    except KeyError:
        raise WorkbenchError(f"no study named {name!r}") from None
    a = ost.user_attrs
    if "settings" not in a:
        raise WorkbenchError(f"study {name!r} was not made by the workbench")
    return Study(**{k: a.get(k) for k in Study.__dataclass_fields__})


def list_studies() -> list[dict[str, Any]]:
    import optuna
    out = []
    for s in optuna.get_all_study_summaries(storage(), include_best_trial=False):
        a = s.user_attrs
        if "settings" in a:
            out.append({"name": s.study_name, "settings": list(a["settings"]), "metric": a["metric"],
                        "search": a["search"], "seeds": a["seeds"], "owner": a["owner"],
                        "class": a["for_class"], "trials": s.n_trials, "created": a["created"],
                        "template": a.get("template")})
    return sorted(out, key=lambda s: s["created"], reverse=True)


def _point_words(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


# --- taking a trial -------------------------------------------------------------------------

def take_trial(name: str, user: User | None = None, executor: str | None = None,
               start_dispatcher: bool = True) -> dict[str, Any]:
    """The next trial of the study, submitted as a run under `user`'s name. Returns
    {"trial", "run_id", "params"}; one sentence when the study is done or the launch refused."""
    from optuna.trial import TrialState
    from .submit import submit
    user = user or single_user()
    st = load_study(name)
    if not (st.for_class or user.teacher or user.id == st.owner_id):
        raise PermissionDenied(f"study {name!r} is {st.owner}'s: only they and the teacher take its trials")
    sync(name)
    with _lock():
        ost = st.optuna()
        trials = ost.get_trials(deepcopy=False)
        taken = [t for t in trials if not t.user_attrs.get("refused")]
        waiting = [t for t in trials if t.state == TrialState.WAITING]
        ost.sampler = st._sampler(len(trials))
        if st.max_minutes and time.time() - st.created > st.max_minutes * 60:
            raise StudyDone(f"study {name!r} is over its budget of {st.max_minutes:g} minutes")
        budget = st.trial_budget()
        if (st.search == "grid" and not waiting) or (budget and len(taken) - len(waiting) >= budget):
            what = "every point of its grid" if st.search == "grid" else f"its budget of {budget} trials"
            raise StudyDone(f"study {name!r} has taken {what}: nothing left to take")
        trial = ost.ask(st.space())
        params = dict(trial.params)
        fresh = not waiting  # ask pops a waiting (enqueued) trial first; under the lock, so this one
        if st.search != "grid" and fresh and st.seeds > 1:
            point = {k: v for k, v in params.items() if k != "seed"}
            for seed in range(st.seeds):
                if seed != params["seed"]:
                    ost.enqueue_trial({**point, "seed": seed})
        try:
            spec = st.spec_for(params)
        except WorkbenchError as exc:
            trial.set_user_attr("error", str(exc))
            ost.tell(trial, state=TrialState.FAIL)
            raise WorkbenchError(f"trial {trial.number} ({_point_words(params)}) cannot run: {exc}") from None
        label = f"{name} #{trial.number}: {_point_words(params)}"
        tags = {TAG_STUDY: name, TAG_TRIAL: str(trial.number), TAG_PARENT: st.parent_run_id}
        try:
            run_id = submit(spec, label, user, executor=executor, start_dispatcher=start_dispatcher,
                            extra_tags=tags)
        except WorkbenchError:
            # refused (a class limit): the point goes back in line for the next taker
            trial.set_user_attr("refused", True)
            ost.tell(trial, state=TrialState.FAIL)
            ost.enqueue_trial(params)
            raise
        for k, v in {"run_id": run_id, "owner": user.name, "owner_id": user.id}.items():
            trial.set_user_attr(k, v)
    return {"study": name, "trial": trial.number, "run_id": run_id, "params": params}


def run_study(name: str, user: User | None = None, trials: int | None = None, callback=None,
              poll: float = 1.0) -> list[dict[str, Any]]:
    """Take trials one after another (the CLI's `study run`), each followed to its end; stops at
    `trials` or when the study has nothing left. Returns each trial's ending."""
    from .submit import follow_run
    out = []
    while trials is None or len(out) < trials:
        try:
            t = take_trial(name, user)
        except StudyDone:
            break
        end = follow_run(t["run_id"], poll=poll)
        sync(name)
        out.append({**t, "status": end["status"], "message": end["message"]})
        if callback:
            callback(out[-1])
    return out


# --- the trainer's side: per-epoch reports, pruning, the value ---------------------------------

class TrialHook:
    """What a study's trial does in its trainer (execute.py): `epoch(row)` reports the epoch's
    validation accuracy (or training accuracy without a validation split) and returns True when
    the pruner says to stop; `finish(status, summary, spec)` tells the trial its value."""

    def __init__(self, study: str, number: int):
        import optuna
        self.st = load_study(study)
        self.ost = self.st.optuna()
        trial = [t for t in self.ost.get_trials(deepcopy=False) if t.number == number][0]
        self.trial = optuna.trial.Trial(self.ost, trial._trial_id)
        self.number = number
        self.pruned_at: int | None = None

    @classmethod
    def for_run(cls, r: dict[str, Any]) -> "TrialHook | None":
        info = r["status_info"]
        if not info.get("study") or info.get("trial") is None:
            return None
        return cls(str(info["study"]), int(info["trial"]))

    def epoch(self, row: dict[str, Any]) -> bool:
        if METRICS[self.st.metric][1] != "maximize" or self.pruned_at:
            return bool(self.pruned_at)  # seconds and parameters are known only at the end
        value = row.get("val_accuracy")
        value = row.get("train_accuracy") if value is None else value
        if value is None:
            return False
        try:
            self.trial.report(float(value), int(row["epoch"]))
            if self.trial.should_prune():
                self.pruned_at = int(row["epoch"])
        except Exception as exc:  # the study's database is down: train on, unpruned
            print(f"warning: epoch {row['epoch']} not reported to the study: {exc}", file=sys.stderr)
        return bool(self.pruned_at)

    def message(self) -> str | None:
        return f"pruned at epoch {self.pruned_at}: {PRUNED_WORDS}" if self.pruned_at else None

    def finish(self, status: str, info: dict[str, Any], parameters: int) -> None:
        tell(self.ost, self.number, status, {**info, "parameters": parameters}, self.st.metric,
             pruned=bool(self.pruned_at))


def tell(ost, number: int, status: str, info: dict[str, Any], metric: str, pruned: bool = False) -> None:
    """A trial's end as Optuna hears it: finished -> its value, pruned -> PRUNED, else FAIL."""
    from optuna.trial import TrialState
    value = info.get(METRICS[metric][0])
    try:
        if pruned or info.get("pruned"):
            ost.tell(number, state=TrialState.PRUNED, skip_if_finished=True)
        elif status == "finished" and value is not None:
            ost.tell(number, float(value), skip_if_finished=True)
        else:
            ost.tell(number, state=TrialState.FAIL, skip_if_finished=True)
    except (RuntimeError, ValueError) as exc:  # told meanwhile by the other side (sync / trainer)
        if "finished" not in str(exc).lower():
            raise


def sync(name: str) -> int:
    """Tell every running trial whose run has ended (its trainer died, or ended before it could
    tell); returns how many were told. Cheap when nothing is running."""
    from optuna.trial import TrialState
    st = load_study(name)
    ost = st.optuna()
    told = 0
    for t in ost.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        run_id = t.user_attrs.get("run_id")
        if not run_id:
            if time.time() - t.datetime_start.timestamp() > 300:  # asked, never submitted (a crash)
                ost.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
                told += 1
            continue
        try:
            r = runs.load_summary(run_id)
        except WorkbenchError:  # the run was deleted
            tell(ost, t.number, "failed", {}, st.metric)
            told += 1
            continue
        if r["status"] in runs.ACTIVE:
            continue
        info = dict(r["status_info"])
        info["parameters"] = r["config"].get("parameters")
        tell(ost, t.number, r["status"], info, st.metric)
        told += 1
    return told
