"""Train page: pick a preset or build an MLP/CNN, set the training options, see the
parameter counts, launch, then watch the run live (progress, epoch time, ETA, curves).

Launching submits the run (fmnist_core.submit: the price and the class limits are checked
there, in the core): a record in the store that the server's one dispatcher starts when its
turn comes (fmnist_core.queue) as its own process on this machine, or a Ray task. Nothing
trains in the script thread, a run outlives the tab, and waiting costs no process. The live view is a fragment that re-reads the run from the store every
POLL_SECONDS while the run is active and stops polling when it is not. The form's settings
can be shared as a link (views/share.py): opening it fills the form.
"""
from __future__ import annotations

import json
import time

import pandas as pd
import streamlit as st

from fmnist_core import runs, submit
from fmnist_core.study_settings import DERIVED, describe
from fmnist_core.views import labels as labels_view, results as results_view, share, shared, train as view
from fmnist_core.views import study as study_view
from fmnist_core.views.format import format_seconds
from fmnist_core.errors import ConfigError, WorkbenchError
from fmnist_core.models import ACTIVATIONS, DEMO_PRESET, config_to_dict, preset, preset_names
from fmnist_core.train import EARLY_STOP_ON, OPTIMIZERS, SCHEDULES
from ui import common, identity, model_picker, nav

DEFAULT_START = DEMO_PRESET  # the fast CNN for live class demos (bench-train times it)
ENGINES = view.ENGINES
FIELD_NAMES = view.FIELD_NAMES
PRECISIONS = view.PRECISIONS
LAUNCH_DEBOUNCE_S = 10.0  # the same settings launched again within this is a double click


def _starts() -> list[str]:
    return preset_names() + list(view.CUSTOM.values())


def _apply_start() -> None:
    """'Start from' changed: load that preset's values into the form widgets."""
    for k, v in view.form_defaults(st.session_state.tr_start).items():
        st.session_state[f"tr_{k}"] = v
    st.session_state.tr_limit_note = None
    _fit_limits()


def _limits() -> dict | None:
    """The class limits this browser's launches are checked against (roles.check_limits); None
    for the teacher (and the laptop's single user), who has none."""
    return None if identity.current_user().teacher else common.class_settings()


def _fit_limits() -> None:
    """A preset (or a link, or a limit lowered meanwhile) asking more epochs than the class limit:
    the field is set to the limit before it is drawn, so the form stays launchable, and says so."""
    lim = _limits()
    asked = st.session_state.get("tr_epochs")
    if lim and isinstance(asked, (int, float)) and asked > lim["max_epochs"]:
        st.session_state.tr_limit_note = view.epochs_lowered(st.session_state.tr_start, int(asked), lim["max_epochs"])
        st.session_state.tr_epochs = lim["max_epochs"]
    elif not lim or asked != lim["max_epochs"]:
        st.session_state.tr_limit_note = None  # the student chose another number since


def _init_state() -> None:
    if "tr_start" not in st.session_state:
        # opened from a settings link: the form starts from that preset and those settings
        shared_values, st.session_state.tr_link_problems = share.form_from_query(
            dict(st.query_params), view.form_defaults, view.FIELD_NAMES)
        st.session_state.tr_start = shared_values.pop("start", DEFAULT_START)
        _apply_start()
        for k, v in shared_values.items():
            st.session_state[f"tr_{k}"] = v
        st.session_state.tr_from_link = bool(shared_values) or "start" in st.query_params
    common.init_state({f"tr_{k}": v for k, v in view.form_defaults(st.session_state.tr_start).items()})


def _form_values() -> dict:
    keys = view.form_defaults(view.CUSTOM["mlp"]).keys()
    return {"start": st.session_state.tr_start, **{k: st.session_state[f"tr_{k}"] for k in keys}}


