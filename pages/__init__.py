"""The dashboard's pages: one module per page, each with `def page() -> None`, and nothing else.

ui/nav.py declares them as `st.Page` objects (its PAGES list) and app.py routes to them with
`st.navigation`. A page holds layout and widgets only: what it shows is computed in
fmnist_core.views (one module per page, never imports streamlit), and what several pages
share (cached resources, the sidebar, chart style, the model picker) is in ui/.

Only pages belong here: Streamlit lists every module of this folder as a page on a fresh
server's first visit (ui/__init__.py says why, and why every page ends with the
`common.run_app()` lines). A new page: add pages/<name>.py with `page()` and those two
lines, and its name, title and icon in ui/nav.py's PAGES.
"""
