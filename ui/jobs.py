"""Waiting for a shared analysis job (fmnist_core.analysis) on a page: ask for it, and while it
computes in its own process show its progress, which everyone who asked for the same thing
sees; rerun the page when it is ready. Pages never compute a map, a curve, a full compare or
an export in the web process."""
from __future__ import annotations

import streamlit as st

from fmnist_core import analysis
from fmnist_core.errors import WorkbenchError
from ui import common, identity

POLL_S = 1.0


def ready(kind: str, checkpoint: str, params: dict, what: str, key: str) -> bool:
    """True when the result is cached (read it with the module's own function); else the job
    is asked for (or joined) and its progress is shown, and False."""
    user = identity.current_user()
    limit = None if user.teacher else common.class_settings().get("max_job_mb")
    retry = st.session_state.pop(f"{key}_retry", False)
    try:
        rec = analysis.request(kind, checkpoint, params, asker=user.id[:12], max_mb=limit, retry=retry)
    except (WorkbenchError, OSError) as exc:
        st.error(str(exc))
        return False
    if rec["state"] == "done":
        return True
    if rec["state"] == "failed":
        st.error(f"Computing the {what} failed: {rec.get('message') or 'no reason given'}")
        if st.button("Try again", key=f"{key}_again", icon=":material/refresh:"):
            st.session_state[f"{key}_retry"] = True
            st.rerun()
        return False
    st.fragment(_progress, run_every=POLL_S)(rec["key"], what)
    return False


def under_way(kind: str, checkpoint: str, params: dict) -> bool:
    """Someone asked for this already and it is waiting or computing (join it, no button)."""
    rec = analysis.get(analysis.job_key(kind, checkpoint, params))
    return bool(rec) and rec["state"] in ("waiting", "running")


def _progress(job_key: str, what: str) -> None:
    rec = analysis.get(job_key)
    if rec is None or rec["state"] in ("done", "failed"):
        st.rerun()  # the whole page: it reads the result, or says why not
        return
    others = max(len(rec.get("askers") or []) - 1, 0)
    text = f"{what}: {rec.get('message') or rec['state']}"
    if rec["state"] == "waiting":
        text = f"{what}: waiting for its turn (one analysis at a time, beside the trainings)"
    if others:
        text += f" — {others} other{'s' if others > 1 else ''} asked for it too: it is computed once"
    st.progress(min(max(float(rec.get("progress") or 0.0), 0.0), 1.0), text=text)