def _launch(spec: dict, label: str) -> None:
    me = identity.current_user()
    if not identity.has_name():
        st.session_state.tr_launch_error = "Type your name in the sidebar first: it is shown on your runs."
        return
    # a second click on Launch (or a double click) within a few seconds does not start the
    # same run twice
    fingerprint = json.dumps(spec, sort_keys=True)
    last = st.session_state.get("tr_last_launch")
    if last and last[0] == fingerprint and time.time() - last[1] < LAUNCH_DEBOUNCE_S:
        st.toast("Already launched: this run is in the queue.")
        return
    try:
        run_id = submit.submit(spec, label=label, user=me)
    except (WorkbenchError, OSError) as exc:
        st.session_state.tr_launch_error = f"Could not start the run: {shared.for_browser(str(exc))}"
        return
    st.session_state.tr_last_launch = (fingerprint, time.time())
    st.session_state.tr_launch_error = None
    st.session_state.tr_watch = run_id
    # the settings fold away: the run just launched comes into view, its place in the queue first
    st.session_state.tr_form_open = False
    common.run_list.clear()
    st.toast(f"Run launched: {label}")


def page() -> None:
    _init_state()
    _fit_limits()
    st.title("Train a model")
    st.caption("A launched run waits its turn in the class queue, then trains as its own process: you "
               "can close this tab or switch pages, the run goes on and its results stay in the run "
               "store.")
    common.init_state({"tr_form_open": True})
    # a student who presses Launch at the bottom of a long form would see nothing happen: the
    # live view is ~1,000 px further down. So the form folds away on Launch (one click opens it)
    with st.expander("Model, training and launch", key="tr_form_open", on_change="rerun",
                     icon=":material/tune:"):
        form, side = st.columns([3, 2], gap="large")
        with form:
            _model_widgets()
            _training_widgets()
            _where_widgets()
        with side:
            _summary_and_launch()
    if not st.session_state.tr_form_open:
        st.caption(":material/arrow_upward: Open **Model, training and launch** to change the settings "
                   "and launch another run.")
    _watch_section()


def _model_widgets() -> None:
    starts = _starts()
    st.selectbox("Start from", starts, key="tr_start", on_change=_apply_start,
                 help="A course-project preset, or a blank MLP/CNN; every value below stays editable.")
    changed = view.changed_fields(_form_values())
    about = ("" if st.session_state.tr_start in view.CUSTOM.values()
             else preset(st.session_state.tr_start)["about"])
    names = [FIELD_NAMES.get(k, k.replace("_", " ")) for k in changed]
    note = f"changed below: {', '.join(names)}" if changed else ""
    if about or note:
        st.caption(" · ".join(x for x in (about, note) if x))
    st.subheader("Model")
    st.radio("Architecture", view.ARCHS, key="tr_arch", horizontal=True,
             format_func=lambda a: {"mlp": "MLP (fully connected)", "cnn": "CNN (convolutional)",
                                    "resnet": "ResNet (residual blocks)"}[a])
    if st.session_state.tr_arch == "mlp":
        st.text_input("Hidden layer widths", key="tr_hidden",
                      help="Comma-separated, e.g. 256, 128 for 784-256-128-10. Empty = a linear model.")
    elif st.session_state.tr_arch == "resnet":
        a, b, c = st.columns(3)
        a.number_input("Stem channels", step=8, key="tr_stem", help="The first 3×3 conv, at 28×28")
        b.text_input("Residual stages", key="tr_stages",
                     help="Channels per stage, e.g. 24, 48, 96: each stage after the first halves the map")
        c.number_input("Blocks per stage", step=1, key="tr_blocks",
                       help="Residual blocks (conv-bn-act-conv-bn + shortcut) in each stage")
    else:
        a, b, c, d = st.columns(4)
        a.text_input("Conv channels", key="tr_channels", help="One conv layer per number, e.g. 32, 64")
        b.selectbox("Kernel", view.KERNELS, key="tr_kernel")
        c.selectbox("Pooling", view.POOLS, key="tr_pool")
        d.number_input("Pool after every N convs", step=1, key="tr_pool_every")
        st.text_input("Fully connected layers after the convs", key="tr_fc",
                      help="Comma-separated widths, e.g. 128; empty = straight to the 10 outputs")
        st.checkbox("Pool before batch norm and activation", key="tr_pool_first",
                    help="conv → pool → batchnorm → activation: the elementwise layers see a quarter "
                         "of the pixels, so training is faster; max pooling and ReLU commute")
    a, b, c = st.columns(3)
    a.selectbox("Activation", ACTIVATIONS, key="tr_activation")
    b.number_input("Dropout", step=0.05, format="%.2f", key="tr_dropout", help="0 = off; must be below 1")
    c.checkbox("Batch normalisation", key="tr_batchnorm", disabled=st.session_state.tr_arch == "resnet",
               help="A ResNet always has it (in every block)" if st.session_state.tr_arch == "resnet" else None)


