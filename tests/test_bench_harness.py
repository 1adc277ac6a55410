"""The timing primitives and FLOP counts (fmnist_core/bench/harness.py): the synchronize calls
around every timed run, the GPU sync functions, FLOPs from the layer plan. No timing is asserted."""
import torch

from fmnist_core.bench import harness
from fmnist_core.models import preset


def test_time_runs_synchronizes_around_every_timed_run():
    events = []
    times = harness.time_runs(lambda: events.append("run"), lambda: events.append("sync"),
                              warmup=2, min_repeats=3, max_repeats=3, budget_s=None)
    assert len(times) == 3
    # burn-in and timed runs alike: sync, run, sync
    assert events == ["sync", "run", "sync"] * 5
    adaptive = harness.time_runs(lambda: None, lambda: None, warmup=1, min_repeats=3, max_repeats=7,
                                 budget_s=1.0)
    assert len(adaptive) >= 3  # blocked_autorange: one figure per block, at least min_repeats


def test_gpu_sync_functions():
    assert harness.sync_for(torch.device("cuda")) is torch.cuda.synchronize
    assert harness.sync_for(torch.device("mps")) is torch.mps.synchronize
    harness.sync_for(torch.device("cpu"))()  # a no-op


def test_flops_from_the_layer_plan():
    assert harness.forward_flops(preset("mlp-seed000")["model"]) == 2 * (784 * 128 + 128 * 10)
    # LeNet: conv 1->6 k5 at 28x28, pool, conv 6->16 k5 at 14x14, pool, fc 784-120-84-10
    lenet = (2 * 25 * 1 * 6 * 28 * 28 + 2 * 25 * 6 * 16 * 14 * 14
             + 2 * (16 * 7 * 7 * 120 + 120 * 84 + 84 * 10))
    assert harness.forward_flops(preset("cnn-seed003")["model"]) == lenet


def test_timer_blocks_read_the_clock_through_sync_and_keep_the_threads():
    """The adaptive path is torch.utils.benchmark.Timer: every clock reading syncs first, the
    process's thread count is what it was (Timer's own default is one thread)."""
    syncs = []
    before = torch.get_num_threads()
    seen = []
    times = harness.time_runs(lambda: seen.append(torch.get_num_threads()), lambda: syncs.append(1),
                              warmup=1, min_repeats=3, max_repeats=50, budget_s=0.05)
    assert len(times) >= 3 and all(t > 0 for t in times)
    assert set(seen) == {before} and torch.get_num_threads() == before
    assert len(syncs) >= 2 * len(times)
