"""Fashion-MNIST Workbench: the Streamlit entry point — routing and the sidebar, nothing else.

Each page is a `def page() -> None` in pages/<name>.py; ui/nav.py declares them (PAGES there is
the one list to extend) as `st.Page` objects, and this file routes over them with
`st.navigation` (not Streamlit's file-per-page discovery; why the folder may still be called
pages/ is explained in ui/__init__.py). Every page gets the same sidebar (ui/common.py): data
source, devices, who you are (name, teacher unlock), the class settings and the job queue.
"""
from __future__ import annotations

import streamlit as st

from ui import common, nav

st.set_page_config(page_title="Fashion-MNIST Workbench", page_icon=":material/checkroom:", layout="wide")

common.startup()            # once per server process: orphaned runs -> interrupted
common.keep_widget_state()  # page widgets keep their values across page switches
current = st.navigation(nav.pages())
if current.url_path == "":  # "/": the hidden default page hands over to Home (ui/nav.py)
    current.run()
common.sidebar()
current.run()
