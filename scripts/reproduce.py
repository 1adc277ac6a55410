"""`make reproduce`: the seeds' own experiments as studies, and a table of their reported figure
beside ours (mean ± std over the seeds) saying whether they agree. A benchmark, not a test: the
full set (seed 000's 60 epochs, seed 003's 50, 3 seeds each) is hours of CPU.

    python scripts/reproduce.py [--quick] [--only seed000,seed001] [--epochs N] [--seeds N]

--quick: 2 epochs and 1 seed per experiment (the table says how many epochs actually ran: a
quick figure is NOT the seed's experiment and is expected to fall short of it). Every trial
is an ordinary run through the class queue (studies.run_study), so it shows on the Results
and Study pages. The table is printed (markdown) and written to
artifacts/benchmarks/reproduce-latest.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def bar(done: int, total: int, text: str) -> None:
    n = 30 * done // max(total, 1)
    print(f"\r[{'#' * n}{'.' * (30 - n)}] {done}/{total} {text[:70]:<70}", end="", file=sys.stderr, flush=True)


def main() -> int:
    from fmnist_core import runs, studies
    from fmnist_core.device import machine_info
    from fmnist_core.study_settings import SEED_TEMPLATES, base_spec, template
    from fmnist_core.views.study import answer, fmt
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 epochs, 1 seed per experiment")
    ap.add_argument("--only", help="comma-separated templates (default: every seed's experiment)")
    ap.add_argument("--epochs", type=int, help="epochs per trial (default: the seed's own; --quick: 2)")
    ap.add_argument("--seeds", type=int, help="seeds per experiment (default 3; --quick: 1)")
    args = ap.parse_args()
    names = args.only.split(",") if args.only else list(SEED_TEMPLATES)
    epochs = args.epochs or (2 if args.quick else None)
    seeds = args.seeds or (1 if args.quick else None)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    plan = []
    for name in names:
        t = template(name)
        train = {k: v for k, v in t.get("train", {}).items() if k != "epochs"}
        ep = epochs or t.get("train", {}).get("epochs")
        st = studies.create_study(f"reproduce-{name}-{stamp}", {}, seeds=seeds or t.get("seeds", 3),
                                  base=base_spec(t["preset"], epochs=ep, **train), template=name,
                                  reported=t.get("reported"))
        plan.append((name, t, ep, st))
    total = sum(st.trial_budget() for *_, st in plan)
    done, rows, t0 = 0, [], time.time()
    for name, t, ep, st in plan:
        started = time.time()

        def one(trial):
            nonlocal done
            done += 1
            bar(done, total, f"{name}: trial {trial['trial']} {trial['status']}")
        bar(done, total, f"{name}: {ep} epochs x {st.trial_budget()} seed(s)")
        studies.run_study(st.name, callback=one)
        a = answer(studies.load_study(st.name))
        p = a["points"][0] if a["points"] else {"mean": None, "std": None, "n": 0}
        epochs_run = [runs.load_summary(r["run_id"])["status_info"].get("epochs_run") for r in a["trials"]
                      if r["run_id"]]
        rows.append({"template": name, "about": t["about"], "reported": t.get("reported"),
                     "ours": fmt("test_accuracy", p["mean"], p["std"]), "mean": p["mean"], "std": p["std"],
                     "seeds": p["n"], "epochs": ep, "epochs_run": epochs_run, "sentence": a["sentence"],
                     "minutes": round((time.time() - started) / 60, 1), "study": st.name})
    print(file=sys.stderr)
    out = {"quick": args.quick, "machine": machine_info(), "minutes": round((time.time() - t0) / 60, 1),
           "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": rows}
    path = runs.ARTIFACTS / "benchmarks" / "reproduce-latest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print("| experiment | reported | ours (mean ± std) | seeds | epochs (run) | minutes | verdict |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['about']} | {r['reported']:.2f}% | {r['ours']} | {r['seeds']} | {r['epochs']} "
              f"({', '.join(map(str, r['epochs_run']))}) | {r['minutes']} | {r['sentence']} |")
    print(f"\n{out['minutes']} min in all on {out['machine'].get('cpu', '?')}; written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
