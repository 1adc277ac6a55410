"""Where a run trains, once the dispatcher (queue.py) has decided it starts now.

  local   the embedded default: a trainer process on this machine for the running job only
          (`python -m fmnist_core.execute RUN_ID`); a waiting run has no process
  ray     a Ray task on the cluster at RAY_ADDRESS, with num_cpus and memory from the run's
          price (ray.py; Ray is imported only there)

Each executor has `start(run)`; the executor of a run is chosen at submit (FMNIST_EXECUTOR or
`--executor`) and recorded on it (`executor` in its status info).
"""
from __future__ import annotations

import os
from typing import Any

from ..errors import WorkbenchError

EXECUTORS = ("local", "ray")


def executor_name(name: str | None = None) -> str:
    name = name or os.environ.get("FMNIST_EXECUTOR") or "local"
    if name not in EXECUTORS:
        raise WorkbenchError(f"executor must be one of {', '.join(EXECUTORS)}, got {name!r}")
    return name


def executor_for(run: dict[str, Any]):
    """The module that starts this run (local or ray)."""
    if (run.get("status_info") or {}).get("executor") == "ray":
        from . import ray
        return ray
    from . import local
    return local
