"""The pre-flight check: every recipe of the shipped configs builds; a bad one is named by its keys."""
import pytest

from bmip.config import ConfigError, apply_overrides, load_config, validate
from bmip.engine.check import check_recipes
from tests.workflow.reduced import REPO


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_every_recipe_of_the_shipped_configs_builds_on_its_backbone(name):
    config = load_config(REPO / "config" / name)
    assert check_recipes(config) == len(config["methods"]) * 2  # base2novel and cross_dataset recipes


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
