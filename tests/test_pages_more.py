"""The Predict, Inside-the-network and Timings pages under streamlit.testing.v1.AppTest.

Each renders without an exception, with and without a model; a test image gives a
prediction (PyTorch and the NumPy twin side by side, and the right class under the
shipped CNN when it is there); a corrupt upload shows the preprocessing module's message
and the page goes on working; the camera stays off until asked; Inside shows every layer's
PyTorch/NumPy difference within 1e-4 and the whole-test-set comparison; Timings shows a
real results file, an upload from "another machine", and a clear error for a malformed one.

When artifacts/models/cnn.pt is not there (it is trained separately), a small MLP trained
here on real images stands in as the shipped model, so these tests never depend on it.
Runs go to a temporary folder (runs.RUNS_DIR patched), results files too (bench.results.BENCH_DIR).
"""
from __future__ import annotations

import io
import json
import shutil
import time

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from fmnist_core import bench, runs, views
from fmnist_core.data import CLASSES
from fmnist_core.device import available_devices

from conftest import ROOT

TIMEOUT = 120  # the first run imports torch and loads the dataset on a busy 2-core machine
REAL_CNN = ROOT / "artifacts" / "models" / "cnn.pt"
EASY = {2: "Trouser", 0: "Ankle boot"}  # clearly recognisable test images


def page_app(name: str) -> AppTest:
    """One page with the app's sidebar, as app.py draws it."""
    return AppTest.from_string(f"from pages import common, {name}\ncommon.sidebar()\n{name}.page()\n",
                               default_timeout=TIMEOUT)


def texts(at: AppTest) -> str:
    parts = [e.value for e in (*at.markdown, *at.caption, *at.info, *at.success, *at.warning, *at.error)]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    return "\n".join(str(p) for p in parts)


