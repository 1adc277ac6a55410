"""'Fool the model' on the Predict page and the robustness curve on the Results page, under
AppTest: the attack follows the slider and the picker, the smallest-epsilon search's "Try it"
puts a flipping epsilon on the slider; the Results expander computes a curve with a progress
bar, caches it, and draws it on the next visit."""
from __future__ import annotations

from page_util import finished_run, metrics, model, page_app, rerun_until, stand_in, texts  # noqa: F401 (fixtures)


def test_fool_the_model_on_a_test_image(model):
    from fmnist_core import adversarial
    from fmnist_core.data import load
    from fmnist_core.models import load_model
    at = page_app("predict").run()
    at.radio(key="pr_source").set_value("test").run()
    at.number_input(key="pr_test_idx").set_value(0).run()
    assert not at.exception
    m = metrics(at)
    x = load().x_test[0] / 255.0
    # a new input starts where FGSM changes its answer (8/255 when that is enough; issue 25)
    net = load_model(model["path"])
    start = 8 if adversarial.attack_one(net, x, "FGSM", 8 / 255)["flipped"] else round(
        adversarial.smallest_flip(net, x, "FGSM", search_max=64 / 255)["epsilon"] * 255)
    expected = adversarial.attack_one(net, x, "FGSM", start / 255)
    assert expected["flipped"] and m["After the attack"] == expected["after"]["label"] != m["PyTorch says"]
    assert f"ε = {start}/255" in m
    # epsilon 0: nothing changes
    at.slider(key="pf_level").set_value(0).run()
    assert metrics(at)["After the attack"] == m["PyTorch says"]
    assert "does not change the answer" in texts(at)
    # the search, then "Try it": the answer changes at exactly that epsilon
    at.radio(key="pf_attack").set_value("PGD").run()
    at.button(key="pf_search").click().run()
    assert not at.exception
    assert "The smallest ε that makes **PGD** change the answer" in texts(at)
    at.button(key="pf_try").click().run()
    level = at.slider(key="pf_level").value
    assert level > 0
    assert metrics(at)["After the attack"] != m["PyTorch says"]
    assert f"PGD with ε = {level / 255:.3f} turns" in texts(at)
    # another attack forgets the search (it was PGD's)
    at.radio(key="pf_attack").set_value("FGSM").run()
    assert "The smallest ε" not in texts(at) and not at.exception


def test_results_robustness_curve_is_computed_once_then_drawn(finished_run, monkeypatch):
    from fmnist_core import adversarial
    # two epsilons keep this fast: the same code path as the full list
    monkeypatch.setattr(adversarial, "CURVE_EPSILONS", (0.0, 0.05))
    monkeypatch.setattr(adversarial, "ATTACKS", ("FGSM",))
    at = page_app("results").run()
    assert not at.exception
    btn = at.button(key="res_robust_btn")
    assert btn.label.startswith("Compute the FGSM curve of ")
    btn.click().run()
    assert not at.exception
    # a shared job of the dispatcher computes it in its own process; the page shows its progress
    assert [p for p in at.get("progress") if "FGSM curve of" in p.proto.text]
    rerun_until(at, lambda at: [c for c in at.get("plotly_chart") if "res_robust_chart" in str(c.proto.id)],
                timeout=300)
    chart = [c for c in at.get("plotly_chart") if "res_robust_chart" in str(c.proto.id)]
    assert chart, "no robustness chart after computing"
    # cached on disk: the button is gone, nothing is computed again
    monkeypatch.setattr(adversarial, "perturb", lambda *a, **k: (_ for _ in ()).throw(AssertionError("again")))
    at = page_app("results").run()
    assert not at.exception and not [b for b in at.button if b.key == "res_robust_btn"]


def test_a_tab_that_asks_too_fast_is_told_to_wait(model, monkeypatch):
    """Cheap work in the web process (an attack, an attribution) is rate-limited per tab: past
    the limit the page says so in a sentence and computes nothing, and the server keeps serving."""
    from fmnist_core import adversarial
    from fmnist_core.ratelimit import RateLimiter
    import ui.common
    monkeypatch.setattr(ui.common, "_CHEAP", RateLimiter(rate_per_s=0.001, burst=3))
    calls = []
    real = adversarial.attack_one
    monkeypatch.setattr(adversarial, "attack_one", lambda *a, **k: calls.append(1) or real(*a, **k))
    at = page_app("predict").run()
    at.radio(key="pr_source").set_value("test").run()
    for level in (3, 5, 7, 9):
        at.slider(key="pf_level").set_value(level).run()
    assert not at.exception
    assert any("asked for a lot in a few seconds" in w.value for w in at.warning)
    assert len(calls) <= 3  # nothing computed past the limit
    assert "PyTorch says" in metrics(at)  # the prediction itself is still served
