"""The timing harness itself (fmnist_core/bench.py, `python -m fmnist_core bench`).

What is checked: a row for every implementation x device x work x batch (x threads) the
configuration plans, unavailable devices reported with their reason instead of crashing,
the results schema, that `--quick` runs to the end, the FLOP counts, the synchronize calls
around every timed run, and the results-file loader (a malformed file is rejected with a
clear message, a file from another machine with a GPU is accepted and labelled).
No timing is asserted: this machine is shared and its timings are noise for a test.
"""
import copy
import json

import pytest
import torch

from conftest import run_cli
from fmnist_core import bench
from fmnist_core.device import available_devices
from fmnist_core.models import build_model, preset


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One `bench --quick` run through the CLI, shared by the tests below."""
    d = tmp_path_factory.mktemp("bench")
    out = d / "out.json"
    p = run_cli("bench", "--quick", "--out", out, "--save-dir", d / "saved", timeout=600)
    assert p.returncode == 0, p.stderr
    return {"stdout": json.loads(p.stdout), "stderr": p.stderr, "out": out, "dir": d}


def _keys(rows):
    return {(r["impl"], r["device"], r["work"], r["batch_size"], r["threads"]) for r in rows}


def test_quick_runs_and_follows_the_schema(quick):
    res = quick["stdout"]
    bench.validate_results(res)
    assert res["schema"] == bench.SCHEMA
    m = res["machine"]
    for key in ("cpu", "cores", "torch_threads", "torch", "numpy", "date", "gpu", "blas"):
        assert key in m
    assert res["model"]["name"] and res["model"]["source"]
    assert res["model"]["forward_flops_per_image"] > 0
    assert {p["device"] for p in res["peak"]} >= {"cpu"}
    for r in res["rows"]:
        assert set(bench.ROW_KEYS) <= set(r)
    # the interleaved 10k-inference comparison covers the implementations whose own row fit
    # the time limit (all of them unless the machine is very busy)
    timed = {r["impl"] for r in res["rows"] if r["device"] == "cpu" and r["work"] == "inference"
             and r["batch_size"] == 10000 and r["threads"] == m["threads_all"]
             and r["median_s"] is not None}
    h = res["headline"]
    if h is not None:
        assert set(h["median_s"]) == timed and "headline" in quick["stderr"]
        if "pytorch" in timed:
            assert h["ratio_to_pytorch"]["pytorch"] == 1.0
    # the readable table on stderr, the saved copies
    assert "median" in quick["stderr"] and "GFLOP/s" in quick["stderr"]
    assert len(res["saved"]) == 2
    assert bench.load_results(quick["out"])["rows"] == res["rows"]
    assert list((quick["dir"] / "saved").glob("bench-*.json"))


def test_a_row_for_every_planned_combination(quick):
    res = quick["stdout"]
    cfg = bench.BenchConfig.quick()
    avail = available_devices()
    all_threads = res["machine"]["threads_all"]
    expected = set()
    for dev in bench.DEVICES:
        for impl in bench.IMPLS:
            can_run = avail[dev] is None and bench.IMPL_CLASSES[impl].unavailable(dev) is None
            for work, batch in bench.planned(cfg, impl):
                threads = bench.thread_sweep(cfg, impl, dev, work, all_threads) if can_run else [None]
                expected |= {(impl, dev, work, batch, t) for t in threads}
    assert _keys(res["rows"]) == expected
    assert len(res["rows"]) == len(expected)  # no duplicates
    # CPU inference is compared at 1 thread and all threads
    cpu_threads = {r["threads"] for r in res["rows"] if r["device"] == "cpu" and r["impl"] == "pytorch"}
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
    monkeypatch.setattr(bench, "available_devices", lambda: {
        "cpu": None, "cuda": "no CUDA device on this machine", "mps": "no Apple MPS device"})
    cfg = bench.BenchConfig.quick(devices=("cuda", "mps"))
    res = bench.run_benchmark(bench.resolve_model(preset_name="mlp-seed000"), ds, cfg)
    bench.validate_results(res)
    assert res["peak"] == []
    assert res["rows"] and all(not r["available"] for r in res["rows"])
    assert {r["reason"] for r in res["rows"] if r["device"] == "cuda"} == {"no CUDA device on this machine"}


def test_time_runs_synchronizes_around_every_timed_run():
    events = []
    times = bench.time_runs(lambda: events.append("run"), lambda: events.append("sync"),
                            warmup=2, min_repeats=3, max_repeats=3, budget_s=None)
    assert len(times) == 3
    # burn-in and timed runs alike: sync, run, sync
    assert events == ["sync", "run", "sync"] * 5
    adaptive = bench.time_runs(lambda: None, lambda: None, warmup=1, min_repeats=3, max_repeats=7,
                               budget_s=1.0)
    assert 3 <= len(adaptive) <= 7


def test_gpu_sync_functions():
    assert bench._sync_for(torch.device("cuda")) is torch.cuda.synchronize
    assert bench._sync_for(torch.device("mps")) is torch.mps.synchronize
    bench._sync_for(torch.device("cpu"))()  # a no-op


def test_flops_from_the_layer_plan():
    assert bench.forward_flops(preset("mlp-seed000")["model"]) == 2 * (784 * 128 + 128 * 10)
    # LeNet: conv 1->6 k5 at 28x28, pool, conv 6->16 k5 at 14x14, pool, fc 784-120-84-10
    lenet = (2 * 25 * 1 * 6 * 28 * 28 + 2 * 25 * 6 * 16 * 14 * 14
             + 2 * (16 * 7 * 7 * 120 + 120 * 84 + 84 * 10))
    assert bench.forward_flops(preset("cnn-seed003")["model"]) == lenet


def test_folded_normalization_computes_the_same_function():
    torch.manual_seed(0)
    model = build_model(preset("mlp-seed000")["model"]).eval()
    x = torch.rand(64, 1, 28, 28)
    folded = bench.fold_normalization(model)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-5)
    assert isinstance(model.norm, type(build_model(preset("mlp-seed000")["model"]).norm))  # untouched
    cnn = build_model(preset("cnn-seed003")["model"])
    assert bench.fold_normalization(cnn) is cnn


# --- results files from this machine and from another one --------------------------------

def _gpu_box(res):
    """The local results dressed as a file from a GPU machine: a fake H100 box with cuda rows."""
    other = copy.deepcopy(res)
    other.pop("saved", None)
    other["machine"].update(cpu="AMD EPYC 9654 96-Core Processor", cores=192,
                            gpu="NVIDIA H100 80GB HBM3", date="2025-01-01T12:00:00+00:00",
                            host="gpu-box")
    other["label"] = "lab GPU box"
    other["created"] = other["machine"]["date"]
    other["peak"].append({"device": "cuda", "threads": None, "gflops": 51000.0, "median_s": 3.4e-4,
                          "min_s": 3.3e-4, "size": 2048, "repeats": 7})
    for r in other["rows"]:
        if r["device"] == "cuda" and r["impl"] in ("pytorch", "manual-torch"):
            r.update(available=True, reason=None, threads=192, median_s=2e-4, min_s=1.8e-4,
                     max_s=3e-4, repeats=20, gflops=10.0, peak_share=0.0002, transfer_s=4e-3)
    return other


def test_a_file_from_another_machine_is_accepted_and_labelled(quick, tmp_path):
    local = bench.load_results(quick["out"])
    f = tmp_path / "h100.json"
    f.write_text(json.dumps(_gpu_box(quick["stdout"])))
    remote = bench.load_results(f)
    assert remote["origin"] == "h100.json" and remote["label"] == "lab GPU box"
    rows = bench.merge_results([local, remote, local])  # the same file twice counts once
    assert len(rows) == len(local["rows"]) + len(remote["rows"])
    gpu = [r for r in rows if r["device"] == "cuda" and r["available"]]
    assert gpu and all(r["hardware"] == "NVIDIA H100 80GB HBM3" and r["source"] == "lab GPU box"
                       for r in gpu)
    mine = [r for r in rows if r["origin"] == "out.json"]
    assert mine and all(r["source"] == local["label"] for r in mine)
    # an upload arrives as bytes
    assert bench.parse_results(f.read_bytes(), origin="upload.json")["label"] == "lab GPU box"
    p = run_cli("bench", "--show", quick["out"], f)
    assert p.returncode == 0, p.stderr
    assert any("cuda" in line and line.endswith("lab GPU box") for line in p.stderr.splitlines())
    assert len(json.loads(p.stdout)["rows"]) == len(rows)


def _broken(res, how):
    r = copy.deepcopy(res)
    if how == "schema":
        r["schema"] = "something-else/1"
    elif how == "machine":
        del r["machine"]["cpu"]
    elif how == "rows":
        r["rows"] = {}
    elif how == "median":
        r["rows"][0].update(available=True, median_s="fast")
    elif how == "reason":
        r["rows"][-1].update(available=False, reason=None)
    elif how == "impl":
        r["rows"][0]["impl"] = "tensorflow"
    elif how == "batch":
        r["rows"][0]["batch_size"] = 0
    elif how == "headline":
        r["headline"] = {"median_s": {"pytorch": "8 ms"}}
    return r


@pytest.mark.parametrize("how,msg", [
    ("schema", "not a workbench benchmark file"),
    ("machine", "machine block lacks 'cpu'"),
    ("rows", "'rows' is missing or not a list"),
    ("median", "row 0: 'median_s' must be a non-negative number or null"),
    ("reason", "unavailable but gives no reason"),
    ("impl", "unknown impl 'tensorflow'"),
    ("batch", "batch_size must be a positive integer"),
    ("headline", "'headline' must be null or hold a 'median_s' object of numbers"),
])
def test_a_malformed_file_is_rejected_with_a_clear_message(quick, how, msg):
    with pytest.raises(bench.ResultsFileError, match=msg) as err:
        bench.parse_results(json.dumps(_broken(quick["stdout"], how)), origin="upload.json")
    assert str(err.value).startswith("upload.json: ")


def test_not_json_and_missing_files(tmp_path):
    with pytest.raises(bench.ResultsFileError, match="not valid JSON"):
        bench.parse_results(b"{ nope", origin="x.json")
    with pytest.raises(bench.ResultsFileError, match="not a text file"):
        bench.parse_results(b"\xff\xfe\x00", origin="x.json")
    with pytest.raises(bench.ResultsFileError, match="results file not found"):
        bench.load_results(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    p = run_cli("bench", "--show", bad)
    assert p.returncode == 2
    assert "bad.json: expected a JSON object" in p.stderr and "Traceback" not in p.stderr


def test_default_model_is_the_784_128_10_net(monkeypatch, tmp_path):
    from fmnist_core.models import MLPConfig, save_checkpoint
    same = tmp_path / "same.pt"
    save_checkpoint(same, build_model(preset("mlp-seed000")["model"]))
    monkeypatch.setattr(bench, "DEFAULT_MODEL", same)
    bm = bench.resolve_model()
    assert bm.source.startswith("checkpoint") and bm.describe()["parameters"] == 101770
    other = tmp_path / "other.pt"
    save_checkpoint(other, build_model(MLPConfig(hidden=(512, 256), batchnorm=True)))
    monkeypatch.setattr(bench, "DEFAULT_MODEL", other)
    bm = bench.resolve_model()  # the figures everyone compares are for 784-128-10
    assert bm.name == "mlp-seed000" and "random weights" in bm.source
    assert "784-512-256-10 with batchnorm" in bm.source
    assert bench.resolve_model(other).config.hidden == (512, 256)  # --model times it
