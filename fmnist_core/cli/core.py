"""The core commands: data | train | evaluate | runs (the dataset, training, evaluation, the run
store), with the training progress bar on stderr and the train command's flags.

Not here: the registry, the parser and main (cli/__init__.py), and the other command groups
(predict, compare, bench, bench-train: one module each in cli/).
"""
from __future__ import annotations

import argparse
import os
import sys

from . import command, emit_json
from ..errors import WorkbenchError


class Progress:
    """A progress bar on stderr (redrawn in place on a terminal, one line per epoch otherwise)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr  # looked up now: sys.stderr may have been replaced
        self.tty = self.stream.isatty()

    def __call__(self, ev: dict) -> None:
        kind = ev["event"]
        if kind == "start":
            self.epochs = ev["epochs"]
            self.line(f"training on {ev['device']} ({ev['precision']}): {ev['train_size']} train / "
                      f"{ev['val_size']} validation images, {ev['epochs']} epochs\n")
        elif kind == "batch" and self.tty:
            frac = ev["batch"] / ev["steps"]
            bar = "#" * int(30 * frac) + "-" * (30 - int(30 * frac))
            self.line(f"\repoch {ev['epoch']}/{self.epochs} [{bar}] {frac:4.0%} loss {ev['loss']:.4f}")
        elif kind == "epoch":
            val = (f" val_loss {ev['val_loss']:.4f} val_acc {ev['val_accuracy']:.4f}"
                   if "val_accuracy" in ev else "")
            if "watch_accuracy" in ev:
                val += f" test_acc {ev['watch_accuracy']:.4f} (watched)"
            self.line(f"\repoch {ev['epoch']}/{ev['epochs']} loss {ev['train_loss']:.4f} "
                      f"acc {ev['train_accuracy']:.4f}{val} ({ev['epoch_seconds']:.1f} s)\n")
        elif kind == "end" and ev.get("message"):
            self.line(f"{ev['status']}: {ev['message']}\n")

    def line(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def _ints(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    return vals


# --- data ----------------------------------------------------------------------------

def _data_args(p):
    pass


@command("data", "check the dataset and print where it came from and its class counts")
def cmd_data(args) -> int:
    from ..data import load, summary
    emit_json(summary(load()))
    return 0
cmd_data.add_arguments = _data_args


# --- train ---------------------------------------------------------------------------

def _train_args(p):
    from ..device import DEVICES
    from ..train import EARLY_STOP_ON, OPTIMIZERS, SCHEDULES
    p.add_argument("--preset", help="a preset name (see `runs --presets`); flags below override it")
    p.add_argument("--arch", choices=("mlp", "cnn", "resnet"), help="build your own model instead of a preset")
    p.add_argument("--hidden", type=_ints, help="MLP hidden sizes, e.g. 128,64")
    p.add_argument("--channels", type=_ints, help="CNN conv channels, e.g. 32,64")
    p.add_argument("--kernel", type=int, help="CNN kernel size (1, 3, 5, 7)")
    p.add_argument("--pool", choices=("max", "avg"))
    p.add_argument("--pool-every", type=int)
    p.add_argument("--fc", type=_ints, help="CNN hidden fully connected sizes, e.g. 128")
    p.add_argument("--stem", type=int, help="ResNet stem conv channels, e.g. 24")
    p.add_argument("--stages", type=_ints, help="ResNet channels per residual stage, e.g. 24,48,96")
    p.add_argument("--blocks", type=int, help="ResNet residual blocks per stage")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the training step (falls back to eager without a C++ compiler)")
    p.add_argument("--activation")
    p.add_argument("--dropout", type=float)
    p.add_argument("--batchnorm", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--lr", type=float)
    p.add_argument("--momentum", type=float)
    p.add_argument("--weight-decay", "--l2", dest="weight_decay", type=float)
    p.add_argument("--l1", type=float)
    p.add_argument("--schedule", choices=SCHEDULES)
    p.add_argument("--val-fraction", type=float)
    p.add_argument("--augment-flip", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--augment-shift", type=int)
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--patience", type=int, help="early stopping patience in epochs (0 = off)")
    p.add_argument("--early-stop-on", choices=EARLY_STOP_ON,
                   help="the validation figure that picks the best epoch and runs out patience")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", choices=DEVICES)
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"))
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--threads", type=int)
    p.add_argument("--max-seconds", type=float, help="stop training after this many seconds")
    p.add_argument("--train-limit", type=int, help="use only the first N training images")
    p.add_argument("--engine", choices=("torch", "numpy"), default=None)
    p.add_argument("--run", metavar="RUN_ID", help="train a run already in the run store as configured "
                   "there (what the dashboard's Launch starts)")
    p.add_argument("--queue", action="store_true", help="submit to the class queue (priced and checked "
                   "against the class limits like the dashboard's Launch; the dispatcher starts it) and follow it")
    p.add_argument("--executor", choices=("local", "ray"), help="local: train in this process (default, "
                   "or FMNIST_EXECUTOR); ray: submit to the Ray cluster at RAY_ADDRESS and follow it")
    p.add_argument("--save", help="also copy the best checkpoint to this path")
    p.add_argument("--watch-test", action="store_true", help="score the test set at every epoch end for "
                   "the record (curves and per-epoch confusion of models trained without a validation "
                   "split, as `make models` does); it never picks an epoch or stops the run")


MODEL_FLAGS = ("hidden", "channels", "kernel", "pool", "pool_every", "fc", "activation", "dropout", "batchnorm",
               "stem", "stages", "blocks")
TRAIN_FLAGS = ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "l1", "schedule",
               "val_fraction", "augment_flip", "augment_shift", "label_smoothing", "patience", "early_stop_on", "seed",
               "device", "precision", "channels_last", "threads", "max_seconds", "compile")


def spec_from_args(args) -> tuple[dict, str]:
    """The flags as a RunSpec (a preset or a blank model, then the flags over it): validated
    there, once; returns its stored form and the run's label."""
    from ..models import CNNConfig, MLPConfig, ResNetConfig
    from ..spec import RunSpec
    from ..errors import ConfigError
    if not args.preset and not args.arch:
        raise ConfigError("give --preset NAME or --arch mlp|cnn|resnet")
    overrides = {k: getattr(args, k) for k in MODEL_FLAGS if getattr(args, k) is not None}
    kind = None
    if args.preset:
        from ..models import preset
        kind = preset(args.preset)["model"].kind
    else:
        kind = args.arch
    if kind == "mlp" and {"channels", "kernel", "pool", "pool_every", "fc"} & set(overrides):
        raise ConfigError("--channels/--kernel/--pool/--fc are CNN options; this model is an MLP")
    if kind == "cnn" and "hidden" in overrides:
        raise ConfigError("--hidden is an MLP option; use --fc for a CNN's fully connected layers")
    resnet_flags = {"stem", "stages", "blocks"} & set(overrides)
    if kind != "resnet" and resnet_flags:
        raise ConfigError(f"--{sorted(resnet_flags)[0]} is a ResNet option; this model is {kind!r}")
    if kind == "resnet" and {"hidden", "channels", "kernel", "pool", "pool_every", "fc", "batchnorm"} & set(overrides):
        raise ConfigError("a ResNet takes --stem, --stages and --blocks (batchnorm is always on)")
    train = {k: getattr(args, k) for k in TRAIN_FLAGS if getattr(args, k) is not None}
    extra = {"engine": args.engine or "torch", "train_limit": args.train_limit,
             "watch_test": bool(getattr(args, "watch_test", False))}
    if args.preset:
        spec = RunSpec.from_preset(args.preset, model=overrides, train=train, **extra)
        label = args.preset
    else:
        from dataclasses import replace
        from ..train import train_config_from_dict
        base = {"mlp": MLPConfig, "cnn": CNNConfig, "resnet": ResNetConfig}[kind]()
        try:
            mcfg = replace(base, **overrides)
        except TypeError as exc:
            raise ConfigError(str(exc)) from None
        spec = RunSpec(mcfg, train_config_from_dict(train), **extra).validate()
        label = f"custom-{kind}"
    return spec.to_dict(), label


