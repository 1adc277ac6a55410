"""Timings page: run the benchmark (quick or full) without blocking anyone, then compare
PyTorch, the hand-written NumPy twin, the twin written with torch ops and the usual
DataLoader — on this machine and on others (results files uploaded or saved) — as charts,
a table, the machines' details and one line on each reason the figures differ.

The benchmark runs as its own process (fmnist_core.bench.start_job: the CLI's
`bench`), one at a time per server; a fragment polls its progress every second while it
runs and stops polling when it ends. Results are files under artifacts/benchmarks/
(reference-*.json: committed figures, shown first).
"""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from fmnist_core import bench
from fmnist_core.errors import WorkbenchError
from fmnist_core.views import axes, shared, timings as timing_views
from fmnist_core.views.format import format_seconds
from fmnist_core.models import preset_names
from ui import common, identity

POLL_SECONDS = 1.0
MODES = {"quick": "Quick (about half a minute)", "full": "Full (several minutes: epochs, every batch size)"}
MS = st.column_config.NumberColumn(format="%.3f")


def _init_state() -> None:
    common.init_state({"tm_mode": "quick", "tm_preset": bench.DEFAULT_PRESET, "tm_one_thread": False,
                       "tm_files": None, "tm_work": None, "tm_batch": None, "tm_seen_job": None})


def page() -> None:
    _init_state()
    st.title("Timings")
    st.caption("The same network five ways — PyTorch's nn.Module, the same model exported to ONNX Runtime, "
               "the hand-written NumPy twin, the twin written with torch tensor ops, and the usual "
               "DataLoader pipeline — in fp32 and, where the hardware has it, bf16/fp16, timed on this "
               "machine's CPU (and GPU, if it has one). Load a results file from another machine to "
               "put its figures beside these.")
    _run_section()
    st.divider()
    results = _choose_results()
    if not results:
        st.info("No results to show yet: run the quick benchmark above (about half a minute), or "
                "upload a results file made with `python -m fmnist_core bench --out FILE`.")
        return
    results = timing_views.with_sources(results)
    rows = bench.merge_results(results)
    _machines(results)
    _headline(results)
    _goals(results)
    _agreement(rows)
    _gpu_checks(results)
    _detail_charts(rows, quick=tuple(r["label"] for r in results if timing_views.is_quick(r)))
    _skipped(rows)
    _table(rows)
    _why(rows, results[0].get("model"))


# --- running the benchmark ------------------------------------------------------------------

def _start() -> None:
    try:
        status = bench.start_job(quick=st.session_state.tm_mode == "quick", preset=st.session_state.tm_preset,
                                 user=identity.current_user())  # the teacher's job: checked in the core
    except WorkbenchError as exc:
        st.session_state.tm_error = str(exc)
        return
    st.session_state.tm_error = None
    st.session_state.tm_started = status.get("started")


def _stop() -> None:
    try:
        bench.stop_job(user=identity.current_user())
    except WorkbenchError as exc:
        st.session_state.tm_error = str(exc)


def _run_section() -> None:
    st.subheader("Run the benchmark")
    status = bench.job_status()
    running = status["state"] == "running"
    a, b, c = st.columns([2, 2, 1], vertical_alignment="bottom")
    a.radio("How much", list(MODES), key="tm_mode", format_func=MODES.get, disabled=running)
    b.selectbox("Model to time", preset_names(), key="tm_preset", disabled=running,
                help="Timing needs no trained weights: the preset's architecture with random weights. "
                     "mlp-seed000 (784-128-10) is the course project's MLP.")
    me = identity.current_user()
    c.button("Run", icon=":material/timer:", key="tm_run", type="primary", on_click=_start,
             disabled=running or not me.teacher, width="stretch",
             help=None if me.teacher else "The teacher runs the benchmark: it slows every training on the server")
    if not me.teacher:
        st.caption("On a class server the teacher starts the benchmark (it joins the training queue and "
                   "slows everyone's trainings while it runs). Its results appear here for everyone.")
    if st.session_state.get("tm_error"):
        st.error(st.session_state.tm_error)
    st.fragment(_job_panel, run_every=POLL_SECONDS if running else None)(running)


