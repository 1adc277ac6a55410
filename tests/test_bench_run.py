"""The run loop (fmnist_core/bench/run.py) through `python -m fmnist_core bench --quick`.

What is checked: a row for every implementation x device x work x batch (x threads) the
configuration plans, unavailable devices reported with their reason instead of crashing,
the results schema, that `--quick` runs to the end and saves its files, and its progress
events (`--events`): the plan's total is the number of rows delivered, one event per row.
No timing is asserted: this machine is shared and its timings are noise for a test.
"""
import json

import pytest

from conftest import run_cli
from fmnist_core.bench import results, run
from fmnist_core.bench.events import read_events
from fmnist_core.bench.config import DEVICES, IMPLS, BenchConfig
from fmnist_core.bench.impls import IMPL_CLASSES
from fmnist_core.bench.model import resolve_model
from fmnist_core.device import available_devices


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One `bench --quick` run through the CLI, shared by the tests below."""
    d = tmp_path_factory.mktemp("bench")
    out, events = d / "out.json", d / "events.jsonl"
    p = run_cli("bench", "--quick", "--out", out, "--save-dir", d / "saved", "--events", events, timeout=600)
    assert p.returncode == 0, p.stderr
    return {"stdout": json.loads(p.stdout), "stderr": p.stderr, "out": out, "dir": d,
            "events": read_events(events)}


def _keys(rows):
    return {(r["impl"], r["device"], r["precision"], r["work"], r["batch_size"], r["threads"]) for r in rows}


def test_quick_runs_and_follows_the_schema(quick):
    res = quick["stdout"]
    results.validate_results(res)
    assert res["schema"] == results.SCHEMA
    m = res["machine"]
    for key in ("cpu", "cores", "torch_threads", "torch", "numpy", "date", "gpu", "blas"):
        assert key in m
    assert res["model"]["name"] and res["model"]["source"]
    assert res["model"]["forward_flops_per_image"] > 0
    assert {p["device"] for p in res["peak"]} >= {"cpu"}
    for r in res["rows"]:
        assert set(results.ROW_KEYS) <= set(r)
    # the interleaved 10k-inference comparison covers the implementations whose own row fit
    # the time limit (all of them unless the machine is very busy)
    timed = {run.row_name(r["impl"], r["precision"]) for r in res["rows"]
             if r["device"] == "cpu" and r["work"] == "inference"
             and r["batch_size"] == 10000 and r["threads"] == m["threads_all"]
             and r["median_s"] is not None}
    # the readable table on stderr, the saved copies
    assert "median" in quick["stderr"] and "GFLOP/s" in quick["stderr"]
    assert len(res["saved"]) == 2
    assert results.load_results(quick["out"])["rows"] == res["rows"]
    assert list((quick["dir"] / "saved").glob("bench-*.json"))
    h = res["headline"]
    if h is None:  # last, so only the headline's own checks are dropped, and visibly
        pytest.skip("no headline: the machine was too busy for the interleaved comparison within "
                    "its time limit, so its figures could not be checked")
    assert set(h["median_s"]) == timed and "headline" in quick["stderr"]
    if "pytorch" in timed:
        assert h["ratio_to_pytorch"]["pytorch"] == 1.0


def test_a_row_for_every_planned_combination(quick):
    res = quick["stdout"]
    cfg = BenchConfig.quick()
    avail = available_devices()
    all_threads = res["machine"]["threads_all"]
    expected = set()
    for dev in DEVICES:
        for impl in IMPLS:
            cls = IMPL_CLASSES[impl]
            for prec, why_not in cls.precisions(dev):
                can_run = avail[dev] is None and cls.unavailable(dev) is None and why_not is None
                for work, batch in cls.planned(cfg, prec):
                    threads = cls.thread_counts(cfg, dev, work, all_threads) if can_run else [None]
                    expected |= {(impl, dev, prec, work, batch, t) for t in threads}
    assert _keys(res["rows"]) == expected
    assert len(res["rows"]) == len(expected)  # no duplicates
    # CPU inference is compared at 1 thread and all threads
    cpu_threads = {r["threads"] for r in res["rows"] if r["device"] == "cpu" and r["impl"] == "pytorch"
                   and r["precision"] == "fp32"}
    assert cpu_threads == {1, all_threads}


def test_available_rows_carry_timings_and_flops(quick):
    rows = [r for r in quick["stdout"]["rows"] if r["available"] and r["median_s"] is not None]
    assert any(r["impl"] == "pytorch" and r["work"] == "inference" and r["batch_size"] == 10000
               for r in rows)
    for r in rows:
        assert 0 < r["min_s"] <= r["median_s"] <= r["max_s"]
        assert r["gflops"] > 0 and r["peak_share"] > 0 and r["repeats"] >= 1
        if r["device"] == "cpu":
            assert r.get("transfer_s") is None  # nothing moves to a CPU


def test_unavailable_devices_are_reported_with_their_reason(quick):
    avail = available_devices()
    for r in quick["stdout"]["rows"]:
        if avail[r["device"]] is not None:
            assert r["available"] is False and r["reason"] == avail[r["device"]]
            assert r["median_s"] is None
    # numpy never runs on a GPU, and says so
    gpu_numpy = [r for r in quick["stdout"]["rows"] if r["impl"] == "manual-numpy" and r["device"] != "cpu"]
    assert gpu_numpy and all(not r["available"] and r["reason"] for r in gpu_numpy)


def test_missing_gpu_does_not_crash(monkeypatch, ds):
    """Even on a GPU box: a device that reports itself missing yields rows, not an exception."""
    monkeypatch.setattr(run, "available_devices", lambda: {
        "cpu": None, "cuda": "no CUDA device on this machine", "mps": "no Apple MPS device"})
    cfg = BenchConfig.quick(devices=("cuda", "mps"))
    res = run.run_benchmark(resolve_model(preset_name="mlp-seed000"), ds, cfg)
    results.validate_results(res)
    assert res["peak"] == []
    assert res["rows"] and all(not r["available"] for r in res["rows"])
    assert {r["reason"] for r in res["rows"] if r["device"] == "cuda"} == {"no CUDA device on this machine"}


def test_the_events_plan_exactly_the_rows_delivered(quick):
    res, events = quick["stdout"], quick["events"]
    total = len(res["rows"])
    assert events[0]["event"] == "plan" and events[0]["total"] == total
    rows = [e for e in events if e["event"] == "row"]
    assert [e["done"] for e in rows] == list(range(1, total + 1)) and {e["total"] for e in rows} == {total}
    assert [e["row"] for e in rows] == res["rows"]
    saved = [e for e in events if e["event"] == "saved"]
    assert len(saved) == 1 and saved[0]["paths"] == res["saved"]
    assert events[-1] == {"event": "end", "status": "finished"}
    # stderr says the same in words: the plan's and every step's message, in order
    said = [e["message"] for e in events if e.get("message")]
    assert said[0].startswith("benchmarking ") and len(said) > 1
    assert [line for line in quick["stderr"].splitlines() if line in set(said)] == said


def test_events_name_a_jsonl_file_and_a_failure_is_the_last_event(tmp_path):
    p = run_cli("bench", "--quick", "--events", tmp_path / "events.txt")
    assert p.returncode == 2 and "--events" in p.stderr and ".jsonl" in p.stderr
    assert not (tmp_path / "events.txt").exists()  # refused before any work
    events = tmp_path / "events.jsonl"
    p = run_cli("bench", "--quick", "--model", tmp_path / "missing.pt", "--events", events)
    assert p.returncode == 2
    end = read_events(events)[-1]
    assert end["event"] == "end" and end["status"] == "failed" and "missing.pt" in end["error"]


def test_the_headline_pauses_before_each_turn(ds, monkeypatch):
    """The CPU idles before each implementation's turn (a thread pool still spinning after the
    previous call took its cores), and the headline says how long."""
    from fmnist_core.evaluate import images_to_tensor
    from fmnist_core.bench.harness import forward_flops
    bm = resolve_model(preset_name="mlp-seed000")
    cfg = BenchConfig.quick()
    ctx = run.RunContext(bm=bm, data=ds, cfg=cfg, flops=forward_flops(bm.config),
                         x_test=images_to_tensor(ds.x_test[:500]).contiguous())
    slept = []
    monkeypatch.setattr(run.time, "sleep", slept.append)
    h = run.interleaved_inference(ctx, ["pytorch", "manual-numpy"], rounds=2, pause_s=cfg.turn_pause_s)
    assert slept == [cfg.turn_pause_s] * (3 * 2) and h["pause_s"] == cfg.turn_pause_s > 0
    assert set(h["median_s"]) == {"pytorch", "manual-numpy"}


def test_every_timed_row_says_whether_it_computes_the_same_thing(quick):
    """Label agreement with fp32 PyTorch on the 10,000 test images and max |logit diff| on every
    timed row; fp32 implementations agree (the same function), ONNX Runtime among them."""
    rows = quick["stdout"]["rows"]
    timed = [r for r in rows if r["median_s"] is not None]
    assert {r["impl"] for r in timed} >= {"pytorch", "onnxruntime", "manual-numpy"}
    for r in timed:
        assert 0 <= r["agreement"] <= 1 and r["max_logit_diff"] >= 0
        if r["precision"] == "fp32":
            assert r["agreement_images"] == 10000
            assert r["agreement"] >= 0.999 and r["max_logit_diff"] < 1e-3, r
    for r in rows:
        if r["median_s"] is None:
            assert r["agreement"] is None


def test_bf16_rows_are_timed_or_say_why(quick):
    from fmnist_core.device import cpu_has_fast_bf16
    bf16 = [r for r in quick["stdout"]["rows"] if r["device"] == "cpu" and r["precision"] == "bf16"]
    assert bf16 and {r["work"] for r in bf16} == {"inference", "latency"}  # inference only
    if not cpu_has_fast_bf16():
        assert all(not r["available"] and r["reason"].startswith("not measured: no AMX or AVX512-BF16") for r in bf16)
    else:
        assert any(r["median_s"] is not None and r["agreement"] > 0.99 for r in bf16)


def test_the_goals_are_reported(quick):
    goals = quick["stdout"]["goals"]
    assert set(goals) == set(run.GOALS)
    for key, g in goals.items():
        assert g["goal"] == run.GOALS[key] and g["met"] in (True, False, None) and g["note"]
        assert (g["value"] is None) == (g["met"] is None)
        assert f"goal ({'met' if g['met'] else 'NOT met' if g['met'] is False else 'not measured'})" in quick["stderr"]
    # the quick preset does not run the DataLoader over the test set: that goal says so
    assert goals["vs_dataloader"]["met"] is None and "DataLoader" in goals["vs_dataloader"]["note"]
