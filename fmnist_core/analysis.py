"""Heavy analysis as shared jobs: computed once, off the web process, for everyone who asks.

A map (PCA, t-SNE, UMAP of a layer), a robustness curve, the full-test-set compare of
PyTorch and the twin, the ONNX export, the attributions' deletion check and a backbone's
features of all 70,000 images (features.py) each take seconds
to minutes and hundreds of MB.
The web process never computes them: a page calls `request(kind, checkpoint, params)`, which

  * returns the cached result when there is one (instant, for everyone),
  * prices the job (`price_mb`) and refuses one over the class limit with a sentence,
  * otherwise creates the job's record, or joins the record already there: the key is what
    it computes (the checkpoint's content hash + kind + parameters), so a second asker of the
    same map joins the running job and sees its progress,

and the dispatcher (queue.py) starts waiting jobs one at a time within the same memory budget
as the trainings (`python -m fmnist_core.analysis KEY`, a process of its own). A record is a
small JSON file in artifacts/jobs/ (state waiting | running | done | failed, progress, message,
askers); the result lives where its module caches it (embed's and adversarial's caches) or in
artifacts/cache/analysis/KEY.json. A job whose process died is started again by the dispatcher.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

from . import runs
from .errors import WorkbenchError
from .files import content_hash, exclusive, read_json, write_json_atomic

KINDS = ("map", "robustness", "compare", "export", "deletion", "features")
BASE_MB = 900.0          # a job process: Python, torch, scikit-learn, the dataset, the model
TEST_IMAGES = 10_000
MAX_TRIES = 3


def jobs_dir() -> Path:
    return runs.ARTIFACTS / "jobs"


def results_dir() -> Path:
    return runs.ARTIFACTS / "cache" / "analysis"


@contextmanager
def _lock():
    with exclusive(jobs_dir() / ".lock"):
        yield


def job_key(kind: str, checkpoint: str | Path, params: dict[str, Any]) -> str:
    """What the job computes, as a name: the checkpoint's bytes, the kind and its parameters."""
    blob = json.dumps({"kind": kind, "checkpoint": content_hash(checkpoint), "params": params}, sort_keys=True)
    return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:24]}"


def _record_path(key: str) -> Path:
    return jobs_dir() / f"{key}.json"


def get(key: str) -> dict[str, Any] | None:
    return read_json(_record_path(key))


def _write(rec: dict[str, Any]) -> None:
    write_json_atomic(_record_path(rec["key"]), rec)


# --- what each kind computes, its price, and its cached result ----------------------------------

def _check(kind: str, checkpoint, params: dict[str, Any]) -> None:
    if kind not in KINDS:
        raise WorkbenchError(f"unknown analysis {kind!r}; choose one of {', '.join(KINDS)}")
    if not Path(checkpoint).is_file():
        raise WorkbenchError(f"no checkpoint at {checkpoint}")
    if kind == "features":  # a backbone's file (package weights or a checkpoint) + its choices
        from . import features
        features.check(checkpoint, params)


def price_mb(kind: str, checkpoint, params: dict[str, Any], model=None) -> float:
    """Estimated peak memory of the job's process (MB), from the layer sizes, never by trying."""
    if kind == "features":
        from . import features
        return features.price_mb(checkpoint, params)
    from .models import read_checkpoint, config_from_dict
    from .cost import layer_costs
    cfg = config_from_dict(read_checkpoint(checkpoint)["model_config"])
    layers = {l["name"]: l for l in layer_costs(cfg)}
    widest = max(l["out"] for l in layers.values())
    if kind == "map":
        from .embed import batch_rows, reduced_width
        width = layers[params["layer"]]["out"] if params.get("layer") in layers else widest
        kept = reduced_width(width)
        # the kept values for all test images, PCA's centred copy and its work, plus one batch of
        # the full layer (the model's forward keeps every map up to the layer)
        return BASE_MB + TEST_IMAGES * kept * 4 * 3 / 2**20 + batch_rows(width) * widest * 4 * 4 / 2**20
    if kind == "robustness":
        from .adversarial import BATCH
        return BASE_MB + BATCH * sum(l["saved"] for l in layers.values()) * 4 * 4 / 2**20
    # compare and export: the model on the whole test set in batches, the twin in NumPy beside it
    return BASE_MB + 2000 * widest * 4 * 6 / 2**20


