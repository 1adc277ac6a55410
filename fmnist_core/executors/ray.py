"""The Ray executor: each training run is a Ray task on the cluster at RAY_ADDRESS.

Selected with FMNIST_EXECUTOR=ray (or `train --executor ray`); nothing here is imported on
the default path. A teacher adds a machine with `ray start --address=HEAD:6379` on a box
that has the project's packages and the dataset; the task ships this package to the worker
(runtime_env py_modules), so the worker needs no checkout, and it logs into the same
tracking server (FMNIST_TRACKING_URI), so its curves appear on the class's dashboard.

The dispatcher (queue.py) decides when a run starts, as for the local executor; Ray decides
where. Resources: `num_cpus` per run (FMNIST_RAY_CPUS, default 1), `memory` = the run's
estimated peak (cost.py), so Ray places it only where it fits, and, when the run asks for CUDA,
a fraction of a GPU (FMNIST_RAY_GPU_FRACTION, default 0.25: four small runs share one GPU).
Cancel: the trainer polls the store's cancel flag as it does locally (works wherever the task
runs); a task still waiting for Ray's resources is cancelled with `ray.cancel` by the
dispatcher, which submitted it and so holds its reference (`cancel_waiting`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .. import runs
from ..errors import WorkbenchError

PACKAGE_DIR = Path(__file__).resolve().parent.parent
# what a worker needs from the submitting environment besides the store's address
PASS_ENV = ("FMNIST_ARTIFACTS", "FMNIST_DATA_DIR", "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def _ray():
    try:
        import ray
    except ImportError:
        raise WorkbenchError("FMNIST_EXECUTOR=ray needs the ray package (pip install ray)") from None
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        if not address:
            raise WorkbenchError("FMNIST_EXECUTOR=ray needs RAY_ADDRESS (the head node, host:port), "
                                 "from `ray start --head` on the head machine")
        if runs.is_embedded():
            raise WorkbenchError("Ray workers on other machines cannot write to this machine's SQLite "
                                 "store: start `mlflow server` and set FMNIST_TRACKING_URI=http://host:port")
        # the worker logs into the same store; an artifacts folder set here is used there too
        env = {"FMNIST_TRACKING_URI": runs.tracking_uri(), "PYTHONUNBUFFERED": "1"}
        env.update({k: os.environ[k] for k in PASS_ENV if k in os.environ})
        ray.init(address=address, logging_level="ERROR", log_to_driver=False,
                 runtime_env={"py_modules": [str(PACKAGE_DIR)], "env_vars": env})
    return ray


def _train_task(run_id: str) -> dict[str, Any]:
    from fmnist_core.execute import execute_run  # on the worker: the shipped package
    return execute_run(run_id)


def options(run: dict[str, Any]) -> dict[str, Any]:
    """Ray's resources for this run, from its spec and its price."""
    cfg, info = run["config"], run["status_info"]
    opts = {"num_cpus": float(os.environ.get("FMNIST_RAY_CPUS", "1")), "max_retries": 0,
            "name": f"fmnist-train-{run['run_id'][:8]}"}
    peak = (info.get("price") or {}).get("peak_mb") if isinstance(info.get("price"), dict) else None
    if peak:
        opts["memory"] = int(float(peak) * 1024 * 1024)
    if (cfg.get("train_config") or {}).get("device") == "cuda":
        opts["num_gpus"] = float(os.environ.get("FMNIST_RAY_GPU_FRACTION", "0.25"))
    return opts


def start(run: dict[str, Any]) -> None:
    """Submit the run as a Ray task (called by the dispatcher when the run's turn comes)."""
    import time
    ray = _ray()
    run_id = run["run_id"]
    ref = ray.remote(_train_task).options(**options(run)).remote(run_id)
    _REFS[run_id] = ref
    runs.set_status(run_id, "queued", dispatched=time.time(), message="waiting for a Ray worker",
                    ray_task=ref.task_id().hex())


_REFS: dict[str, Any] = {}  # the tasks this process (the dispatcher) submitted, for ray.cancel


def cancel_waiting(run_id: str) -> bool:
    """ray.cancel for a task this process submitted that has not started (a task that runs
    polls the store's cancel flag itself and stops keeping its best checkpoint)."""
    ref = _REFS.pop(run_id, None)
    if ref is None:
        return False
    _ray().cancel(ref, force=False)
    return True
