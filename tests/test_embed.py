"""fmnist_core.embed and `python -m fmnist_core embed` on the real test set and the shipped
models: map shapes, the disk cache (a second call computes nothing and leaves the file alone),
placing a test image back on its own PCA point, t-SNE placement through openTSNE's transform,
and one clear sentence for an unknown layer or method. UMAP is exercised by the benchmark
(scripts/bench_embed.py): its numba compile alone takes longer than these tests may.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from fmnist_core import embed
from fmnist_core.errors import ConfigError
from fmnist_core.models import load_model
from conftest import CI, ROOT, run_cli

MLP = ROOT / "artifacts" / "models" / "mlp.pt"
CNN = ROOT / "artifacts" / "models" / "cnn.pt"
pytestmark = pytest.mark.skipif(not MLP.is_file() and not CI, reason="the shipped MLP is not there: make models")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh, empty cache folder for this test (and the CLI it starts), and no shipped maps:
    these tests compute maps of the shipped models (tests/test_pages_map.py reads the shipped ones)."""
    monkeypatch.setenv("FMNIST_ARTIFACTS", str(tmp_path))
    monkeypatch.setenv("FMNIST_SHIPPED_MAPS", str(tmp_path / "no-shipped-maps"))
    return tmp_path / "cache" / "embed"


@pytest.fixture(scope="module")
def mlp():
    return load_model(MLP)


def test_layers_and_default(mlp):
    names = embed.layer_names(mlp)
    assert names[0] == "flatten" and names[-1] == "out" and "norm" not in names
    assert embed.default_layer(mlp) == "act2"  # the layer before the output, dropout skipped
    if CNN.is_file():
        assert embed.default_layer(load_model(CNN)) == "act_fc1"


def test_pca_map_shape_and_cache(ds, mlp, cache, monkeypatch):
    r = embed.embed(MLP, "act2", "pca", ds.x_test, ds.y_test, model=mlp)
    assert r["xy"].shape == (10000, 2) and r["xy"].dtype == np.float32
    assert np.isfinite(r["xy"]).all() and not r["cached"]
    assert (r["labels"] == ds.y_test).all()
    assert r["width"] == 256 and r["base_dims"] == 50
    assert 0 < r["explained"][1] <= r["explained"][0] < 1
    files = sorted(p.name for p in cache.iterdir())
    assert files == [f"{r['checkpoint_hash']}-act2-base.npz", f"{r['checkpoint_hash']}-act2-pca.npz"]
    stamps = {p: p.stat().st_mtime_ns for p in cache.iterdir()}
    # the second call reads the cache: the model is never run, no file is rewritten
    monkeypatch.setattr(embed, "activations", lambda *a, **k: pytest.fail("recomputed the activations"))
    again = embed.embed(MLP, "act2", "pca", ds.x_test, ds.y_test, model=mlp)
    assert again["cached"] and np.array_equal(again["xy"], r["xy"])
    assert {p: p.stat().st_mtime_ns for p in cache.iterdir()} == stamps
    # the cache files hold plain arrays only
    with np.load(cache / f"{r['checkpoint_hash']}-act2-base.npz", allow_pickle=False) as z:
        assert z["reduced"].shape == (10000, 50) and z["components"].shape == (50, 256)


def test_pca_places_a_test_image_on_its_own_point(ds, mlp, cache):
    r = embed.embed(MLP, "act2", "pca", ds.x_test, ds.y_test, model=mlp)
    spread = float(np.ptp(r["xy"], axis=0).max())
    for i in (0, 123, 9999):
        p = embed.place(MLP, "act2", "pca", ds.x_test[i] / 255.0, model=mlp)
        assert p["placement"] == "pca"
        assert np.abs(p["xy"] - r["xy"][i]).max() < 1e-3 * spread