@command("train", "train a model as a run in the run store; prints one JSON line at the end")
def cmd_train(args) -> int:
    from .. import runs
    from ..execute import execute_run
    from ..executors import executor_name
    from ..files import check_output_file
    from ..submit import follow_run, submit
    given = any(getattr(args, k) is not None for k in MODEL_FLAGS + TRAIN_FLAGS + ("preset", "arch", "engine"))
    if args.save:
        check_output_file(args.save, ".pt", "--save")  # before training, not after
    if args.run and given:
        raise WorkbenchError("--run trains a run as it is in the store; give no model or training flags with it")
    if args.run:
        run_id = args.run
    else:
        spec, label = spec_from_args(args)  # validated here: a bad flag creates no run
        if args.queue or executor_name(args.executor) == "ray":
            # through the class queue: priced and checked like a Launch, started by the dispatcher
            run_id = submit(spec, label=label, executor=args.executor)
            print(f"run {run_id} submitted; waiting for the dispatcher to start it", file=sys.stderr)
            return _train_done(args, follow_run(run_id, Progress()))
        # the command line is the server's operator: no class limits, as for the teacher
        run_id = runs.create_run(spec, label=label, owner=os.environ.get("USER") or "cli",
                                 extra_tags={"fmnist.by_teacher": "1"})
    summary = execute_run(run_id, callback=Progress())
    return _train_done(args, summary)
