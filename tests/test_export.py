"""ONNX export (fmnist_core/export.py, CLI `export`): the shipped models round-trip through an
.onnx file that onnx.checker accepts and ONNX Runtime runs with the same labels as PyTorch on the
real 10,000 test images; the metadata names the classes; a bad checkpoint, a wrong --out or an
export that disagrees with the model writes nothing."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from conftest import ROOT, random_checkpoint
from fmnist_core import export
from fmnist_core.cli import main
from fmnist_core.data import CLASSES
from fmnist_core.evaluate import images_to_tensor
from fmnist_core.models import config_to_dict, load_model, preset


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_shipped_models_round_trip(name, tmp_path, ds, capsys):
    ckpt = ROOT / "artifacts" / "models" / f"{name}.pt"
    out = tmp_path / f"{name}.onnx"
    assert main(["export", str(ckpt), "--out", str(out)]) == 0
    reported = json.loads(capsys.readouterr().out)
    assert reported["path"] == str(out) and reported["images"] == 10000
    assert reported["agreement"] == 1.0 and reported["max_logit_diff"] <= export.MAX_LOGIT_DIFF
    # read back independently of the exporter: the checker, the metadata, ONNX Runtime
    proto = onnx.load(out)
    onnx.checker.check_model(proto, full_check=True)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["class_names"]) == list(CLASSES) == reported["class_names"]
    model = load_model(ckpt)
    assert json.loads(meta["model_config"]) == config_to_dict(model.config)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = images_to_tensor(ds.x_test).numpy()
    got = sess.run(None, {"images": x})[0]
    with torch.inference_mode():
        want = model(torch.from_numpy(x)).numpy()
    assert (got.argmax(1) == want.argmax(1)).all()
    assert np.abs(got - want).max() <= 1e-4
    # accuracy as the checkpoint's own: the file computes the model, not something like it
    assert (got.argmax(1) == ds.y_test).mean() > 0.8
    # a dynamic batch axis: one image and an odd batch run too
    for n in (1, 7):
        assert sess.run(None, {"images": x[:n]})[0].shape == (n, len(CLASSES))


def test_batchnorm_cnn_exports(tmp_path, ds):
    """Generic over the layer plan: a CNN with batchnorm, avg pooling and dropout (random weights)."""
    cfg = preset("cnn-seed003")["model"]
    from dataclasses import replace
    cfg = replace(cfg, batchnorm=True, pool="avg", dropout=0.3)
    ckpt = random_checkpoint(tmp_path / "bn.pt", cfg)
    res = export.export_checkpoint(ckpt, data=ds)
    assert res["path"] == str(tmp_path / "bn.onnx") and (tmp_path / "bn.onnx").is_file()
    assert res["agreement"] == 1.0


def _refused(capsys, *argv) -> str:
    assert main(["export", *map(str, argv)]) == 2
    err = capsys.readouterr()
    assert err.out == ""
    lines = err.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


def test_bad_inputs_write_nothing(tmp_path, capsys):
    mlp = ROOT / "artifacts" / "models" / "mlp.pt"
    assert "not found" in _refused(capsys, tmp_path / "missing.pt", "--out", tmp_path / "a.onnx")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(300))
    assert "not a readable checkpoint" in _refused(capsys, garbage, "--out", tmp_path / "b.onnx")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    assert "not a workbench checkpoint" in _refused(capsys, other, "--out", tmp_path / "c.onnx")
    assert "must end in .onnx" in _refused(capsys, mlp, "--out", tmp_path / "d.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.pt", "other.pt"]


def test_an_export_that_disagrees_is_not_written(tmp_path, monkeypatch, ds):
    """The checks are real: a graph of other weights fails the ONNX Runtime comparison."""
    cfg = preset("mlp-seed000")["model"]
    ckpt = random_checkpoint(tmp_path / "a.pt", cfg, seed=0)
    wrong = export.onnx_bytes(load_model(random_checkpoint(tmp_path / "b.pt", cfg, seed=1)))
    monkeypatch.setattr(export, "onnx_bytes", lambda model, source="": wrong)
    with pytest.raises(export.ExportError, match="disagrees"):
        export.export_checkpoint(ckpt, tmp_path / "a.onnx", data=ds)
    assert not (tmp_path / "a.onnx").exists()
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]