def cached(kind: str, checkpoint, params: dict[str, Any]) -> dict[str, Any] | None:
    """The result, if it is already computed (reading only files)."""
    if kind == "features":
        from . import features
        return features.cached(checkpoint, params)
    if kind == "map":
        from . import embed
        return {"cached": True} if embed.is_cached(checkpoint, params["layer"], params["method"]) else None
    if kind == "robustness":
        from . import adversarial
        return adversarial.cached_curve(checkpoint, params["attack"],
                                        params.get("epsilons", adversarial.CURVE_EPSILONS))
    return read_json(results_dir() / f"{job_key(kind, checkpoint, params)}.json")


def _compute(kind: str, checkpoint: str, params: dict[str, Any], progress: Callable[[float, str], None]) -> dict:
    from .data import load
    ds = load()
    if kind == "features":
        from . import features
        return features.extract(checkpoint, params, ds, progress)
    if kind == "map":
        from . import embed
        r = embed.embed(checkpoint, params["layer"], params["method"], ds.x_test, ds.y_test, progress=progress)
        return {"seconds": r["seconds"], "width": r["width"]}
    if kind == "robustness":
        from . import adversarial
        r = adversarial.robustness_curve(checkpoint, ds, params["attack"],
                                         params.get("epsilons", adversarial.CURVE_EPSILONS), progress=progress)
        return {k: v for k, v in r.items() if k != "cached"}
    if kind == "deletion":
        import numpy as np
        from .models import load_model
        from .views.explain import faithfulness_rows
        progress(0.1, f"deleting pixels, method by method, on the first {params['images']} test images")
        x = ds.x_test[:int(params["images"])].astype(np.float32) / np.float32(255)
        rows = faithfulness_rows(load_model(checkpoint), x)
        out = {"rows": [{k: (bool(v) if isinstance(v, (bool, np.bool_)) else float(v) if isinstance(v, (float, np.floating))
                             else v) for k, v in r.items()} for r in rows]}
    elif kind == "compare":
        from .twin.compare import compare
        progress(0.1, f"PyTorch and the {params.get('impl', 'numpy')} twin on the 10,000 test images")
        out = compare(checkpoint, ds.x_test, ds.y_test, impl=params.get("impl", "numpy"))
    else:  # export
        from .export import export_checkpoint
        progress(0.1, "exporting and checking against PyTorch on the 10,000 test images")
        path = results_dir() / f"{job_key(kind, checkpoint, params)}.onnx"
        out = export_checkpoint(checkpoint, path, data=ds)
    write_json_atomic(results_dir() / f"{job_key(kind, checkpoint, params)}.json", out)
    return out


# --- asking --------------------------------------------------------------------------------------

def request(kind: str, checkpoint: str | Path, params: dict[str, Any], asker: str = "",
            max_mb: float | None = None, start_dispatcher: bool = True, retry: bool = False) -> dict[str, Any]:
    """The job's record: {"key", "state": done | waiting | running | failed, "progress",
    "message", "askers", "result"?}. Done at once when the result is cached; a new record, or the
    running one joined, otherwise; a failed one stays failed (with its reason) unless `retry`.
    Over `max_mb` (the class's memory per job): refused with a sentence."""
    checkpoint = str(checkpoint)
    _check(kind, checkpoint, params)
    got = cached(kind, checkpoint, params)
    key = job_key(kind, checkpoint, params)
    if got is not None:
        return {"key": key, "kind": kind, "state": "done", "progress": 1.0, "message": "ready", "result": got}
    mb = price_mb(kind, checkpoint, params)
    if max_mb is not None and mb > max_mb:
        from .cost import format_mb
        raise WorkbenchError(f"this {kind} would need about {format_mb(mb)} of memory; the class limit is "
                             f"{format_mb(max_mb)} per job (choose a narrower layer or a smaller model)")
    with _lock():
        rec = get(key)
        if rec is not None and rec["state"] == "failed" and not retry:
            return rec
        if rec is None or rec["state"] == "failed" or (rec["state"] == "done" and got is None):
            rec = {"key": key, "kind": kind, "checkpoint": checkpoint, "params": params, "state": "waiting",
                   "progress": 0.0, "message": "waiting for its turn", "askers": [], "price_mb": round(mb),
                   "created": time.time(), "tries": 0}
        if asker and asker not in rec["askers"]:
            rec["askers"] = (rec["askers"] + [asker])[-50:]  # bounded: who asked, not a log
        _write(rec)
    if start_dispatcher:
        from .queue import ensure_dispatcher
        ensure_dispatcher()
    return rec


