"""CLI command of the manual twin: `python -m fmnist_core compare CHECKPOINT`.

Runs the checkpoint as the PyTorch nn.Module and as the hand-written twin (NumPy,
or the same math with torch tensor ops) over the 10,000 test images and prints one
JSON line: {"n", "agreement", "accuracy_torch", "accuracy_manual", "max_abs_diff",
"layers": [{"name", "kind", "max_abs_diff"}], "impl", "device"}. Registered by its
import in cli/__init__.py. (`train --engine numpy` lives in cli/core.py's train command.)
"""
from __future__ import annotations

from . import command, emit_json


def _compare_args(p):
    from ..device import DEVICES
    from ..twin import IMPLS
    p.add_argument("checkpoint")
    p.add_argument("--impl", choices=IMPLS, default="numpy",
                   help="numpy: ManualNet; torch-ops: the same math with torch tensor ops")
    p.add_argument("--device", choices=DEVICES, default="cpu",
                   help="where --impl torch-ops runs (the NumPy twin is CPU only)")


@command("compare", "run a checkpoint as PyTorch and as the hand-written twin on the test set; "
                    "report agreement and per-layer differences")
def cmd_compare(args) -> int:
    from ..data import load
    from ..errors import ConfigError
    from ..twin import compare
    if args.impl == "numpy" and args.device != "cpu":
        raise ConfigError("--device applies to --impl torch-ops; the NumPy twin runs on the CPU")
    ds = load()
    emit_json(compare(args.checkpoint, ds.x_test, ds.y_test, impl=args.impl, device=args.device))
    return 0
cmd_compare.add_arguments = _compare_args