def _training_widgets() -> None:
    st.subheader("Training")
    lim = _limits()
    a, b, c, d = st.columns(4)
    a.number_input("Epochs", step=1, key="tr_epochs", max_value=lim["max_epochs"] if lim else None,
                   help=f"The class limit is {lim['max_epochs']} epochs per run." if lim else None)
    if st.session_state.get("tr_limit_note"):
        st.caption(f":material/info: {st.session_state.tr_limit_note}")
    b.number_input("Batch size", step=16, key="tr_batch_size")
    c.selectbox("Optimizer", OPTIMIZERS, key="tr_optimizer")
    d.number_input("Learning rate", step=1e-4, format="%g", key="tr_lr")
    a, b, c, d = st.columns(4)
    a.selectbox("LR schedule", SCHEDULES, key="tr_schedule")
    b.number_input("Momentum (SGD)", step=0.05, format="%.2f", key="tr_momentum",
                   disabled=st.session_state.tr_optimizer != "sgd")
    c.number_input("L2 / weight decay", step=1e-4, format="%g", key="tr_l2")
    d.number_input("L1 penalty", step=1e-5, format="%g", key="tr_l1")
    a, b, c = st.columns(3)
    a.slider("Validation split", *view.RANGES["val_fraction"], step=0.05, key="tr_val_fraction",
             help="Held out from the 60,000 training images; the test set is never used for choices.")
    b.number_input("Early stopping patience", step=1, key="tr_patience",
                   help="Stop after N epochs without a better validation figure (0 = off); "
                        "the best weights are kept")
    b.selectbox("Early stopping on", EARLY_STOP_ON, key="tr_early_stop_on",
                format_func=lambda v: v.replace("val_", "validation "),
                help="Which validation figure picks the best epoch (the weights kept) and runs out "
                     "patience; seed 003 found the two disagree")
    c.number_input("Label smoothing", step=0.05, format="%.2f", key="tr_label_smoothing",
                   help="Soft targets: the true class gets 1 − ε + ε/10, every other class ε/10 "
                        "(PyTorch's definition); the model becomes less overconfident")
    a, b = st.columns(2)
    a.slider("Augmentation: random shift (px)", *view.RANGES["augment_shift"], key="tr_augment_shift",
             help="Move each training image by up to N pixels, a new draw every epoch")
    b.checkbox("Random left-right flips", key="tr_augment_flip", help="Augmentation: mirror training images")


def _where_widgets() -> None:
    st.subheader("Where and how")
    devs = common.devices()
    a, b, c = st.columns(3)

    def dev_label(name: str) -> str:
        return name if name == "auto" or devs.get(name) is None else f"{name} — not available"
    a.selectbox("Device", ["auto", *devs], key="tr_device", format_func=dev_label)
    b.selectbox("Precision", PRECISIONS, key="tr_precision",
                help="auto: bf16 for CNNs where the hardware does it fast (AMX / AVX-512 BF16, recent "
                     "GPUs), else fp32. bf16 halves the arithmetic width; weights stay fp32.")
    c.radio("Engine", list(ENGINES), key="tr_engine", format_func=ENGINES.get)
    a, b, _ = st.columns(3)
    a.number_input("Training images (0 = all)", min_value=0, step=1000, key="tr_train_limit",
                   help="Use only the first N training images: a quick demo run")
    b.number_input("Seed", step=1, key="tr_seed", help="Same seed, same settings: the same run")
    missing = [f"{n}: {why}" for n, why in devs.items() if why is not None]
    if missing:
        st.caption("Not available here — " + "; ".join(missing) + ".")


