"""fmnist_core.bench_views: what the Timings page shows, tested without a browser.

The benchmark job announces as many steps as run_benchmark takes, and its status file is
read back as running / finished / failed / cancelled; tables, chart rows and the sentences
on why the figures differ come from result rows; saved results files put references first
and report bad files; the machine block says where and how busy.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fmnist_core import bench, bench_views


def test_expected_steps_match_what_the_benchmark_announces(ds):
    said = []
    cfg = bench.BenchConfig.quick(impls=("pytorch",), devices=("cpu", "cuda"), headline_rounds=1,
                                  min_repeats=1, max_repeats=1, row_budget_s=0.001, peak_repeats=1)
    bench.run_benchmark(bench.resolve_model(preset_name="mlp-seed000"), ds, cfg, progress=said.append)
    # the same plan as the page's quick run restricted to these choices (repeats do not matter);
    # the headline is counted but runs only when it fits its time budget (not with this one)
    headline = any(s.startswith("the headline") for s in said)
    assert bench_views.expected_steps(True, ("pytorch",), ("cpu", "cuda")) == len(said) + (not headline)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_job_status_reads_every_state(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "BENCH_DIR", tmp_path / "benchmarks")
    assert bench_views.job_status()["state"] == "none"
    jd = bench_views.job_dir()
    jd.mkdir(parents=True, exist_ok=True)
    try:
        state = {"pid": _dead_pid(), "started": 1.0, "quick": True, "preset": "mlp-seed000", "expected": 4,
                 "cancelled": False}
        (jd / "state.json").write_text(json.dumps(state))
        (jd / "log.txt").write_text("benchmarking x\nstep 1\nTraceback...\nValueError: boom\n")
        s = bench_views.job_status()
        assert s["state"] == "failed" and "ValueError: boom" in s["error"]
        (jd / "out.json").write_text("{}")
        (jd / "log.txt").write_text("benchmarking x\nstep 1\nimpl  device\n---\n3 rows in 1 s; saved to "
                                    f"{tmp_path / 'a.json'}, {jd / 'out.json'}\n")
        (tmp_path / "a.json").write_text("{}")
        s = bench_views.job_status()
        assert s["state"] == "finished" and s["results_path"] == str(tmp_path / "a.json")
        state.update(pid=__import__("os").getpid())  # alive: this very process
        (jd / "state.json").write_text(json.dumps(state))
        (jd / "log.txt").write_text("benchmarking x\nstep 1\nstep 2\n")
        s = bench_views.job_status()
        assert s["state"] == "running" and s["progress"] == 0.5 and s["message"] == "step 2"
        state.update(pid=_dead_pid(), cancelled=True)
        (jd / "state.json").write_text(json.dumps(state))
        assert bench_views.job_status()["state"] == "cancelled"
    finally:
        for f in jd.iterdir():
            f.unlink()
        jd.rmdir()


def _row(impl, device, work, batch, threads, median, **kw):
    return {"impl": impl, "device": device, "work": work, "batch_size": batch, "threads": threads,
            "median_s": median, "min_s": median * 0.9 if median else None,
            "max_s": median * 1.2 if median else None, "gflops": 1.0 if median else None,
            "peak_share": 0.1 if median else None, "available": median is not None or "reason" not in kw,
            "source": kw.pop("source", "here"), **kw}


def test_tables_charts_and_explanations_from_rows():
    rows = [_row("pytorch", "cpu", "inference", 10000, 2, 0.1),
            _row("pytorch", "cpu", "inference", 10000, 1, 0.15),
            _row("pytorch", "cpu", "latency", 1, 2, 50e-6),
            _row("pytorch", "cpu", "train_step", 256, 1, 0.01),
            _row("pytorch", "cpu", "train_step", 256, 2, 0.02),
            _row("dataloader", "cpu", "train_step", 256, 2, 0.4),
            _row("manual-numpy", "cpu", "inference", 10000, 2, 0.09),
            _row("pytorch", "cuda", "inference", 10000, None, None, reason="no CUDA device on this machine"),
            # another machine's GPU (made-up figures: only the wording is tested here)
            _row("pytorch", "cuda", "inference", 10000, 16, 0.002, transfer_s=0.004, hardware="NVIDIA H100",
                 source="gpu box"),
            _row("pytorch", "cuda", "latency", 1, 16, 80e-6, source="gpu box")]
    table = bench_views.timing_table(rows)
    assert len(table) == 9 and table["median (ms)"].iloc[0] == pytest.approx(100.0)
    assert bench_views.skipped(rows) == [{"source": "here", "device": "cuda", "reason": "no CUDA device on this machine",
                                          "what": "PyTorch nn.Module"}]
    assert bench_views.work_options(rows) == {"inference": [10000], "latency": [1], "train_step": [256]}
    chart = bench_views.chart_rows(rows, "inference", 10000)
    assert sorted(chart["series"]) == ["cpu, 2 thr · here", "cpu, 2 thr · here", "cuda · gpu box"]
    one = bench_views.chart_rows(rows, "inference", 10000, one_thread=True)
    assert one["series"].tolist() == ["cpu, 1 thr · here", "cuda · gpu box"]  # GPU rows keep theirs
    lines = dict(bench_views.explanations(rows, {"name": "mlp-seed000", "forward_flops_per_image": 203264}))
    assert "400.0 ms that way against 10.0 ms (40× as long)" in lines["DataLoader vs one tensor"]
    assert "one image alone took 50 µs" in lines["Batch size"]
    assert "1.5× as fast as 1 thread" in lines["Threads"]
    assert "on NVIDIA H100: copying 10,000 images took 4.0 ms, computing on them 2.0 ms" in lines[
        "GPU transfer vs compute"]
    assert "0.2 MFLOP per image" in lines["A tiny MLP on a GPU"] and "80 µs on the GPU" in lines["A tiny MLP on a GPU"]
    assert "90.0 ms vs 100.0 ms" in lines["NumPy twin vs PyTorch"]


def test_saved_results_put_references_first_and_report_bad_files(tmp_path):
    good = {"schema": bench.SCHEMA, "label": "x", "created": "2026-01-01T00:00:00",
            "machine": {"cpu": "c", "cores": 2, "torch": "t", "numpy": "n", "date": "d"},
            "peak": [], "rows": [_row("pytorch", "cpu", "latency", 1, 1, 1e-4)]}
    del good["rows"][0]["source"]  # a file's rows carry no source: merge_results adds it
    (tmp_path / "bench-1.json").write_text(json.dumps(good))
    (tmp_path / "reference-gpu.json").write_text(json.dumps(good))
    (tmp_path / "bench-bad.json").write_text("{")
    saved = bench_views.saved_results(tmp_path)
    assert saved[0]["name"] == "reference-gpu.json" and saved[0]["reference"]
    bad = next(s for s in saved if s["name"] == "bench-bad.json")
    assert bad["results"] is None and "not valid JSON" in bad["error"]
    two = bench_views.with_sources([saved[0]["results"], saved[0]["results"]])
    assert two[0]["label"] != two[1]["label"]  # two files from one machine stay apart


def test_log_axis_only_for_a_wide_range():
    assert bench_views.wants_log_axis([1.0, 100.0]) and not bench_views.wants_log_axis([1.0, 10.0, None])


def test_machine_block_says_where_and_how_busy():
    res = {"label": "box", "machine": {"cpu": "Some CPU", "cores": 2, "torch": "2", "numpy": "2", "date": "2026-01-01T10:00:00",
                                       "gpu": None, "load_average": {"before": [3.5, 3, 2], "after": [4.25, 3, 2]},
                                       "devices": {"cuda": "no CUDA device on this machine", "cpu": None}},
           "peak": [{"device": "cpu", "threads": 2, "gflops": 67.0}],
           "model": {"name": "mlp-seed000", "parameters": 101770}, "settings": {"epochs": False}}
    m = bench_views.machine_block(res)
    assert m["cpu"] == "Some CPU (2 cores)" and m["gpu"] == "none"
    assert m["load"] == "3.5 before, 4.2 after (2 cores)"
    assert m["peaks"] == ["cpu, 2 threads: 67 GFLOP/s"]
    assert m["model"] == "mlp-seed000 (101,770 parameters), quick run"
    assert m["devices"] == {"cuda": "no CUDA device on this machine"}
