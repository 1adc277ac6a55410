"""Shared by every page: cached resources, the sidebar, chart style, session-state helpers.

Cached with st.cache_resource (one object per server process, shared by every
session, treated as read-only): the dataset, the device list, the shipped models'
checkpoint info, test-set predictions and evaluations of checkpoints (keyed by the
file's mtime, so a retrained file is picked up). Never mutate what these return.
"""
from __future__ import annotations

import runpy
from pathlib import Path

import plotly.express as px
import plotly.graph_objects as go
import plotly.io as pio
import streamlit as st

from fmnist_core import runs
from fmnist_core.views import axes, home as home_view, results as results_view, shared
from fmnist_core.data import FashionMNIST, load, summary
from fmnist_core.errors import WorkbenchError
from fmnist_core.views.format import format_seconds, plural

APP_FILE = Path(__file__).resolve().parent.parent / "app.py"
FONT = 17            # chart font size: readable from the back of a classroom
COLORS = px.colors.qualitative.Safe  # colour-blind-safe, distinct on a washed-out projector
# every chart's template, set once: naming it per figure (update_layout(template=...)) had plotly
# validate the whole template again each time, ~9 ms a chart, a third of a Results view's CPU
pio.templates.default = "plotly_white"
QUEUE_SHOWN = 5     # waiting runs the sidebar lists (and each student's own)
POLL_SECONDS = 1.5   # live views (and the sidebar's queue) re-read the run list this often while a run is active

# widget keys whose values survive a visit to another page (Streamlit drops the state of
# widgets that were not drawn in a run; re-assigning the value keeps it)
PERSISTENT_PREFIXES = ("tr_", "res_sel", "res_detail", "res_cm_mode", "res_true", "res_pred",
                       "home_seed",
                       # Step through's set-up (its stepper lives on in session state: the widgets
                       # must still show the settings it was made with)
                       "sp_model", "sp_hidden", "sp_activation", "sp_batch", "sp_channels", "sp_kernel",
                       "sp_pool", "sp_fc", "sp_optimizer", "sp_lr", "sp_momentum", "sp_seed", "sp_source",
                       "sp_same_batch", "sp_label")


def run_app() -> None:
    """Run app.py (the router) in place of a page file: see ui/__init__.py."""
    runpy.run_path(str(APP_FILE), run_name="__main__")


def keep_widget_state() -> None:
    """Re-assign page widget values so they survive navigating away and back."""
    for key in list(st.session_state.keys()):
        if isinstance(key, str) and key.startswith(PERSISTENT_PREFIXES):
            st.session_state[key] = st.session_state[key]


def init_state(defaults: dict) -> None:
    """Session state set once: only keys that are missing get their default."""
    for key, value in defaults.items():
        if key not in st.session_state:
            st.session_state[key] = value


def loading_note(path: str, box, text: str) -> None:
    """On this session's first visit of a page, `box` (a placeholder at the top of the main area,
    emptied by the entry file once the page has drawn) says what is loading."""
    seen = st.session_state.setdefault("seen_pages", set())
    if path not in seen:
        seen.add(path)
        box.caption(text)


# --- cached, shared, read-only ---------------------------------------------------------

@st.cache_resource(show_spinner="Loading Fashion-MNIST…")
def dataset() -> FashionMNIST:
    return load()


@st.cache_resource(show_spinner=False)
def _startup(store_uri: str) -> list[str]:
    return runs.mark_orphans()


def startup() -> list[str]:
    """Once per server process: runs left queued/running by a dead process -> interrupted
    (when the run store answers: else at the first page view after it does)."""
    if store_problem():
        return []
    return _startup(runs.tracking_uri())


@st.cache_resource(show_spinner=False)
def devices() -> dict[str, str | None]:
    from fmnist_core.device import available_devices
    return available_devices()


@st.cache_resource(show_spinner=False)
def machine() -> dict:
    from fmnist_core.device import machine_info
    return machine_info()


