"""fmnist_core.views.home: sample pictures, mean images and class balance of the real dataset."""
from __future__ import annotations

import numpy as np

from fmnist_core.views import home as view


def test_data_views(ds):
    idx = view.sample_indices(ds.y_train, per_class=4, seed=1)
    assert idx.shape == (10, 4)
    assert all((ds.y_train[idx[k]] == k).all() for k in range(10))
    means = view.mean_images(ds.x_train, ds.y_train)
    assert means.shape == (10, 28, 28) and 0 < means.mean() < 255
    assert view.class_balance(ds)["train"].tolist() == [6000] * 10
    m = view.montage(ds.x_test[:3], factor=2, gap=1)
    assert m.shape == (56, 3 * 56 + 2) and m.dtype == np.uint8