def _job_panel(was_running: bool) -> None:
    status = bench.job_status()
    state = status["state"]
    if state == "running":
        mode = "quick" if status.get("quick") else "full"
        st.progress(status["progress"], text=f"**{mode} benchmark of {status.get('preset')}**, "
                                             f"{format_seconds(status['elapsed'])}: {status['message']}")
        st.caption("It runs as its own process, so everyone can go on using the workbench; while it "
                   "runs the CPU is busy, and other work is slower (and slows it down).")
        if identity.current_user().teacher:
            st.button("Stop the benchmark", icon=":material/stop_circle:", key="tm_stop", on_click=_stop)
    elif state == "failed":
        st.error(f"The benchmark failed:\n\n```\n{shared.for_browser(status.get('error', ''))}\n```")
    elif state == "cancelled":
        st.caption("The last benchmark was stopped before it finished.")
    if was_running and state != "running":
        st.rerun()  # a full rerun: the new results appear and this panel stops polling


# --- choosing results -------------------------------------------------------------------------

def _choose_results() -> list[dict]:
    st.subheader("Results")
    saved = bench.saved_results()
    good = {s["path"]: s for s in saved if s["results"] is not None}
    if st.session_state.tm_files is None:  # first visit: the committed reference + the newest run
        refs = [p for p, s in good.items() if s["reference"]]
        local = [p for p, s in good.items() if not s["reference"]][:1]
        st.session_state.tm_files = refs + local
    status = bench.job_status()
    if status["state"] == "finished" and st.session_state.tm_seen_job != status.get("started"):
        # a benchmark finished since this session last looked: put its results first
        st.session_state.tm_seen_job = status.get("started")
        path = status["results_path"]
        st.session_state.tm_files = [path] + [p for p in st.session_state.tm_files if p != path]
        st.session_state.tm_new = path
    st.session_state.tm_files = [p for p in st.session_state.tm_files if p in good]
    # the picker gets the page's width and short chip labels: in half of it, a new result's chip
    # was cut to ", quick ×"
    st.multiselect("Saved results", list(good), key="tm_files", placeholder="Choose results files",
                     format_func=lambda p: timing_views.chip_title(good[p]["results"], good[p]["reference"],
                                                                   new=p == st.session_state.get("tm_new")),
                     help="Files under artifacts/benchmarks/; ★ marks the committed reference figures. "
                          "Which machine each came from is in the cards below.")
    left, right = st.columns(2, gap="large")
    new = st.session_state.get("tm_new")
    if new in st.session_state.tm_files:
        left.success(f"The benchmark that just finished: {timing_views.file_title(good[new]['results'])}. "
                     "Selected, and shown first in every chart below.", icon=":material/new_releases:")
    for s in saved:
        if s["error"]:
            left.caption(f":material/warning: skipped {s['name']}: {shared.for_browser(s['error'])}")
    uploads = right.file_uploader("Results file from another machine", type=["json"], key="tm_upload",
                                  accept_multiple_files=True,
                                  help="The JSON that `python -m fmnist_core bench --out FILE` writes, "
                                       "e.g. on a GPU box. Nothing is saved on the server.")
    chosen = [good[p]["results"] for p in st.session_state.tm_files]
    for f in uploads or []:
        try:
            chosen.append(bench.parse_results(f.getvalue(), origin=f"uploaded {f.name}"))
        except bench.ResultsFileError as exc:
            # plain text: the message may quote the file (and its name), which is not ours
            right.error(shared.plain_text(f"Cannot use this file: {exc}"), icon=":material/error:")
    return chosen


# --- showing results ----------------------------------------------------------------------------

def _machines(results: list[dict]) -> None:
    st.markdown("#### Where the figures come from")
    for start in range(0, len(results), 3):
        cols = st.columns(3)
        for col, res in zip(cols, results[start:start + 3]):
            m = timing_views.machine_block(res)
            box = col.container(border=True)
            box.markdown(f"**{m['label']}**")
            box.caption(f"from {m['origin']} · measured {m['date']}")
            box.markdown(f"- CPU: {m['cpu']}\n- GPU: {m['gpu']}\n- {m['software']}\n- BLAS: {m['blas']}\n"
                         f"- model timed: {m['model']}\n- fp32 matmul peak: {'; '.join(m['peaks']) or '—'}"
                         + (f"\n- load average: {m['load']}" if m["load"] else ""))