@st.cache_resource(show_spinner=False)
def mean_images() -> object:
    ds = dataset()
    return home_view.mean_images(ds.x_train, ds.y_train)


def _png(img) -> bytes:
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG", optimize=False, compress_level=1)
    return buf.getvalue()


@st.cache_resource(show_spinner=False, max_entries=16)
def class_rows_png(seed: int) -> list[bytes]:
    """Home's ten example rows for one shuffle seed, as PNG bytes: encoded once per server,
    not once per student's view (st.image sends bytes as they are)."""
    ds = dataset()
    idx = home_view.sample_indices(ds.y_train, per_class=10, seed=seed)
    return [_png(shared.tile_grid(ds.x_train[idx[k]], factor=3, gap=2)) for k in range(len(idx))]


@st.cache_resource(show_spinner=False)
def mean_images_png() -> list[bytes]:
    return [_png(shared.upscale(m, 4)) for m in mean_images()]


def mtime(path: str | Path) -> float:
    """A checkpoint's modification time (0 when it is missing): the version key of the caches."""
    try:
        return Path(path).stat().st_mtime
    except OSError:
        return 0.0


@st.cache_resource(show_spinner=False, max_entries=4)
def _shipped(folder: str, mtimes: tuple) -> list[dict]:
    return shared.shipped_models(Path(folder))


def shipped_models() -> list[dict]:
    """The shipped models' info, re-read when a file appears or changes."""
    folder = shared.SHIPPED_DIR
    return _shipped(str(folder), tuple(mtime(folder / f) for f in shared.SHIPPED.values()))


@st.cache_data(ttl=1.0, show_spinner=False)
def _active_runs(store_uri: str) -> list[dict]:
    return runs.list_runs(statuses=runs.ACTIVE)


@st.cache_data(ttl=15.0, show_spinner=False)
def _all_runs(store_uri: str) -> list[dict]:
    return runs.list_runs()


def store_problem() -> str | None:
    """None, or the sentence that says the run store is not answering (asked at most every
    few seconds per server: runs.answering). Pages then show no runs instead of hanging."""
    try:
        runs.check_answering()
        return None
    except runs.StoreNotAnswering as exc:
        return str(exc)


def active_run_list() -> list[dict]:
    """Queued and running runs: one small search a second for the whole server (the sidebar's
    queue on every page reads only this)."""
    if store_problem():
        return []
    return _active_runs(runs.tracking_uri())


def run_list() -> list[dict]:
    """Every run in the store, newest first, as fresh as the active runs: the whole store is
    searched again only when a run started or ended, or every 15 s (for changes made by another
    server). Shared by every session; each caller gets a copy, never shared state."""
    if store_problem():
        return []
    uri = runs.tracking_uri()
    active = {r["run_id"]: r for r in _active_runs(uri)}
    every = _all_runs(uri)
    known = {r["run_id"] for r in every}
    ended = any(r["status"] in runs.ACTIVE and r["run_id"] not in active for r in every)
    if ended or not set(active) <= known:
        _all_runs.clear()
        every = _all_runs(uri)
    return [active.get(r["run_id"], r) for r in every]


@st.cache_data(max_entries=8, show_spinner=False)
def _leaderboard(fingerprint: int, show_hidden: bool, store_uri: str):
    from fmnist_core.views import leaderboard
    return leaderboard.board(run_list(), show_hidden=show_hidden)


def leaderboard(show_hidden: bool = False):
    """The ranked board, computed once per change of the store (not per student per refresh)."""
    rs = run_list()
    fingerprint = hash(tuple((r["run_id"], r["status"], r["hidden"]) for r in rs))
    return _leaderboard(fingerprint, show_hidden, runs.tracking_uri())


def _clear_run_lists() -> None:
    _active_runs.clear()
    _all_runs.clear()
    _queue.clear()  # places in line are computed from the lists


run_list.clear = _clear_run_lists  # after a launch or a delete: show it now


