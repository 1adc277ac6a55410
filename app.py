"""Fashion-MNIST Workbench: the Streamlit entry point — routing and the sidebar, nothing else.

Each page is a `def page() -> None` in pages/<name>.py; PAGES below is the one list to
extend. Routing is `st.navigation` over `st.Page` objects built from those callables
(not Streamlit's file-per-page discovery; why the folder may still be called pages/
is explained in ui/__init__.py). Every page gets the same sidebar (ui/common.py): data
source, devices, who you are (name, teacher unlock), the class settings and the job queue.
"""
from __future__ import annotations

import streamlit as st

from pages import home, inside, leaderboard, predict, results, timings, train
from ui import common

st.set_page_config(page_title="Fashion-MNIST Workbench", page_icon=":material/checkroom:", layout="wide")

# url_path is explicit: every page function is called `page`, which Streamlit would
# otherwise turn into the same URL for all of them
PAGES = [
    st.Page(home.page, title="Home / Data", icon=":material/home:", url_path="home", default=True),
    st.Page(train.page, title="Train", icon=":material/model_training:", url_path="train"),
    st.Page(results.page, title="Results", icon=":material/analytics:", url_path="results"),
    st.Page(predict.page, title="Predict", icon=":material/online_prediction:", url_path="predict"),
    st.Page(inside.page, title="Inside the network", icon=":material/hub:", url_path="inside"),
    st.Page(timings.page, title="Timings", icon=":material/timer:", url_path="timings"),
    st.Page(leaderboard.page, title="Leaderboard", icon=":material/leaderboard:", url_path="leaderboard"),
]

common.startup()            # once per server process: orphaned runs -> interrupted
common.keep_widget_state()  # page widgets keep their values across page switches
current = st.navigation(PAGES)
common.sidebar()
current.run()