def _headline(results: list[dict]) -> None:
    df = timing_views.headline_rows(results)
    if df.empty:
        return
    st.markdown("#### Inference over the 10,000 test images on the CPU")
    fig = go.Figure()
    for i, (src, g) in enumerate(df.groupby("source", sort=False)):
        fig.add_trace(go.Bar(x=g["implementation"], y=g["median_ms"], name=src,
                             marker_color=common.COLORS[i % len(common.COLORS)],
                             text=[f"{v:.0f} ms" if v >= 10 else f"{v:.1f} ms" for v in g["median_ms"]],
                             textposition="outside", cliponaxis=False,
                             hovertemplate="%{x}: %{y:.1f} ms<extra>" + src + "</extra>"))
    fig.update_layout(barmode="group")
    _ms_axis(fig, df["median_ms"], "milliseconds (median)")
    st.plotly_chart(common.style(fig, height=440, legend_below=True), theme=None, key="tm_headline")
    st.caption("One batch of 10,000 images, all CPU threads; the implementations take turns round by round, "
               "so a neighbour's job slows all of them alike. Lower is faster.")
    for line in timing_views.headline_missing(results):
        st.caption(f":material/info: No bar for {line}.")
    why = timing_views.turns_sentence(timing_views.turns_vs_alone(results))
    if why:
        st.info(why, icon=":material/compare_arrows:")


def _goals(results: list[dict]) -> None:
    if not identity.current_user().teacher:
        # students get the figures compared; the project's own goals are the teacher's (and the README's)
        lines = timing_views.comparison_lines(results)
        if lines:
            several = len({g["source"] for g in lines}) > 1
            st.markdown("#### Compared (10,000-image inference, one run)")
            st.markdown("\n".join(f"- {g['note']}" + (f" ({g['source']})" if several else "") for g in lines))
        return
    lines = timing_views.goal_lines(results)
    if not lines:
        return
    st.markdown("#### The speed goals (10,000-image inference, one run)")
    icon = {True: ":material/check_circle:", False: ":material/cancel:", None: ":material/remove_circle_outline:"}
    several = len({g["source"] for g in lines}) > 1
    st.markdown("\n".join(f"- {icon[g['met']]} **{g['status']}** — {g['goal']}: {g['note']}"
                          + (f" ({g['source']})" if several else "") for g in lines))


def _agreement(rows: list[dict]) -> None:
    df = timing_views.agreement_rows(rows)
    if df.empty:
        return
    with st.expander("Same answers? Each implementation against fp32 PyTorch on the test images"):
        st.dataframe(df, hide_index=True, width="stretch", placeholder="—",
                     column_config={"label agreement": st.column_config.NumberColumn(format="percent"),
                                    "max |logit diff|": st.column_config.NumberColumn(format="%.1e")})
        st.caption("label agreement: the share of the test images given the same class as fp32 PyTorch; "
                   "max |logit diff|: the largest difference of any logit. A faster row that disagrees "
                   "computes something else.")


def _gpu_checks(results: list[dict]) -> None:
    checks = timing_views.gpu_check_rows(results)
    if not checks:
        return
    failed = sum(c["status"] == "failed" for c in checks)
    st.markdown("#### GPU check (`scripts/gpu_check.py`)")
    st.caption(f"{len(checks)} checks, {failed} failed: training on the device (time to 93% and 94%, test "
               "passes included), bf16/fp16 autocast, the benchmark's rows, the NumPy twin against the "
               "device's logits.")
    st.dataframe(checks, hide_index=True, width="stretch")


def _ms_axis(fig: go.Figure, ms, title: str) -> None:
    """Milliseconds on a log axis when they span more than 20x, with 1-2-5 ticks written out
    (Plotly's own minor labels read "9 8 7 6 5 4 3 2" when crowded), else a linear one."""
    if not timing_views.wants_log_axis(ms):
        fig.update_yaxes(title=title, type="linear")
        return
    vals = [float(v) for v in ms if v and v > 0]
    ticks, text = axes.log_ticks(min(vals), max(vals))
    fig.update_yaxes(title=title, type="log", tickvals=ticks, ticktext=text)