# --- the dispatcher's side -----------------------------------------------------------------------

def _all() -> list[dict[str, Any]]:
    d = jobs_dir()
    if not d.is_dir():
        return []
    recs = [read_json(p) for p in d.glob("*.json")]
    return [r for r in recs if isinstance(r, dict) and "key" in r]


def waiting() -> list[dict[str, Any]]:
    return sorted((r for r in _all() if r["state"] == "waiting"), key=lambda r: r["created"])


def running() -> list[dict[str, Any]]:
    """Jobs with a live process; a running job whose process died goes back to waiting (or
    fails after MAX_TRIES)."""
    out = []
    for r in _all():
        if r["state"] != "running":
            continue
        if runs.pid_alive(r.get("pid")):
            out.append(r)
            continue
        with _lock():
            r = get(r["key"]) or r
            if r["state"] == "running" and not runs.pid_alive(r.get("pid")):
                failed = r.get("tries", 0) >= MAX_TRIES
                r.update(state="failed" if failed else "waiting",
                         message="its process ended before finishing" + ("" if failed else ": starting again"))
                _write(r)
    return out


def start(rec: dict[str, Any]) -> int:
    from .executors.local import spawn_detached
    log = runs.ARTIFACTS / "work" / "jobs" / f"{rec['key']}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with _lock():
        rec = get(rec["key"]) or rec
        pid = spawn_detached([sys.executable, "-m", "fmnist_core.analysis", rec["key"]], log)
        rec.update(state="running", pid=pid, started=time.time(), tries=rec.get("tries", 0) + 1,
                   message="starting")
        _write(rec)
    return pid


def run_job(key: str) -> int:
    """The job's own process: compute, report progress into the record, store the result."""
    rec = get(key)
    if rec is None:
        print(f"no analysis job {key}", file=sys.stderr)
        return 2
    last = [0.0]

    def progress(frac: float, what: str) -> None:
        now = time.time()
        if now - last[0] < 0.5 and frac < 1.0:
            return  # at most two writes a second: readers poll the file
        last[0] = now
        with _lock():
            r = get(key) or rec
            r.update(progress=round(min(max(float(frac), 0.0), 1.0), 3), message=what, pid=os.getpid())
            _write(r)

    try:
        import torch
        torch.set_num_threads(1)  # the web server keeps the other core
        result = _compute(rec["kind"], rec["checkpoint"], rec["params"], progress)
    except Exception as exc:
        with _lock():
            r = get(key) or rec
            msg = str(exc) if isinstance(exc, WorkbenchError) else f"{type(exc).__name__}: {exc}"
            r.update(state="failed", message=msg, tries=MAX_TRIES)
            _write(r)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    with _lock():
        r = get(key) or rec
        r.update(state="done", progress=1.0, message="ready", finished=time.time(),
                 computed=r.get("computed", 0) + 1,
                 result={k: v for k, v in result.items() if isinstance(v, (int, float, str, bool))})
        _write(r)
    return 0


if __name__ == "__main__":
    sys.exit(run_job(sys.argv[1]) if len(sys.argv) == 2 else 2)
