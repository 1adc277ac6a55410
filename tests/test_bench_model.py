"""The model under test (fmnist_core/bench/model.py): the default is the 784-128-10 net; a shipped
checkpoint of another architecture is named, not timed."""
from fmnist_core.bench import model as bench_model
from fmnist_core.models import build_model, preset


def test_default_model_is_the_784_128_10_net(monkeypatch, tmp_path):
    from fmnist_core.models import MLPConfig, save_checkpoint
    same = tmp_path / "same.pt"
    save_checkpoint(same, build_model(preset("mlp-seed000")["model"]))
    monkeypatch.setattr(bench_model, "DEFAULT_MODEL", same)
    bm = bench_model.resolve_model()
    assert bm.source.startswith("checkpoint") and bm.describe()["parameters"] == 101770
    other = tmp_path / "other.pt"
    save_checkpoint(other, build_model(MLPConfig(hidden=(512, 256), batchnorm=True)))
    monkeypatch.setattr(bench_model, "DEFAULT_MODEL", other)
    bm = bench_model.resolve_model()  # the figures everyone compares are for 784-128-10
    assert bm.name == "mlp-seed000" and "random weights" in bm.source
    assert "784-512-256-10 with batchnorm" in bm.source
    assert bench_model.resolve_model(other).config.hidden == (512, 256)  # --model times it
