"""A recipe may carry its method's model selection over the config's `selection:` (HiCroPL's
release keeps the best validation epoch; MMRL's and BMIP's the last)."""
import copy

import pytest
import yaml

from bmip.config import ConfigError, validate
from bmip.engine.dependencies import settings
from bmip.recipes import run_config, selects_best_val


def _config(**changes):
    raw = yaml.safe_load(open("config/paper.yaml"))
    raw.update(changes)
    return validate(raw, "config/paper.yaml")


def test_a_recipe_selection_overrides_the_config_for_its_runs_only():
    config = _config()
    assert config["selection"]["mode"] == "last"
    hicropl = run_config(config, "base2novel", "hicropl", "dtd", 1)["selection"]
    assert hicropl == {"mode": "best_val", "patience": 1000, "min_epoch": 0, "margin": 0}
    assert run_config(config, "base2novel", "mmrl", "dtd", 1)["selection"] == config["selection"]
    # ImageNet's validation list is its test set: the release's recipe keeps the last epoch there.
    assert run_config(config, "base2novel", "hicropl", "imagenet", 1)["selection"]["mode"] == "last"
    assert "selection" not in run_config(config, "base2novel", "hicropl", "dtd", 1)["recipe"]


def test_a_user_recipe_sets_selection_and_a_typo_in_it_is_refused():
    config = _config(recipes={"default": {"mmrl": {"selection": {"mode": "best_val", "patience": 2}}}})
    assert run_config(config, "base2novel", "mmrl", "dtd", 1)["selection"]["patience"] == 2
    with pytest.raises(ConfigError, match="patiense"):
        _config(recipes={"default": {"mmrl": {"selection": {"patiense": 2}}}})


def test_training_depends_on_the_eval_batch_size_only_where_a_run_selects_on_validation():
    with_hicropl = _config()
    without = _config(methods=["zsclip", "coop", "bmip"], ablations={}, analysis={"methods": []})
    assert selects_best_val(with_hicropl) and not selects_best_val(without)
    assert "eval_batch_size" in settings(with_hicropl, "train")
    assert "eval_batch_size" not in settings(without, "train")
    changed = copy.deepcopy(without)
    changed["selection"]["mode"] = "best_val"
    assert "eval_batch_size" in settings(changed, "train")
