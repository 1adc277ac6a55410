"""The "Beat the network" page (AppTest): one student labels their images by clicking, the
answers land in the store, the result and the class's view show the figures from them."""
from __future__ import annotations

from fmnist_core import humans, roles
from fmnist_core.data import CLASSES, load

from page_util import metrics, page_app, texts


def test_label_ten_images_then_see_the_result_and_the_class(runs_dir):
    teacher = roles.single_user()  # on a laptop the one user is the teacher
    humans.set_activity(teacher, n_images=10)
    at = page_app("humans").run()
    assert not at.exception, at.exception
    y = load().y_test
    shown = []
    for k in range(10):
        assert f"Image {k + 1} of 10" in at.get("progress")[0].proto.text
        index = int(at.get("progress")[0].proto.text.split("#")[1])
        shown.append(index)
        # right on the even images, "Bag" on the odd ones
        answer = int(y[index]) if k % 2 == 0 else CLASSES.index("Bag")
        at.button(key=f"hu_ans_{answer}").click().run()
        assert not at.exception, at.exception
    me = at.session_state["hu_round"][1]
    assert sorted(shown) == sorted(humans.image_set(humans.activity(), me, y))
    stored = humans.class_answers()[0]["answers"]
    expected = sum(stored[i] == y[i] for i in shown) / 10
    assert 0.5 <= expected <= 0.6  # half right, and an odd image may really be a Bag
    assert "Done: you labelled 10 images." in texts(at)
    assert metrics(at)["You"] == f"{expected:.1%}"
    assert any(k.endswith("on the same images") for k in metrics(at))

    at.radio(key="hu_view").set_value("The class (projector)").run()
    assert not at.exception, at.exception
    m = metrics(at)
    assert m["Class mean"] == f"{expected:.1%}" and m["Majority vote"] == f"{expected:.1%}"
    assert m["Zalando's people"] == "83.5%"
    table = at.table[0].value
    assert table["accuracy"].tolist() == [f"{expected:.1%}"] and table["student"].iloc[0].startswith("you")
