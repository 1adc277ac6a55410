"""What the class activities cost on this machine, in a throwaway run store (a temp folder):
one stored answer, reading a class's answers, the projector's figures, the shipped models'
answers on a student's 20 images, and a challenge's standings over a store of runs.

    python scripts/measure_activities.py                 # 30 students x 20 answers, 300 runs
    python scripts/measure_activities.py --students 60 --runs 1000

Prints medians (of --repeat timings) and the 1-minute load average, as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--students", type=int, default=30)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fmnist-activities-"))
    os.environ["FMNIST_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"
    from fmnist_core import challenge, humans, roles, runs
    from fmnist_core.data import load
    from fmnist_core.spec import run_spec
    from fmnist_core.models import MLPConfig, load_model
    from fmnist_core.train import TrainConfig
    from fmnist_core.views.shared import SHIPPED_DIR, SHIPPED
    runs.ARTIFACTS = tmp
    ds = load()
    teacher = roles.User("teacher", roles.user_id("t" * 32), teacher=True)
    students = [roles.User(f"s{k}", roles.user_id(f"{k:032d}")) for k in range(a.students)]
    act = humans.activity()
    rng_answers = [[(i, (int(ds.y_test[i]) + (k + j) % 3 // 2) % 10)
                    for j, i in enumerate(humans.image_set(act, s.id, ds.y_test))] for k, s in enumerate(students)]
    t = time.perf_counter()
    for s, answers in zip(students, rng_answers):
        for i, ans in answers:
            humans.record_answer(s, ds.y_test, i, ans)
    per_answer = (time.perf_counter() - t) * 1000 / sum(map(len, rng_answers))
    out = {"load_1min": os.getloadavg()[0], "students": a.students, "record_answer_ms_mean": round(per_answer, 2),
           "class_answers_ms": median_ms(humans.class_answers, a.repeat)}
    stored = humans.class_answers()
    idx = sorted({i for s in stored for i in s["answers"]})
    for name, fname in SHIPPED.items():
        model = load_model(SHIPPED_DIR / fname)
        out[f"network_answers_20_{name}_ms"] = median_ms(
            lambda: humans.network_answers(model, ds.x_test, ds.y_test, idx[:20]), a.repeat)
    net = humans.network_answers(load_model(SHIPPED_DIR / "cnn.pt"), ds.x_test, ds.y_test, idx)
    out["class_figures_ms"] = median_ms(lambda: humans.class_figures(stored, ds.y_test, net), a.repeat)
    figs = humans.class_figures(stored, ds.y_test, net)
    out["figures"] = {k: round(figs[k], 4) for k in ("mean", "spread", "majority", "network")}
    c = challenge.set_challenge(teacher, challenge.Challenge(goal=0.85, rules=challenge.Rules(max_parameters=50_000)))
    for k in range(a.runs):
        s = students[k % len(students)]
        rid = runs.create_run(run_spec(MLPConfig(hidden=(16 + k % 48,)), TrainConfig(epochs=1)), owner=s.name,
                              owner_id=s.id)
        runs.set_status(rid, "finished", test_accuracy=0.8 + (k % 17) / 100, train_seconds=10 + k % 50)
    all_runs = runs.list_runs()
    out["runs"] = len(all_runs)
    out["list_runs_ms"] = median_ms(runs.list_runs, a.repeat)
    out["standings_ms"] = median_ms(lambda: challenge.standings(c, all_runs), a.repeat)
    out["results_csv_ms"] = median_ms(lambda: challenge.results_csv(challenge.standings(c, all_runs)), a.repeat)
    out["load_1min_end"] = os.getloadavg()[0]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
