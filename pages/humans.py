"""Beat the network: each student labels a set of test images one at a time (28x28 as the
network sees it, enlarged; optionally larger and smoothed), then sees their accuracy beside the
shipped models' on the same images. The projector's view shows the class: mean, spread and
majority vote against the network and Zalando's 83.5%, both confusion matrices, the hardest
images. Storage, sets and figures are fmnist_core/humans.py's; this page lays them out."""
from __future__ import annotations

import streamlit as st

from fmnist_core import humans, runs
from fmnist_core.data import CLASSES
from fmnist_core.errors import WorkbenchError
from fmnist_core.views import humans as view
from ui import common, identity, model_picker

REFRESH_SECONDS = 5.0  # the projector's view follows the class's answers
LABEL, CLASS = "Label images", "The class (projector)"


@st.cache_data(ttl=2.0, show_spinner=False)
def _activity_of(store_uri: str) -> humans.Activity:
    return humans.activity()


@st.cache_data(ttl=2.0, show_spinner=False)
def _answers_of(store_uri: str, round_: str) -> list[dict]:
    """The class's answers: one search per 2 s for the whole server, whoever watches."""
    return humans.class_answers(_activity_of(store_uri))


def _clear() -> None:
    _activity_of.clear()
    _answers_of.clear()


@st.cache_resource(show_spinner="The network answers…", max_entries=256)  # 3 models x a class of own sets
def _network(path: str, version: float, indices: tuple[int, ...]) -> dict[int, tuple[int, float]]:
    ds = common.dataset()
    model, _ = model_picker.pair(path)
    return humans.network_answers(model, ds.x_test, ds.y_test, list(indices))


def networks(indices: list[int]) -> dict[str, dict[int, tuple[int, float]]]:
    """Every available shipped model's answers on these images, computed once per set."""
    key = tuple(sorted(set(indices)))
    return {m["name"].upper() if m["name"] != "resnet" else "ResNet": _network(m["path"], common.mtime(m["path"]), key)
            for m in common.shipped_models() if m["available"]}


def page() -> None:
    st.title("Beat the network")
    st.caption(f"Label Fashion-MNIST test images yourself, then compare with the shipped networks on the same "
               f"images. Zalando measured people at {humans.ZALANDO_HUMAN_ACCURACY:.1%} on this data set.")
    me = identity.current_user()
    if not identity.has_name():
        st.info("Type your name in the sidebar first (the class sees it only if the teacher turns names on).")
        return
    act = _activity_of(runs.tracking_uri())
    which = st.radio("View", [LABEL, CLASS], key="hu_view", horizontal=True, label_visibility="collapsed")
    if which == LABEL:
        _label(me, act)
    else:
        if me.teacher:
            _settings(me, act)
        st.fragment(_class_view, run_every=REFRESH_SECONDS)(me)


# --- one student labels -------------------------------------------------------------------------

def _answer(me, index: int, answer: int) -> None:
    try:
        st.session_state.hu_answers = humans.record_answer(me, common.dataset().y_test, index, answer)
        st.session_state.hu_error = None
        _answers_of.clear()
    except WorkbenchError as exc:
        st.session_state.hu_error = str(exc)


def _label(me, act: humans.Activity) -> None:
    ds = common.dataset()
    idx = humans.image_set(act, me.id, ds.y_test)
    if st.session_state.get("hu_round") != (act.round, me.id):  # first visit, or a new round
        st.session_state.hu_round = (act.round, me.id)
        st.session_state.hu_answers = humans.my_answers(me, act)
    answers = st.session_state.hu_answers
    todo = [i for i in idx if i not in answers]
    if st.session_state.get("hu_error"):
        st.error(st.session_state.hu_error)
    if not todo:
        _my_result(answers, ds)
        return
    i = todo[0]
    n_done = len(idx) - len(todo)
    st.progress(n_done / len(idx), text=f"Image {n_done + 1} of {len(idx)} · test image #{i}")
    left, right = st.columns([2, 3])
    with left:
        st.image(view.pixels(ds.x_test[i]), caption="28×28, as the network sees it (each square one pixel)")
        st.image(ds.x_test[i], caption="actual size")
        if st.toggle("Larger, smoothed", key="hu_smooth"):
            st.image(view.smooth(ds.x_test[i]), caption="the same pixels, larger and smoothed: no more detail")
    with right:
        st.markdown("**What is it?**")
        cols = st.columns(2)
        for c, name in enumerate(CLASSES):
            cols[c % 2].button(name, key=f"hu_ans_{c}", on_click=_answer, args=(me, i, c), width="stretch")
        st.caption("No going back: your first click counts (the network gets one try, too).")


