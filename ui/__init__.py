"""The dashboard's shared Streamlit code that is not a page: what several pages (and app.py) use.

  * common        the cached, shared, read-only resources (dataset, devices, shipped models,
                  test-set predictions and evaluations), the sidebar, the chart style,
                  session-state helpers, and `run_app` (see below)
  * model_picker  the model selectbox of Predict and "Inside the network", with the models
                  loaded once per checkpoint version
  * nav           the pages as st.Page objects, declared once: app.py routes over them, pages
                  link to each other with them (st.page_link)
  * identity      who the user is (name, teacher unlock)

Not here: the pages themselves (pages/, one module per page with `def page()`), and anything
that computes what a page shows (fmnist_core.views, which never imports streamlit).

Why these helpers live outside pages/: in Streamlit 1.67 a server whose entry file sits next
to a `pages/` folder starts in the legacy "every pages/*.py is a page" mode and stays there
until some session calls `st.navigation` (docs: "As soon as any session of your app executes
the st.navigation command, your app will ignore the pages/ directory"). Until then the sidebar
of a first visitor lists every module in pages/, so a helper module there showed up as a page
("Page not found" when clicked). Streamlit skips only `__init__.py` and dot-files there.

The same legacy mode means a first visit to a deep link such as /train executes
pages/train.py as a script instead of app.py. Every page module therefore ends with

    if __name__ == "__main__":  # run as a script by Streamlit's pages/ discovery
        common.run_app()

which hands that one request to app.py, whose `st.navigation` then routes it properly and
switches the legacy mode off for good. Importing a page module (what app.py does) never
triggers it.
"""
import os as _os

# The web process reads the run store for every page view: a tracking server that does not
# answer must cost seconds, not MLflow's default 7 retries x 120 s timeouts (minutes, every
# page's sidebar with it). Pages ask runs.answering() first; these bound a read that starts
# just as the server dies. Trainers this process starts inherit them: their writer retries on
# its own (fmnist_core/execute.py), as tests/test_store_server.py's restart test checks with the same.
WEB_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
            "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
for _k, _v in WEB_HTTP.items():
    _os.environ.setdefault(_k, _v)  # an operator's own choice wins
