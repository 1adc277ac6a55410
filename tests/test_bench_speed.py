"""bench-train (fmnist_core/bench/speed.py) runs and reports the figures it promises (timings are
not asserted: the machine is shared; the benchmark command is where speed is judged)."""
import json

from conftest import run_cli


def test_bench_train_quick_reports_mlp_figures():
    p = run_cli("bench-train", "--quick", "--skip-cnn", timeout=600)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    m = out["mlp_seed001"]
    assert m["inmemory_best_epoch_s"] > 0 and m["dataloader_epoch_s"] > 0
    assert m["speedup_vs_dataloader"] == round(m["dataloader_epoch_s"] / m["inmemory_best_epoch_s"], 2)
    assert out["machine"]["cores"] >= 1 and "cnn" not in out
    assert "seconds per epoch" in p.stderr
