"""Challenge page: the teacher's challenge (a goal, rules, a deadline, a starting point), each
student's best run within the rules ranked, the runs that broke a rule listed apart with the
rule, and the teacher's CSV export. Rules are checked in the core (fmnist_core/challenge.py) on
what each run recorded; this page only lays the results out. Live while runs train."""
from __future__ import annotations

import datetime as dt
import time

import streamlit as st

from fmnist_core import challenge as core, runs
from fmnist_core.errors import WorkbenchError
from fmnist_core.models import PRESETS
from fmnist_core.views import challenge as view
from ui import common, identity

REFRESH_SECONDS = 5.0  # as the Leaderboard: live on the projector without a query per second
KIND_NAMES = {"mlp": "MLP", "cnn": "CNN", "resnet": "ResNet"}
ENGINE_NAMES = {"torch": "PyTorch", "numpy": "NumPy (the hand-written twin)"}


@st.cache_data(ttl=2.0, show_spinner=False)
def _challenge_of(store_uri: str) -> dict | None:
    c = core.get_challenge()
    return c.to_dict() if c else None


def current() -> core.Challenge | None:
    d = _challenge_of(runs.tracking_uri())
    return core.Challenge.from_dict(d) if d else None


def page() -> None:
    st.title("Challenge")
    me = identity.current_user()
    c = current()
    if me.teacher:
        with st.expander("Set a challenge" if c is None else "Set a new challenge (replaces this one)",
                         expanded=c is None, icon=":material/flag:"):
            _form(c)
    if st.session_state.get("ch_msg"):
        st.success(st.session_state.ch_msg)
    if c is None:
        st.info("No challenge is set. The teacher sets one here: a goal, rules, a deadline and a "
                "starting point; every run launched afterwards is an entry.")
        return
    _card(c)
    active = bool(common.active_run_list())
    st.fragment(_standings, run_every=REFRESH_SECONDS if active else None)(me.teacher)


def _card(c: core.Challenge) -> None:
    st.subheader(c.title)
    cols = st.columns(3)
    cols[0].metric("Goal", f"≥ {c.goal:.1%}", help="test accuracy on the 10,000 test images")
    cols[1].metric("Rules", len(c.rules.describe()))
    cols[2].metric("Deadline", "none" if c.deadline is None else view.deadline_text(c, time.time()).split(" (")[0])
    rules = c.rules.describe()
    st.markdown("**Rules**: " + ("; ".join(rules) if rules else "none: any run counts") + "  \n"
                f"**Deadline**: {view.deadline_text(c, time.time())}  \n"
                f"**Start from**: [{view.start_text(c)}]({view.start_link(c)}) (opens Train with these settings)")
    st.caption("Every finished run launched since the challenge was set is an entry; only runs within "
               "all the rules rank, each student's best one. The rules are checked on what the run "
               "recorded (its stored settings, parameters and training seconds).")


def _standings(teacher: bool) -> None:
    c = current()
    if c is None:
        return
    table = core.standings(c, common.run_list(), show_hidden=False)
    ranked, broken = view.ranked_table(c, table), view.broken_table(table)
    m = st.columns(3)
    m[0].metric("Students ranked", len(ranked))
    m[1].metric("Met the goal", int((ranked["goal"] == "met").sum()) if len(ranked) else 0)
    m[2].metric("Best entry", f"{ranked['accuracy'].iloc[0]:.2%}" if len(ranked) else "—")
    st.markdown("#### Ranking")
    if ranked.empty:
        st.info("No entry within the rules yet.")
    else:
        st.table(view.for_table(ranked), hide_index=True)
    st.markdown("#### Runs that broke a rule")
    if broken.empty:
        st.caption("None.")
    else:
        st.table(view.for_table(broken), hide_index=True)
    if teacher:
        st.download_button("Download the results (CSV)", core.results_csv(table), file_name="challenge-results.csv",
                           mime="text/csv", key="ch_csv", icon=":material/download:", on_click="ignore")


# --- the teacher's form ------------------------------------------------------------------------

