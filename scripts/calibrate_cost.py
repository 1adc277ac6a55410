"""The price estimate (fmnist_core/cost.py) against measured runs: a benchmark, not a test.

Each spec trains in a fresh process the way the dispatcher starts one (one torch thread, the
store's client loaded), which reports its wall time and peak RSS (VmHWM); the table puts the
estimate beside it and the ratio. Used to fit cost.py's constants; rerun on a new machine.

    python scripts/calibrate_cost.py [--quick] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# (preset, overrides): short versions of the presets, so the whole table takes minutes
CASES = [
    ("mlp-seed000", {"epochs": 1}, None),
    ("mlp-seed001", {"epochs": 1}, None),
    ("mlp-best", {"epochs": 1}, None),
    ("cnn-demo", {"epochs": 1}, 20000),
    ("cnn-seed003", {"epochs": 1}, 20000),
    ("resnet-small", {"epochs": 1}, 4000),
]

CHILD = r"""
import json, sys, time, resource
t0 = time.time()
import torch
torch.set_num_threads(1)
from fmnist_core import runs  # the store's client, as a trainer has it
from fmnist_core.data import load
from fmnist_core.spec import RunSpec
from fmnist_core.train import train
spec = RunSpec.from_dict(json.loads(sys.argv[1]))
r = train(spec.model, spec.train, load(), train_limit=spec.train_limit)
from fmnist_core.evaluate import evaluate
evaluate(r.model, load().x_test, load().y_test)
peak = int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM")))
print(json.dumps({"seconds": time.time() - t0, "peak_mb": peak / 1024}))
"""


def measure(spec: dict) -> dict:
    env = {**os.environ, "FMNIST_ARTIFACTS": tempfile.mkdtemp(prefix="fmnist-cal-")}
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the first three cases only")
    ap.add_argument("--out", help="also write the table as JSON")
    args = ap.parse_args()
    from fmnist_core import cost
    from fmnist_core.spec import RunSpec
    rows = []
    for name, train, limit in CASES[:3] if args.quick else CASES:
        spec = RunSpec.from_preset(name, train={**train, "threads": 1}, train_limit=limit)
        p = cost.price(spec)
        m = measure(spec.to_dict())
        row = {"case": f"{name} {train} limit={limit}", "est_mb": round(p.peak_mb), "peak_mb": round(m["peak_mb"]),
               "mem_ratio": round(p.peak_mb / m["peak_mb"], 2), "est_s": round(p.seconds, 1),
               "seconds": round(m["seconds"], 1), "time_ratio": round(p.seconds / m["seconds"], 2)}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    result = {"gflops": cost.matmul_gflops(), "load": os.getloadavg(), "rows": rows}
    print(json.dumps(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
