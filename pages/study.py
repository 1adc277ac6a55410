"""Study page: a question asked with many runs. The teacher opens a study for the class (from a
template); each student's "Take a trial" launches the next trial as their own run through the
queue; the answer (chart with each point's owners and error bars, and a sentence) fills in live,
for the projector. Computed in fmnist_core (studies.py, views/study.py); layout only here."""
from __future__ import annotations

import streamlit as st

from fmnist_core import studies
from fmnist_core.errors import WorkbenchError
from fmnist_core.study_settings import SEED_TEMPLATES, TEMPLATES, base_spec, describe, parse_values, template
from fmnist_core.views import study as view
from ui import common, identity

REFRESH_SECONDS = 2.0  # the projector's answer, live while trials train


def page() -> None:
    st.title("Studies")
    st.caption("One question, many runs: each trial is an ordinary run through the queue, under the name "
               "of whoever took it, and the answer forms as trials finish.")
    me = identity.current_user()
    with st.expander("Open a study", expanded=False):
        _create_form(me)
    try:
        listed = studies.list_studies()
    except WorkbenchError as exc:
        st.error(str(exc))
        return
    if not listed:
        st.info("No study yet." + (" Open one above." if me.teacher else " The teacher opens one for the class."))
        return
    names = [s["name"] for s in listed]
    if st.session_state.get("study_pick") not in names:
        st.session_state.study_pick = names[0]
    name = st.selectbox("Study", names, key="study_pick")
    st.session_state.setdefault("study_msg", None)
    if st.button("Take a trial", key="study_take", type="primary", icon=":material/play_arrow:",
                 help="The next trial of this study, launched as your run"):
        try:
            t = studies.take_trial(name, me)
            st.session_state.study_msg = ("success", f"Trial {t['trial']} ({view.point_words(t['params'])}) "
                                                     f"is your run now: it waits in the queue like any launch.")
            common.run_list.clear()
            _shared_answer.clear()
        except WorkbenchError as exc:
            st.session_state.study_msg = ("error", str(exc))
    if st.session_state.study_msg:
        kind, text = st.session_state.study_msg
        (st.success if kind == "success" else st.error)(text)
    st.fragment(_answer, run_every=REFRESH_SECONDS)(name)
    _reproduced(tuple(s["name"] for s in listed if s.get("template") in SEED_TEMPLATES))


@st.cache_data(ttl=10, max_entries=4, show_spinner=False)
def _reproduce_rows(names: tuple[str, ...]) -> list[dict]:
    listed = [s for s in studies.list_studies() if s["name"] in names]
    return view.reproduce_table(listed, {r["run_id"]: r for r in common.run_list()})


def _reproduced(names: tuple[str, ...]) -> None:
    """The seeds' reported figures beside ours, for their experiments' studies in the storage."""
    if not names:
        return
    st.subheader("The seeds' results reproduced")
    try:
        rows = _reproduce_rows(names)
    except WorkbenchError as exc:
        st.error(str(exc))
        return
    st.caption(f"Ours is the mean ± std of the test accuracy over the seeds that finished; the two agree "
               f"when the gap is within {view.AGREE_SIGMAS:g} of our standard deviations (taken as at least "
               f"{100 * view.STD_FLOOR['test_accuracy']:.1f} points). `make reproduce` runs them all.")
    st.dataframe(rows, hide_index=True, width="stretch", key="study_reproduce")


