"""The price of a run (fmnist_core/cost.py) against measured runs: each estimate within a stated
factor of the trainer process's measured peak RSS and time, on short versions of the presets.

Time is compared with the process's CPU seconds (one torch thread): on a machine shared with
other work the wall clock measures the neighbours more than the run. The full table over more
presets, with wall times, is `python scripts/calibrate_cost.py`."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fmnist_core import cost
from fmnist_core.models import CNNConfig
from fmnist_core.spec import RunSpec
from fmnist_core.train import TrainConfig

from conftest import ROOT

MEMORY_FACTOR = 1.6   # estimate / measured peak RSS within [1/1.6, 1.6]
TIME_FACTOR = 2.5     # estimate / measured CPU seconds within [1/2.5, 2.5]

CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(1)
from fmnist_core import runs
runs.store()  # the store's client, as a trainer has it
from fmnist_core.data import load
from fmnist_core.spec import RunSpec
from fmnist_core.train import train
from fmnist_core.evaluate import evaluate
spec = RunSpec.from_dict(json.loads(sys.argv[1]))
r = train(spec.model, spec.train, load(), train_limit=spec.train_limit)
evaluate(r.model, load().x_test, load().y_test)
u = resource.getrusage(resource.RUSAGE_SELF)
# the peak of this process's own memory (VmHWM); ru_maxrss would also count the forked copy of a
# large parent (a test worker), which Linux carries across exec
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"cpu_s": u.ru_utime + u.ru_stime, "peak_mb": hwm / 1024}))
"""


def _measure(spec: RunSpec) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec.to_dict())], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("name, train, limit", [
    ("mlp-seed000", {"epochs": 1}, 24000),
    ("cnn-seed003", {"epochs": 1}, 8000),
    ("cnn-demo", {"epochs": 1}, 6000),
])
def test_the_price_is_within_a_stated_factor_of_a_measured_run(store, name, train, limit):
    spec = RunSpec.from_preset(name, train={**train, "threads": 1}, train_limit=limit)
    p = cost.price(spec)
    m = _measure(spec)
    mem, t = p.peak_mb / m["peak_mb"], (p.seconds - cost.START_S / 2) / m["cpu_s"]
    assert 1 / MEMORY_FACTOR <= mem <= MEMORY_FACTOR, (p.peak_mb, m)
    assert 1 / TIME_FACTOR <= t <= TIME_FACTOR, (p.seconds, m)


def test_the_price_grows_with_what_costs():
    base = RunSpec(CNNConfig(channels=(32, 64)), TrainConfig(batch_size=64, epochs=2))
    p = cost.price(base, gflops=50)
    wider_batch = cost.price(RunSpec(base.model, TrainConfig(batch_size=512, epochs=2)), gflops=50)
    more_epochs = cost.price(RunSpec(base.model, TrainConfig(batch_size=64, epochs=4)), gflops=50)
    faster = cost.price(base, gflops=100)
    assert wider_batch.activations_mb == pytest.approx(8 * p.activations_mb)
    assert more_epochs.seconds - cost.START_S > 1.9 * (p.seconds - cost.START_S)
    assert faster.seconds < p.seconds and faster.peak_mb == p.peak_mb
    # the wide CNN at batch 60,000: tens of GB, from arithmetic alone
    wide = RunSpec(CNNConfig(channels=(2048, 8), kernel=1, fc=(8,)), TrainConfig(batch_size=60000, val_fraction=0.0))
    assert cost.price(wide, gflops=50).peak_mb > 100 * 1024
