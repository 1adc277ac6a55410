"""Issue 25's walk-through on a class server, in a real Chromium: two students (Ada, Bo) and the
teacher, each its own browser context with its own identity cookie, at 1400x1000 (the Leaderboard
and the hidden run also at 1920x1080, a projector).

One server for the whole module, a store prepared with three real runs (trained here on real
images, small and fast): Bo's MLP, Cy's small CNN, and Ada's 2-epoch mlp-seed000 without a
validation split (as the demo presets train), under a class epoch limit of 2. What each
test guards is named in its docstring by the issue's item number.
"""
from __future__ import annotations

import re
import shutil

import pytest

from fmnist_core.models import DEMO_PRESET, preset

from browser_util import (ROOT, browser, browser_marks, exceptions, open_page, screenshot,  # noqa: F401 (fixtures)
                          people, streamlit_server, unlock_teacher, using_store, wait_idle)

pytestmark = browser_marks()
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

PASSWORD = "correct horse battery"
ADA, BO, CY, TEACHER = "a" * 32, "b" * 32, "d" * 32, "c" * 32  # the browsers' secret tokens
EPOCH_LIMIT = 2  # below the demo preset's 3 (speedrun-93): the Train form's default must still launch


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    from fmnist_core import roles, runs
    from fmnist_core.execute import execute_run
    from fmnist_core.spec import run_spec
    from fmnist_core.models import CNNConfig, MLPConfig, preset
    from fmnist_core.train import TrainConfig
    base = tmp_path_factory.mktemp("artifacts_walkthrough")
    # the committed reference timings (real figures of this project's CPU), for the Timings page
    (base / "benchmarks").mkdir()
    shutil.copy(ROOT / "artifacts" / "benchmarks" / "reference-cpu.json", base / "benchmarks")
    p = preset("mlp-seed000")
    ids = {}
    with using_store(base):
        for who, token, spec in (
                ("Bo", BO, run_spec(MLPConfig(hidden=(32,)), TrainConfig(epochs=1, batch_size=64, device="cpu"),
                                    train_limit=3000)),
                ("Cy", CY, run_spec(CNNConfig(channels=(8,), fc=()), TrainConfig(epochs=1, batch_size=64, device="cpu"),
                                    train_limit=3000)),
                ("Ada", ADA, run_spec(p["model"], TrainConfig(**{**p["train"], "epochs": 2, "lr": 0.002,
                                                                  "val_fraction": 0.0, "device": "cpu"}),
                                      preset="mlp-seed000", train_limit=6000))):
            rid = runs.create_run(spec, label=f"{who}-run", owner=who, owner_id=roles.user_id(token))
            assert execute_run(rid)["status"] == "finished"
            ids[who] = rid
        teacher = roles.User(name="Teacher", id=roles.user_id(TEACHER), teacher=True)
        roles.set_class_settings(teacher, max_epochs=EPOCH_LIMIT)
    return base, ids


@pytest.fixture(scope="module")
def server(artifacts):
    from fmnist_core.bench.job import job_dir
    with streamlit_server(artifacts[0], env={"FMNIST_TEACHER_PASSWORD": PASSWORD}) as url:
        yield url
    shutil.rmtree(job_dir(artifacts[0] / "benchmarks"), ignore_errors=True)


def chosen(page, label: str) -> str:
    """What the selectbox with this label shows (its text and its input's value)."""
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first
    return box.evaluate("e => e.innerText + ' ' + Array.from(e.querySelectorAll('input'))"
                        ".map(i => i.value + ' ' + (i.placeholder || '') + ' ' + (i.getAttribute('aria-label') || ''))"
                        ".join(' ')")


def metrics(page) -> dict[str, str]:
    return {m.locator('[data-testid="stMetricLabel"]').inner_text().strip():
            m.locator('[data-testid="stMetricValue"]').inner_text().strip()
            for m in page.locator('[data-testid="stMetric"]').all()}


def unlock(page, server) -> None:
    open_page(page, server, "leaderboard")
    unlock_teacher(page, PASSWORD)


