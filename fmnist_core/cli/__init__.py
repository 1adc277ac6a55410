"""Command line: `python -m fmnist_core <command>`. JSON on stdout, human progress on stderr.

This module holds the command registry (`command`, `emit_json`), the parser and `main`;
each command group is one module that registers its commands with @command:

  * core         data | train | evaluate | runs
  * twin         compare (PyTorch vs the hand-written twin on the test set)
  * bench        bench (inference and training timings)
  * predict      predict (garments in image files)
  * bench_train  bench-train (training speed)
  * explain      explain (which pixels made the class: captum attributions)
  * export       export (a checkpoint as an ONNX file)
  * embed        embed (a 2-D map of one layer for the test set)
  * study        study create|run|show|list (sweeps in Optuna, trials through the queue)
  * features     features (a backbone's features of the images, a shared job) | head

A problem with input prints one line on stderr and exits 2; a traceback only with
FMNIST_DEBUG=1. A new command: a function decorated with @command in the module of its
group (a new group: a module here, imported at the bottom of this file).

Not here: anything the commands compute (the rest of fmnist_core; the CLI only parses,
calls and prints).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from ..errors import WorkbenchError

COMMANDS: dict[str, tuple] = {}  # name -> (help, run(args) -> exit status); run.add_arguments(parser)


def command(name: str, help: str):
    def deco(fn):
        COMMANDS[name] = (help, fn)
        return fn
    return deco


def emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fmnist_core",
                                     description="Fashion-MNIST Workbench core: JSON on stdout, progress on stderr.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, fn) in COMMANDS.items():
        # argparse %-formats a sub-command's help in the command list: "time-to-93%" made
        # `python -m fmnist_core --help` fail with "incomplete format"
        sp = sub.add_parser(name, help=help_text.replace("%", "%%"), description=help_text)
        fn.add_arguments(sp)
        sp.set_defaults(func=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: one line for the user, traceback only on request
        if os.environ.get("FMNIST_DEBUG"):
            raise
        print(f"error: {type(exc).__name__}: {exc} (set FMNIST_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


# the command groups, in the order `--help` lists them; imported last because they
# register themselves with `command` above
from . import core, twin, bench, predict, bench_train, explain, export, embed, study, features  # noqa: E402,F401