def test_tsne_map_and_transform(ds, mlp, cache):
    n = 1000  # a part of the test set keeps the test fast; the whole set: scripts/bench_embed.py
    r = embed.embed(MLP, "act2", "tsne", ds.x_test[:n], ds.y_test[:n], model=mlp)
    assert r["xy"].shape == (n, 2) and np.isfinite(r["xy"]).all()
    # t-SNE keeps neighbours: most points' nearest map neighbour has their class
    d = ((r["xy"][:, None] - r["xy"][None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (ds.y_test[:n][d.argmin(1)] == ds.y_test[:n]).mean() > 0.7
    # test images placed by openTSNE's transform land among the points of their class (ten of
    # them: one image of a class the model confuses, a Shirt among Coats, may land off)
    shares = []
    for i in range(10):
        p = embed.place(MLP, "act2", "tsne", ds.x_test[i] / 255.0, model=mlp)
        assert p["placement"] == "tsne transform"
        near = np.argsort(((r["xy"] - p["xy"]) ** 2).sum(1))[:15]
        shares.append((ds.y_test[:n][near] == ds.y_test[i]).mean())
    assert np.median(shares) > 0.5 and np.mean(shares) > 0.5, shares


def test_bad_layer_and_method(mlp):
    with pytest.raises(ConfigError, match=r"^this model has no layer 'conv9'; its layers are flatten, fc1"):
        embed.check_request(mlp, "conv9", "pca")
    with pytest.raises(ConfigError, match=r"^unknown method 'lda'; choose one of pca, tsne, umap$"):
        embed.check_request(mlp, "act2", "lda")


def test_place_needs_the_map(ds, mlp, cache):
    with pytest.raises(ConfigError, match="no PCA map of act1"):
        embed.place(MLP, "act1", "pca", ds.x_test[0], model=mlp)


def test_cli_embed(tmp_path, cache):
    out = tmp_path / "map.csv"
    r = run_cli("embed", MLP, "--layer", "act2", "--method", "pca", "--out", out,
                env={"FMNIST_ARTIFACTS": os.environ["FMNIST_ARTIFACTS"],
                     "FMNIST_SHIPPED_MAPS": os.environ["FMNIST_SHIPPED_MAPS"]})
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["points"] == 10000 and summary["layer"] == "act2" and summary["method"] == "pca"
    assert not summary["cached"]
    rows = out.read_text().splitlines()
    assert rows[0] == "index,label,x,y" and len(rows) == 10001
    again = run_cli("embed", MLP, "--method", "pca", "--out", tmp_path / "map.npz",
                    env={"FMNIST_ARTIFACTS": os.environ["FMNIST_ARTIFACTS"],
                     "FMNIST_SHIPPED_MAPS": os.environ["FMNIST_SHIPPED_MAPS"]})
    assert again.returncode == 0 and json.loads(again.stdout)["cached"]  # default layer: act2, cached
    with np.load(tmp_path / "map.npz", allow_pickle=False) as z:
        assert z["x"].shape == (10000,) and (z["index"] == np.arange(10000)).all()
        csv_x = np.array([float(row.split(",")[2]) for row in rows[1:]])
        assert np.allclose(z["x"], csv_x, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("args, message", [
    (["--layer", "nope"], "error: this model has no layer 'nope'; its layers are flatten, fc1, bn1, act1, "
                          "drop1, fc2, bn2, act2, drop2, out"),
    (["--method", "lda"], "error: unknown method 'lda'; choose one of pca, tsne, umap"),
    (["--out", "map.txt"], "error: --out map.txt: the file name must end in .npz or .csv"),
    (["--out", "."], "error: --out .: the file name must end in .npz or .csv"),
])
def test_cli_embed_errors(args, message, cache, capsys):
    from fmnist_core.cli import main  # in this process: the subprocess path is test_cli_embed's
    assert main(["embed", str(MLP), *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == message
    assert not cache.exists()  # refused before any work


def test_cli_embed_missing_checkpoint(tmp_path, capsys):
    from fmnist_core.cli import main
    assert main(["embed", str(tmp_path / "none.pt"), "--method", "pca"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: checkpoint not found:")


def test_the_map_cache_key_is_the_checkpoints_content_and_a_rewrite_is_recomputed(ds, cache, tmp_path, monkeypatch):
    """Key computed here from the bytes (not by embed.checkpoint_hash); a checkpoint rewritten in
    place with other weights gets a new map, not the old file's."""
    import hashlib
    from conftest import random_checkpoint
    from fmnist_core.models import MLPConfig
    ckpt = random_checkpoint(tmp_path / "m.pt", MLPConfig(hidden=(16,)), seed=1)
    x, y = ds.x_test[:500], ds.y_test[:500]
    first = embed.embed(ckpt, "act1", "pca", x, y)
    want = hashlib.sha256(ckpt.read_bytes()).hexdigest()[:16]
    assert first["checkpoint_hash"] == want and (cache / f"{want}-act1-pca.npz").is_file()
    random_checkpoint(ckpt, MLPConfig(hidden=(16,)), seed=2)
    new = hashlib.sha256(ckpt.read_bytes()).hexdigest()[:16]
    second = embed.embed(ckpt, "act1", "pca", x, y)
    assert new != want and second["checkpoint_hash"] == new and not second["cached"]
    assert not np.array_equal(second["xy"], first["xy"])
    assert (cache / f"{new}-act1-pca.npz").is_file()


@pytest.mark.skipif(not CNN.is_file() and not CI, reason="the shipped CNN is not there: make models")
def test_a_projected_conv_layer_is_the_plain_projection_within_bf16(ds):
    """activations() runs conv models channels_last under the trainer's autocast and projects
    the (H, W, C) memory order with the projection's rows reordered: the same numbers as the
    fp32 model, the plan's (C, H, W) flatten and scikit-learn's own transform, to bf16's precision
    (measured: correlation 0.999996, at most 0.3% of the largest value)."""
    import torch
    from sklearn.random_projection import SparseRandomProjection
    model = load_model(CNN)
    x = ds.x_test[:300]
    got = embed.activations(model, "conv1", x)
    width = embed.layer_width(model, "conv1")
    assert width > embed.WIDE and got.shape == (300, embed.PROJECTED)
    with torch.inference_mode():
        h = torch.from_numpy(x.astype(np.float32) / 255).reshape(-1, 1, 28, 28)
        for module in list(model.children())[:[n for n, _ in model.named_children()].index("conv1") + 1]:
            h = module(h)
    rp = SparseRandomProjection(n_components=embed.PROJECTED, dense_output=True, random_state=embed.SEED)
    want = rp.fit(np.zeros((1, width), np.float32)).transform(h.reshape(300, -1).numpy())
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.9999
    assert np.abs(got - want).max() < 0.02 * np.abs(want).max()
    # one image alone lands where it did in the batch (a placed drawing)
    np.testing.assert_allclose(embed.activations(model, "conv1", x[:1])[0], got[0], rtol=1e-3, atol=1e-3)


@pytest.mark.skipif(not CNN.is_file() and not CI, reason="the shipped CNN is not there: make models")
def test_the_fast_pca_of_a_wide_layer_draws_the_exact_pca_map(ds):
    """_fit_base's randomized PCA (2 power iterations) of a 6,272-value conv layer: the PCA map's
    two axes are the exact PCA's (up to sign), and the 50 components keep ~all of its variance."""
    from sklearn.decomposition import PCA
    acts = embed.activations(load_model(CNN), "act1", ds.x_test[:2000])
    assert acts.shape[1] == 6272
    b = embed._fit_base(acts)
    exact = PCA(embed.BASE_DIMS, svd_solver="full").fit(acts)
    ref = exact.transform(acts)
    for k in (0, 1):
        assert abs(np.corrcoef(b["reduced"][:, k], ref[:, k])[0, 1]) > 0.9999
    assert b["explained"].sum() > 0.98 * exact.explained_variance_ratio_.sum()