@st.cache_data(show_spinner=False, max_entries=256)
def _run_detail(run_id: str, version: str, store_uri: str) -> dict:
    return runs.load_run(run_id)


def run_detail(run: dict) -> dict:
    """One run with its history, test metrics and checkpoint. A run that has ended never
    changes, so it is read once per server; an active one again after each heartbeat."""
    info = run.get("status_info") or {}
    version = run["status"] if run["status"] not in runs.ACTIVE else f"{info.get('heartbeat')}"
    return _run_detail(run["run_id"], version, runs.tracking_uri())


def model_list() -> dict[str, dict]:
    """Every shipped model and run as entries for the pages (views.shared.model_list), from
    the cached run list, so a finished or deleted run shows within a second."""
    return shared.model_list(shipped_models(), run_list())


def with_details(entry: dict) -> dict:
    """A run entry of model_list with its per-epoch history and test metrics filled in."""
    if entry["source"] != "run":
        return entry
    r = run_detail({"run_id": entry["run_id"], "status": entry["status"], "status_info": entry["info"]})
    return {**entry, "history": r["history"], "points": r.get("points") or [], "metrics": r["metrics"],
            "checkpoint": r["checkpoint"] or entry["checkpoint"]}


@st.cache_resource(show_spinner="Classifying the 10,000 test images…", max_entries=16)
def _predictions(path: str, version: float):
    return results_view.test_predictions(path, dataset())


def predictions(path: str):
    """(predicted class, confidence) arrays for the test set, computed once per checkpoint."""
    return _predictions(str(path), mtime(path))


@st.cache_resource(show_spinner="Evaluating on the 10,000 test images…", max_entries=8)
def _evaluation(path: str, version: float) -> dict:
    return results_view.evaluate_checkpoint(path, dataset())


def evaluation(path: str) -> dict:
    return _evaluation(str(path), mtime(path))


@st.cache_data(show_spinner=False, max_entries=64)
def layer_table(model_config_json: str):
    import json
    from fmnist_core.models import config_from_dict
    return shared.layer_summary(config_from_dict(json.loads(model_config_json)))


# --- charts ----------------------------------------------------------------------------

def style(fig: go.Figure, height: int = 420, top: int = 60, legend_below: bool = False,
          **layout) -> go.Figure:
    """Projector-friendly: large fonts, little margin, legend on top.

    Draw with st.plotly_chart(..., theme=None): Streamlit's chart theme would replace
    these font sizes with its own small ones. The font family stays Plotly's: Streamlit's
    web font can arrive after Plotly has measured the legend, which then clips the text.
    Plotly Express colours traces itself: pass color_discrete_sequence=COLORS there.

    legend_below: the legend sits under the x axis title in a band of its own, as tall as its
    entries need (the chart grows by that much), so many runs never cover the axis title.
    """
    legend = dict(orientation="h", x=0, title_text="", font=dict(size=FONT - 2))
    bottom = 10
    if legend_below:
        rows, long_names = _legend_rows(fig)
        band = LEGEND_ROW * rows
        bottom = AXIS_BAND + band
        height += band
        legend.update(yref="container", y=0, yanchor="bottom")
        if long_names:  # one run a row: two side by side cut each other's names off
            legend.update(entrywidth=1, entrywidthmode="fraction")
    else:
        legend.update(yanchor="bottom", y=1.02)
    fig.update_layout(colorway=COLORS,
                      font=dict(size=FONT),
                      height=height, margin=dict(l=10, r=10, t=top, b=bottom),
                      legend=legend, title_font=dict(size=FONT + 3), **layout)
    return fig


LEGEND_ROW = 26  # px per legend row at FONT - 2
AXIS_BAND = 80   # px under the plot for the x tick labels and the axis title


