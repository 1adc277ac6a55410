"""scripts/gpu_check.py (fmnist_core/gpu_check.py) on the CPU with small budgets, in a Python
where MLflow, Streamlit, captum, scikit-learn, SciPy, threadpoolctl, pandas and the map
libraries cannot be imported (sys.modules[name] = None: import fails, find_spec says None, as
on a GPU box with PyTorch, NumPy and ONNX Runtime only): it trains the demo preset on the real
data (given by FMNIST_DATA_DIR), runs bf16/fp16 autocast, the twin against the device's logits
and the benchmark's rows, exits 0 and writes a results file that the Timings page shows; a
check that fails (an accuracy the run cannot reach) makes it exit 1, the file saying why."""
from __future__ import annotations

import json
import os
import subprocess
import sys


from fmnist_core import bench, gpu_check
from fmnist_core.data import DEBIAN_DIR

from conftest import ROOT
from page_util import page_app, texts

ABSENT = ("mlflow", "streamlit", "captum", "sklearn", "scipy", "threadpoolctl", "pandas", "plotly",
          "openTSNE", "umap", "ray", "optuna", "numba", "pynndescent")
PRELUDE = f"import sys\nfor m in {ABSENT!r}:\n    sys.modules[m] = None\n"


def _python(code: str, tmp_path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "FMNIST_ARTIFACTS": str(tmp_path / "artifacts"), "PYTHONPATH": str(ROOT)}
    if DEBIAN_DIR.is_dir():
        env["FMNIST_DATA_DIR"] = str(DEBIAN_DIR)  # the four files, as the GPU box is given them
    return subprocess.run([sys.executable, "-c", PRELUDE + code], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def _gpu_check(tmp_path, *args) -> tuple[subprocess.CompletedProcess, dict | None]:
    out = tmp_path / "gpu-check.json"
    argv = ["gpu_check", "--device", "cpu", "--quick", "--presets", "cnn-demo", "--out", str(out), *args]
    r = _python(f"import runpy\nsys.argv = {argv!r}\nrunpy.run_path('scripts/gpu_check.py', run_name='__main__')",
                tmp_path)
    return r, (json.loads(out.read_text()) if out.is_file() else None)


def test_the_core_paths_import_without_mlflow_streamlit_sklearn(tmp_path):
    r = _python("import fmnist_core.gpu_check, fmnist_core.train, fmnist_core.bench.run, fmnist_core.twin, "
                "fmnist_core.export, fmnist_core.device\n"
                "import importlib.util\n"
                "assert importlib.util.find_spec('mlflow') is None and importlib.util.find_spec('streamlit') is None\n"
                "print('imported')", tmp_path, timeout=120)
    assert r.returncode == 0 and "imported" in r.stdout, r.stderr[-2000:]
    # the check itself: blocking works (an import of a blocked module fails)
    r = _python("import mlflow", tmp_path, timeout=60)
    assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr


def test_speedrun_presets_are_picked_up_by_name(monkeypatch):
    from fmnist_core import models
    shipped = sorted(n for n in models.PRESETS if n.startswith("speedrun"))
    assert shipped, "the speedrun presets (issue 23) are gone"
    monkeypatch.setitem(models.PRESETS, "speedrun-test", models.PRESETS[models.DEMO_PRESET])
    got = gpu_check.default_presets()
    assert got[0] == models.DEMO_PRESET and len(got) == len(set(got))  # the demo is a speedrun preset: once
    assert set(got) == {models.DEMO_PRESET, "cnn-demo", *shipped, "speedrun-test"}


def test_gpu_check_on_the_cpu_passes_and_the_timings_page_shows_it(tmp_path, monkeypatch, runs_dir):
    r, res = _gpu_check(tmp_path, "--require", "0.3")
    assert r.returncode == 0, (r.stdout, r.stderr[-3000:])
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["ok"] and summary["failed"] == []
    checks = {c["name"]: c for c in res["gpu_check"]["checks"]}
    assert {c["status"] for c in checks.values()} == {"ok"}, checks
    train = checks["train cnn-demo"]
    assert train["device"] == "cpu" and train["epochs"] == 1 and train["best_test_accuracy"] >= 0.3
    assert checks["autocast bfloat16"]["agreement"] >= 0.99 and checks["autocast float16"]["agreement"] >= 0.99
    assert checks["twin vs device logits"]["agreement"] >= 0.999
    rows = [row for row in res["rows"] if row["available"] and row["median_s"] is not None]
    assert {row["impl"] for row in rows} >= {"pytorch", "manual-torch"}
    assert all(row["agreement"] >= 0.99 for row in rows if row.get("agreement") is not None)
    # the Timings page loads it like a results file from another machine
    bench.parse_results((tmp_path / "gpu-check.json").read_bytes(), origin="gpu-check.json")
    folder = tmp_path / "benchmarks"
    folder.mkdir()
    (folder / "gpu-check-cpu.json").write_bytes((tmp_path / "gpu-check.json").read_bytes())
    monkeypatch.setattr(bench.results, "BENCH_DIR", folder)
    at = page_app("timings").run()
    assert not at.exception
    assert "skipped gpu-check-cpu.json" not in texts(at)
    assert at.multiselect(key="tm_files").value == [str(folder / "gpu-check-cpu.json")]
    assert "GPU check" in texts(at)
    table = next(d.value for d in at.dataframe if "check" in d.value.columns)
    assert table["check"].tolist()[:2] == ["train cnn-demo", "autocast bfloat16"]
    assert set(table["status"]) == {"ok"}


def test_gpu_check_exits_nonzero_when_a_check_fails(tmp_path):
    # one epoch on 2,000 images cannot reach 99%: the training check fails, the rest still run
    r, res = _gpu_check(tmp_path, "--require", "0.99", "--no-bench")
    assert r.returncode == 1, (r.stdout, r.stderr[-3000:])
    assert res is not None and res["gpu_check"]["failed"] == ["train cnn-demo"]
    failed = next(c for c in res["gpu_check"]["checks"] if c["name"] == "train cnn-demo")
    assert "below the required 99%" in failed["reason"]
    assert {c["status"] for c in res["gpu_check"]["checks"] if c["name"] != "train cnn-demo"} == {"ok"}
