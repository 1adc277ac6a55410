"""Fill a run store with N finished runs, for measuring pages against a big class (not for
demos): each run is a real run-store entry, as a training writes it (params, per-epoch
metrics with steps, status, owner, test accuracy), with made-up figures and no checkpoint.

    python scripts/seed_runs.py 500 [--store sqlite:///path/mlflow.db]   (default: FMNIST_TRACKING_URI
                                                                          or the embedded store)
"""
from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def seed(n: int, rng: random.Random) -> list[str]:
    from fmnist_core import roles, runs
    from fmnist_core.spec import run_spec
    from fmnist_core.models import preset
    from fmnist_core.train import TrainConfig
    ids = []
    presets = ("mlp-seed000", "mlp-seed001", "mlp-seed003", "cnn-seed003")
    for k in range(n):
        name = presets[k % len(presets)]
        p = preset(name)
        lr = rng.choice([1e-4, 3e-4, 1e-3, 3e-3, 1e-2])
        epochs = rng.choice([2, 3, 5, 8])
        spec = run_spec(p["model"], TrainConfig(**{**p["train"], "lr": lr, "epochs": epochs}), preset=name)
        student = f"student {k % 30:02d}"
        rid = runs.create_run(spec, label="seeded", owner=student, owner_id=roles.user_id(f"{k % 30:032d}"))
        acc = 0.80 + 0.1 * rng.random()
        for e in range(1, epochs + 1):
            f = 1 - math.exp(-e)
            runs.log_epoch(rid, {"epoch": e, "train_loss": 0.9 - 0.5 * f, "train_accuracy": acc * f + 0.05,
                                 "val_loss": 0.95 - 0.5 * f, "val_accuracy": acc * f, "lr": lr,
                                 "epoch_seconds": 5 + rng.random()})
        runs.log_final(rid, {"test_accuracy": acc, "test_loss": 0.4})
        runs.set_status(rid, "finished", message=f"finished {epochs} epochs", test_accuracy=acc,
                        best_val_accuracy=acc, epochs_run=epochs, train_seconds=epochs * 5.5,
                        finished=time.time(), progress=1.0)
        ids.append(rid)
    return ids


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int)
    ap.add_argument("--store", help="tracking URI (default: FMNIST_TRACKING_URI or the embedded store)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.store:
        os.environ["FMNIST_TRACKING_URI"] = args.store
    t0 = time.time()
    ids = seed(args.n, random.Random(args.seed))
    print(f"seeded {len(ids)} runs in {time.time() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