def _legend_rows(fig: go.Figure) -> tuple[int, bool]:
    """(rows, long names?) of a horizontal legend of this figure: long names (run labels) one a
    row, short ones (splits, devices) three a row."""
    names = []
    for t in fig.data:
        if t.showlegend is False or not t.name:
            continue
        key = t.legendgroup or t.name
        if key not in names:
            names.append(t.name)
    if not names:
        return 0, False
    if max(len(n) for n in names) > 22:
        return len(names), True
    return -(-len(names) // 3), False


def curves_figure(long_df, metric: str, by_split: bool = False, title: str | None = None) -> go.Figure:
    """Loss or accuracy per epoch. Several runs: one colour per run (one legend entry each),
    solid for training and dashed for validation (say so in a caption: a legend key for the
    dashes collides with long run names). by_split (one run): one colour per split.

    The y axis fits the values (views.axes): accuracy inside 0..100% with ticks that never
    repeat, loss on a log scale when one run's loss dwarfs the others (loss_note says so)."""
    df = long_df[long_df["metric"] == metric]
    fig = go.Figure()
    dash = {"train": "solid", "validation": "dash", "test (watched)": "dot"}
    for i, (run, group) in enumerate(df.groupby("run", sort=False)):
        for split, g in group.groupby("split", sort=False):
            colour = COLORS[list(dash).index(split) if by_split else i % len(COLORS)]
            # live points within an epoch: the line only; a dot at each epoch's end
            ends = list(g["end"]) if "end" in g else [True] * len(g)
            x, y, ends = _epoch_breaks(list(g["epoch"]), list(g["value"]), ends)
            fig.add_trace(go.Scatter(
                x=x, y=y, mode="lines+markers", legendgroup=run, cliponaxis=False,
                name=split if by_split else run, showlegend=by_split or split == "train",
                line=dict(color=colour, width=3, dash=dash[split]),
                # open dots for validation: with one epoch there is no line to be dashed
                marker=dict(size=[9 if e else 0 for e in ends], symbol="circle" if split == "train" else "circle-open",
                            line=dict(width=[2 if e else 0 for e in ends], color=colour)),
                hovertemplate=f"{run}<br>{split}, epoch %{{x:.2f}}: %{{y:.4f}}<extra></extra>"))
    fig.update_layout(title=title or ("Loss" if metric == "loss" else "Accuracy"))
    epochs = df["epoch"]
    few = len(epochs) and epochs.max() <= 12
    fig.update_xaxes(title="epoch", dtick=1 if few else None,
                     range=[epochs.min() - 0.4, epochs.max() + 0.4] if len(epochs) and few else None)
    if metric == "accuracy":
        fig.update_yaxes(title="accuracy", **axes.accuracy_axis(df["value"]))
    else:
        ax = axes.loss_axis(df["value"])
        fig.update_yaxes(title="cross-entropy loss", type=ax["type"], range=ax["range"])
        if ax["type"] == "log":
            vals = [v for v in df["value"] if v > 0]
            ticks, text = axes.log_ticks(min(vals), max(vals))
            fig.update_yaxes(tickvals=ticks, ticktext=text)
    return style(fig, height=460, legend_below=True)


def _epoch_breaks(x: list, y: list, ends: list) -> tuple[list, list, list]:
    """A gap in the line after each epoch's end dot that live points follow: those points are
    the next epoch's running mean, which starts afresh, and a line joining them reads as a jump
    in learning at the epoch boundary."""
    ox, oy, oe = [], [], []
    for i, (a, b, e) in enumerate(zip(x, y, ends)):
        ox.append(a), oy.append(b), oe.append(e)
        if e and i + 1 < len(x) and not ends[i + 1]:
            ox.append(a), oy.append(None), oe.append(False)
    return ox, oy, oe


def loss_note(long_df) -> str | None:
    """The sentence that goes under a loss chart drawn on a log scale (None on a linear one)."""
    df = long_df[long_df["metric"] == "loss"]
    return axes.loss_axis(df["value"], df["run"])["note"]


# --- the sidebar -----------------------------------------------------------------------

def sidebar() -> None:
    """Who you are, data source, devices, the class settings and the live job queue."""
    from ui import identity
    with st.sidebar:
        problem = store_problem()
        if problem:
            # plain text: the address is configuration, and a URL is never Markdown on our pages
            st.warning(shared.plain_text(f"{problem[:1].upper()}{problem[1:]}: runs, the queue and the "
                                         "leaderboard come back when it does; everything else works."),
                       icon=":material/cloud_off:")
        identity.sidebar_panel()
        s = summary(dataset())
        st.markdown("#### Data")
        st.caption(f"{s['train']:,} training · {s['test']:,} test images  \n"
                   f"{shared.data_origin(s['source'])}")
        st.markdown("#### Devices")
        lines = []
        for name, why in devices().items():
            lines.append(f":material/check_circle: **{name}**" if why is None
                         else f":material/block: **{name}**: {why}")
        st.caption("  \n".join(lines))
        st.markdown("#### Job queue")
        _class_settings(identity.current_user())
        from fmnist_core import analysis
        from fmnist_core.queue import benchmark_state, ensure_dispatcher
        if any(r["status"] == "queued" for r in active_run_list()) or analysis.waiting():
            ensure_dispatcher()  # one per server: started again here if it died (a file read when alive)
        active = shared.active_runs(active_run_list()) or benchmark_state()
        # the same period as the Train page's live view: a slower sidebar showed 23% beside 53%
        st.fragment(_queue_panel, run_every=POLL_SECONDS if active else None)(bool(active))


@st.cache_data(ttl=2.0, show_spinner=False)
def _class_settings_of(store_uri: str) -> dict:
    from dataclasses import asdict
    from fmnist_core.roles import class_settings as read
    return asdict(read())


def class_settings() -> dict:
    if store_problem():  # the defaults, until the store (which keeps the teacher's) answers
        from dataclasses import asdict
        from fmnist_core.roles import ClassSettings
        return asdict(ClassSettings())
    return _class_settings_of(runs.tracking_uri())


class_settings.clear = _class_settings_of.clear


SETTING_NAMES = {"max_concurrent": "Concurrent trainings", "max_active_per_student": "Runs per student at once",
                 "max_waiting_total": "Runs waiting in all", "max_parameters": "Parameters per model",
                 "max_epochs": "Epochs per run", "max_seconds": "Seconds of training per run",
                 "max_job_mb": "Memory per job (MB, estimated)", "max_est_minutes": "Minutes per run (estimated)"}


def _save_settings(user) -> None:
    from fmnist_core.roles import set_class_settings
    try:
        set_class_settings(user, **{k: st.session_state[f"cls_{k}"] for k in SETTING_NAMES})
        st.session_state.cls_error = None
        class_settings.clear()
    except WorkbenchError as exc:
        st.session_state.cls_error = str(exc)


def _class_settings(user) -> None:
    cfg = class_settings()
    if not user.teacher:
        st.caption(f"{plural(cfg['max_concurrent'], 'training')} at once, taking turns across students · "
                   f"per student: {plural(cfg['max_active_per_student'], 'run')} at once, ≤ "
                   f"{plural(cfg['max_parameters'], 'parameter')}, ≤ {plural(cfg['max_epochs'], 'epoch')}, "
                   f"≤ {cfg['max_seconds']:.0f} s, ≤ {cfg['max_job_mb']:,.0f} MB and ≤ "
                   f"{cfg['max_est_minutes']:g} min estimated. Set by the teacher.")
        return
    with st.expander("Class settings" if roles_class_mode() else "Queue settings"):
        for k, label in SETTING_NAMES.items():
            if f"cls_{k}" not in st.session_state:
                st.session_state[f"cls_{k}"] = cfg[k]
            if k == "max_concurrent":
                st.number_input(label, min_value=1, max_value=16, step=1, key=f"cls_{k}",
                                help="How many trainings run at once on this server; later launches wait "
                                     "in line, taking turns across students. 1 suits a 2-core machine.")
            elif roles_class_mode():
                st.number_input(label, min_value=1, step=1, key=f"cls_{k}")
        st.button("Apply for everyone", key="cls_apply", on_click=_save_settings, args=(user,))
        if st.session_state.get("cls_error"):
            st.error(st.session_state.cls_error)


def roles_class_mode() -> bool:
    from fmnist_core.roles import class_mode
    return class_mode()


def queue() -> dict[str, dict]:
    """run_id -> place in line and estimated wait of every run waiting in the queue
    (queue.estimates, the dispatcher's order), from the cached run list: the sidebar, the Train
    page and the CLI say the same."""
    from fmnist_core.queue import benchmark_state
    return _queue(runs.tracking_uri(), class_settings()["max_concurrent"], benchmark_state() is not None)


@st.cache_data(ttl=1.0, show_spinner=False, max_entries=4)
def _queue(store_uri: str, slots: int, blocked: bool) -> dict[str, dict]:
    """Once a second for the whole server, not once per session per poll."""
    from fmnist_core.queue import estimates
    return estimates(run_list(), slots, blocked=blocked)


def _queue_panel(was_active: bool) -> None:
    from fmnist_core.queue import benchmark_state
    from ui import identity
    active = shared.active_runs(active_run_list())
    bench_job = benchmark_state()
    if bench_job:
        st.caption(f":material/timer: **the teacher's benchmark** is {bench_job['state']}"
                   + (": trainings wait until it is done" if bench_job["state"] == "running" else
                      ": it starts when the trainings running now finish"))
    if not active and not bench_job:
        st.caption("No training running or waiting.")
    line = queue()
    # running and starting first, then the waiting runs in the dispatcher's order: the first
    # few and your own (a class's 60 waiting runs would fill the sidebar of 30 browsers)
    active = sorted(active, key=lambda r: (line.get(r["run_id"], {}).get("position", 0), r["created"]))
    me = identity.current_user().id
    shown = [r for r in active if r["run_id"] not in line or line[r["run_id"]]["position"] <= QUEUE_SHOWN
             or r["owner_id"] == me]
    for r in shown:
        if r["status"] == "queued" and r["run_id"] not in line:
            st.caption(f":material/rocket_launch: **starting**: {r['label']}")
        elif r["status"] == "running":
            p = r["progress"] or 0.0
            st.progress(min(max(p, 0.0), 1.0), text=f"**running** {r['label']} — {p:.0%}")
        else:
            q = line.get(r["run_id"]) or {}
            wait = q.get("wait")
            when = ("" if wait is None else " · starting" if wait < 1 else
                    f" · starts in about {format_seconds(wait)}")
            st.caption(f":material/hourglass_top: **#{q.get('position', '?')} in line**: {r['label']}{when}")
    if len(shown) < len(active):
        st.caption(f"… and {len(active) - len(shown)} more waiting")
    if was_active and not active:
        st.rerun()  # a full rerun redraws this panel without run_every: polling stops


# --- cheap per-student work, rate-limited per browser tab -------------------------------------

# an attack, an attribution, a search for the smallest ε: milliseconds to a second each, in the
# web process. A person clicks or drags a few times a second; a script in a loop would keep one
# of the server's two cores busy. 12 at once, then 3 a second, per tab.
_CHEAP = None


def allow_cheap_work(what: str) -> bool:
    """True when this tab may compute `what` now; otherwise a sentence, and False."""
    global _CHEAP
    from streamlit.runtime.scriptrunner import get_script_run_ctx
    from fmnist_core.ratelimit import RateLimiter
    if _CHEAP is None:
        _CHEAP = RateLimiter(rate_per_s=3.0, burst=12)
    ctx = get_script_run_ctx()
    if _CHEAP.allow(f"session:{ctx.session_id if ctx else '-'}"):
        return True
    st.warning(f"{what}: this tab asked for a lot in a few seconds; wait a moment, then try again.")
    return False
