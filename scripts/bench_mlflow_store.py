"""How fast an MLflow tracking store answers search_runs for a class-sized run list.

Seeds RUNS runs (30 params, 8 metrics x 10 steps, 10 tags each; one log_batch per run) into a
tracking URI, then times search_runs(max_results=1000) over all of them and a search filtered
on a tag. Default store: a fresh local SQLite file (sqlite:///.../mlflow.db) with a local
artifact location, as the workbench uses without a class server.

    python scripts/bench_mlflow_store.py [--runs 500] [--uri URI] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--uri", help="tracking URI (default: a new sqlite:///TMP/mlflow.db)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--postgres-server", action="store_true",
                    help="run against a fresh PostgreSQL-backed `mlflow server` (tests/servers.py; root)")
    args = ap.parse_args()
    if args.postgres_server:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from servers import mlflow_server, postgres_server
        import shutil
        work = Path(tempfile.mkdtemp(prefix="mlflow-bench-srv-"))   # removed afterwards: only this
        try:
            with postgres_server() as dsn, mlflow_server(dsn, work / "artifacts") as (url, h):
                print(f"postgres + mlflow server up; mlflow server start {h.start_seconds[0]:.1f} s")
                args.uri = url
                run(args)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    else:
        run(args)


def run(args) -> None:

    t0 = time.time()
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag
    print(f"import mlflow: {time.time() - t0:.2f} s")

    tmp = Path(tempfile.mkdtemp(prefix="mlflow-bench-"))
    uri = args.uri or f"sqlite:///{tmp}/mlflow.db"
    t0 = time.time()
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment(f"bench-{int(time.time())}",
                                   artifact_location=None if args.uri else (tmp / "artifacts").as_uri())
    print(f"store: {uri}\nclient + create_experiment (creates the schema of a new SQLite file): {time.time() - t0:.2f} s")

    rng = random.Random(0)
    models = ["cnn", "mlp", "linear"]
    t0 = time.time()
    for i in range(args.runs):
        run = client.create_run(exp, run_name=f"run-{i}")
        now = int(time.time() * 1000)
        params = [Param(f"p{j:02d}", str(rng.random())) for j in range(30)]
        metrics = [Metric(f"m{k}", rng.random(), now + s, s) for k in range(8) for s in range(10)]
        tags = [RunTag("model", models[i % 3])] + [RunTag(f"t{j}", f"v{i % 7}") for j in range(9)]
        client.log_batch(run.info.run_id, metrics=metrics, params=params, tags=tags)
    seed = time.time() - t0
    print(f"seeded {args.runs} runs (create_run + one log_batch of 120 entities each): {seed:.1f} s "
          f"({1000 * seed / args.runs:.0f} ms/run)")

    def timed(label, **kw):
        times, n = [], 0
        for _ in range(args.repeat):
            t = time.time()
            n = len(client.search_runs([exp], **kw))
            times.append(time.time() - t)
        print(f"{label}: {n} runs, best {min(times):.3f} s, median {statistics.median(times):.3f} s")

    timed("search_runs(max_results=1000)", max_results=1000)
    timed("search_runs(\"tags.model = 'cnn'\")", filter_string="tags.model = 'cnn'", max_results=1000)
    timed("search_runs(\"metrics.m0 > 0.5\", order_by m1)", filter_string="metrics.m0 > 0.5",
          order_by=["metrics.m1 DESC"], max_results=1000)
    timed("search_runs(max_results=50)", max_results=50)
    if not args.uri:
        print(f"SQLite file: {(tmp / 'mlflow.db').stat().st_size / 1e6:.1f} MB")
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
