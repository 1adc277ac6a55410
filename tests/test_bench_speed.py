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


def test_the_by_hand_mlp_step_trains_exactly_as_autograd_and_adam_do(ds):
    """bench-train --mlp-steps times a step written out by hand (no autograd, one fused Adam
    call): it is only a fair figure if it computes the same update as the trainer's step."""
    import torch
    from fmnist_core.bench import mlp_step
    x, y = mlp_step._data(ds)
    x, y = x[:640], y[:640]  # 20 steps of batch 32
    ref, mine = mlp_step.autograd_epoch(x, y, {"fused": True}), mlp_step.by_hand_epoch(x, y)
    start = [p.detach().clone() for p in ref.params]
    assert all(torch.equal(a, b) for a, b in zip(start, mine.params))  # the same initial weights
    torch.manual_seed(1)
    ref()
    torch.manual_seed(1)  # the same batch order
    mine()
    for a, b, s in zip(ref.params, mine.params, start):
        assert not torch.equal(b, s)  # it did move
        assert torch.allclose(a.detach(), b, atol=1e-5), float((a.detach() - b).abs().max())


def test_bench_train_speedrun_quick_reports_time_to_each_target_plain_and_with_tta():
    p = run_cli("bench-train", "--speedrun", "speedrun-93", "--quick", timeout=600)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    s = out["speedrun"]
    assert s["preset"] == "speedrun-93" and s["threads"] == 1 and s["epochs"] == 1
    assert s["tta_level"] == 1  # flips only: the preset trains without shifts
    row = s["curve"][0]
    # one epoch on 5,000 images: well above chance, short of 93%
    assert 0.5 < row["test_accuracy"] < 0.93 and 0.5 < row["test_accuracy_tta"] < 0.93
    assert row["train_cpu_s"] > 0 and row["eval_tta_cpu_s"] > 0
    assert set(s["time_to"]) == {"0.93", "0.94", "0.95"}
    assert all(v == {"plain": None, "tta": None} for v in s["time_to"].values())
    assert out["dataloader_epoch_s"] > 0 and out["dataloader_epoch_cpu_s"] > 0
    assert "speedrun-93 to 0.93 (tta): not reached" in p.stderr
    bad = run_cli("bench-train", "--speedrun", "speedrun-99")
    assert bad.returncode == 2 and "unknown preset 'speedrun-99'" in bad.stderr and "Traceback" not in bad.stderr
