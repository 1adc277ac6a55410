"""The Results page's "ONNX" download: the selected model's checkpoint exported by
fmnist_core.export (checked with onnx.checker and ONNX Runtime on the 10,000 test images before
it is offered), made when asked for by a shared analysis job (fmnist_core.analysis) and cached
per checkpoint content.

Two steps, a button then the download: an export takes seconds and can fail (a checkpoint the
exporter cannot trace), and a failure must be a clear message on the page, which a download
button's deferred data cannot show.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from fmnist_core import analysis, runs
from ui import jobs


def onnx_download(checkpoint: str, stem: str) -> None:
    """An "Export to ONNX" button; once exported (a shared analysis job, off the web server),
    the download and what the check found."""
    path = runs.ensure_checkpoint(checkpoint)
    if not path:
        return
    key = (path, Path(path).stat().st_mtime)
    asked = st.session_state.get("res_onnx_for") == key or jobs.under_way("export", path, {})
    if not asked:
        if not st.button("Export to ONNX", icon=":material/deployed_code:", key="res_onnx_btn",
                         help="an .onnx file for ONNX Runtime and other runtimes: checked on the 10,000 "
                              "test images first (a few seconds)"):
            return
        st.session_state.res_onnx_for = key
    if not jobs.ready("export", path, {}, "Export to ONNX, checked on the 10,000 test images", key="res_onnx_job"):
        return
    report = analysis.cached("export", path, {})
    try:
        data = Path(report["path"]).read_bytes()
    except (OSError, KeyError, TypeError):
        st.error("The exported file is gone from the server's cache: export again.")
        st.session_state.res_onnx_for = None
        return
    st.download_button("Model (.onnx)", icon=":material/download:", data=data, file_name=f"{stem}.onnx",
                       mime="application/octet-stream", key="res_dl_onnx", on_click="ignore")
    st.caption(f"Checked with onnx.checker and ONNX Runtime: the same class as PyTorch on "
               f"{report['agreement']:.0%} of the {report['images']:,} test images, logits within "
               f"{report['max_logit_diff']:.1e}. Input `images` (N × 1 × 28 × 28, pixels / 255), output "
               f"`logits` (N × 10); the class names are in the file's metadata.")
