"""twin.compare and the CLI around it: a checkpoint run as PyTorch and as the twin over the
10,000 real test images, and `train --engine numpy` followed by `compare` end to end."""
import json

import pytest

from conftest import run_cli
from fmnist_core import models
from fmnist_core.errors import ConfigError
from fmnist_core.twin import compare
from twin_util import LOGIT_TOL, preset_checkpoint  # noqa: F401 (a fixture, found by name)


def test_compare_torch_ops(ds, preset_checkpoint):
    r = compare(preset_checkpoint("mlp-seed001"), ds.x_test, ds.y_test, impl="torch-ops")
    assert r["n"] == 10000 and r["agreement"] == 1.0 and r["impl"] == "torch-ops"
    assert r["accuracy_manual"] == r["accuracy_torch"] and r["max_abs_diff"] <= LOGIT_TOL
    with pytest.raises(ConfigError, match="impl"):
        compare(preset_checkpoint("mlp-seed001"), ds.x_test, ds.y_test, impl="cuda-magic")


def test_cli_train_numpy_then_compare(store, ds):
    from fmnist_core import runs
    p = run_cli("train", "--engine", "numpy", "--preset", "mlp-seed000", "--epochs", "1",
                "--train-limit", "4000")
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert summary["status"] == "finished" and summary["test_accuracy"] > 0.75
    ckpt = models.read_checkpoint(summary["checkpoint"])  # the same run format as the torch engine
    assert ckpt["metrics"]["engine"] == "numpy" and runs.load_run(summary["run_id"])["metrics"]["n"] == 10000

    p = run_cli("compare", summary["checkpoint"])
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert {"n", "agreement", "accuracy_torch", "accuracy_manual", "max_abs_diff", "layers"} <= set(r)
    assert r["n"] == 10000 and r["agreement"] == 1.0 and r["accuracy_manual"] == r["accuracy_torch"]
    assert abs(r["accuracy_torch"] - summary["test_accuracy"]) < 1e-9
    assert r["max_abs_diff"] <= LOGIT_TOL
    assert [entry["name"] for entry in r["layers"]] == ["norm", "flatten", "fc1", "act1", "out"]
    assert all(entry["max_abs_diff"] <= LOGIT_TOL for entry in r["layers"])


def test_cli_compare_errors_are_one_line(tmp_path, capsys):
    from fmnist_core.cli import main
    assert main(["compare", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: checkpoint not found") and err.count("\n") == 1
    assert main(["compare", str(tmp_path / "missing.pt"), "--device", "cuda"]) == 2
    assert "torch-ops" in capsys.readouterr().err
