"""Results page, "Robustness to adversarial noise": test accuracy against epsilon under FGSM
(all 10,000 test images) and PGD (every 10th test image), one line per compared model whose
curve is cached (fmnist_core.adversarial caches it per checkpoint content), and a button that
asks for the missing curves of the run looked at closely as shared analysis jobs of the
dispatcher (fmnist_core.analysis), with their progress.
"""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from fmnist_core import adversarial, runs
from fmnist_core.errors import WorkbenchError
from ui import common, jobs

DASH = {"FGSM": "solid", "PGD": "dash"}
SUBSET = {"FGSM": "all 10,000 test images",
          "PGD": f"every {adversarial.PGD_SUBSET}th test image ({10_000 // adversarial.PGD_SUBSET:,}), "
                 f"{adversarial.PGD_STEPS} steps each"}


@st.cache_data(show_spinner=False, max_entries=256)
def _cache_path(path: str, version: float, attack: str, epsilons: tuple) -> str:
    return str(adversarial.cache_path(path, attack, epsilons))  # hashes the checkpoint: once per version


def _checkpoint(src: dict) -> str | None:
    if not src.get("checkpoint"):
        return None
    try:
        return str(runs.ensure_checkpoint(src["checkpoint"]))
    except (WorkbenchError, OSError):
        return None


def _cached(path: str, attack: str) -> dict | None:
    from fmnist_core.files import read_json
    got = read_json(_cache_path(path, common.mtime(path), attack, adversarial.CURVE_EPSILONS))
    return got if isinstance(got, dict) and isinstance(got.get("accuracy"), list) else None


def section(chosen: list[dict], detail: dict) -> None:
    """chosen: the compared runs (their cached curves are drawn); detail: the run looked at
    closely (its missing curves can be computed here)."""
    with st.expander("Robustness to adversarial noise (FGSM / PGD)", icon=":material/shield:"):
        st.caption("Test accuracy when every pixel of every test image may move by ε (in pixel units, "
                   "0.03 ≈ 8 gray levels of 255) in the direction that most raises the loss of its true "
                   f"class. FGSM: one step, on {SUBSET['FGSM']}. PGD: {adversarial.PGD_STEPS} smaller "
                   f"steps, stronger, so on {SUBSET['PGD']}. Computed once per checkpoint, then cached.")
        curves = []
        for src in chosen:
            path = _checkpoint(src)
            for attack in adversarial.ATTACKS:
                got = _cached(path, attack) if path else None
                if got:
                    curves.append((src["name"], attack, got))
        if curves:
            st.plotly_chart(_figure(curves), theme=None, key="res_robust_chart")
        path = _checkpoint(detail)
        if path is None:
            st.info(f"{detail['name']} has no checkpoint to attack.")
            return
        missing = [a for a in adversarial.ATTACKS if _cached(path, a) is None]
        if not missing:
            return
        eps = [float(e) for e in adversarial.CURVE_EPSILONS]
        asked = [a for a in missing if jobs.under_way("robustness", path, {"attack": a, "epsilons": eps})]
        if asked or st.button(f"Compute the {' and '.join(missing)} curve{'s' if len(missing) > 1 else ''} of "
                              f"{detail['name']}", icon=":material/play_arrow:", key="res_robust_btn"):
            # shared jobs of the dispatcher, one per attack: computed once for everyone who asks
            for attack in missing:
                jobs.ready("robustness", path, {"attack": attack, "epsilons": eps}, f"{attack} curve of {detail['name']}",
                           key=f"res_robust_{attack}")
        else:
            st.caption(f"Not computed yet for {detail['name']}. On a 2-core CPU: from half a minute (an MLP, "
                       "nothing else running) to several minutes (a CNN while others train); computed "
                       "once, off the web server, then shown to everyone.")


def _figure(curves: list[tuple[str, str, dict]]) -> go.Figure:
    fig = go.Figure()
    names = list(dict.fromkeys(name for name, _, _ in curves))
    for name, attack, c in curves:
        colour = common.COLORS[names.index(name) % len(common.COLORS)]
        fig.add_trace(go.Scatter(
            x=c["epsilons"], y=c["accuracy"], mode="lines+markers", name=f"{name} · {attack}",
            line=dict(color=colour, width=3, dash=DASH[attack]), marker=dict(size=8),
            customdata=[round(e * 255, 1) for e in c["epsilons"]],
            hovertemplate=f"%{{fullData.name}} ({c['n']:,} images)<br>"
                          "ε = %{x:.3f} (%{customdata}/255): accuracy %{y:.1%}<extra></extra>"))
    fig.update_xaxes(title="ε (largest change of a pixel, 0–1)")
    fig.update_yaxes(title="test accuracy", tickformat=".0%", range=[0, 1.02])
    return common.style(fig, height=440, legend_below=True)
