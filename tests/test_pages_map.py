"""The Map page under AppTest with the shipped CNN: its maps (PCA, t-SNE, UMAP of the main
layers) are shipped beside it (artifacts/models/maps/, `make maps`), so a first visit draws
each of them at once: no analysis job is created, nothing lands in the (empty) cache, and the
caption says where the map came from. Also the size of what is shipped, and that every
shipped checkpoint has its maps."""
from __future__ import annotations

import numpy as np
import pytest

from fmnist_core import analysis, embed
from fmnist_core.models import load_model
from fmnist_core.views import shared

from conftest import CI, skip_unless_ci
from page_util import REAL_CNN, page_app, texts

# what a shipped map is: float16 (x, y) for the 10,000 test images, compressed
MAX_MAP_BYTES = 80_000
MAX_TOTAL_BYTES = 3_000_000


@pytest.fixture
def shipped_cnn(runs_dir):
    if not REAL_CNN.is_file():
        skip_unless_ci("the shipped CNN (artifacts/models/cnn.pt) is not there: make models")
    return REAL_CNN


def _no_jobs() -> list[str]:
    d = analysis.jobs_dir()
    return sorted(p.name for p in d.glob("*.json")) if d.is_dir() else []


def test_shipped_cnn_maps_are_drawn_without_a_job(shipped_cnn):
    model = load_model(shipped_cnn)
    layers = embed.main_layers(model)
    assert layers == ["act2", "act_fc1", "out"]
    at = page_app("map").run()
    assert not at.exception
    assert at.session_state["mp_layer"] == "act_fc1"  # the page's default layer is a shipped one
    for layer in ("act_fc1", "act2"):
        at.selectbox(key="mp_layer").select(layer).run()
        for method in embed.METHODS:
            at.radio(key="mp_method").set_value(method).run()
            assert not at.exception
            body = texts(at)
            assert "not made yet" not in body and not any(b.key == "mp_go" for b in at.button)
            shown = [c.value for c in at.caption]
            caption = next((c for c in shown if c.startswith(f"{embed.METHOD_NAMES[method]} of {layer}")), "")
            assert "shipped with the model" in caption, shown
            assert len(at.get("plotly_chart")) == 1
    assert _no_jobs() == []  # no job was asked for, so no dispatcher work and no wait
    assert not embed.cache_dir().exists() or not any(embed.cache_dir().iterdir())  # nothing computed


def test_shipped_maps_are_small_and_complete(ds):
    """Every shipped checkpoint has a map of each main layer by each method, each file under
    ~80 KB; together a few MB at most. A map keeps its classes apart as the model does."""
    shipped = [p for p in (shared.SHIPPED_DIR / name for name in shared.SHIPPED.values()) if p.is_file()]
    if len(shipped) < len(shared.SHIPPED) and not CI:
        pytest.skip("not every shipped model is there: make models")
    for path in shipped:
        model = load_model(path)
        digest = embed.checkpoint_hash(path)
        for layer in embed.main_layers(model):
            for method in embed.METHODS:
                f = embed.shipped_path(digest, layer, method)
                assert f.is_file(), f"{path.name} has no shipped {method} map of {layer}: make maps"
                assert f.stat().st_size <= MAX_MAP_BYTES, (f.name, f.stat().st_size)
                m = embed.load_shipped(digest, layer, method)
                assert m["xy"].shape == (len(ds.y_test), 2) and np.isfinite(m["xy"]).all()
    total = sum(p.stat().st_size for p in embed.shipped_dir().glob("*.npz"))
    assert total <= MAX_TOTAL_BYTES
    # the CNN's penultimate t-SNE: a point's 10 nearest map neighbours mostly share its class
    from fmnist_core.embed_bench import knn_agreement
    m = embed.load_shipped(embed.checkpoint_hash(REAL_CNN), "act_fc1", "tsne")
    assert knn_agreement(m["xy"], ds.y_test) > 0.85
    shuffled = np.random.default_rng(0).permutation(ds.y_test)
    assert knn_agreement(m["xy"], shuffled) < 0.15  # labels that mean nothing: about 1 in 10


def test_a_test_image_lands_on_its_own_point_of_a_shipped_map(ds, runs_dir):
    """Placing an input on a shipped map makes the layer's PCA basis once (it is not shipped):
    a test image lands where the shipped (float16) map has it."""
    course = shared.SHIPPED_DIR / shared.SHIPPED["course-mlp"]
    if not course.is_file():
        skip_unless_ci("the shipped course MLP is not there: make models")
    model = load_model(course)
    digest = embed.checkpoint_hash(course)
    shipped = embed.load_shipped(digest, "act1", "pca")
    assert shipped is not None and not embed.cache_path(digest, "act1", "base").exists()
    spread = float(np.ptp(shipped["xy"], axis=0).max())
    for i in (0, 4321):
        p = embed.place(course, "act1", "pca", ds.x_test[i] / 255.0, model=model)
        assert np.abs(p["xy"] - shipped["xy"][i]).max() < 2e-3 * spread  # float16 keeps ~3 digits
    assert embed.cache_path(digest, "act1", "base").is_file()