def _summary_and_launch() -> None:
    values = _form_values()
    spec, label, problems = view.check_form(values, common.devices())
    st.subheader("Parameters")
    try:
        mcfg = view.model_config_from_form(values)
    except (ConfigError, ValueError, TypeError):
        mcfg = None
    if mcfg is not None:
        table = common.layer_table(json.dumps(config_to_dict(mcfg)))
        total = int(table["parameters"].sum())
        st.metric("Trainable parameters", f"{total:,}")
        st.caption(shared.describe_model(config_to_dict(mcfg)))
        lim = _limits()
        if lim:
            # the class limits where they apply, before Launch (submit refuses past them)
            st.caption(view.limits_caption(lim, total))
            over = view.over_parameter_limit(total, lim)
            if over:
                problems = [*problems, over]
        st.dataframe(table, hide_index=True, width="stretch", height=min(42 + 37 * len(table), 460),
                     column_config={"parameters": st.column_config.NumberColumn(format="localized")})
    if label:
        changed = label != values["start"] and values["start"] not in view.CUSTOM.values()
        st.caption(f"Recorded as **{label}**" + (f" (changed from {values['start']})" if changed else ""))
    if spec is not None:
        cost, over = _price(json.dumps(spec, sort_keys=True), json.dumps(_limits() or {}, sort_keys=True))
        st.metric("Price on this server", cost, help="Estimated before launch from the layers, the batch size "
                  "and this server's measured speed: the trainer's peak memory and the run's time "
                  "(fmnist_core/cost.py; within about 2x of measured runs).")
        problems = problems + [f"Over a class limit: {o}." for o in over]
    # plain text: a problem may repeat what was typed in the form, and nothing typed (nor from
    # a link) is ever rendered as Markdown
    for p in problems:
        st.error(shared.plain_text(p))
    err = st.session_state.get("tr_launch_error")
    if err:
        st.error(shared.plain_text(err))
    st.button("Launch training", icon=":material/rocket_launch:", type="primary", key="launch_btn",
              disabled=bool(problems), on_click=_launch, args=(spec, label), width="stretch",
              help="Fix the problems above first" if problems else
              "Starts the run as its own process; it waits in line if the queue is full")
    if st.session_state.get("tr_from_link"):
        st.caption(":material/link: The form was filled from a shared settings link.")
    for p in st.session_state.get("tr_link_problems") or []:
        st.warning(shared.plain_text(p), icon=":material/link_off:")
    with st.popover("Share these settings", icon=":material/share:", width="stretch"):
        query = share.query_from_form(values, view.form_defaults)
        st.caption("Anyone who opens this link gets the Train form filled with these settings:")
        st.code(share.link(_base_url(), query), language=None, wrap_lines=True)
    _vary_widgets(spec)


def _vary_widgets(spec: dict | None) -> None:
    """Vary this setting: a study of one setting, these settings as its base (views/study.py)."""
    with st.expander("Vary this setting (a study)", icon=":material/science:"):
        if spec is None:
            st.caption("Fix the problems above first: the study starts from these settings.")
            return
        me = identity.current_user()
        setting = st.selectbox("Setting to vary", study_view.vary_choices(spec), key="tr_vary_setting",
                               format_func=lambda n: f"{n}: {describe(n)}" if n in DERIVED else n)
        values = st.text_input("Its values (commas)", study_view.VARY_SUGGESTED[setting],
                               key=f"tr_vary_values_{setting}", help="Every other setting stays as above")
        a, b = st.columns(2)
        name = a.text_input("Study name", key="tr_vary_name", placeholder=study_view.vary_name(setting))
        seeds = b.number_input("Seeds per point", 1, 10, 2, key="tr_vary_seeds")
        for_class = st.checkbox("For the class (every student takes its trials)", value=me.teacher,
                                key=f"tr_vary_class_{me.teacher}", disabled=not me.teacher)
        # not "tr_": a button's value cannot be re-assigned (common.keep_widget_state)
        if st.button("Open the study", key="vary_open", icon=":material/add:", width="stretch"):
            try:
                s = study_view.vary_from_form(spec, setting, values, name, me, int(seeds),
                                              bool(for_class and me.teacher))
                # the Studies page opens on it, saying so
                st.session_state.study_pick = s.name
                st.session_state.study_msg = ("success", f"Study {s.name} is open: {s.trial_budget()} trials.")
                st.session_state.tr_vary_done = s.name
            except WorkbenchError as exc:
                st.session_state.tr_vary_done = None
                st.error(shared.plain_text(str(exc)))
        done = st.session_state.get("tr_vary_done")
        if done:
            st.success(f"Study {done} is open: take its trials on the Studies page.")
            st.page_link(nav.page("study"), label=f"Open study {done}", icon=":material/science:")