# JS: from the page's start until its title is drawn, how long the main area showed grey skeletons
# with no word of what is loading (__bare, ms), whether the loading line was seen (__said), and when the page's own title
# came (__title, ms); installed before the page's first script runs
SKELETON_WATCH = """
window.__bare = 0; window.__since = null; window.__said = false; window.__title = null;
const tick = () => {
  const main = document.querySelector('[data-testid="stMain"]');
  const skel = main && main.querySelector('[data-testid="stSkeleton"]');
  const said = !!main && /Loading the page/.test(main.innerText || '');
  const now = performance.now();
  window.__said = window.__said || said;
  if (window.__title === null && main && main.querySelector('h1')) window.__title = now;
  // bare before the title only: once the page's title is drawn the visitor sees the page come
  if (skel && !said && window.__title === null) { if (window.__since === null) window.__since = now;
                       window.__bare = Math.max(window.__bare, now - window.__since); }
  else window.__since = null;
  requestAnimationFrame(tick);
};
requestAnimationFrame(tick);
"""


def test_13_first_visit_says_what_is_loading(server, people):
    """Item 13: on a fresh server, Home and Train said nothing for several seconds (grey skeletons
    while the app imported PyTorch and the sidebar loaded the dataset and the store). Runs first:
    the server is cold. Now a line says what is loading before the slow part; what is left bare
    is the connection and the script's start, a small share of the wait (the machine's load
    stretches both alike, so the bound is a share, with an absolute floor for a quick page)."""
    ada = people(ADA, "Ada")
    ada.add_init_script(SKELETON_WATCH)
    for path in ("home", "train"):
        ada.goto(f"{server}/{path}")
        wait_idle(ada, timeout=180)
        bare, said, title = ada.evaluate("[window.__bare, window.__said, window.__title]")
        assert title is not None
        if path == "home":  # the cold start: the slow imports are ahead, and the line says so
            assert said, "no word of what is loading on a cold server's first page"
        assert bare < max(1500, 0.5 * title), f"{path}: {bare:.0f} ms of skeletons with no word, title at {title:.0f} ms"
        assert exceptions(ada) == []
        assert ada.get_by_text("Loading the page").count() == 0  # cleared once the page is drawn


def test_01_hidden_run_marked_for_the_teacher_and_projector_view(server, people, artifacts):
    """Item 1: after "Hide it", the teacher's own board ranked the hidden run first with no mark.
    Now it is marked, unranked, out of the best/count metrics, and a projector toggle shows
    exactly the students' board; at 1400x1000 and 1920x1080."""
    teacher = people(TEACHER, "Teacher")
    unlock(teacher, server)
    before = metrics(teacher)
    assert before["Runs on the board"] == "3", before
    teacher.get_by_text("Hide a run from the board").click()
    teacher.get_by_role("button", name="Hide it").click()  # the picker starts on the first-ranked run
    wait_idle(teacher)
    teacher.get_by_text("Hidden from students (1)").wait_for()
    hidden_acc = re.search(r"(\d+\.\d\d%)", teacher.get_by_text("Hidden from students (1)").inner_text()).group(1)
    assert before["Best test accuracy"] == hidden_acc  # the best run is the one hidden
    for width, height in ((1400, 1000), (1920, 1080)):
        teacher.set_viewport_size({"width": width, "height": height})
        wait_idle(teacher)
        note = teacher.get_by_text("Hidden from students (1)")
        assert note.is_visible() and hidden_acc in note.inner_text()
        box = note.bounding_box()
        assert box["y"] + box["height"] <= height, "the mark is below the fold"
        mine = metrics(teacher)
        assert mine["Runs on the board"] == "2" and mine["Best test accuracy"] != hidden_acc, mine
        screenshot(teacher, f"walk-leaderboard-teacher-{width}")
        # the projector view: what students see, nothing hidden, no teacher controls
        teacher.get_by_text("Projector view: what students see").click()
        teacher.get_by_text("Hidden from students").wait_for(state="detached")
        wait_idle(teacher)
        assert teacher.get_by_text("Hide a run from the board").count() == 0
        projector = metrics(teacher)
        screenshot(teacher, f"walk-leaderboard-projector-{width}")
        teacher.get_by_text("Projector view: what students see").click()
        teacher.get_by_text("Hidden from students (1)").wait_for()
        wait_idle(teacher)
        bo = people(BO, "Bo", width, height)
        open_page(bo, server, "leaderboard")
        assert metrics(bo) == projector == mine
        assert bo.get_by_text("Hidden from students").count() == 0
        assert exceptions(teacher) == [] and exceptions(bo) == []
    with using_store(artifacts[0]):
        from fmnist_core import runs
        for r in runs.list_runs():
            runs.set_hidden(r["run_id"], False)  # the other tests see all three


def _plot(page, key: str):
    return page.locator(f".st-key-{key} .js-plotly-plot").first


