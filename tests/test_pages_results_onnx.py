"""The Results page's ONNX export (ui/onnx_download.py) under AppTest: the shipped MLP is exported
on request by a shared analysis job, checked on the test images and offered as a download; an
export that failed is one clear error on the page and no download."""
from __future__ import annotations

import shutil

import pytest

from conftest import ROOT
from page_util import page_app, rerun_until, texts


@pytest.fixture
def shipped_only(runs_dir, tmp_path, monkeypatch):
    """The real shipped MLP as the only model; an empty run store."""
    from fmnist_core.views import shared
    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(ROOT / "artifacts" / "models" / "mlp.pt", models / "mlp.pt")
    monkeypatch.setattr(shared, "SHIPPED_DIR", models)
    return models / "mlp.pt"


def _open(at):
    at.run()
    at.multiselect(key="res_sel").select("shipped:mlp").run()
    at.selectbox(key="res_detail").select("shipped:mlp").run()
    assert not at.exception
    return at


def _downloads(at) -> list[str]:
    return [e.proto.label for e in at.get("download_button")]


def test_export_to_onnx_then_download(shipped_only):
    import streamlit as st
    st.cache_data.clear()
    at = _open(page_app("results"))
    assert "Model (.onnx)" not in _downloads(at)  # nothing exported before it is asked for
    at.button(key="res_onnx_btn").click().run()
    assert not at.exception and not at.error
    # exported by a shared job of the dispatcher, in its own process: the page waits for it
    rerun_until(at, lambda at: "Model (.onnx)" in _downloads(at), timeout=300)
    assert not at.error
    assert "Model (.onnx)" in _downloads(at)
    assert "the same class as PyTorch on 100% of the 10,000 test images" in texts(at)
    at.run()  # a rerun keeps the download without exporting again
    assert "Model (.onnx)" in _downloads(at)


def test_a_failed_export_is_one_clear_error(shipped_only, monkeypatch):
    """The export job failed (its process recorded why): the page says so in one sentence and
    offers to try again; it does not retry by itself on every rerun."""
    from fmnist_core import analysis
    at = _open(page_app("results"))
    rec = analysis.request("export", str(shipped_only), {}, start_dispatcher=False)
    analysis._write({**rec, "state": "failed", "message": "torch.onnx.export could not export this model (a test)"})
    at.button(key="res_onnx_btn").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "Computing the Export to ONNX, checked on the 10,000 test images failed: torch.onnx.export could not "
        "export this model (a test)"]
    assert "Model (.onnx)" not in _downloads(at)
    assert analysis.get(rec["key"])["state"] == "failed"  # not retried on its own