def _defaults(c: core.Challenge | None) -> dict:
    c = c or core.Challenge(deadline=time.time() + 3600)
    r = c.rules
    deadline = dt.datetime.fromtimestamp(c.deadline) if c.deadline else dt.datetime.now() + dt.timedelta(hours=1)
    return {"ch_title": c.title, "ch_goal": round(c.goal * 100, 2), "ch_params": r.max_parameters or 0,
            "ch_kinds": list(r.kinds), "ch_seconds": float(r.max_seconds or 0), "ch_noaug": r.no_augmentation,
            "ch_engines": list(r.engines), "ch_epochs": r.max_epochs or 0, "ch_has_deadline": c.deadline is not None,
            "ch_date": deadline.date(), "ch_time": deadline.time().replace(second=0, microsecond=0),
            "ch_preset": c.start["start"], "ch_link": "", "ch_fresh": current() is None}


def _form(c: core.Challenge | None) -> None:
    common.init_state(_defaults(c))
    with st.form("ch_form"):
        st.text_input("Title", key="ch_title", max_chars=80)
        a, b = st.columns(2)
        a.number_input("Goal: test accuracy (%)", min_value=1.0, max_value=100.0, step=0.5, key="ch_goal")
        b.number_input("At most this many parameters (0: no limit)", min_value=0, step=1000, key="ch_params")
        a.multiselect("Model kinds allowed (none picked: any)", list(KIND_NAMES), format_func=KIND_NAMES.get,
                      key="ch_kinds")
        b.multiselect("Engines allowed (none picked: any)", list(ENGINE_NAMES), format_func=ENGINE_NAMES.get,
                      key="ch_engines")
        a.number_input("At most this many seconds of training (0: no limit)", min_value=0.0, step=10.0,
                       key="ch_seconds")
        b.number_input("At most this many epochs (0: no limit)", min_value=0, step=1, key="ch_epochs")
        st.checkbox("No augmentation (no flips, no shifts)", key="ch_noaug")
        st.checkbox("A deadline", key="ch_has_deadline",
                    help="Runs launched after it still show, marked late, below the runs in time")
        a.date_input("Deadline day", key="ch_date")
        b.time_input("Deadline time (this server's clock)", key="ch_time", step=300)
        a.selectbox("Start from the preset", list(PRESETS), key="ch_preset")
        b.text_input("…or a settings link (Train → Share these settings)", key="ch_link",
                     placeholder="https://…/train?start=mlp-seed000&lr=0.01")
        st.checkbox("Only runs launched from now on count", key="ch_fresh",
                    help="Off: the runs of the challenge it replaces stay entries (to correct a rule)")
        st.form_submit_button("Set the challenge", on_click=_save, args=(identity.current_user(), c))
    if st.session_state.get("ch_error"):
        st.error(st.session_state.ch_error)
    if c is not None:
        st.button("End the challenge", key="ch_end", on_click=_end, args=(identity.current_user(),),
                  help="The ranking disappears; the runs stay. Download the CSV first.")


def _save(user, old: core.Challenge | None) -> None:
    s = st.session_state
    try:
        deadline = None
        if s.ch_has_deadline:
            deadline = dt.datetime.combine(s.ch_date, s.ch_time).timestamp()  # the server's local time
        rules = core.Rules(max_parameters=int(s.ch_params) or None, kinds=tuple(s.ch_kinds),
                           max_seconds=float(s.ch_seconds) or None, no_augmentation=bool(s.ch_noaug),
                           engines=tuple(s.ch_engines), max_epochs=int(s.ch_epochs) or None)
        c = core.Challenge(title=s.ch_title.strip(), goal=float(s.ch_goal) / 100, rules=rules, deadline=deadline,
                           start=view.start_query(s.ch_preset, s.ch_link),
                           opens=0.0 if s.ch_fresh or old is None else old.opens)  # 0: from now on
        core.set_challenge(user, c)  # the teacher only: checked in the core
        s.ch_error = None
        s.ch_msg = f"The challenge “{c.title}” is set: every run launched from now on is an entry."
        _challenge_of.clear()
    except WorkbenchError as exc:
        s.ch_error, s.ch_msg = str(exc), None


def _end(user) -> None:
    try:
        core.end_challenge(user)
        st.session_state.ch_msg, st.session_state.ch_error = "The challenge is over.", None
        _challenge_of.clear()
    except WorkbenchError as exc:
        st.session_state.ch_error = str(exc)


if __name__ == "__main__":  # run as a script by Streamlit's pages/ discovery: see ui/__init__.py
    common.run_app()