def _create_form(me) -> None:
    # the template outside the form: choosing one refills the values below at once
    tpl = st.selectbox("Template", list(TEMPLATES), key="study_tpl",
                       format_func=lambda n: f"{n}: {TEMPLATES[n]['about']}")
    t = template(tpl)
    with st.form(f"study_new_{tpl}"):
        vals = {}
        for setting, d in t["settings"].items():
            if "values" in d:  # editable: a class asks 3 depths, not 5, in a short lesson
                vals[setting] = st.text_input(f"Values of {setting}", ", ".join(map(str, d["values"])),
                                              key=f"study_vals_{tpl}_{setting}", help=describe(setting))
        c = st.columns(3)
        name = c[0].text_input("Name", key="study_name", placeholder="e.g. depth-monday")
        seeds = c[1].number_input("Seeds per point", 1, 10, int(t.get("seeds", 2)), key=f"study_seeds_{tpl}")
        search = c[2].selectbox("Search", studies.SEARCHES, key="study_search",
                                index=studies.SEARCHES.index(t.get("search", "grid")),
                                help="grid: every point; random / tpe (Optuna's TPE) within a budget")
        c = st.columns(3)
        # a question that needs several epochs (early stopping) says how many; the seeds' own
        # experiments (hours) and the other questions start at 1 epoch, a lesson's length
        lesson = t.get("train", {}).get("epochs", 1) if t["settings"] else 1
        epochs = c[0].number_input("Epochs per trial", 1, 60, int(lesson), key=f"study_epochs_{tpl}")
        limit = c[1].number_input("Training images (0 = all)", 0, 48_000, 2000, step=500, key="study_limit")
        trials = c[2].number_input("Trial budget (random / tpe)", 0, 200, 12, key="study_trials")
        for_class = st.checkbox("For the class (every student takes its trials)", value=me.teacher,
                                # keyed by the role: unlocking teacher mode ticks it (a box drawn
                                # for a student kept its False)
                                key=f"study_class_{me.teacher}", disabled=not me.teacher)
        if not st.form_submit_button("Open the study", icon=":material/add:"):
            return
    try:
        settings = {k: ({"values": parse_values(vals[k])} if k in vals else d) for k, d in t["settings"].items()}
        train = {k: v for k, v in t.get("train", {}).items() if k != "epochs"}
        base = base_spec(t["preset"], epochs=int(epochs), train_limit=int(limit) or None, **train)
        st_ = studies.create_study(name.strip(), settings, seeds=int(seeds),
                                   search=search if settings else "grid",
                                   max_trials=int(trials) if search != "grid" else 0, base=base, user=me,
                                   for_class=bool(for_class and me.teacher), template=tpl,
                                   reported=t.get("reported"))
        _shared_answer.clear()
        st.session_state.study_pick = st_.name
        st.session_state.study_msg = ("success", f"Study {st_.name} is open: {st_.trial_budget()} trials.")
        st.rerun()
    except WorkbenchError as exc:
        st.error(str(exc))


@st.cache_data(ttl=REFRESH_SECONDS, max_entries=16, show_spinner=False)
def _shared_answer(name: str) -> dict:
    """One reading of the study per refresh for every browser on the server (a projector and
    thirty students poll it): its trials told (sync), the runs from the page's cached store search."""
    studies.sync(name)
    return view.answer(studies.load_study(name), {r["run_id"]: r for r in common.run_list()})


def _answer(name: str) -> None:
    try:
        a = _shared_answer(name)
    except WorkbenchError as exc:
        st.error(str(exc))
        return
    s = a["study"]
    done = a["states"].get("complete", 0)
    c = st.columns(4)
    c[0].metric("Finished", done)
    c[1].metric("Training or waiting", a["states"].get("running", 0))
    c[2].metric("Pruned / failed", a["states"].get("pruned", 0) + a["states"].get("fail", 0))
    c[3].metric("Trials in all", a["budget"] or "—")
    st.markdown(f"**{view.question_words(s)}** — {s.metric.replace('_', ' ')}, {s.seeds} seed(s) per point, "
                f"{s.search} search, opened by {s.owner}{' for the class' if s.for_class else ''}.")
    st.info(a["sentence"], icon=":material/lightbulb:")
    fig = view.figure(a)
    if fig is not None:
        st.plotly_chart(fig, theme=None, key=f"study_fig_{name}")
    if a["shape"] == "many" and done >= 3:
        imp = view.importance(s)
        if imp:
            st.caption("Which setting matters (Optuna's fANOVA importance): " +
                       ", ".join(f"{k} {v:.0%}" for k, v in imp.items()))
        front = view.pareto(a["points"], s.metric)
        if front:
            st.caption("Pareto front (no other point is better on accuracy, parameters and seconds at once): " +
                       "; ".join(p["label"] for p in front))
    rows = view.trial_rows(a)
    if rows:
        st.dataframe(rows, hide_index=True, width="stretch", key=f"study_trials_{name}")


if __name__ == "__main__":  # run as a script by Streamlit's pages/ discovery: see ui/__init__.py
    common.run_app()