def test_11_parallel_chart_and_table_on_a_projector(server, people):
    """Item 11: a constant batch size spanned 230.4-281.6, single-category axes showed -1..1, and
    the table was cut off at 1920 px. Constant settings leave chart and table ("All runs: ..."),
    the model axis has its category names, the table fits its width."""
    for width, height in ((1400, 1000), (1920, 1080)):
        ada = people(ADA, "Ada", width, height)
        open_page(ada, server, "leaderboard")
        chart = _plot(ada, "lb_parallel")
        chart.wait_for()
        dims = chart.evaluate("gd => gd.data[0].dimensions.map(d => [d.label, d.ticktext || null])")
        labels = [d[0] for d in dims]
        assert "batch size" not in labels and "optimizer" not in labels, labels
        model = dict(dims).get("model")
        assert model and sorted(model) == ["cnn", "mlp"], dims
        ada.get_by_text("All runs:").first.wait_for()
        assert "batch size 64" in ada.get_by_text("All runs:").first.inner_text()
        # the table's own scroller: nothing hidden sideways
        over = ada.locator('[data-testid="stDataFrame"] .dvn-scroller').first.evaluate(
            "e => e.scrollWidth - e.clientWidth")
        assert over <= 2, f"the table is {over} px wider than its box at {width} px"
        assert exceptions(ada) == []
        screenshot(ada, f"walk-leaderboard-chart-{width}")


def _watch_own_run(page, server) -> None:
    open_page(page, server, "train")
    page.get_by_text("Configuration of this run").wait_for()


def test_03_class_limits_in_the_form(server, people):
    """Item 3: a class limit was found only on Launch, and cnn-demo (7 epochs) broke under a
    limit of 5. The form shows the limits where they apply and stays launchable."""
    ada = people(ADA, "Ada")
    open_page(ada, server, "train")
    epochs = ada.get_by_label("Epochs", exact=True)
    assert epochs.input_value() == str(EPOCH_LIMIT)
    demo = preset(DEMO_PRESET)["train"]["epochs"]
    assert demo > EPOCH_LIMIT, "the limit must bind on the default preset for this test to mean anything"
    ada.get_by_text(f"{DEMO_PRESET} trains {demo} epochs; the class limit is {EPOCH_LIMIT} per run").wait_for()
    ada.get_by_text("Class limits:").first.wait_for()
    assert "parameters" in ada.get_by_text("Class limits:").first.inner_text()
    # enabled once the page's script run is over (under load the check came before it, once)
    sync_api.expect(ada.get_by_role("button", name="Launch training")).to_be_enabled(timeout=60_000)
    assert ada.locator('[data-testid="stAlert"]').filter(has_text="class limit").count() == 0
    screenshot(ada, "walk-train-limits")
    # the teacher has no limit: the preset's own epochs
    teacher = people(TEACHER, "Teacher")
    unlock(teacher, server)
    open_page(teacher, server, "train")
    assert teacher.get_by_label("Epochs", exact=True).input_value() == str(demo)
    assert exceptions(ada) == [] and exceptions(teacher) == []


def test_08_09_wall_clock_training_time_and_the_epoch_break(server, people):
    """Item 8: "Elapsed 35 s" stood beside "finished 2 epochs in 27.9 s", and cnn-demo promised
    "~93% in under a minute" on any server. Item 9: the live accuracy line jumped at each epoch
    boundary (the running mean restarts): now the line breaks there."""
    ada = people(ADA, "Ada")
    _watch_own_run(ada, server)
    card = ada.locator('[data-testid="stMetric"]').filter(has_text="Wall clock").first
    delta = card.locator('[data-testid="stMetricDelta"]').inner_text()
    said = re.search(r"finished 2 epochs in ([\d.]+) s", ada.locator('[data-testid="stMain"]').inner_text())
    assert said, "the run's message"
    shown = re.search(r"training alone ([\d.]+) s", delta)
    assert shown and shown.group(1) == said.group(1), (delta, said.group(0))  # the same figure, the same unit
    assert ada.get_by_text("under a minute").count() == 0
    # the accuracy chart: a gap (null) in the training line between the epochs
    ys = _plot(ada, "watch_acc").evaluate(
        "gd => gd.data.filter(t => t.name === 'train').map(t => Array.from(t.y))")
    assert ys and any(v is None for v in ys[0][1:-1]), ys
    ada.get_by_text("restarted at each epoch").first.wait_for()
    screenshot(ada, "walk-train-finished-run")
    open_page(ada, server, "train")
    caption = ada.get_by_text(preset(DEMO_PRESET)["about"][:40]).first.inner_text()
    assert "measured" in caption or "bench-train" in caption, caption


