"""The pre-flight check: every recipe of the shipped configs builds; a bad one is named by its keys."""
import pytest

from bmip.config import ConfigError, apply_overrides, load_config, validate
from bmip.engine.check import check_recipes
from tests.workflow.reduced import REPO


# Builds beyond one per (training, method): each distinct per-dataset option set builds once. The
# paper's MMRL base-to-novel recipe has 8 (its released λ per dataset: 7, 6, 5, 4, 3, 0.5, 0.2, and
# EuroSAT's 0.01 with rep_dim 2048), so 7 more.
PER_DATASET_BUILDS = {"config.yaml": 0, "paper.yaml": 7}


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_every_recipe_of_the_shipped_configs_builds_on_its_backbone(name):
    config = load_config(REPO / "config" / name)
    # base2novel and cross_dataset recipes
    assert check_recipes(config) == len(config["methods"]) * 2 + PER_DATASET_BUILDS[name]


def test_recipes_that_do_not_fit_are_all_named_by_their_config_keys():
    config = load_config(REPO / "config" / "config.yaml")
    bad = validate(apply_overrides(config, ["recipes.cross_dataset.vpt.options.depth=5",
                                            "recipes.default.ivlp.options.text_depth=7"]))
    with pytest.raises(ConfigError) as err:
        check_recipes(bad)
    message = str(err.value)
    assert ("recipes.default.vpt.options + recipes.cross_dataset.vpt.options (cross_dataset training on mini-vit): "
            "method 'vpt': depth=5 must lie in 0..4") in message
    assert "recipes.default.ivlp.options (base2novel training on mini-vit): method 'ivlp': text_depth=7" in message
    assert "vpt.options (base2novel" not in message  # the base2novel vpt recipe is fine