@st.cache_data(show_spinner=False, max_entries=256)
def _price(spec_json: str, limits_json: str) -> tuple[str, list[str]]:
    return view.price_text(json.loads(spec_json), json.loads(limits_json))


def _base_url() -> str:
    try:
        return str(st.context.url).split("?")[0]
    except Exception:  # no browser (AppTest)
        return "http://localhost:8501/train"


def _watch_section() -> None:
    st.subheader("Runs")
    all_runs = common.run_list()
    if not all_runs:
        st.info("No runs yet. Launch one above; it will appear here with live curves.")
        return
    me = identity.current_user()
    mine = [r for r in all_runs if me.owns(r)]
    # your own runs first, then the class's, each newest first
    ordered = mine + [r for r in all_runs if not me.owns(r)]
    ids = [r["run_id"] for r in ordered]
    labels = {r["run_id"]: ("★ " if me.owns(r) else "") + shared.run_label(r) for r in ordered}
    if st.session_state.get("tr_watch") not in ids:
        active_mine = [r["run_id"] for r in mine if r["status"] in runs.ACTIVE]
        st.session_state.tr_watch = (active_mine or [r["run_id"] for r in mine] or ids)[0]
    st.selectbox("Watch run", ids, key="tr_watch", format_func=labels.get,
                 help="★ your runs (first), then everyone else's")
    run = next(r for r in ordered if r["run_id"] == st.session_state.tr_watch)
    active = run["status"] in runs.ACTIVE
    st.fragment(_watch_panel, run_every=common.POLL_SECONDS if active else None)(run["run_id"], run["status"])


def _stop(run_id: str) -> None:
    try:
        submit.stop_run(identity.current_user(), run_id)  # owner or teacher, checked in the core
        st.session_state.tr_stop_error = None
    except WorkbenchError as exc:
        st.session_state.tr_stop_error = shared.for_browser(str(exc))


