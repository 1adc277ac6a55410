"""`python -m fmnist_core study create|run|show|list`: studies (sweeps) from the command line.

  study create NAME --template depth [--epochs 1 --train-limit 2000 --seeds 2 --search grid ...]
  study create NAME --vary train.lr=1e-4..1e-1:log --vary model.dropout=0,0.2 --search tpe --trials 12
  study run NAME [--trials N]       take trials one after another, each followed to its end
  study show NAME                   the answer: points (mean, std, n), the sentence, every trial
  study list

One JSON object on stdout; bad input is one sentence on stderr and exit 2 (cli.main). The CLI's
user is the machine's single user (the teacher on a laptop), as for `train --queue`.
"""
from __future__ import annotations

import sys

from . import command, emit_json
from ..errors import ConfigError
from ..study_settings import parse_value


def _study_args(p):
    p.add_argument("action", choices=("create", "run", "show", "list"))
    p.add_argument("name", nargs="?", help="the study's name (all but list)")
    p.add_argument("--template", help="a study template: depth, width, dropout, batchnorm, regularization, early-stopping, lr, "
                                      "batch-size, architecture, engine, augmentation, seed000, seed001, ...")
    p.add_argument("--vary", action="append", default=[], metavar="SETTING=VALUES",
                   help="a setting and its values (a,b,c) or range (low..high, ':log' for a log scale)")
    p.add_argument("--preset", help="the model and training every trial starts from (default: the template's)")
    p.add_argument("--epochs", type=int, help="epochs per trial")
    p.add_argument("--train-limit", type=int, help="train on the first N images only")
    p.add_argument("--seeds", type=int, help="seeds per point (default 1; 3 for the seeds' experiments)")
    p.add_argument("--search", choices=("grid", "random", "tpe"), help="how points are chosen (default grid)")
    p.add_argument("--pruner", choices=("none", "median", "hyperband"))
    p.add_argument("--metric", default="test_accuracy",
                   choices=("test_accuracy", "val_accuracy", "train_seconds", "parameters"))
    p.add_argument("--trials", type=int, default=None, help="create: the budget of trials; run: how many to take")
    p.add_argument("--minutes", type=float, default=0.0, help="the budget in minutes (create)")
    p.add_argument("--threads", type=int, default=0, help="torch threads per trial (0: the queue decides)")


def parse_vary(text: str) -> tuple[str, dict]:
    """'depth=0,1,2' -> ('depth', {'values': [0, 1, 2]}); 'train.lr=1e-4..1e-1:log' -> a range."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise ConfigError(f"--vary takes SETTING=VALUES, got {text!r}")
    log = rest.endswith(":log")
    rest = rest.removesuffix(":log")
    if ".." in rest:
        lo, hi = (parse_value(v) for v in rest.split("..", 1))
        return name, {"low": lo, "high": hi, "log": log}
    return name, {"values": [parse_value(v) for v in rest.split(",")]}


@command("study", "studies (sweeps): create one, take its trials, show its answer, list them")
def cmd_study(args) -> int:
    from .. import studies
    from ..study_settings import base_spec, template
    if args.action == "list":
        emit_json({"studies": studies.list_studies()})
        return 0
    if not args.name:
        raise ConfigError(f"study {args.action} needs the study's name")
    if args.action == "create":
        t = template(args.template) if args.template else {"settings": {}, "preset": "mlp-seed000"}
        settings = dict(t["settings"])
        for v in args.vary:
            k, d = parse_vary(v)
            settings[k] = d
        if not args.template and not settings:
            raise ConfigError("give a --template or at least one --vary SETTING=VALUES")
        train = {**t.get("train", {}), **({"threads": args.threads} if args.threads else {})}
        base = base_spec(args.preset or t["preset"], epochs=args.epochs or train.pop("epochs", None),
                         train_limit=args.train_limit, **{k: v for k, v in train.items() if k != "epochs"})
        st = studies.create_study(args.name, settings, metric=args.metric, seeds=args.seeds or t.get("seeds", 1),
                                  search=args.search or t.get("search", "grid"), pruner=args.pruner,
                                  max_trials=args.trials or (12 if (args.search or t.get("search")) in ("random", "tpe")
                                                             and not args.minutes else 0),
                                  max_minutes=args.minutes, base=base, template=args.template,
                                  reported=t.get("reported"))
        emit_json({"study": st.name, "settings": st.settings, "metric": st.metric, "seeds": st.seeds,
                   "search": st.search, "pruner": st.pruner, "trials": st.trial_budget(),
                   "parent_run_id": st.parent_run_id, "storage": _safe(studies.storage_uri())})
        return 0
    if args.action == "run":
        def progress(t):
            print(f"trial {t['trial']} ({', '.join(f'{k}={v}' for k, v in t['params'].items())}): "
                  f"{t['status']} {t['message']}", file=sys.stderr, flush=True)
        done = studies.run_study(args.name, trials=args.trials, callback=progress)
        emit_json({"study": args.name, "trials": done})
        return 0
    from ..views.study import answer
    studies.sync(args.name)
    a = answer(studies.load_study(args.name))
    emit_json({"study": args.name, "sentence": a["sentence"], "states": a["states"],
               "points": [{"values": p["values"], "mean": p["mean"], "std": p["std"], "n": p["n"],
                           "seconds": p["seconds"], "owners": p["owners"]} for p in a["points"]],
               "trials": [{k: r[k] for k in ("trial", "state", "params", "value", "owner", "run_id", "message")}
                          for r in a["trials"]]})
    return 0
cmd_study.add_arguments = _study_args


def _safe(uri: str) -> str:
    """A database URI without its password, for printing."""
    import re
    return re.sub(r"://([^:/@]+):[^@]+@", r"://\1:***@", uri)
