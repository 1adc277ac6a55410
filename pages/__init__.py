"""The dashboard's pages: one module per page, each with `def page() -> None`.

app.py imports these functions and routes to them with `st.navigation([st.Page(...)])`
(its PAGES list). Pages hold layout and widgets only; what they show is computed in
fmnist_core (mostly fmnist_core.views). `common` holds the sidebar and the cached,
shared resources.

Why the folder is still called `pages/` although Streamlit treats that name specially:
the design names it so, and `st.navigation` switches the special treatment off.
In Streamlit 1.67, a server whose entry file sits next to a `pages/` folder starts in
the legacy "every pages/*.py is a page" mode, and stays there until some session
calls `st.navigation` (docs: "As soon as any session of your app executes the
st.navigation command, your app will ignore the pages/ directory"). So on a fresh
server, a first visit to a deep link such as /train would execute pages/train.py
as a script instead of app.py. Every page module therefore ends with

    if __name__ == "__main__":  # run as a script by Streamlit's pages/ discovery
        common.run_app()

which hands that one request to app.py, whose `st.navigation` then routes it
properly and switches the legacy mode off for good. Importing a page module (what
app.py does) never triggers it. A new page: add pages/<name>.py with `page()` and
those two lines, and one `st.Page` in app.py's PAGES.
"""
