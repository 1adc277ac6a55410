"""Measure fmnist_core.adversarial on the shipped models: how long one attack and one
smallest-epsilon search take (median of 20 test images), and each robustness curve, computed
afresh into CACHE_ROOT (its cache/robustness/ folder; nothing in artifacts/ is touched).

    python scripts/measure_adversarial.py CACHE_ROOT [mlp cnn]
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    os.environ["FMNIST_ARTIFACTS"] = str(Path(sys.argv[1]).resolve())
    from fmnist_core import adversarial as adv
    from fmnist_core.data import load
    from fmnist_core.models import load_model
    from fmnist_core.views.shared import SHIPPED_DIR
    ds = load()
    print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs")
    for name in sys.argv[2:] or ("mlp", "cnn"):
        path = SHIPPED_DIR / f"{name}.pt"
        model = load_model(path)
        for what, fn in (("attack FGSM 8/255", lambda x: adv.attack_one(model, x, "FGSM", 8 / 255)),
                         ("attack PGD 8/255", lambda x: adv.attack_one(model, x, "PGD", 8 / 255)),
                         ("smallest FGSM", lambda x: adv.smallest_flip(model, x, "FGSM", search_max=64 / 255)),
                         ("smallest PGD", lambda x: adv.smallest_flip(model, x, "PGD", search_max=64 / 255))):
            times = []
            for i in range(20):
                t = time.perf_counter()
                fn(ds.x_test[i])
                times.append(time.perf_counter() - t)
            print(f"{name} {what}: median {statistics.median(times) * 1000:.0f} ms")
        for attack in adv.ATTACKS:
            c = adv.robustness_curve(path, ds, attack)
            acc = " ".join(f"{e:g}:{a:.1%}" for e, a in zip(c["epsilons"], c["accuracy"]))
            print(f"{name} {attack} curve on {c['n']:,} images in {c['seconds']:.0f} s"
                  f"{' (cached)' if c['cached'] else ''}: {acc}")
        print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
