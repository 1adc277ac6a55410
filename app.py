"""Fashion-MNIST Workbench: the Streamlit entry point — routing and the sidebar, nothing else.

Each page is a `def page() -> None` in pages/<name>.py; ui/nav.py declares them (PAGES there is
the one list to extend) as `st.Page` objects, and this file routes over them with
`st.navigation` (not Streamlit's file-per-page discovery; why the folder may still be called
pages/ is explained in ui/__init__.py). Every page gets the same sidebar (ui/common.py): data
source, devices, who you are (name, teacher unlock), the class settings and the job queue.
"""
from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="Fashion-MNIST Workbench", page_icon=":material/checkroom:", layout="wide")

# a server's first run imports PyTorch, pandas, Plotly and MLflow (seconds on a busy machine)
# before anything can be drawn: one line says so at once, instead of grey skeletons with no word
LOADING = (":material/hourglass_top: Loading the page: PyTorch, the dataset and the run store "
           "(a few seconds the first time after the server starts)…")
loading = st.empty()
if not st.session_state.get("seen_pages"):
    loading.caption(LOADING)

from ui import common, nav  # noqa: E402 (after the line above: this import is the slow part)

common.keep_widget_state()  # page widgets keep their values across page switches
current = st.navigation(nav.pages())
if current.url_path == "":  # "/": the hidden default page hands over to Home (ui/nav.py)
    current.run()
# the run store, the dataset and PyTorch load before the page draws anything: on a page's first
# visit a line says so, instead of grey skeletons with no word for several seconds
common.loading_note(current.url_path, loading, LOADING)
common.startup()            # once per server process: orphaned runs -> interrupted
common.sidebar()
current.run()
loading.empty()
