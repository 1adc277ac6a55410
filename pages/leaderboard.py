"""Leaderboard page: the class's finished runs ranked by test accuracy (ties: fewer training
seconds first), who trained them, the model and the settings that differ from its preset,
and a parallel-coordinates chart of settings against accuracy. It refreshes itself while
runs are training, so it stays live on the projector; the teacher can hide a run."""
from __future__ import annotations

import streamlit as st

from fmnist_core import submit
from fmnist_core.errors import WorkbenchError
from fmnist_core.views import leaderboard as view
from ui import common, identity, nav

REFRESH_SECONDS = 5.0  # live during a demo, without a query per second per projector


def page() -> None:
    st.title("Leaderboard")
    st.caption("Every finished run of the class, best test accuracy first (10,000 test images; ties: "
               "the run that trained fewer seconds). It updates by itself while runs train.")
    st.page_link(nav.page("challenge"), label="The class challenge: runs ranked by its rules", icon=":material/flag:")
    active = bool(common.active_run_list())
    st.fragment(_board, run_every=REFRESH_SECONDS if active else None)()


def _hide(run_id: str, hidden: bool) -> None:
    try:
        submit.hide_run(identity.current_user(), run_id, hidden)  # the teacher only, checked in the core
        st.session_state.lb_error = None
        common.run_list.clear()
    except WorkbenchError as exc:
        st.session_state.lb_error = str(exc)


def _board() -> None:
    me = identity.current_user()
    # the projector view: exactly the students' board, on the teacher's own screen
    projector = me.teacher and st.toggle("Projector view: what students see", key="lb_projector",
                                         help="Hidden runs left out and no teacher controls, as on "
                                              "every student's screen.")
    teacher = me.teacher and not projector
    df = common.leaderboard(show_hidden=teacher)
    shown = view.visible(df)
    if shown.empty and df.empty:
        st.info("No finished run yet. Launch one on the Train page; it appears here when it finishes.")
        return
    c = st.columns(3)
    if len(shown):
        best = shown.iloc[0]
        c[0].metric("Best test accuracy", f"{best['test_accuracy']:.2%}", help=f"{best['owner']}: {best['model']}")
    else:
        c[0].metric("Best test accuracy", "—")
    c[1].metric("Runs on the board", len(shown))
    c[2].metric("Students", shown["owner"].nunique())
    if teacher and view.hidden_note(df):
        st.caption(f":material/visibility_off: {view.hidden_note(df)}")
    table = view.table(df, teacher)
    # fixed widths that add up to less than the main column at 1400 px: the table fits a laptop
    # and a projector alike (auto widths grew with the content and cut it off at the right)
    st.dataframe(table, hide_index=True, width="stretch", height=min(38 + 35 * len(table), 560), placeholder="—",
                 column_config={
                     "rank": st.column_config.NumberColumn("#", width=40),
                     "board": st.column_config.TextColumn("board", width=70,
                                                          help="HIDDEN: not on the students' board"),
                     "owner": st.column_config.TextColumn(width=90),
                     "test_accuracy": st.column_config.NumberColumn("test accuracy", format="percent", width=100),
                     "train_seconds": st.column_config.NumberColumn("seconds", format="%.0f", width=70),
                     "model": st.column_config.TextColumn(width=160),
                     "preset": st.column_config.TextColumn(width=110),
                     "changes": st.column_config.TextColumn("what differs", width=180,
                                                            help="What differs from the preset"),
                     "parameters": st.column_config.NumberColumn(format="localized", width=85)})
    same = view.constant_settings(shown)
    if same:
        st.caption(("All runs on the students' board: " if teacher else "All runs: ") + ", ".join(same.values()) + ".")
    if len(shown) >= 2:
        st.plotly_chart(view.parallel_figure(shown), theme=None, key="lb_parallel")
        st.caption("One line per run, coloured by test accuracy: follow the bright lines back to the "
                   "settings that won. Drag along an axis to pick a range.")
    if teacher:
        with st.expander("Hide a run from the board", icon=":material/visibility_off:"):
            labels = {r: ("(hidden) " if h else f"#{k} ") + f"{o} · {m} · {a:.2%}"
                      for r, k, o, m, a, h in df[["run_id", "rank", "owner", "model", "test_accuracy", "hidden"]]
                      .itertuples(index=False)}
            pick = st.selectbox("Run", list(labels), format_func=labels.get, key="lb_pick")
            hidden = bool(df.loc[df["run_id"] == pick, "hidden"].iloc[0])
            st.button("Show it again" if hidden else "Hide it", key="lb_hide", on_click=_hide,
                      args=(pick, not hidden))
            if st.session_state.get("lb_error"):
                st.error(st.session_state.lb_error)


if __name__ == "__main__":  # run as a script by Streamlit's pages/ discovery: see ui/__init__.py
    common.run_app()
