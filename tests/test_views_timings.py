"""What the Timings page shows, computed (fmnist_core/views/timings.py), tested without a browser:
the table, what was not measured, the chart rows, the one-line explanations with this data's
numbers, the machine card, distinct labels for files from one machine, the log-axis rule.
"""
from __future__ import annotations

import pytest

from fmnist_core.bench.results import SCHEMA
from fmnist_core.views import timings as tv


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
    table = tv.timing_table(rows)
    assert len(table) == 9 and table["median (ms)"].iloc[0] == pytest.approx(100.0)
    assert tv.skipped(rows) == [{"source": "here", "device": "cuda", "reason": "no CUDA device on this machine",
                                 "what": "PyTorch nn.Module"}]
    assert tv.work_options(rows) == {"inference": [10000], "latency": [1], "train_step": [256]}
    chart = tv.chart_rows(rows, "inference", 10000)
    assert sorted(chart["series"]) == ["cpu, 2 thr · here", "cpu, 2 thr · here", "cuda · gpu box"]
    one = tv.chart_rows(rows, "inference", 10000, one_thread=True)
    assert one["series"].tolist() == ["cpu, 1 thr · here", "cuda · gpu box"]  # GPU rows keep theirs
    lines = dict(tv.explanations(rows, {"name": "mlp-seed000", "forward_flops_per_image": 203264}))
    assert "400.0 ms that way against 10.0 ms (40× as long)" in lines["DataLoader vs one tensor"]
    assert "one image alone took 50 µs" in lines["Batch size"]
    assert "1.5× as fast as 1 thread" in lines["Threads"]
    assert "on NVIDIA H100: copying 10,000 images took 4.0 ms, computing on them 2.0 ms" in lines[
        "GPU transfer vs compute"]
    assert "0.2 MFLOP per image" in lines["A tiny MLP on a GPU"] and "80 µs on the GPU" in lines["A tiny MLP on a GPU"]
    assert "90.0 ms vs 100.0 ms" in lines["NumPy twin vs PyTorch"]


def test_two_files_from_one_machine_keep_apart():
    res = {"schema": SCHEMA, "label": "x", "created": "2026-01-01T00:00:00",
           "machine": {"cpu": "c", "cores": 2, "torch": "t", "numpy": "n", "date": "d"},
           "peak": [], "rows": [_row("pytorch", "cpu", "latency", 1, 1, 1e-4)]}
    two = tv.with_sources([res, res])
    assert two[0]["label"] != two[1]["label"]  # two files from one machine stay apart
    assert res["label"] == "x"  # on copies: the inputs stay as they are


def test_a_log_axis_when_values_span_more_than_20x():
    assert tv.wants_log_axis([1.0, 100.0]) and not tv.wants_log_axis([1.0, 10.0, None])


def test_machine_block_says_where_and_how_busy():
    res = {"label": "box", "machine": {"cpu": "Some CPU", "cores": 2, "torch": "2", "numpy": "2", "date": "2026-01-01T10:00:00",
                                       "gpu": None, "load_average": {"before": [3.5, 3, 2], "after": [4.25, 3, 2]},
                                       "devices": {"cuda": "no CUDA device on this machine", "cpu": None}},
           "peak": [{"device": "cpu", "threads": 2, "gflops": 67.0}],
           "model": {"name": "mlp-seed000", "parameters": 101770}, "settings": {"epochs": False}}
    m = tv.machine_block(res)
    assert m["cpu"] == "Some CPU (2 cores)" and m["gpu"] == "none"
    assert m["load"] == "3.5 before, 4.2 after (2 cores)"
    assert m["peaks"] == ["cpu, 2 threads: 67 GFLOP/s"]
    assert m["model"] == "mlp-seed000 (101,770 parameters), quick run"
    assert m["devices"] == {"cuda": "no CUDA device on this machine"}


def _results(label, rows, headline, quick=True, impls=("pytorch", "manual-numpy", "dataloader")):
    return {"label": label, "created": "2025-05-14T05:10:00", "rows": rows, "headline": headline,
            "model": {"name": "mlp-seed000"}, "settings": {"epochs": False if quick else True, "impls": list(impls)}}


def test_the_same_work_gets_one_figure_or_a_reason():
    """The headline (taking turns) and the detail chart (alone) measure the same 10,000-image
    inference: where they differ the page says both figures and why (issue 14: 46 ms vs 15 ms)."""
    rows = [_row("pytorch", "cpu", "inference", 10000, 2, 0.015), _row("manual-numpy", "cpu", "inference", 10000, 2, 0.018),
            _row("dataloader", "cpu", "train_step", 256, 2, 0.4)]
    res = _results("here", rows, {"median_s": {"pytorch": 0.046, "manual-numpy": 0.019}, "threads": 2,
                                  "batch_size": 10000})
    pairs = tv.turns_vs_alone([res])
    assert [(p["impl"], round(p["turns_ms"]), round(p["alone_ms"])) for p in pairs] == \
        [("pytorch", 46, 15), ("manual-numpy", 19, 18)]
    text = tv.turns_sentence(pairs)
    assert "PyTorch nn.Module 46 ms taking turns, 15 ms alone" in text and "NumPy twin 19 ms" not in text
    assert "spinning" in text and "2 threads" in text
    assert tv.turns_sentence([{**p, "turns_ms": p["alone_ms"]} for p in pairs]) is None  # they agree: nothing
    # a file measured with the pause between turns: the difference is the machine's other work
    paused = tv.turns_sentence([{**p, "pause_s": 0.2} for p in pairs])
    assert "idle 0.2 s before each turn" in paused and "spinning" not in paused
    # a quick run has no DataLoader bar in the headline, and says why
    assert tv.headline_missing([res]) == [f"DataLoader + PIL: {tv.QUICK_DATALOADER}"]
    # the detail chart: each implementation without a bar for this choice gets its reason
    rows += [_row("dataloader", "cpu", "inference", 256, 2, 0.5), _row("pytorch", "cpu", "inference", 256, 1, 0.01)]
    missing = tv.chart_missing(rows, "inference", 10000, quick_sources=())
    assert missing == ["DataLoader + PIL: inference timed with batch 256 only"]
    missing = tv.chart_missing(rows, "inference", 256, one_thread=True)
    assert missing == ["manual NumPy twin: inference timed with batch 10,000 only",
                       "DataLoader + PIL: timed with 2 threads only (it spends its time in Python, one image "
                       "at a time: more threads change nothing)"]
    assert tv.chart_missing(rows[:3], "inference", 10000, quick_sources=("here",)) == \
        ["DataLoader + PIL: not timed for this work in a quick run; the full benchmark times it"]


