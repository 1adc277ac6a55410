"""Heavy analysis as shared jobs (fmnist_core/analysis.py): a second asker joins the job
already there, the dispatcher computes it once in a process of its own, the result serves
everyone; a layer too wide for the class limit is refused with a sentence, and a very wide
layer is projected in a bounded way rather than held whole."""
from __future__ import annotations


import numpy as np
import pytest

from fmnist_core import analysis, embed, queue
from fmnist_core.errors import WorkbenchError
from fmnist_core.models import CNNConfig

from conftest import ROOT, random_checkpoint, wait_job

MLP = str(ROOT / "artifacts" / "models" / "mlp.pt")


@pytest.fixture(autouse=True)
def no_shipped_maps(tmp_path, monkeypatch):
    """The tests' copies of mlp.pt have its content hash: without this they would find its shipped
    maps (artifacts/models/maps/) and never make a job."""
    monkeypatch.setenv("FMNIST_SHIPPED_MAPS", str(tmp_path / "no-shipped-maps"))


def test_a_second_asker_joins_the_job_and_it_is_computed_once(store, tmp_path, monkeypatch):
    ckpt = tmp_path / "mlp.pt"
    ckpt.write_bytes(open(MLP, "rb").read())  # a copy: its own cache entries, nothing shared with other tests
    params = {"layer": "act2", "method": "pca"}
    first = analysis.request("map", ckpt, params, asker="ada", start_dispatcher=False)
    second = analysis.request("map", ckpt, params, asker="bo", start_dispatcher=False)
    assert first["key"] == second["key"] and second["state"] == "waiting"
    assert analysis.get(first["key"])["askers"] == ["ada", "bo"]
    assert len(analysis.waiting()) == 1  # one job for both
    assert not embed.is_cached(ckpt, "act2", "pca")  # asking computed nothing in this process
    d = queue.Dispatcher(say=lambda m: None)
    d.tick()  # starts the job's own process
    rec = analysis.get(first["key"])
    assert rec["state"] == "running" and rec["pid"]
    third = analysis.request("map", ckpt, params, asker="cy", start_dispatcher=False)  # joins the running job
    assert third["state"] == "running" and analysis.get(first["key"])["askers"] == ["ada", "bo", "cy"]
    rec = wait_job(first["key"])
    assert rec["state"] == "done" and rec["computed"] == 1, rec
    assert embed.is_cached(ckpt, "act2", "pca")
    again = analysis.request("map", ckpt, params, asker="dee", start_dispatcher=False)
    assert again["state"] == "done"  # from the cache, for everyone
    assert analysis.get(first["key"])["computed"] == 1


def test_the_job_key_is_what_it_computes(store, tmp_path):
    """The same bytes under another name are the same job; a rewritten checkpoint is a new one.
    (The expected key is computed here, independently of analysis.job_key.)"""
    import hashlib
    import json
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    for p in (a, b):
        p.write_bytes(open(MLP, "rb").read())
    params = {"layer": "act2", "method": "pca"}
    digest = hashlib.sha256(a.read_bytes()).hexdigest()
    blob = json.dumps({"kind": "map", "checkpoint": digest, "params": params}, sort_keys=True)
    assert analysis.job_key("map", a, params) == f"map-{hashlib.sha256(blob.encode()).hexdigest()[:24]}"
    assert analysis.job_key("map", a, params) == analysis.job_key("map", b, params)
    random_checkpoint(b, CNNConfig(channels=(4,), fc=(8,)))
    assert analysis.job_key("map", a, params) != analysis.job_key("map", b, params)
    assert analysis.job_key("map", a, params) != analysis.job_key("map", a, {**params, "method": "tsne"})


def test_a_too_wide_layer_is_refused_with_a_sentence_or_projected(store, tmp_path):
    """The issue's wide CNN: its first conv has 2,048 channels (1.6 M values per image, 64 GB
    for the test set held whole). Under a class limit of 1 GB per job the map is refused with
    the figure; without one it is priced at its bounded, projected size."""
    wide = random_checkpoint(tmp_path / "wide.pt", CNNConfig(channels=(2048, 8), kernel=1, fc=(8,)))
    params = {"layer": "act1", "method": "pca"}
    with pytest.raises(WorkbenchError, match=r"this map would need about .* of memory; the class limit is 1000 MB"):
        analysis.request("map", wide, params, max_mb=1000, start_dispatcher=False)
    assert analysis.waiting() == []
    mb = analysis.price_mb("map", wide, params)
    assert 1000 < mb < 2500  # bounded: projected to 2,048 values per image, batches of 20 images
    from fmnist_core.models import load_model
    model = load_model(wide)
    x = np.random.default_rng(0).integers(0, 255, (30, 28, 28), dtype=np.uint8)
    acts = embed.activations(model, "act1", x)
    assert acts.shape == (30, embed.PROJECTED)
    assert embed.layer_width(model, "act1") == 2048 * 28 * 28
    # the projection is the same every time (a placed input lands on the same map); the float
    # sums differ in the last bits between batch sizes (BLAS blocks them differently)
    np.testing.assert_allclose(acts[:3], embed.activations(model, "act1", x[:3]), rtol=1e-5, atol=1e-4)


def test_a_failed_job_says_why_and_is_retried_only_when_asked(store, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(open(MLP, "rb").read())
    rec = analysis.request("map", bad, {"layer": "act2", "method": "pca"}, start_dispatcher=False)
    bad.write_bytes(b"not a checkpoint")  # broken after it was asked for
    key = rec["key"]
    rec = analysis.get(key)
    rec["checkpoint"] = str(bad)
    analysis._write(rec)
    assert analysis.run_job(key) == 1
    failed = analysis.get(key)
    assert failed["state"] == "failed" and failed["message"]
    assert analysis.waiting() == []


def test_unknown_kinds_and_missing_checkpoints_are_refused(store, tmp_path):
    with pytest.raises(WorkbenchError, match="unknown analysis 'magic'"):
        analysis.request("magic", MLP, {}, start_dispatcher=False)
    with pytest.raises(WorkbenchError, match="no checkpoint at"):
        analysis.request("map", tmp_path / "none.pt", {"layer": "x", "method": "pca"}, start_dispatcher=False)
