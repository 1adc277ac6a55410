"""Prove every GPU path of the workbench in one call (fmnist_core/gpu_check.py says what it checks).

    FMNIST_DATA_DIR=/path/to/the/four/idx/files python scripts/gpu_check.py [--out FILE]
    python scripts/gpu_check.py --device cpu --quick --presets cnn-demo --require 0.5   # a test here

Needs only PyTorch, torchvision, NumPy and ONNX Runtime (+ onnx, onnxscript for the ONNX row):
no MLflow, Streamlit or scikit-learn. Writes one results file (default
artifacts/benchmarks/gpu-check-<device>-<time>.json) that the Timings page loads like any
results file from another machine; commit a CUDA run as artifacts/benchmarks/reference-gpu.json.
Progress on stderr, a one-line JSON summary on stdout. Exit 0: every check passed (or was
skipped with its reason); 1: a check failed (the file still says which and why); 2: bad input
(a device this machine lacks, an unknown preset, no dataset).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    from fmnist_core import gpu_check
    from fmnist_core.errors import WorkbenchError
    d = gpu_check.CheckConfig()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=d.device, choices=("cuda", "mps", "cpu"))
    ap.add_argument("--out", help="the results file (default artifacts/benchmarks/gpu-check-<device>-<time>.json)")
    ap.add_argument("--presets", help="comma-separated presets to train (default: the demo and every speedrun* one)")
    ap.add_argument("--quick", action="store_true",
                    help="small budgets (2,000 training images, one epoch, 500 test images): for a CPU test")
    ap.add_argument("--require", type=float, default=d.require,
                    help=f"the demo preset's test accuracy must reach this (default {d.require})")
    ap.add_argument("--train-budget", type=float, default=d.train_budget_s, metavar="S",
                    help=f"seconds of training per preset at most (default {d.train_budget_s:g})")
    ap.add_argument("--no-bench", action="store_true", help="skip the benchmark's rows")
    args = ap.parse_args(argv)
    cfg = gpu_check.CheckConfig(device=args.device, require=args.require, train_budget_s=args.train_budget,
                                bench=not args.no_bench,
                                presets=tuple(p for p in (args.presets or "").split(",") if p))
    if args.quick:
        cfg = gpu_check.quick(cfg)
    say = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    try:
        from fmnist_core.data import load
        from fmnist_core.files import write_bytes_atomic
        ds = load()
        results = gpu_check.run_checks(ds, cfg, say)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path(args.out or ROOT / "artifacts" / "benchmarks" / f"gpu-check-{args.device}-{stamp}.json")
        write_bytes_atomic(out, json.dumps(results, indent=1))
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = results[gpu_check.SCHEMA_KEY]
    print(json.dumps({"ok": report["ok"], "failed": report["failed"], "out": str(out),
                      "seconds": report["seconds"],
                      "checks": {c["name"]: c["status"] for c in report["checks"]}}), flush=True)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