def test_chip_titles_are_short():
    res = _results("Intel(R) Xeon(R) Platinum 8480C CPU @ 2.00GHz, 2 cores", [], None)
    assert tv.chip_title(res, reference=True) == "★ reference 05-14 05:10 · mlp-seed000, quick"
    assert tv.chip_title(res, new=True) == "new · 05-14 05:10 · mlp-seed000, quick"


def test_precision_and_onnx_runtime_rows():
    """bf16 rows and ONNX Runtime rows: named apart from fp32 PyTorch in tables and charts, their
    agreement listed once per implementation x precision, a missing bf16 row said why, the goals."""
    no_amx = "not measured: no AMX on this CPU (bf16 would be slower)"
    rows = [_row("pytorch", "cpu", "inference", 10000, 2, 0.02, precision="fp32", agreement=1.0,
                 max_logit_diff=0.0),
            _row("pytorch", "cpu", "latency", 1, 2, 20e-6, precision="fp32", agreement=1.0, max_logit_diff=0.0),
            _row("onnxruntime", "cpu", "inference", 10000, 2, 0.025, precision="fp32", agreement=0.9999,
                 max_logit_diff=2e-6, agreement_images=10000),
            _row("pytorch", "cpu", "inference", 10000, None, None, precision="bf16", reason=no_amx),
            _row("pytorch", "cuda", "inference", 10000, 16, 0.001, precision="bf16", agreement=0.998,
                 max_logit_diff=0.05, source="gpu box")]
    table = tv.timing_table(rows)
    assert table["precision"].tolist() == ["fp32", "fp32", "fp32", "bf16"]
    assert table["label agreement"].tolist() == [1.0, 1.0, 0.9999, 0.998]
    chart = tv.chart_rows(rows, "inference", 10000)
    assert chart["implementation"].tolist() == ["PyTorch<br>nn.Module", "ONNX<br>Runtime",
                                                "PyTorch<br>nn.Module<br>bf16"]
    agree = tv.agreement_rows(rows)
    assert agree["implementation"].tolist() == ["PyTorch nn.Module", "ONNX Runtime", "PyTorch nn.Module bf16"]
    assert agree["max |logit diff|"].tolist() == [0.0, 2e-6, 0.05]
    assert tv.skipped(rows) == [{"source": "here", "device": "cpu", "reason": no_amx,
                                 "what": "PyTorch nn.Module bf16"}]
    lines = dict(tv.explanations(rows))
    assert "25.0 ms vs PyTorch's 20.0 ms for 10,000 images" in lines["ONNX Runtime vs PyTorch"]
    assert "99.99%" in lines["ONNX Runtime vs PyTorch"] and no_amx in lines["bf16 on the CPU"]
    res = {"label": "here", "goals": {
        "pytorch_vs_onnxruntime": {"goal": "fp32 PyTorch within 1.1x of ONNX Runtime's time", "value": 0.8,
                                   "met": True, "note": "PyTorch 0.80x ONNX Runtime's time"},
        "bf16_speedup": {"goal": "bf16", "value": None, "met": None, "note": "no AMX on this CPU"}}}
    assert [(g["status"], g["note"]) for g in tv.goal_lines([res, {"label": "old file"}])] == [
        ("met", "PyTorch 0.80x ONNX Runtime's time"), ("not measured", "no AMX on this CPU")]
    # a headline key with a precision names both
    assert tv.impl_name("pytorch bf16") == "PyTorch nn.Module bf16"


def test_students_get_comparisons_and_slower_reads_as_slower():
    """Issue 25, item 14: "bf16 0.68x faster" meant slower; students see figures, not goals."""
    import json
    from conftest import ROOT
    ref = json.loads((ROOT / "artifacts" / "benchmarks" / "reference-cpu.json").read_text())
    assert "0.68x faster" in ref["goals"]["bf16_speedup"]["note"]  # as the committed file stores it
    res = [{**ref, "label": "ref"}]
    notes = [g["note"] for g in tv.goal_lines(res)]
    assert any("1.5× slower" in n for n in notes) and not any("0.68x faster" in n for n in notes)
    assert any("38x faster" in n for n in notes)  # a real speed-up stays as it is
    lines = tv.comparison_lines(res)
    assert lines and all(set(g) == {"source", "note"} for g in lines)
    assert not any("not met" in g["note"] or "goal" in g["note"] for g in lines)
    assert tv.speed_words("2.50x faster; 0.25× faster") == "2.50x faster; 4.0× slower"
