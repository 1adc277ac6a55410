"""A class study in a real Chromium: the teacher opens a study of 3 depths x 2 seeds (1 epoch on
1,000 real training images) from the depth template; two students each take three trials with
"Take a trial"; the teacher's page, never reloaded, fills in live until the answer chart shows 6
points named by their owners, with error bars across the seeds. Pruning is tested in the core
(tests/test_studies.py), where a test makes a trial hopeless for sure."""
from __future__ import annotations

import re

import pytest

from browser_util import (browser, browser_marks, exceptions, open_page, screenshot,  # noqa: F401 (fixtures)
                          streamlit_server, unlock_teacher, using_store, wait_charts, wait_idle)

pytestmark = browser_marks()
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

PASSWORD = "correct horse battery"
ADA, BO, TEACHER = "a" * 32, "b" * 32, "c" * 32  # the browsers' secret tokens


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from fmnist_core import roles
    base = tmp_path_factory.mktemp("artifacts_study")
    with using_store(base):
        # three trials each at once, two trainings at a time: the class's six trials in a minute
        roles.set_class_settings(roles.User("teacher", roles.user_id(TEACHER), teacher=True),
                                 max_active_per_student=3, max_concurrent=2)
    with streamlit_server(base, env={"FMNIST_TEACHER_PASSWORD": PASSWORD, "FMNIST_DISPATCHER_IDLE_S": "4"}) as url:
        yield url, base


def _as(browser, server, token: str, name: str):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1100})
    ctx.add_cookies([{"name": "fmnist_token", "value": token, "url": server},
                     {"name": "fmnist_name", "value": name, "url": server}])
    page = ctx.new_page()
    page.set_default_timeout(90_000)
    return ctx, page


def _metric(page, label: str) -> str:
    box = page.locator('[data-testid="stMetric"]').filter(has=page.get_by_text(label, exact=True))
    return box.locator('[data-testid="stMetricValue"]').inner_text().strip()


def test_a_class_study_fills_in_live_with_each_students_points(browser, server):
    url, base = server
    t_ctx, teacher = _as(browser, url, TEACHER, "Teacher")
    ada_ctx, ada = _as(browser, url, ADA, "Ada")
    bo_ctx, bo = _as(browser, url, BO, "Bo")
    try:
        # the teacher unlocks and opens the class study from the depth template, 3 depths
        open_page(teacher, url, "study")
        unlock_teacher(teacher, PASSWORD)
        teacher.get_by_text("Open a study", exact=True).click()
        teacher.get_by_label("Values of depth", exact=True).fill("0, 1, 2")
        teacher.get_by_label("Name", exact=True).fill("depths")
        teacher.get_by_label("Training images (0 = all)", exact=True).fill("1000")
        teacher.get_by_role("button", name="Open the study").click()
        teacher.get_by_text("Study depths is open: 6 trials.").wait_for()
        teacher.get_by_text("No trial has finished yet").wait_for()

        # each student takes three trials under their own name (seed-major: depths 0, 1, 2 first)
        words = ["depth=0, seed 0", "depth=1, seed 0", "depth=2, seed 0",
                 "depth=0, seed 1", "depth=1, seed 1", "depth=2, seed 1"]
        for student in (ada, bo):
            open_page(student, url, "study")
        for i, (student, w) in enumerate(zip((ada, ada, ada, bo, bo, bo), words)):
            student.get_by_role("button", name="Take a trial").click()
            student.get_by_text(f"Trial {i} ({w}) is your run now").wait_for()
        assert exceptions(ada) == [] and exceptions(bo) == []

        # the teacher's page, never reloaded, fills in by itself until all six have finished
        teacher.wait_for_function("""() => [...document.querySelectorAll('[data-testid="stMetric"]')]
            .some(m => m.innerText.includes('Finished') && m.querySelector('[data-testid="stMetricValue"]')
                       .innerText.trim() === '6')""", timeout=240_000)
        wait_idle(teacher)
        wait_charts(teacher)
        labels = teacher.locator('[data-testid="stPlotlyChart"] text').evaluate_all("els => els.map(e => e.textContent)")
        owners = sorted(t for t in labels if re.fullmatch(r"(Ada|Bo) \(seed [01]\)", t))
        assert owners == ["Ada (seed 0)"] * 3 + ["Bo (seed 1)"] * 3, labels
        # one error bar per depth (the spread of its two seeds)
        assert teacher.locator('[data-testid="stPlotlyChart"] g.errorbar').count() == 3
        sentence = teacher.locator('[data-testid="stAlertContentInfo"]').inner_text()
        assert "is best on test accuracy" in sentence and "±" in sentence, sentence
        assert exceptions(teacher) == []
        screenshot(teacher, "study-class-depths")
    finally:
        for c in (t_ctx, ada_ctx, bo_ctx):
            c.close()
