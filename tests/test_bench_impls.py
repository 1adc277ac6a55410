"""The implementations (fmnist_core/bench/impls.py): the folded normalization computes the same
function as the saved module."""
import torch

from fmnist_core.bench.impls import fold_normalization
from fmnist_core.models import build_model, preset


def test_folded_normalization_computes_the_same_function():
    torch.manual_seed(0)
    model = build_model(preset("mlp-seed000")["model"]).eval()
    x = torch.rand(64, 1, 28, 28)
    folded = fold_normalization(model)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-5)
    assert isinstance(model.norm, type(build_model(preset("mlp-seed000")["model"]).norm))  # untouched
    cnn = build_model(preset("cnn-seed003")["model"])
    assert fold_normalization(cnn) is cnn