def _detail_charts(rows: list[dict], quick: tuple[str, ...] = ()) -> None:
    options = timing_views.work_options(rows)
    if not options:
        return
    st.markdown("#### Side by side: implementation × device")
    if st.session_state.tm_work not in options:
        st.session_state.tm_work = next(iter(options))
    a, b, c = st.columns([3, 1, 1], vertical_alignment="bottom")
    a.segmented_control("Work", list(options), key="tm_work", format_func=timing_views.WORK_NAMES.get,
                        required=True)
    sizes = options[st.session_state.tm_work]
    if st.session_state.tm_batch not in sizes:
        st.session_state.tm_batch = sizes[-1]
    b.selectbox("Batch size", sizes, key="tm_batch", format_func=lambda n: f"{n:,}")
    c.toggle("CPU: 1 thread", key="tm_one_thread", help="Off: all of each machine's CPU threads.")
    df = timing_views.chart_rows(rows, st.session_state.tm_work, st.session_state.tm_batch,
                                st.session_state.tm_one_thread)
    if df.empty:
        st.caption("No timed rows for this choice.")
        return
    left, right = st.columns(2, gap="large")
    time_fig, rate_fig = go.Figure(), go.Figure()
    for i, (series, g) in enumerate(df.groupby("series", sort=False)):
        colour = common.COLORS[i % len(common.COLORS)]
        time_fig.add_trace(go.Bar(
            x=g["implementation"], y=g["median_ms"], name=series, marker_color=colour,
            error_y=dict(type="data", symmetric=False, array=g["plus"], arrayminus=g["minus"], thickness=2),
            hovertemplate="%{x}: median %{y:.3f} ms<extra>" + series + "</extra>"))
        rate_fig.add_trace(go.Bar(
            x=g["implementation"], y=g["gflops"], name=series, marker_color=colour, showlegend=False,
            customdata=g["peak_share"],
            hovertemplate="%{x}: %{y:.1f} GFLOP/s (%{customdata:.0%} of peak)<extra>" + series + "</extra>"))
    time_fig.update_layout(barmode="group", title="Time (median; bars: fastest – slowest run)",
                           showlegend=True)
    _ms_axis(time_fig, df["median_ms"], "milliseconds")
    rate_fig.update_layout(barmode="group", title="Arithmetic rate")
    rate_fig.update_yaxes(title="GFLOP/s (higher is better)")
    left.plotly_chart(common.style(time_fig, height=500, legend_below=True), theme=None, key="tm_time")
    right.plotly_chart(common.style(rate_fig, height=500, legend_below=True), theme=None, key="tm_rate")
    for line in timing_views.chart_missing(rows, st.session_state.tm_work, st.session_state.tm_batch,
                                           st.session_state.tm_one_thread, quick_sources=quick):
        st.caption(f":material/info: No bar for {line}.")


def _skipped(rows: list[dict]) -> None:
    lines = [f"- **{s['device']}** ({s['source']}): {s['reason']} — {s['what']}"
             for s in timing_views.skipped(rows)]
    if lines:
        st.markdown("#### Not measured")
        st.markdown("\n".join(lines))


def _table(rows: list[dict]) -> None:
    with st.expander("Every figure (table)"):
        st.dataframe(timing_views.timing_table(rows), hide_index=True, width="stretch", placeholder="—",
                     column_config={"median (ms)": MS, "min (ms)": MS, "max (ms)": MS, "transfer (ms)": MS,
                                    "GFLOP/s": st.column_config.NumberColumn(format="%.1f"),
                                    "share of peak": st.column_config.NumberColumn(format="percent"),
                                    "label agreement": st.column_config.NumberColumn(format="percent"),
                                    "max |logit diff|": st.column_config.NumberColumn(format="%.1e")})
        st.caption("median of the timed runs after a warm-up; min–max is the spread; GFLOP/s counts the "
                   "matrix products (2 × inputs × outputs per layer and image); share of peak compares "
                   "it with a large fp32 matrix product on the same device; transfer is the copy of the "
                   "inputs to the GPU, timed on its own.")


def _why(rows: list[dict], model: dict | None) -> None:
    st.markdown("#### Why the numbers differ")
    st.markdown("\n".join(f"- **{topic}.** {line}" for topic, line in timing_views.explanations(rows, model)))
    st.caption(f"Figures quoted from {rows[0]['source']}" + (" (and the GPU rows of any source)."
                                                              if len({r['source'] for r in rows}) > 1 else "."))


if __name__ == "__main__":  # run as a script by Streamlit's pages/ discovery: see ui/__init__.py
    common.run_app()
