"""fmnist_core.views.home: sample pictures, mean images and class balance of the real dataset."""
from __future__ import annotations

from fmnist_core.views import home as view


def test_data_views(ds):
    idx = view.sample_indices(ds.y_train, per_class=4, seed=1)
    assert idx.shape == (10, 4)
    assert all((ds.y_train[idx[k]] == k).all() for k in range(10))
    means = view.mean_images(ds.x_train, ds.y_train)
    assert means.shape == (10, 28, 28) and 0 < means.mean() < 255
    assert view.class_balance(ds)["train"].tolist() == [6000] * 10
