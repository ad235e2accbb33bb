"""Config validation of `ablations:` and of per-dataset recipe overrides, with their error texts."""
from __future__ import annotations

import copy

import pytest

from bmip.ablations import ablations, method_config
from bmip.config import ConfigError, config_hash, validate
from bmip.config_checks import check_ablations
from bmip.recipes import run_config
from bmip.engine.check import check_recipes
from bmip.engine.paths import evaluations, trainings

BASE = {
    "experiment": "abl", "data_root": "data", "backbone": {"model": "test-vit-tiny", "pretrained": "none"},
    "seeds": [1, 2, 3], "methods": ["coop", "bmip"],
    "protocols": {"base2novel": {"datasets": ["toy", "toy_b", "toy_c"]},
                  "cross_dataset": {"source": "toy", "targets": ["toy_b", "toy_c"]}},
    "recipes": {"default": {"bmip": {"options": {"depth": 3}}}},
}
MIXING = {"method": "bmip", "datasets": ["toy", "toy_b"], "seeds": [1, 2],
          "variants": {"gate": {}, "sum": {"options": {"aggregation": "sum"}}}}


def _config(ablation=None, **changes):
    config = copy.deepcopy(BASE)
    config["ablations"] = {"mixing": {**copy.deepcopy(MIXING), **(ablation or {})}}
    config.update(changes)
    return config


def _refused(config, *texts, check=False):
    with pytest.raises(ConfigError) as err:
        checked = validate(config)
        check_ablations(checked)
        if check:
            check_recipes(checked)
    for text in texts:
        assert text in str(err.value), str(err.value)


def test_variants_are_named_method_at_label_with_their_own_grid():
    config = validate(_config({"sweep": {"torch_seed": [1, 78]}, "recipe": {"epochs": 1}}))
    (ablation,) = ablations(config)
    assert ablation.names == ["bmip@gate", "bmip@sum", "bmip@torch_seed=1", "bmip@torch_seed=78"]
    assert ablation.reference == "bmip@gate"
    grid = method_config(config, "bmip@sum")
    assert trainings(grid) == [("base2novel", "toy"), ("base2novel", "toy_b")] and grid["seeds"] == [1, 2]
    assert evaluations(grid) == [("base2novel", "toy"), ("base2novel", "toy_b")]
    run = run_config(config, "base2novel", "bmip@sum", "toy", 2)
    assert run["method"] == "bmip@sum" and run["recipe"]["options"] == {"n_ctx": 2, "depth": 3, "aggregation": "sum"}
    assert run["recipe"]["epochs"] == 1 and run["recipe"]["lr"] == 0.002  # BMIP's recipe, the ablation's epochs
    assert run_config(config, "base2novel", "bmip@torch_seed=78", "toy", 2)["torch_seed"] == 78
    assert run_config(config, "base2novel", "bmip", "toy", 2)["torch_seed"] == 2
    assert check_recipes(config) == 4  # coop and bmip, two training protocols; variants build too


@pytest.mark.parametrize("ablation, texts", [
    ({"variants": {"maple": {}}}, ["ablations.mixing.variants.maple: a variant's name must not be a method name"]),
    ({"method": "bmpi"}, ["ablations.mixing.method: unknown method 'bmpi'"]),
    ({"protocols": ["open_world"]}, ["ablations.mixing.protocols[0]: 'open_world' is not a protocol of this config"]),
    ({"datasets": ["toy", "pets"]}, ["ablations.mixing.datasets[1]: 'pets' is not among protocols.base2novel.datasets"]),
    ({"seeds": [1, 4]}, ["ablations.mixing.seeds[1]: seed 4 is not among the config's seeds [1, 2, 3]",
                         "vary torch_seed instead"]),
    ({"reference": "mean"}, ["ablations.mixing.reference: 'mean' is not one of its variants ['gate', 'sum']"]),
    ({"sweep": {"depth": [1, 2], "n_ctx": [1]}}, ["ablations.mixing.sweep", "has too many properties"]),
    ({"variants": {"gate": {"optoins": {}}}}, ["ablations.mixing.variants.gate", "'optoins' was unexpected"]),
    ({"sweep": {"torch_seed": [1, 2.5]}}, ["ablations.mixing.sweep.torch_seed[1]: torch_seed 2.5 is not a non-negative integer"]),
    ({"sweep": {"lr": [0.01, -1]}}, ["ablations.mixing.sweep.lr[1]: -1 is less than or equal to the minimum of 0",
                                     "(recipe key 'lr')"]),
])
def test_inconsistent_ablations_are_refused_naming_the_key(ablation, texts):
    _refused(_config(ablation), *texts)


def test_a_run_name_declared_by_two_ablations_is_refused():
    config = _config()
    config["ablations"]["again"] = copy.deepcopy(MIXING)
    _refused(config, "ablations.again.variants.gate: the run name 'bmip@gate' is already declared by "
                     "ablations.mixing.variants.gate")


@pytest.mark.parametrize("ablation, texts", [
    ({"variants": {"gate": {}, "bad": {"options": {"aggregaton": "sum"}}}},
     ["ablations.mixing.variants.bad (variant bmip@bad, base2novel training on test-vit-tiny)",
      "unknown option(s) ['aggregaton']"]),
    ({"variants": {"gate": {}, "bad": {"options": {"aggregation": "max"}}}},
     ["ablations.mixing.variants.bad", "option aggregation: unknown value 'max'"]),
    ({"sweep": {"depth": [2, 13]}}, ["ablations.mixing.sweep.depth[1] = 13 (variant bmip@depth=13", "depth"]),
    ({"sweep": {"n_ctx": [0.5]}}, ["ablations.mixing.sweep.n_ctx[0] = 0.5"]),
])
def test_check_config_refuses_variants_the_method_or_backbone_cannot_take(ablation, texts):
    _refused(_config(ablation), *texts, check=True)


def test_per_dataset_overrides_enter_the_run_config_and_its_hash():
    plain = validate(copy.deepcopy(BASE))
    config = copy.deepcopy(BASE)
    config["recipes"]["default"]["bmip"]["datasets"] = {"toy_b": {"lr": 0.01, "options": {"n_ctx": 4}}}
    config = validate(config)
    toy_b = run_config(config, "base2novel", "bmip", "toy_b", 1)
    assert toy_b["recipe"]["lr"] == 0.01 and toy_b["recipe"]["options"] == {"n_ctx": 4, "depth": 3}
    assert "datasets" not in toy_b["recipe"]
    assert run_config(config, "base2novel", "bmip", "toy", 1) == run_config(plain, "base2novel", "bmip", "toy", 1)
    assert config_hash(toy_b) != config_hash(run_config(plain, "base2novel", "bmip", "toy_b", 1))
    assert check_recipes(config) == 5  # the toy_b options build as their own recipe


def test_per_dataset_overrides_are_validated_naming_the_key():
    config = copy.deepcopy(BASE)
    config["recipes"]["default"]["bmip"]["datasets"] = {"toy": {"lrr": 0.01}}
    _refused(config, "recipes.default.bmip.datasets.toy", "'lrr' was unexpected")
    config["recipes"]["default"]["bmip"]["datasets"] = {"toy": {"options": {"depth": 20}}}
    _refused(config, "recipes.default.bmip.datasets.toy.options (base2novel training on test-vit-tiny)", check=True)
