"""Heads on cached features (fmnist_core/heads.py): PyTorch and the NumPy twin train the same
head config on the pretrained backbone's real features; the twin runs the head layer by layer
as PyTorch does; a head is an ordinary run in the store whose checkpoint answers images."""
from __future__ import annotations

import numpy as np
import torch

from fmnist_core import heads, runs
from fmnist_core.train import TrainConfig

from conftest import LITE0_IMAGES, link_features


def _cfg_and_data(f, ds, hidden=()):
    old, runs.ARTIFACTS = runs.ARTIFACTS, f["root"]
    try:
        cfg = heads.head_config("efficientnet-lite0", 64, images=LITE0_IMAGES, hidden=hidden)
        return cfg, heads.feature_data(cfg, ds)
    finally:
        runs.ARTIFACTS = old


def test_twin_head_agrees_with_pytorch_and_both_learn(lite0_features, ds):
    cfg, data = _cfg_and_data(lite0_features, ds, hidden=(64,))
    # one thread: on a busy 2-core machine a second one made these 128 tiny steps 26 s instead of 0.5 s
    tc = TrainConfig(epochs=8, batch_size=64, lr=1e-3, val_fraction=0.0, seed=0, threads=1)
    acc = {}
    for engine in ("torch", "numpy"):
        r = heads.trainer(engine)(cfg, tc, data)
        assert r.status == "finished"
        acc[engine] = heads.test_accuracy(r.model, data)
        a = heads.agreement(r.model, np.asarray(data.x_test[:500], dtype=np.float32))
        assert [row["layer"] for row in a["layers"]] == ["norm", "fc1", "act1", "out"]
        assert a["max_abs_diff"] < 1e-4 and a["label_agreement"] == 1.0, a
    # 1,000 training images: the pretrained features carry the class (the pixels' own linear
    # model reaches ~0.78 on as few); the two trainers land within a few points of each other
    assert acc["torch"] > 0.78 and acc["numpy"] > 0.78, acc
    assert abs(acc["torch"] - acc["numpy"]) < 0.03, acc
    shuffled = heads.FeatureData(data.x_train, np.random.default_rng(0).permutation(data.y_train),
                                 data.x_test, data.y_test)
    r = heads.trainer("torch")(cfg, tc, shuffled)
    assert heads.test_accuracy(r.model, shuffled) < 0.3  # the labels, not the features alone, teach it


def test_a_head_is_a_run_whose_checkpoint_answers_images(store, tmp_path, lite0_features, ds):
    from fmnist_core.execute import execute_run
    from fmnist_core.models import load_model
    from fmnist_core.spec import RunSpec
    link_features(lite0_features, tmp_path)
    cfg = heads.head_config("efficientnet-lite0", 64, images=LITE0_IMAGES)
    spec = RunSpec(cfg, TrainConfig(epochs=3, batch_size=128, val_fraction=0.2, threads=1), engine="numpy").validate()
    run_id = runs.create_run(spec.to_dict(), label="linear head", owner="ada")
    summary = execute_run(run_id)
    assert summary["status"] == "finished" and summary["test_accuracy"] > 0.7, summary
    r = runs.load_run(run_id)
    assert len(r["history"]) == 3 and r["status"] == "finished"
    model = load_model(summary["checkpoint"])
    assert isinstance(model, heads.BackboneHead)
    x = torch.from_numpy(ds.x_test[:40].astype(np.float32) / 255).unsqueeze(1)
    with torch.no_grad():
        from_images = model(x).argmax(1).numpy()
        from_features = model.head(torch.from_numpy(np.asarray(
            heads.feature_data(cfg, ds).x_test[:40], dtype=np.float32))).argmax(1).numpy()
    assert (from_images == from_features).mean() >= 0.95  # fp32 here, bf16-cached features there
