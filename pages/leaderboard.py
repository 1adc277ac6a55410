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
    df = common.leaderboard(show_hidden=me.teacher)
    if df.empty:
        st.info("No finished run yet. Launch one on the Train page; it appears here when it finishes.")
        return
    best = df.iloc[0]
    c = st.columns(3)
    c[0].metric("Best test accuracy", f"{best['test_accuracy']:.2%}", help=f"{best['owner']}: {best['model']}")
    c[1].metric("Runs on the board", len(df))
    c[2].metric("Students", df["owner"].nunique())
    table = df.drop(columns=["run_id", "kind", "status"] + ([] if me.teacher else ["hidden"]))
    st.dataframe(table, hide_index=True, width="stretch", height=min(38 + 35 * len(table), 560), placeholder="—",
                 column_config={
                     "rank": st.column_config.NumberColumn("#", width="small"),
                     "test_accuracy": st.column_config.NumberColumn("test accuracy", format="percent"),
                     "train_seconds": st.column_config.NumberColumn("seconds", format="%.0f"),
                     "parameters": st.column_config.NumberColumn(format="localized"),
                     "lr": st.column_config.NumberColumn("learning rate", format="%g"),
                     "batch_size": st.column_config.NumberColumn("batch"),
                     "weight_decay": st.column_config.NumberColumn("L2", format="%g"),
                     "augment_shift": st.column_config.NumberColumn("shift"),
                     "epochs_run": st.column_config.NumberColumn("epochs run"),
                     "changes": st.column_config.TextColumn("what differs from the preset")})
    if len(df) >= 2:
        st.plotly_chart(view.parallel_figure(df), theme=None, key="lb_parallel")
        st.caption("One line per run, coloured by test accuracy: follow the bright lines back to the "
                   "settings that won. Drag along an axis to pick a range.")
    if me.teacher:
        with st.expander("Hide a run from the board", icon=":material/visibility_off:"):
            labels = {r: f"#{k} {o} · {m} · {a:.2%}" + (" (hidden)" if h else "")
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
