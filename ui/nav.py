"""The app's pages, declared once: app.py routes over `pages()` with st.navigation, and a page
links to another with `st.page_link(nav.page("train"))`.

Every page is served at the path it declares, Home included: Home is `/home`, and `/` — the
default page Streamlit serves at the root — is a hidden page that hands over to it. (Declared
as the default page itself, Home was served only at `/`: typing `/home`, the URL it declares,
said "Page not found".)
"""
from __future__ import annotations

import streamlit as st

# name (= url path), title, icon, in the order of the navigation menu
PAGES = (("home", "Home / Data", ":material/home:"),
         ("train", "Train", ":material/model_training:"),
         ("results", "Results", ":material/analytics:"),
         ("predict", "Predict", ":material/online_prediction:"),
         ("own", "A class of your own", ":material/add_a_photo:"),
         ("inside", "Inside the network", ":material/hub:"),
         ("step", "Step through", ":material/footprint:"),
         ("map", "Map", ":material/scatter_plot:"),
         ("timings", "Timings", ":material/timer:"),
         ("leaderboard", "Leaderboard", ":material/leaderboard:"),
         ("study", "Studies", ":material/science:"),
         ("challenge", "Challenge", ":material/flag:"),
         ("humans", "Beat the network", ":material/psychology:"))
ROOT = "start"  # the hidden default page's own path (Streamlit serves it at "/")


def page(name: str) -> st.Page:
    """The st.Page of one page, for st.page_link and st.switch_page."""
    import importlib
    title, icon = next((t, i) for n, t, i in PAGES if n == name)
    # url_path is explicit: every page function is called `page`, which Streamlit would
    # otherwise turn into the same URL for all of them
    return st.Page(importlib.import_module(f"pages.{name}").page, title=title, icon=icon, url_path=name)


def _to_home() -> None:
    st.switch_page(page("home"))


def root() -> st.Page:
    """The default page, served at "/": it switches to Home (so "/" and "/home" both work)."""
    return st.Page(_to_home, title="Fashion-MNIST Workbench", url_path=ROOT, default=True,
                   visibility="hidden")


def pages() -> list[st.Page]:
    """What app.py routes over: the root, then every page in menu order."""
    return [root(), *(page(name) for name, _, _ in PAGES)]
