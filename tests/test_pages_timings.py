"""The Timings page under AppTest: a real results file of this machine, an upload from "another
machine", a clear error for a malformed file (uploaded or saved), and the benchmark running in
the background. Results files go to a temporary folder (bench.BENCH_DIR patched)."""
from __future__ import annotations

import json
import shutil
import time

import pytest

from fmnist_core import bench
from fmnist_core.device import available_devices

from page_util import page_app, texts


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
    if "tm_headline" in charts:  # a quick run has no DataLoader bar there: the page says why
        assert "No bar for DataLoader + PIL: not timed over the 10,000 test images in a quick run" in body
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
    # the new result is chosen first, named as new in its chip, and said so in words
    assert at.multiselect(key="tm_files").value[0] == str(saved[0])
    assert any("just finished" in s.value for s in at.success)