def _my_result(answers: dict[int, int], ds) -> None:
    nets = networks(list(answers))
    result = humans.my_result(answers, ds.y_test, nets)
    st.success(f"Done: you labelled {result['answered']} images.")
    cols = st.columns(1 + len(nets) + 1)
    cols[0].metric("You", f"{result['accuracy']:.1%}")
    for col, (name, acc) in zip(cols[1:], result["networks"].items()):
        col.metric(f"{name} on the same images", f"{acc:.1%}")
    cols[-1].metric("Zalando's people", f"{humans.ZALANDO_HUMAN_ACCURACY:.1%}")
    table = view.my_table(result)
    wrong = table[table.apply(lambda r: any(str(v).endswith("✗") for v in r.values), axis=1)]
    st.markdown("#### What you or a network got wrong (✗)")
    if wrong.empty:
        st.caption("Nothing: everyone got every image right.")
    else:
        st.table(wrong, hide_index=True)
        shown = wrong["test image"].tolist()[:12]
        st.image([view.pixels(ds.x_test[k]) for k in shown], caption=[f"#{k}" for k in shown], width=112)
    st.caption("See how the whole class did under “The class (projector)”.")


# --- the class, on the projector ---------------------------------------------------------------

def _class_view(me) -> None:
    uri = runs.tracking_uri()
    act = _activity_of(uri)
    students = _answers_of(uri, act.round)
    if not students:
        st.info("No answers yet in this round: each student labels their images under “Label images”.")
        return
    ds = common.dataset()
    nets = networks(sorted({i for s in students for i in s["answers"]}))
    if not nets:
        st.warning("No shipped model is there to compare with (artifacts/models/*.pt).")
        return
    pick = st.selectbox("The network", list(nets), index=list(nets).index("CNN") if "CNN" in nets else 0,
                        key="hu_net")
    figs = humans.class_figures(students, ds.y_test, nets[pick])
    labels = view.names(students, me.id, act.show_names)
    m = st.columns(5)
    m[0].metric("Class mean", f"{figs['mean']:.1%}", help=f"over {len(students)} students")
    m[1].metric("Spread", f"± {figs['spread']:.1%}", help=f"standard deviation over students; lowest "
                f"{figs['lowest']:.1%}, highest {figs['highest']:.1%}")
    m[2].metric("Majority vote", f"{figs['majority']:.1%}",
                help="each image: the class's most frequent answer; a tie counts as a fair draw among the tied")
    m[3].metric(f"{pick} on the same images", f"{figs['network']:.1%}")
    m[4].metric("Zalando's people", f"{humans.ZALANDO_HUMAN_ACCURACY:.1%}")
    st.plotly_chart(view.accuracy_figure(figs, labels, pick), theme=None, key="hu_acc")
    st.table(view.students_table(figs, labels, pick), hide_index=True)
    a, b = st.columns(2)
    a.plotly_chart(view.confusion_figure(figs["human_confusion"], f"The class ({figs['n_answers']} answers)"),
                   theme=None, key="hu_cm_h")
    b.plotly_chart(view.confusion_figure(figs["network_confusion"], f"{pick} ({figs['n_images']} images)"),
                   theme=None, key="hu_cm_n")
    st.caption(view.confusion_note(figs["human_confusion"], figs["network_confusion"]))
    for title, items, by in (("Hardest for the class", figs["hardest_humans"], "humans"),
                             (f"Hardest for {pick}", figs["hardest_network"], "network")):
        st.markdown(f"#### {title}")
        if not items:
            st.caption("None got wrong.")
            continue
        st.image([view.pixels(ds.x_test[h["index"]]) for h in items],
                 caption=[view.hard_caption(h, by) for h in items], width=150)


def _apply(me) -> None:
    s = st.session_state
    try:
        humans.set_activity(me, n_images=int(s.hu_n), same_set=s.hu_same == "the same images for everyone",
                            show_names=bool(s.hu_names))
        s.hu_msg = "Applied for everyone."
        _clear()
    except WorkbenchError as exc:
        s.hu_msg = str(exc)


def _new_round(me) -> None:
    try:
        humans.set_activity(me, seed=humans.activity().seed + 1)
        st.session_state.hu_msg = "A new round: new images for everyone (earlier answers no longer count)."
        _clear()
    except WorkbenchError as exc:
        st.session_state.hu_msg = str(exc)


def _delete_all(me) -> None:
    try:
        n = humans.clear_answers(me)
        st.session_state.hu_msg = f"Deleted the answers of {n} student(s)."
        _clear()
    except WorkbenchError as exc:
        st.session_state.hu_msg = str(exc)


def _settings(me, act: humans.Activity) -> None:
    with st.expander("Activity settings (teacher)", icon=":material/tune:"):
        common.init_state({"hu_n": act.n_images, "hu_names": act.show_names,
                           "hu_same": "the same images for everyone" if act.same_set else "a set of their own"})
        st.number_input("Images per student", min_value=1, max_value=humans.MAX_IMAGES, step=1, key="hu_n")
        st.radio("Each student labels", ["the same images for everyone", "a set of their own"], key="hu_same",
                 horizontal=True)
        st.checkbox("Show students' names to the class", key="hu_names")
        c = st.columns(3)
        c[0].button("Apply for everyone", key="hu_apply", on_click=_apply, args=(me,))
        c[1].button("New round (new images)", key="hu_round_btn", on_click=_new_round, args=(me,))
        c[2].button("Delete every answer", key="hu_delete", on_click=_delete_all, args=(me,))
        if st.session_state.get("hu_msg"):
            st.caption(st.session_state.hu_msg)


if __name__ == "__main__":  # run as a script by Streamlit's pages/ discovery: see ui/__init__.py
    common.run_app()
