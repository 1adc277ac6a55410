"""The local executor: a trainer process on this machine, started when the dispatcher says so.

`start(run)` marks the run as started (before the process exists, so a dispatcher that dies
in between does not start it twice: the mark's heartbeat goes stale and the next dispatcher
puts the run back in line), then starts `python -m fmnist_core.execute RUN_ID` in its own
session, and records its pid. `spawn_detached` is the one launcher of background processes
(trainers, the dispatcher, analysis jobs, the benchmark).
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .. import runs
from ..data import PROJECT_ROOT


def start(run: dict[str, Any]) -> int:
    run_id = run["run_id"]
    tries = int(run["status_info"].get("tries") or 0) + 1
    runs.set_status(run_id, "queued", dispatched=time.time(), pid="", host=runs.HOST, tries=tries,
                    message="starting (Python and PyTorch load in a few seconds)", queue_position=None)
    pid = spawn_detached([sys.executable, "-m", "fmnist_core.execute", run_id],
                         runs.work_dir(run_id) / "log.txt")
    runs.set_status(run_id, "queued", dispatched=time.time(), pid=pid, host=runs.HOST, tries=tries,
                    message="starting (Python and PyTorch load in a few seconds)")
    return pid


def spawn_detached(cmd: list[str], log_path: str | Path, stdout_to_log: bool = True) -> int:
    """Start `cmd` in the project root as its own process and session, outliving the caller;
    stderr (and stdout unless stdout_to_log=False) go to log_path. Returns its pid.

    The server's own signals never reach the job, and the child is reaped when it ends so it
    never lingers as a zombie of the server."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, cwd=str(PROJECT_ROOT), stdout=log if stdout_to_log else subprocess.DEVNULL,
                                stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    threading.Thread(target=proc.wait, daemon=True).start()
    return proc.pid
