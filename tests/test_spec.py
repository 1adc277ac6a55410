"""One run spec (fmnist_core/spec.py): built from a preset and overrides, validated once, one
translator to and from the store; anything invalid refused with a sentence naming the field,
before any run exists (the CLI included)."""
from __future__ import annotations

import pytest

from fmnist_core import runs
from fmnist_core.errors import ConfigError
from fmnist_core.models import CNNConfig, MLPConfig
from fmnist_core.spec import RunSpec
from fmnist_core.train import TrainConfig

from conftest import run_cli


def test_preset_with_overrides_round_trips_through_the_store(store):
    spec = RunSpec.from_preset("mlp-seed001", train={"epochs": 2, "lr": 3e-3}, train_limit=5000)
    assert spec.preset == "mlp-seed001" and spec.train.batch_size == 32 and spec.train.epochs == 2
    rid = runs.create_run(spec.to_dict(), label="x")
    back = RunSpec.from_dict({k: v for k, v in runs.load_summary(rid)["config"].items()})
    assert back == spec
    params = runs.store().client.get_run(rid).data.params
    assert params["model.hidden"] == "128,64" and params["train.lr"] == "0.003" and params["train_limit"] == "5000"


def test_a_changed_model_is_not_the_preset():
    assert RunSpec.from_preset("mlp-seed000", model={"hidden": (64,)}).preset is None


@pytest.mark.parametrize("bad, field", [
    ({"train": {"threads": -5}}, "threads"),
    ({"train": {"epochs": 0}}, "epochs"),
    ({"train": {"val_fraction": 0.9}}, "validation fraction"),
    ({"train": {"augment_shift": 100}}, "shift"),
    ({"model": {"kernel": 4}}, "kernel"),
    ({"train_limit": 0}, "train_limit"),
    ({"engine": "jax"}, "engine"),
])
def test_invalid_fields_are_named(bad, field):
    name = "cnn-seed003" if "model" in bad else "mlp-seed000"
    with pytest.raises(ConfigError, match=field):
        RunSpec.from_preset(name, **bad)


def test_a_last_batch_of_one_under_batchnorm_is_refused_up_front():
    """641 training images at batch 64 leave one image in the last batch: batchnorm's
    statistics of one image are undefined (torch raised after a whole epoch before)."""
    cfg = MLPConfig(hidden=(32,), batchnorm=True)
    with pytest.raises(ConfigError, match="last batch would hold one image"):
        RunSpec(cfg, TrainConfig(batch_size=64), train_limit=64 * 10 + 1).validate()
    RunSpec(cfg, TrainConfig(batch_size=64), train_limit=64 * 10 + 2).validate()
    RunSpec(MLPConfig(hidden=(32,)), TrainConfig(batch_size=64), train_limit=641).validate()  # no batchnorm: fine
    with pytest.raises(ConfigError, match="last batch"):
        RunSpec(CNNConfig(batchnorm=True), TrainConfig(batch_size=7, val_fraction=0.2)).validate()  # 48,000 = 7k + 1


def test_unknown_keys_in_a_stored_spec_are_refused():
    d = RunSpec.from_preset("mlp-seed000").to_dict()
    with pytest.raises(ConfigError, match="unknown run spec keys: evil"):
        RunSpec.from_dict({**d, "evil": 1})
    with pytest.raises(ConfigError, match="unknown training options: nope"):
        RunSpec.from_dict({**d, "train_config": {**d["train_config"], "nope": 1}})


def test_cli_refuses_bad_flags_before_any_run_exists(store):
    out = run_cli("train", "--preset", "mlp-seed000", "--threads", "-5")
    assert out.returncode != 0 and "threads must be" in out.stderr and "Traceback" not in out.stderr
    out = run_cli("train", "--arch", "mlp", "--hidden", "32", "--batchnorm", "--batch-size", "64",
                  "--train-limit", "641")
    assert out.returncode != 0 and "last batch would hold one image" in out.stderr
    assert runs.list_runs() == []
