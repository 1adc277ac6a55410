import gzip
import struct

import numpy as np
import pytest

from fmnist_core import data
from fmnist_core.errors import DataError


def test_real_dataset_shapes_and_counts(ds):
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_train.dtype == np.uint8
    assert ds.x_test.shape == (10000, 28, 28)
    assert data.class_counts(ds.y_train) == [6000] * 10
    assert data.class_counts(ds.y_test) == [1000] * 10
    # real images: mean pixel intensity of Fashion-MNIST's training set is ~72.9/255
    assert 70 < ds.x_train.mean() < 76
    assert not ds.x_train.flags.writeable  # shared by every session: read-only


def test_class_names():
    assert data.CLASSES[0] == "T-shirt/top" and data.CLASSES[9] == "Ankle boot" and len(data.CLASSES) == 10


def test_cached_reload_matches_parse(ds):
    parsed = data.parse_idx(data._find_file(data.Path(ds.source), "t10k-labels-idx1-ubyte"),
                            data.LABELS_MAGIC, 10000)
    assert np.array_equal(parsed, ds.y_test)


def _write_labels(path, labels, magic=data.LABELS_MAGIC, count=None, gz=False):
    raw = struct.pack(">II", magic, len(labels) if count is None else count) + bytes(labels)
    if gz:
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


def test_corrupt_magic_is_named(tmp_path):
    p = _write_labels(tmp_path / "x", [1] * 10000, magic=1234)
    with pytest.raises(DataError, match="magic number 1234"):
        data.parse_idx(p, data.LABELS_MAGIC, 10000)


def test_truncated_plain_file(tmp_path):
    p = _write_labels(tmp_path / "x", [1] * 9000, count=10000)
    with pytest.raises(DataError, match="truncated: 9000 data bytes, expected 10000"):
        data.parse_idx(p, data.LABELS_MAGIC, 10000)


def test_truncated_gzip(tmp_path, ds):
    src = data._find_file(data.Path(ds.source), "t10k-images-idx3-ubyte")
    raw = src.read_bytes()
    p = tmp_path / "t10k-images-idx3-ubyte.gz"
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="corrupt or truncated"):
        data.parse_idx(p, data.IMAGES_MAGIC, 10000)


def test_label_out_of_range(tmp_path):
    p = _write_labels(tmp_path / "x.gz", [3] * 9999 + [12], gz=True)
    with pytest.raises(DataError, match="label 12 out of range"):
        data.parse_idx(p, data.LABELS_MAGIC, 10000)


def test_wrong_shape(tmp_path):
    p = _write_labels(tmp_path / "x", [1] * 500)
    with pytest.raises(DataError, match=r"shape \(500,\), expected \(10000,\)"):
        data.parse_idx(p, data.LABELS_MAGIC, 10000)


def test_missing_folder_is_explained(tmp_path):
    with pytest.raises(DataError, match="does not hold the four"):
        data.load(str(tmp_path))


def test_split_is_seeded_and_disjoint():
    a_tr, a_val = data.train_val_split(60000, 0.2, seed=1)
    b_tr, b_val = data.train_val_split(60000, 0.2, seed=1)
    c_tr, _ = data.train_val_split(60000, 0.2, seed=2)
    assert len(a_tr) == 48000 and len(a_val) == 12000
    assert np.array_equal(a_tr, b_tr) and not np.array_equal(a_tr, c_tr)
    assert len(np.intersect1d(a_tr, a_val)) == 0