def _watch_panel(run_id: str, drawn_status: str) -> None:
    """The live view of one run; `drawn_status` is its status when the page was last drawn.

    Status and progress come from the cached run list, the very snapshot the sidebar's queue
    panel shows (both poll every POLL_SECONDS), so the two never disagree by more than one
    poll; the history from run_detail, read once per heartbeat for every session."""
    listed = next((r for r in common.run_list() if r["run_id"] == run_id), None)
    try:
        if listed is None:
            raise WorkbenchError(f"no run {run_id}")
        run = {**common.run_detail(listed), "status": listed["status"], "status_info": listed["status_info"]}
    except WorkbenchError:
        st.info("This run was deleted.")
        return
    info = view.progress_info(run)
    if info["status"] == "queued":
        # its place in line from the first second, from the run list (the trainer process
        # only writes it once Python and PyTorch have loaded)
        q = common.queue().get(run_id)
        if q is not None:  # else the dispatcher has started it: its message says so
            info["text"] = view.queue_text(q)
    pct = f"{info['progress']:.0%}"
    st.progress(info["progress"], text=f"**{info['status']}** — {info['text']} ({pct})")
    c = st.columns(5)
    c[0].metric("Epoch", f"{info['epoch']} / {info['epochs']}" if info["epochs"] else "—")
    c[1].metric("Epoch time", format_seconds(info["epoch_seconds"]))
    c[2].metric("Wall clock", format_seconds(info["elapsed"]),
                # in the unit of the run's message ("finished 2 epochs in 27.9 s"), so the two read alike
                f"training alone {info['train_seconds']:.1f} s" if info.get("train_seconds") else None,
                delta_color="off", delta_arrow="off",
                help="Since the run's process started: loading Python, PyTorch and the data, and the final "
                     "test included. 'Training alone' is the epochs' time, the figure the run's message gives.")
    c[3].metric("ETA", format_seconds(info["eta"]) if info["active"] else "—")
    st_info = run["status_info"]
    if st_info.get("test_accuracy") is not None:
        c[4].metric("Test accuracy", f"{st_info['test_accuracy']:.2%}")
    elif run["history"] and run["history"][-1].get("val_accuracy") is not None:
        c[4].metric("Validation accuracy", f"{max(h.get('val_accuracy', 0) for h in run['history']):.2%}")
    else:
        c[4].metric("Batch loss", f"{info['batch_loss']:.4f}" if info["batch_loss"] else "—")

    me = identity.current_user()
    if info["active"]:
        if st_info.get("cancel") in (1, "1") or runs.cancel_requested(run_id):
            st.warning("Stop requested: the run stops within a few batches and keeps its best checkpoint.")
        elif me.teacher or me.owns(run):
            st.button("Stop", icon=":material/stop_circle:", key=f"stop_{run_id}",
                      on_click=_stop, args=(run_id,), help="Ask the run to stop; its best checkpoint is kept")
        else:
            st.caption(f"Launched by {run['owner'] or 'someone else'}: only they or the teacher can stop it.")
        if st.session_state.get("tr_stop_error"):
            st.error(st.session_state.tr_stop_error)
    elif info["status"] == "finished":
        # finished is not the same as learned: the diagnosis says what a teacher would
        findings = view.diagnosis(run)
        worst = findings[0].severity if findings else "ok"
        box = {"error": st.error, "warning": st.warning}.get(worst, st.success)
        head = f"{info['text'][:1].upper()}{info['text'][1:]}"
        box(f"{head}" + (" — but:" if worst in ("error", "warning") else ". Compare it with others on the "
                         "Results page."))
        for f in findings:
            if f.severity != "ok":
                {"error": st.error, "warning": st.warning, "info": st.info}[f.severity](f.text)
            else:
                st.caption(f":material/check_circle: {f.text}")
        # links from a run carry the run: the page opens on it, not on a shipped model
        nxt = st.columns(3)
        if nxt[0].button("Results: its mistakes", icon=":material/analytics:", key=f"to_results_{run_id}"):
            st.session_state.res_sel = [f"run:{run_id}"]
            st.session_state.res_detail = f"run:{run_id}"
            st.switch_page(nav.page("results"))
        if nxt[1].button("Predict: draw for it", icon=":material/online_prediction:", key=f"to_predict_{run_id}"):
            st.session_state[model_picker.CHOICE] = f"run:{run_id}"
            st.switch_page(nav.page("predict"))
    elif info["status"] in ("failed", "diverged", "interrupted"):
        st.error(shared.for_browser(info["text"]))
        for f in view.diagnosis(run):
            if f.rule != "diverged" and f.severity in ("error", "warning"):
                st.warning(f.text)
    elif info["status"] == "cancelled":
        st.warning(shared.for_browser(info["text"]))

    if run["history"] or run.get("points"):
        # the training curve moves every few dozen batches; validation at each epoch end
        long = shared.curves_long([(run_id, run["history"])], {run_id: run.get("points")})
        left, right = st.columns(2)
        left.plotly_chart(common.curves_figure(long, "loss", by_split=True), theme=None, key="watch_loss")
        right.plotly_chart(common.curves_figure(long, "accuracy", by_split=True), theme=None, key="watch_acc")
        st.caption(results_view.curves_caption(set(long["split"])))
        note = common.loss_note(long)
        if note:
            st.caption(f":material/info: {note}")
    elif info["active"]:
        st.caption("Curves appear after the first few dozen batches; validation at each epoch's end.")
    with st.expander("Configuration of this run"):
        cfg = run["config"]
        st.caption(f"{labels_view.run_label(run)} · run id `{run_id}`")
        options = [{"option": k, "value": "—" if v is None else str(v)} for k, v in cfg.get("train_config", {}).items()]
        st.dataframe(pd.DataFrame(options), hide_index=True, placeholder="—")
    if info["status"] != drawn_status:
        # queued -> running -> finished: a full rerun refreshes the run picker's label and,
        # once the run has ended, redraws this panel without run_every (polling stops)
        common.run_list.clear()
        st.rerun()


if __name__ == "__main__":  # run as a script by Streamlit's pages/ discovery: see ui/__init__.py
    common.run_app()
