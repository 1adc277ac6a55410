"""Features once, for everyone (fmnist_core/features.py): the "features" job of analysis.py
computed by the dispatcher in a process of its own, joined by a second asker, cached as .npy
and served to the next asker; priced, and refused over the class limit with a sentence."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from conftest import wait_job
from fmnist_core import analysis, backbones, features, queue
from fmnist_core.errors import WorkbenchError

N = 100  # images of each split: one batch; the job process's start is most of the time


def test_features_job_through_the_dispatcher(store, ds):
    first = features.request(backbones.PRETRAINED, 64, images=N, asker="ada", start_dispatcher=False)
    second = features.request(backbones.PRETRAINED, 64, images=N, asker="bo", start_dispatcher=False)
    assert first["key"] == second["key"] and second["state"] == "waiting"
    assert analysis.get(first["key"])["askers"] == ["ada", "bo"]
    assert features.cached(first["source"], first["params"]) is None  # asking computed nothing here
    queue.Dispatcher(say=lambda m: None).tick()  # starts the job's own process
    rec = wait_job(first["key"], 240)
    assert rec["state"] == "done", rec
    train, test, meta = features.load(first["source"], first["params"])
    assert train.shape == (N, 1280) and test.shape == (N, 1280) and train.dtype == np.float16
    assert meta["train_images"] == N and meta["mean"] > 0
    # the job's features are the pretrained network's on those very images (bf16 or fp32 in the
    # job, fp32 here): each row points the same way
    net = backbones.build(backbones.PRETRAINED, 64)
    with torch.no_grad():
        want = net(torch.from_numpy(ds.x_test[:N].astype(np.float32) / 255).unsqueeze(1)).numpy()
    got = np.asarray(test, dtype=np.float32)
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() > 0.99, cos.min()
    again = features.request(backbones.PRETRAINED, 64, images=N, asker="cy", start_dispatcher=False)
    assert again["state"] == "done" and analysis.get(first["key"])["computed"] == 1


def test_features_are_priced_and_bad_choices_refused(tmp_path, monkeypatch):
    from fmnist_core import runs
    monkeypatch.setattr(runs, "ARTIFACTS", tmp_path)  # a refusal must leave nothing behind, anywhere
    src, params = features.params_for(backbones.PRETRAINED, 64)
    small = analysis.price_mb("features", src, features.params_for(backbones.PRETRAINED, 64, images=N)[1])
    full = analysis.price_mb("features", src, params)
    # 70,000 x 1,280 float16 values (171 MiB) more than 200 of them
    assert 165 < full - small < 175 and small > analysis.BASE_MB
    with pytest.raises(WorkbenchError, match="class limit"):
        features.request(backbones.PRETRAINED, 64, max_mb=full - 1, start_dispatcher=False)
    for bad in [dict(backbone="resnet152"), dict(backbone=backbones.PRETRAINED, resolution=63),
                dict(backbone=backbones.PRETRAINED, layer="stage7"), dict(backbone=backbones.PRETRAINED, images=-1),
                dict(backbone=backbones.CHECKPOINT)]:
        with pytest.raises(WorkbenchError):
            features.request(start_dispatcher=False, **bad)
    assert analysis.waiting() == []  # nothing was queued by a refused request