cmd_train.add_arguments = _train_args


def _train_done(args, summary: dict) -> int:
    from ..files import copy_atomic
    if args.save and summary.get("checkpoint"):
        copy_atomic(summary["checkpoint"], args.save)
        summary["saved"] = args.save
    emit_json(summary)
    return 0 if summary["status"] in ("finished", "cancelled") else 1
cmd_train.add_arguments = _train_args


# --- evaluate ------------------------------------------------------------------------

def _evaluate_args(p):
    p.add_argument("checkpoint")
    p.add_argument("--misclassified", type=int, default=0, help="include the N most confident mistakes")


@command("evaluate", "evaluate a checkpoint on the 10,000 test images")
def cmd_evaluate(args) -> int:
    from ..data import load
    from ..evaluate import evaluate
    from ..models import load_model
    model = load_model(args.checkpoint)
    ds = load()
    m = evaluate(model, ds.x_test, ds.y_test, top_misclassified=args.misclassified)
    if not args.misclassified:
        m.pop("misclassified")
    emit_json(m)
    return 0
cmd_evaluate.add_arguments = _evaluate_args


# --- runs ----------------------------------------------------------------------------

def _runs_args(p):
    p.add_argument("--delete", metavar="RUN_ID", help="delete this run")
    p.add_argument("--cancel", metavar="RUN_ID", help="ask this run to stop")
    p.add_argument("--presets", action="store_true", help="list the model presets instead")


@command("runs", "list the run store (or delete / cancel a run, or list presets)")
def cmd_runs(args) -> int:
    from .. import runs
    if args.presets:
        from ..models import PRESETS, build_model, config_to_dict, count_parameters
        emit_json([{"name": n, "about": p["about"], "model_config": config_to_dict(p["model"]),
                    "train": p["train"], "parameters": count_parameters(build_model(p["model"]))}
                   for n, p in sorted(PRESETS.items())])
        return 0
    runs.check_answering()  # one line now, not MLflow's minutes of retries
    # the command line is the server's operator: it acts as the teacher would
    if args.delete is not None:
        from ..roles import operator
        from ..submit import delete_run
        delete_run(operator(), args.delete)
        emit_json({"deleted": args.delete})
        return 0
    if args.cancel is not None:
        from ..roles import operator
        from ..submit import stop_run
        stop_run(operator(), args.cancel)
        emit_json({"cancel_requested": args.cancel})
        return 0
    from ..queue import benchmark_state, estimates
    from ..roles import class_settings
    runs.mark_orphans()
    out = []
    listed = runs.list_runs()
    line = estimates(listed, class_settings().max_concurrent, blocked=benchmark_state() is not None)
    for r in listed:
        st = r["status_info"]
        out.append({"run_id": r["run_id"], "label": r["label"], "owner": r["owner"], "status": r["status"],
                    "preset": r["config"].get("preset"), "engine": r["config"].get("engine"),
                    "model_config": r["config"].get("model_config"), "epochs_run": st.get("epochs_run") or 0,
                    "best_val_accuracy": st.get("best_val_accuracy"), "test_accuracy": st.get("test_accuracy"),
                    "message": st.get("message"), "queue_position": (line.get(r["run_id"]) or {}).get("position"),
                    "queue_wait_s": (line.get(r["run_id"]) or {}).get("wait")})
    emit_json(out)
    return 0
cmd_runs.add_arguments = _runs_args
