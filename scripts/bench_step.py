"""Server time of one step on the Step-through page: the seed-000 MLP (784-128-10) on a batch of 64
training images, SGD, a new batch each step (the issue-22 goal: <= 0.5 s).

    python scripts/bench_step.py [--rounds 30] [--page-rounds 10] [--model mlp-seed000] [--batch 64]

Two figures, each the median after a warm-up:

  * core:  Stepper.step() (the twin's forward, loss, backward, update, and PyTorch's autograd step
           beside it for the largest difference) + views.step.render (every stage's pictures,
           tables and sentences, the curves' table)
  * page:  the whole page script after a click on Step, run by Streamlit's AppTest in this
           process: the above plus the widgets, the Plotly figures and the images encoded as
           the server sends them (no browser, no network)

Prints one JSON line with both medians, their spread, the CPU and the load average at the
start and the end: timings on a shared 2-core machine are only comparable within one run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _core(model: str, batch: int, rounds: int) -> list[float]:
    from fmnist_core.data import load
    from fmnist_core.views import step as view
    ds = load()
    stepper = view.make_stepper({"model": model, "optimizer": "sgd", "lr": 0.1, "batch": batch,
                                 "same_batch": False}, ds.x_train, ds.y_train)
    for _ in range(3):  # warm-up: imports, first allocations, the thread pools
        view.render(stepper, stepper.step())
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        view.render(stepper, stepper.step())
        times.append(time.perf_counter() - t)
    return times


def _page(model: str, batch: int, rounds: int) -> list[float]:
    from streamlit.testing.v1 import AppTest
    script = "from ui import common\nfrom pages import step\ncommon.sidebar()\nstep.page()\n"
    at = AppTest.from_string(script, default_timeout=300).run()
    at.selectbox(key="sp_model").select(model).run()
    at.number_input(key="sp_batch").set_value(batch).run()
    at.checkbox(key="sp_same_batch").uncheck().run()
    at.button(key="sp_setup").click().run()
    for _ in range(2):
        at.button(key="sp_step").click().run()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        at.button(key="sp_step").click().run()
        times.append(time.perf_counter() - t)
        assert not at.exception, at.exception
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--page-rounds", type=int, default=10)
    ap.add_argument("--model", default="mlp-seed000")
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    from fmnist_core.device import machine_info
    load_start = os.getloadavg()
    core = _core(args.model, args.batch, args.rounds)
    page = _page(args.model, args.batch, args.page_rounds) if args.page_rounds else []

    def summary(ts):
        return {"median_s": round(statistics.median(ts), 4), "min_s": round(min(ts), 4),
                "max_s": round(max(ts), 4), "rounds": len(ts)} if ts else None
    print(json.dumps({"model": args.model, "batch": args.batch, "core": summary(core), "page": summary(page),
                      "goal_s": 0.5, "cpu": machine_info()["cpu"], "cores": os.cpu_count(),
                      "load_start": [round(v, 2) for v in load_start],
                      "load_end": [round(v, 2) for v in os.getloadavg()]}))


if __name__ == "__main__":
    main()
