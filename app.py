"""Fashion-MNIST Workbench: Streamlit entry point (routing only; pages live in pages/)."""
from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="Fashion-MNIST Workbench", page_icon="👕", layout="wide")


def home() -> None:
    from fmnist_core.data import CLASSES, load, summary
    import numpy as np

    st.title("Fashion-MNIST Workbench")
    ds = st.cache_resource(load)()
    s = summary(ds)
    st.write(f"**{s['train']:,}** training and **{s['test']:,}** test images, read from `{s['source']}`.")
    cols = st.columns(10)
    for k, col in enumerate(cols):
        idx = int(np.flatnonzero(ds.y_train == k)[0])
        col.image(ds.x_train[idx], caption=CLASSES[k], width=84)


pg = st.navigation([st.Page(home, title="Home", icon="🏠", default=True)])
pg.run()