def captions(at: AppTest) -> list[str]:
    """The captions of every st.image, in page order."""
    return [c for im in at.image for c in im.captions]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def png(x: np.ndarray, side: int = 280, invert: bool = False, fmt: str = "PNG") -> bytes:
    """A test image as a file: upscaled, optionally dark-on-light like a photo on paper."""
    img = Image.fromarray(255 - x if invert else x).resize((side, side), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()



@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    """A folder holding mlp.pt: a small MLP trained here on 6,000 real training images."""
    from fmnist_core.jobs import execute_run, run_spec
    from fmnist_core.models import MLPConfig
    from fmnist_core.train import TrainConfig
    base = tmp_path_factory.mktemp("stand_in")
    spec = run_spec(MLPConfig(hidden=(64,)), TrainConfig(epochs=2, batch_size=64, device="cpu"),
                    train_limit=6000)
    d = runs.create_run(spec, root=base / "runs", label="stand-in")
    assert execute_run(d)["status"] == "finished"
    models = base / "models"
    models.mkdir()
    shutil.copyfile(d / "best.pt", models / "mlp.pt")
    return models


@pytest.fixture
def model(runs_dir, stand_in, monkeypatch):
    """The model the pages choose by default: the shipped CNN, or the stand-in MLP."""
    if REAL_CNN.is_file():
        return {"key": "shipped:cnn", "path": REAL_CNN, "real_cnn": True}
    monkeypatch.setattr(views, "SHIPPED_DIR", stand_in)
    return {"key": "shipped:mlp", "path": stand_in / "mlp.pt", "real_cnn": False}


@pytest.fixture
def no_models(runs_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(views, "SHIPPED_DIR", tmp_path / "no-models-here")


# --- Predict ------------------------------------------------------------------------------

def test_predict_without_any_model_says_what_to_do(no_models):
    at = page_app("predict").run()
    assert not at.exception
    assert "No trained model yet" in texts(at)
    # the inputs still work: a test image is shown, with no prediction
    at.radio(key="pr_source").set_value("test").run()
    assert not at.exception and captions(at)[0] == "test image #0: Ankle boot"
    assert "PyTorch says" not in metrics(at)


def test_predict_draw_is_the_default_and_asks_for_a_drawing(model):
    at = page_app("predict").run()
    assert not at.exception
    assert at.radio(key="pr_source").value == "draw"
    assert at.selectbox(key="pr_model").value == model["key"]
    assert "Draw a garment" in texts(at)
    assert not at.error


@pytest.mark.parametrize("index", sorted(EASY))
def test_predict_a_test_image_both_implementations(model, index):
    from fmnist_core.data import load
    from fmnist_core.models import load_model
    from fmnist_core.predict import predict_array
    at = page_app("predict").run()
    at.radio(key="pr_source").set_value("test").run()
    at.number_input(key="pr_test_idx").set_value(index).run()
    assert not at.exception
    m = metrics(at)
    assert m["PyTorch says"] == m["NumPy twin says"]
    assert float(m["Largest difference"]) < 1e-4
    x = load().x_test[index]
    expected = predict_array(load_model(model["path"]), x / np.float32(255))["label"]
    assert m["PyTorch says"] == expected
    if model["real_cnn"]:
        assert m["PyTorch says"] == EASY[index]
    assert f"The true class is **{EASY[index]}**" in texts(at)
    # the input is kept for the Inside page
    assert at.session_state["pr_last"]["what"] == f"test image #{index}"


def test_predict_random_test_image_of_a_class(model):
    at = page_app("predict").run()
    at.radio(key="pr_source").set_value("test").run()
    at.selectbox(key="pr_test_class").select("Bag").run()
    at.button(key="pr_test_random").click().run()
    assert not at.exception
    assert "The true class is **Bag**" in texts(at)


def test_predict_corrupt_upload_shows_the_message_and_the_page_goes_on(model):
    from fmnist_core.data import load
    at = page_app("predict").run()
    at.radio(key="pr_source").set_value("upload").run()
    at.file_uploader(key="pr_upload").set_value(("shirt.png", b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 40,
                                                 "image/png")).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("Cannot use upload “shirt.png”: the "), errors
    assert "damaged" in errors[0]  # the preprocessing module's own sentence
    at.file_uploader(key="pr_upload").set_value(("notes.txt", b"hello, this is not a picture\n",
                                                 "text/plain")).run()
    assert "this is a text file, not an image" in at.error[0].value
    # a real image afterwards: preprocessing steps and a prediction
    at.file_uploader(key="pr_upload").set_value(("trouser.png", png(load().x_test[2]), "image/png")).run()
    assert not at.exception and not at.error
    shown = captions(at)
    assert shown[0] == "original" and shown[-1] == "model input"
    assert metrics(at)["PyTorch says"] == metrics(at)["NumPy twin says"]


def test_predict_camera_is_off_until_asked_then_classifies_a_photo(model):
    from fmnist_core.data import load
    at = page_app("predict").run()
    at.radio(key="pr_source").set_value("camera").run()
    assert not at.exception
    assert len(at.camera_input) == 0  # no camera widget, so no permission prompt, until asked
    at.toggle(key="pr_cam_on").set_value(True).run()
    assert len(at.camera_input) == 1
    photo = png(load().x_test[0], side=480, invert=True, fmt="JPEG")  # a dark boot on white paper
    at.camera_input(key="pr_camera").set_value(("photo.jpg", photo, "image/jpeg")).run()
    assert not at.exception and not at.error
    assert "negated (light background)" in captions(at)
    assert metrics(at)["PyTorch says"] in CLASSES


# --- Inside the network ------------------------------------------------------------------------

def test_inside_without_any_model(no_models):
    at = page_app("inside").run()
    assert not at.exception
    assert "No trained model yet" in texts(at)


def test_inside_layers_agree_and_whole_test_set(model):
    at = page_app("inside").run()
    assert not at.exception
    assert any("the same numbers, up to float32 rounding" in s.value for s in at.success)
    table = next(d.value for d in at.dataframe if "max |PyTorch − NumPy|" in d.value.columns)
    assert (table["max |PyTorch − NumPy|"] <= 1e-4).all()
    assert table["layer"].tolist()[0] == "norm" and table["layer"].tolist()[-1] == "out"
    params = next(d.value for d in at.dataframe if "parameters" in d.value.columns)
    assert metrics(at)["Parameters in total"] == f"{int(params['parameters'].sum()):,}"
    # the NumPy twin's pictures instead of PyTorch's
    at.radio(key="in_from").set_value("manual").run()
    assert not at.exception
    at.button(key="in_compare_btn").click().run()
    assert not at.exception
    m = metrics(at)
    assert m["Same predicted class"] == "100.00%"
    assert m["Accuracy, PyTorch"] == m["Accuracy, NumPy twin"]
    assert float(m["Largest output difference"]) <= 1e-4


def test_inside_shows_the_last_predict_input(model):
    x = np.zeros((28, 28), np.float32)
    x[4:24, 10:18] = 1.0  # a bright bar: something drawn
    at = page_app("inside")
    at.session_state["pr_last"] = {"x": x, "what": "your drawing", "truth": None}
    at.run()
    at.radio(key="in_input").set_value("predict").run()
    assert not at.exception
    assert "your drawing" in captions(at)


def test_inside_mlp_first_layer_units(model, stand_in, monkeypatch):
    monkeypatch.setattr(views, "SHIPPED_DIR", stand_in)  # an MLP: fc1's units as images
    at = page_app("inside").run()
    at.selectbox(key="in_model").select("shipped:mlp").run()
    at.select_slider(key="in_units").set_value(64).run()
    assert not at.exception
    assert any("the first 64 of 64 units of fc1" in c for c in captions(at))


# --- Timings --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def results_file(tmp_path_factory):
    """A real (small) benchmark of this machine, saved as a results file."""
    from fmnist_core.data import load
    # max_run_s: no row skipped as "too slow", however busy the machine is
    cfg = bench.BenchConfig.quick(impls=("pytorch", "manual-numpy", "dataloader"), max_run_s=30.0,
                                  headline_rounds=2, min_repeats=2, max_repeats=3, row_budget_s=0.02)
    res = bench.run_benchmark(bench.resolve_model(preset_name="mlp-seed000"), load(), cfg)
    return bench.save_results(res, bench_dir=tmp_path_factory.mktemp("bench"))[0]


@pytest.fixture
def bench_dir(tmp_path, monkeypatch, runs_dir):
    d = tmp_path / "benchmarks"
    d.mkdir()
    monkeypatch.setattr(bench.results, "BENCH_DIR", d)
    yield d
    shutil.rmtree(bench.job.job_dir(d), ignore_errors=True)  # the job slot lives in the temp dir


def test_timings_without_results(bench_dir):
    at = page_app("timings").run()
    assert not at.exception
    assert "No results to show yet" in texts(at)
    assert not at.button(key="tm_run").disabled


def test_timings_shows_a_results_file_and_an_upload_from_another_machine(bench_dir, results_file):
    shutil.copyfile(results_file, bench_dir / results_file.name)
    at = page_app("timings").run()
    assert not at.exception
    assert at.multiselect(key="tm_files").value == [str(bench_dir / results_file.name)]
    body = texts(at)
    assert "Where the figures come from" in body and "fp32 matmul peak" in body
    why = available_devices()["cuda"]
    if why is not None:  # no GPU here: its rows say why instead of failing
        assert why in body
    for topic in ("DataLoader vs one tensor", "Batch size", "Threads", "GPU transfer vs compute",
                  "A tiny MLP on a GPU", "NumPy twin vs PyTorch"):
        assert f"**{topic}.**" in body
    charts = {c.key for c in at.get("plotly_chart")}
    assert {"tm_time", "tm_rate"} <= charts  # (the headline chart too when the run had time for it)
    assert ("tm_headline" in charts) == (json.loads(results_file.read_text())["headline"] is not None)
    # another machine's file, uploaded: its figures appear beside these, labelled
    other = json.loads(results_file.read_text())
    other["label"] = "Other box, 16 cores"
    other["machine"]["cpu"], other["machine"]["cores"] = "Other CPU", 16
    at.file_uploader(key="tm_upload").set_value(("other.json", json.dumps(other).encode(),
                                                 "application/json")).run()
    assert not at.exception and not at.error
    assert "Other box, 16 cores" in texts(at) and "from uploaded other.json" in texts(at)
    at.segmented_control(key="tm_work").set_value("latency").run()
    at.toggle(key="tm_one_thread").set_value(True).run()
    assert not at.exception


def test_timings_malformed_upload_is_refused_clearly(bench_dir):
    at = page_app("timings").run()
    at.file_uploader(key="tm_upload").set_value(("broken.json", b'{"schema": "something else"}',
                                                 "application/json")).run()
    assert not at.exception
    assert "not a workbench benchmark file" in at.error[0].value
    at.file_uploader(key="tm_upload").set_value(("cut.json", b'{"schema": ', "application/json")).run()
    assert "not valid JSON" in at.error[0].value


def test_timings_lists_a_malformed_saved_file_as_skipped(bench_dir, results_file):
    shutil.copyfile(results_file, bench_dir / "reference-gpu.json")
    (bench_dir / "bench-broken.json").write_text("[1, 2")
    at = page_app("timings").run()
    assert not at.exception
    assert at.multiselect(key="tm_files").value == [str(bench_dir / "reference-gpu.json")]
    assert "skipped bench-broken.json" in texts(at)


@pytest.mark.slow
def test_timings_runs_the_benchmark_in_the_background(bench_dir, monkeypatch):
    start = bench.start_job
    # only PyTorch on the CPU: the same machinery, a third of the quick benchmark's time
    monkeypatch.setattr(bench, "start_job",
                        lambda **kw: start(**kw, impls=("pytorch",), devices=("cpu",)))
    at = page_app("timings").run()
    at.button(key="tm_run").click().run()
    assert not at.exception
    status = bench.job_status()
    assert status["state"] in ("running", "finished")
    assert at.button(key="tm_run").disabled or status["state"] == "finished"
    deadline = time.time() + 180
    while bench.job_status()["state"] == "running" and time.time() < deadline:
        time.sleep(1)
    status = bench.job_status()
    assert status["state"] == "finished", status
    saved = list(bench_dir.glob("bench-*.json"))
    assert len(saved) == 1 and status["results_path"] == str(saved[0])
    at.run()
    assert not at.exception
    assert str(saved[0]) in at.multiselect(key="tm_files").value
