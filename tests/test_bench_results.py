"""Results files (fmnist_core/bench/results.py): load, parse, merge, list, and `bench --show`.

A malformed file is rejected with a clear message naming it, a file from another machine with
a GPU is accepted and labelled, saved files are listed with the committed references first.
The file under test comes from a real (tiny) benchmark of this machine.
"""
import copy
import json

import pytest

from conftest import run_cli
from fmnist_core.bench import results
from fmnist_core.bench.config import BenchConfig
from fmnist_core.bench.model import resolve_model
from fmnist_core.bench.run import run_benchmark


@pytest.fixture(scope="module")
def local(tmp_path_factory, ds):
    """A real results file of this machine, saved as out.json: CPU rows timed, cuda rows too
    (timed here only on a GPU box; elsewhere they say why not)."""
    cfg = BenchConfig.quick(impls=("pytorch", "manual-torch"), devices=("cpu", "cuda"), min_repeats=1,
                            max_repeats=1, row_budget_s=0.001, peak_repeats=1, headline_rounds=0)
    res = run_benchmark(resolve_model(preset_name="mlp-seed000"), ds, cfg)
    out = tmp_path_factory.mktemp("bench") / "out.json"
    results.save_results(res, out=out, timestamped=False)
    return {"results": res, "out": out}


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


def test_a_file_from_another_machine_is_accepted_and_labelled(local, tmp_path):
    mine_file = results.load_results(local["out"])
    f = tmp_path / "h100.json"
    f.write_text(json.dumps(_gpu_box(local["results"])))
    remote = results.load_results(f)
    assert remote["origin"] == "h100.json" and remote["label"] == "lab GPU box"
    rows = results.merge_results([mine_file, remote, mine_file])  # the same file twice counts once
    assert len(rows) == len(mine_file["rows"]) + len(remote["rows"])
    gpu = [r for r in rows if r["device"] == "cuda" and r["available"]]
    assert gpu and all(r["hardware"] == "NVIDIA H100 80GB HBM3" and r["source"] == "lab GPU box"
                       for r in gpu)
    mine = [r for r in rows if r["origin"] == "out.json"]
    assert mine and all(r["source"] == mine_file["label"] for r in mine)
    # an upload arrives as bytes
    assert results.parse_results(f.read_bytes(), origin="upload.json")["label"] == "lab GPU box"
    p = run_cli("bench", "--show", local["out"], f)
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
def test_a_malformed_file_is_rejected_with_a_clear_message(local, how, msg):
    with pytest.raises(results.ResultsFileError, match=msg) as err:
        results.parse_results(json.dumps(_broken(local["results"], how)), origin="upload.json")
    assert str(err.value).startswith("upload.json: ")


def test_not_json_and_missing_files(tmp_path):
    with pytest.raises(results.ResultsFileError, match="not valid JSON"):
        results.parse_results(b"{ nope", origin="x.json")
    with pytest.raises(results.ResultsFileError, match="not a text file"):
        results.parse_results(b"\xff\xfe\x00", origin="x.json")
    with pytest.raises(results.ResultsFileError, match="results file not found"):
        results.load_results(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    p = run_cli("bench", "--show", bad)
    assert p.returncode == 2
    assert "bad.json: expected a JSON object" in p.stderr and "Traceback" not in p.stderr


def test_saved_results_put_references_first_and_report_bad_files(tmp_path):
    row = {"impl": "pytorch", "device": "cpu", "work": "latency", "batch_size": 1, "threads": 1,
           "median_s": 1e-4, "min_s": 0.9e-4, "max_s": 1.2e-4, "gflops": 1.0, "peak_share": 0.1,
           "available": True}  # a file's rows carry no source: merge_results adds it
    good = {"schema": results.SCHEMA, "label": "x", "created": "2026-01-01T00:00:00",
            "machine": {"cpu": "c", "cores": 2, "torch": "t", "numpy": "n", "date": "d"},
            "peak": [], "rows": [row]}
    (tmp_path / "bench-1.json").write_text(json.dumps(good))
    (tmp_path / "reference-gpu.json").write_text(json.dumps(good))
    (tmp_path / "bench-bad.json").write_text("{")
    saved = results.saved_results(tmp_path)
    assert saved[0]["name"] == "reference-gpu.json" and saved[0]["reference"]
    bad = next(s for s in saved if s["name"] == "bench-bad.json")
    assert bad["results"] is None and "not valid JSON" in bad["error"]


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000,
                                  "[" * 33 + "]" * 33])
def test_deeply_nested_json_is_refused_with_a_sentence(text):
    # before: json.loads raised RecursionError (a traceback on the Timings page) at 100,000 levels
    with pytest.raises(results.ResultsFileError, match=r"upload.json: nests .* deep"):
        results.parse_results(text.encode(), origin="upload.json")


def test_brackets_inside_strings_do_not_count_as_nesting(local):
    ok = copy.deepcopy(local["results"])
    ok["machine"]["cpu"] = "[[[[" * 40 + '\\"{{{{' * 40
    got = results.parse_results(json.dumps(ok), origin="upload.json")
    assert got["machine"]["cpu"] == ok["machine"]["cpu"]
    def depth(o):  # counted on the parsed object, independently of the scanner
        kids = list(o.values()) if isinstance(o, dict) else o if isinstance(o, list) else None
        return 0 if kids is None else 1 + max(map(depth, kids), default=0)
    assert results._nesting(json.dumps(ok), 1000) == depth(ok) < results.MAX_DEPTH
