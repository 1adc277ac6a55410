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


def test_onednn_mlp_computes_the_same_function():
    """The oneDNN copy of a folded MLP gives the module's logits; a batchnorm MLP it cannot take
    falls back (None), never a wrong copy."""
    from fmnist_core.bench.impls import onednn_mlp
    torch.manual_seed(0)
    model = fold_normalization(build_model(preset("mlp-seed000")["model"]).eval())
    fast = onednn_mlp(model)
    if not torch.backends.mkldnn.is_available():
        assert fast is None
        return
    x = torch.rand(1000, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(fast(x.reshape(1000, -1).to_mkldnn()).to_dense(), model(x), atol=1e-4)
    from dataclasses import replace
    bn = build_model(replace(preset("mlp-seed000")["model"], batchnorm=True)).eval()
    got = onednn_mlp(fold_normalization(bn))
    if got is not None:  # converted: then it must agree
        x = torch.rand(8, 1, 28, 28)
        with torch.no_grad():
            assert torch.allclose(got(x.reshape(8, -1).to_mkldnn()).to_dense(), bn(x), atol=1e-4)
