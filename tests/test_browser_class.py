"""A class server in a real Chromium: a server with a teacher password, three browsers (two
students and the teacher, each its own browser context with its own identity cookie).

* student Ada cannot delete student Bo's run (no delete box, and the owner is named); Bo can;
* the teacher unlocks with the password, sees Bo's run on the Leaderboard, and deletes it;
* a settings link (`/train?start=...&lr=...`) fills the Train form.
The permission itself is checked in the core (tests/test_roles.py); this is what a class sees.
"""
from __future__ import annotations

import pytest

from browser_util import (browser, browser_marks, exceptions, open_page, screenshot,  # noqa: F401 (fixtures)
                          person, streamlit_server, using_store, wait_idle, open_tab)

pytestmark = browser_marks()
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

PASSWORD = "correct horse battery"
ADA, BO, TEACHER = "a" * 32, "b" * 32, "c" * 32  # the browsers' secret tokens


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """A store with one finished run of Bo's (trained here on real images)."""
    from fmnist_core import roles, runs
    from fmnist_core.execute import execute_run
    from fmnist_core.spec import run_spec
    from fmnist_core.models import MLPConfig
    from fmnist_core.train import TrainConfig
    base = tmp_path_factory.mktemp("artifacts_class")
    spec = run_spec(MLPConfig(hidden=(32,)), TrainConfig(epochs=1, batch_size=128, device="cpu"),
                    train_limit=3000)
    with using_store(base):
        rid = runs.create_run(spec, label="bo-mlp", owner="Bo", owner_id=roles.user_id(BO))
        assert execute_run(rid)["status"] == "finished"
    return base, rid


@pytest.fixture(scope="module")
def server(artifacts):
    with streamlit_server(artifacts[0], env={"FMNIST_TEACHER_PASSWORD": PASSWORD}) as url:
        yield url


def _delete_tab(page, server):
    open_page(page, server, "results")
    page.get_by_text("Look closer at").wait_for()
    open_tab(page, "Downloads & delete")


def test_students_and_the_teacher(browser, server, artifacts):
    from fmnist_core import runs
    base, rid = artifacts
    ada_ctx, ada = person(browser, server, ADA, "Ada")
    bo_ctx, bo = person(browser, server, BO, "Bo")
    t_ctx, teacher = person(browser, server, TEACHER, "Teacher")
    try:
        # Ada: her name came back from the cookie; Bo's run is shown but not hers to delete
        _delete_tab(ada, server)
        assert ada.get_by_label("Your name", exact=True).input_value() == "Ada"
        assert ada.get_by_text("This run belongs to Bo: only they or the teacher can delete it").is_visible()
        assert ada.get_by_text("Delete this run", exact=True).count() == 0
        assert exceptions(ada) == []
        screenshot(ada, "class-student-cannot-delete")

        # Bo: his own run, with the delete box
        _delete_tab(bo, server)
        bo.get_by_text("Delete this run", exact=True).wait_for()

        # the teacher: a wrong password is refused, the right one unlocks teacher mode
        open_page(teacher, server, "leaderboard")
        teacher.get_by_text("Teacher", exact=True).click()
        box = teacher.get_by_label("Teacher password", exact=True)
        box.fill("wrong")
        box.press("Enter")
        teacher.get_by_text("That is not the teacher's password.").wait_for()
        box.fill(PASSWORD)
        box.press("Enter")
        teacher.get_by_text("teacher mode", exact=True).wait_for()
        wait_idle(teacher)
        # the leaderboard ranks Bo's run, and the teacher may hide runs from it
        teacher.get_by_text("Best test accuracy", exact=True).wait_for()
        board = {m.locator('[data-testid="stMetricLabel"]').inner_text().strip():
                 m.locator('[data-testid="stMetricValue"]').inner_text().strip()
                 for m in teacher.locator('[data-testid="stMetric"]').all()}
        assert board["Runs on the board"] == "1" and board["Students"] == "1", board
        assert board["Best test accuracy"].endswith("%")
        assert teacher.locator('[data-testid="stDataFrame"]').count() == 1
        teacher.get_by_text("Hide a run from the board", exact=True).wait_for()
        screenshot(teacher, "class-leaderboard-teacher")

        # teacher mode survives a reload (the unlock is remembered for this browser only)
        teacher.reload()
        wait_idle(teacher)
        teacher.get_by_text("teacher mode", exact=True).wait_for()

        # and the teacher deletes Bo's run
        _delete_tab(teacher, server)
        teacher.get_by_text("Delete this run", exact=True).click()
        teacher.get_by_text("Yes, delete this run", exact=True).click()
        # the tick's rerun enables the button: a click before that rerun has ended is lost
        button = teacher.get_by_role("button", name="Delete run")
        sync_api.expect(button).to_be_enabled(timeout=60_000)
        button.click()
        teacher.get_by_text("Run deleted", exact=False).first.wait_for()
        wait_idle(teacher)
        assert exceptions(teacher) == []
        with using_store(base):
            assert runs.list_runs() == []
    finally:
        for c in (ada_ctx, bo_ctx, t_ctx):
            c.close()


def test_a_settings_link_fills_the_train_form(browser, server):
    ctx, page = person(browser, server, ADA, "Ada")
    try:
        open_page(page, server, "train?start=mlp-seed000&lr=0.01&epochs=3&hidden=256%2C+64")
        assert page.get_by_label("Epochs", exact=True).input_value() == "3"
        assert float(page.get_by_label("Learning rate", exact=True).input_value()) == 0.01
        assert page.get_by_label("Hidden layer widths", exact=True).input_value() == "256, 64"
        page.get_by_text("filled from a shared settings link").wait_for()
        # and the Share button gives the link back, with only what differs from the preset
        page.get_by_role("button", name="Share these settings").click()
        code = page.locator('[data-testid="stCode"]').first.inner_text()
        assert "start=mlp-seed000" in code and "epochs=3" in code and "lr=0.01" in code
        assert "batch_size" not in code
        assert exceptions(page) == []
        screenshot(page, "class-settings-link")
    finally:
        ctx.close()