def test_02_links_from_a_run_carry_the_run(server, people, artifacts):
    """Item 2: "Predict: draw for it" opened Predict on the shipped CNN, not on the run."""
    ada = people(ADA, "Ada")
    _watch_own_run(ada, server)
    ada.get_by_role("button", name="Predict: draw for it").click()
    ada.get_by_role("heading", name="Predict").wait_for()
    wait_idle(ada)
    picked = chosen(ada, "Model")
    assert "Ada" in picked and "mlp-seed000" in picked and "shipped" not in picked, picked
    _watch_own_run(ada, server)
    ada.get_by_role("button", name="Results: its mistakes").click()
    ada.get_by_text("Look closer at").wait_for()
    wait_idle(ada)
    closer = chosen(ada, "Look closer at")
    assert "Ada" in closer and "mlp-seed000" in closer, closer
    assert exceptions(ada) == []


def _results_on_adas_run(page, server) -> None:
    open_page(page, server, "results")
    page.get_by_text("Look closer at").wait_for()
    closer = chosen(page, "Look closer at")
    assert "Ada" in closer, closer  # Results opens on this student's own run


def test_04_15_how_it_learned_without_a_validation_split(server, people):
    """Item 4: a run without a validation split (cnn-demo's way) got an empty tab and a caption
    promising a dotted test-set line never drawn. Item 15: "(it chose nothing)", a stray comma."""
    ada = people(ADA, "Ada")
    _results_on_adas_run(ada, server)
    main = ada.locator('[data-testid="stMain"]')
    text = main.inner_text()
    assert "dotted" not in text and "it chose nothing" not in text
    assert "well above chance, (" not in text
    ada.get_by_text("No held-out set was scored during training").first.wait_for()
    ada.get_by_role("tab", name="How it learned").click()
    ada.get_by_text("its training, epoch by epoch").wait_for()
    assert ada.locator('[role="tabpanel"]:visible [data-testid="stDataFrame"]').count() == 1
    assert exceptions(ada) == []
    screenshot(ada, "walk-results-how-it-learned")


def test_12_downloads_named_by_owner_preset_changes_and_date(server, people, artifacts):
    """Item 12: downloads were named by run id (912f0c4f....pt)."""
    ada = people(ADA, "Ada")
    _results_on_adas_run(ada, server)
    ada.get_by_role("tab", name="Downloads & delete").click()
    names = []
    for button in ("History (CSV)", "Checkpoint (.pt)"):
        with ada.expect_download() as dl:
            ada.get_by_role("button", name=button).click()
        names.append(dl.value.suggested_filename)
    rid = artifacts[1]["Ada"]
    for n in names:
        assert rid not in n and rid[:8] not in n, n
        assert re.fullmatch(r"Ada_mlp-seed000_epochs-2-lr-0\.002[-.\w]*_20\d\d-\d\d-\d\d-\d{4}(-history\.csv|\.pt)", n), n
    screenshot(ada, "walk-results-downloads")


def test_14_timings_figures_for_students_goals_for_the_teacher(server, people):
    """Item 14: students saw the project's goals in red ("not met", "bf16 0.68x faster"); the
    chip of a saved result was cut."""
    ada = people(ADA, "Ada")
    open_page(ada, server, "timings")
    ada.get_by_text("Why the numbers differ").wait_for()
    text = ada.locator('[data-testid="stMain"]').inner_text()
    assert "The speed goals" not in text and "not met" not in text
    assert "0.68x faster" not in text and "0.68× faster" not in text
    assert ada.get_by_text("Compared (10,000-image inference").is_visible()
    assert "1.5× slower" in text
    chips = ada.locator('[data-testid="stMultiSelect"] [data-baseweb="tag"] span[title], '
                        '[data-testid="stMultiSelect"] [data-baseweb="tag"] span')
    for chip in chips.all():
        assert chip.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), chip.inner_text()
    screenshot(ada, "walk-timings-student")
    teacher = people(TEACHER, "Teacher")
    unlock(teacher, server)
    open_page(teacher, server, "timings")
    teacher.get_by_text("The speed goals").wait_for()
    t_text = teacher.locator('[data-testid="stMain"]').inner_text()
    assert "1.5× slower" in t_text and "0.68" not in t_text.split("The speed goals")[1][:2000]
    assert exceptions(ada) == [] and exceptions(teacher) == []
