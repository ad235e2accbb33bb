"""The config is strict where a typo would be silent: every name under `recipes:` exists, a key
given twice is refused by its lines, 4e-3 is a number, a YAML error names its file and line, and
one message lists every problem of a config."""
import logging
import re
import subprocess
import sys

import pytest

from bmip.config import ConfigError, load_config, parse_yaml, read_config, read_config_files, validate, workflow_config
from bmip.config_checks import check_config
from bmip.recipes import run_config
from tests.workflow.reduced import REPO

DEFAULT = (REPO / "config" / "config.yaml").read_text()
PAPER = REPO / "config" / "paper.yaml"
BMIP = "    bmip: {epochs: 3, warmup_epochs: 0, batch_size: 16, lr: 0.004, options: {depth: 3}}\n"


def _edited(tmp_path, *edits: tuple[str, str]):
    """config/config.yaml with a user's edits (old text, new text), as a file."""
    text = DEFAULT
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp_path / "my.yaml"
    path.write_text(text)
    return path


def _refused(path, *overrides: str) -> str:
    with pytest.raises(ConfigError) as err:
        check_config(*read_config(path, list(overrides)))
    return str(err.value)


def _line(path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.startswith(text))


def test_the_shipped_configs_pass_without_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="bmip.config"):
        config = check_config(*read_config(REPO / "config" / "config.yaml"))
        check_config(*read_config(PAPER))  # every dataset name is the registry's: no data needed
    assert caplog.records == []
    assert config["recipes"]["default"]["bmip"]["lr"] == 0.004


def test_a_misspelt_method_under_recipes_is_refused_with_the_nearest_names(tmp_path):
    path = _edited(tmp_path, ("    coop: {epochs: 5,", "    cop: {epochs: 5,"))
    message = _refused(path)
    assert f"{path}: recipes.default.cop: 'cop' is not a method, so this recipe would never be used; " \
           "did you mean 'coop'" in message


def test_bmpi_is_named_as_the_user_wrote_it_by_check_config(tmp_path):
    path = _edited(tmp_path, (BMIP, BMIP.replace("bmip:", "bmpi:")))
    done = subprocess.run([sys.executable, "-m", "bmip.cli", "check-config", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "recipes.default.bmpi: 'bmpi' is not a method" in done.stderr and "did you mean 'bmip'?" in done.stderr
    assert "depth=9" not in done.stderr  # before: the package recipe's depth, a value not in the user's file


def test_recipe_levels_and_variants_say_where_the_recipe_belongs(tmp_path):
    path = _edited(tmp_path, ("  cross_dataset:  # one epoch", "  base2novel:\n    coop: {epochs: 2}\n  cross_dataset:  #"))
    message = _refused(path)
    assert "recipes: Additional properties are not allowed ('base2novel' was unexpected); 'base2novel': " \
           "base-to-novel models train with recipes.default: put these recipes there" in message
    message = _refused(REPO / "config" / "config.yaml", "recipes.default.bmip@sum.epochs=1")
    assert "recipes.default.bmip@sum: 'bmip@sum' is an ablation variant; a variant's recipe goes under " \
           "ablations.<ablation>.variants.<variant>.recipe" in message


def test_a_misspelt_dataset_under_a_recipe_is_refused_with_the_nearest_names(tmp_path):
    path = _edited(tmp_path, (BMIP, BMIP.replace("depth: 3}}", "depth: 3}, datasets: {toyz: {lr: 0.01}}}")))
    message = _refused(path)
    assert "recipes.default.bmip.datasets.toyz: 'toyz' is no dataset" in message
    assert "did you mean 'toys'" in message
    # a registry spelling the recipe lookup would miss: the config's own spelling is asked for
    message = _refused(PAPER, "recipes.default.bmip.datasets={OxfordPets: {lr: 0.01}}")
    assert "recipes.default.bmip.datasets.OxfordPets: this config spells the dataset 'oxford_pets'" in message
    assert "rename the key to 'oxford_pets'" in message
    # an ablation's recipe: its own datasets (mixing: toys, stickers, fabrics)
    message = _refused(REPO / "config" / "config.yaml", "ablations.mixing.variants.sum.recipe={datasets: {stikers: {lr: 0.01}}}")
    assert "ablations.mixing.variants.sum.recipe.datasets.stikers: 'stikers' is no dataset (the models train on toys, " \
           "stickers, fabrics)" in message and "did you mean 'stickers'" in message


def test_recipes_the_config_never_uses_are_named_in_a_warning(tmp_path, caplog):
    path = _edited(tmp_path, (BMIP, BMIP.replace("depth: 3}}", "depth: 3}, datasets: {objects_r: {lr: 0.01}}}")))
    with caplog.at_level(logging.WARNING, logger="bmip.config"):
        config = check_config(*read_config(path, ["methods=[coop, bmip]", "analysis.methods=[bmip]"]))
    assert config["methods"] == ["coop", "bmip"]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith(f"{path}: recipes.default.cocoop, recipes.default.vpt,")
    assert "recipes.cross_dataset.bmip+coprompt: unused, as this config runs none of these methods " \
           "(it runs coop, bmip, mugcp)" in warnings[0]  # mugcp: the captions ablation's
    assert "recipes.default.coop," not in warnings[0] and "recipes.default.bmip," not in warnings[0]
    assert "recipes.default.mugcp" not in warnings[0]
    assert warnings[1] == (f"{path}: recipes.default.bmip.datasets.objects_r: no model of this config trains on "
                           "'objects_r' (models train on toys, stickers, aerial, fabrics, nightcam, pixelart, objects "
                           "here): its recipe values are unused")


def test_a_key_given_twice_is_refused_naming_the_file_the_key_and_both_lines(tmp_path):
    path = _edited(tmp_path, ("workers: 0\n", "workers: 0\nshots: 2\n"))
    first, second = _line(path, "shots: 2"), _line(path, "shots: 16")
    assert _refused(path) == (f"{path} gives a key twice (YAML would keep the last one and ignore the other without "
                              f"a word); delete one of each:\n  shots: line {first} and line {second}")
    # every key given twice, nested ones by their key path
    path = _edited(tmp_path, ("workers: 0\n", "workers: 0\nshots: 2\n"), (BMIP, BMIP.replace("lr: 0.004", "lr: 0.004, lr: 0.01")))
    bmip = _line(path, "    bmip:")
    assert _refused(path).endswith(f"delete one of each:\n  shots: line {first} and line {second}\n"
                                   f"  recipes.default.bmip.lr: line {bmip} and line {bmip}")


def test_an_exponent_without_a_dot_is_read_as_the_number_it_looks_like(tmp_path):
    path = _edited(tmp_path, (BMIP, BMIP.replace("lr: 0.004", "lr: 4e-3")))
    config = check_config(*read_config(path))
    assert config["recipes"]["default"]["bmip"]["lr"] == 0.004
    overridden = load_config(REPO / "config" / "config.yaml", ["recipes.default.coop.lr=2E-2"])  # bmip --set
    assert overridden["recipes"]["default"]["coop"]["lr"] == 0.02


@pytest.mark.parametrize("text, value", [
    ("4e-3", 0.004), ("1.0e3", 1000.0), ("-4E+03", -4000.0), ("-.5", -0.5), ("0.5", 0.5), ("1.", 1.0),
    ("16", 16), ("007", 7), ("1_000", 1000),  # ints stay ints (YAML 1.1's readings kept)
    ("08", "08"), ("1.2.3", "1.2.3"), ("1e", "1e"), ("e5", "e5"), ("'4e-3'", "4e-3"), ("v1.0", "v1.0"),
])
def test_yaml_numbers(text, value):
    read = parse_yaml(f"x: {text}", "t")["x"]
    assert read == value and type(read) is type(value)


def test_a_number_given_as_text_is_refused_with_the_reason_and_the_fix(tmp_path):
    path = _edited(tmp_path, (BMIP, BMIP.replace("lr: 0.004", "lr: '4e-3'")), ("shots: 16", "shots: '16'"))
    message = _refused(path)
    assert "recipes.default.bmip.lr: '4e-3' is not of type 'number'; '4e-3' is text: quoted, or read by YAML 1.1" in message
    assert "unless it has a dot and a signed exponent; write 4.0e-3 or 0.004" in message
    assert "shots: '16' is not of type 'integer'; '16' is text, not a number" in message
    # what Snakemake hands the workflow from its own reading of a config file
    config = load_config(REPO / "config" / "config.yaml")
    config["recipes"]["default"]["coop"]["lr"] = "1e-2"
    with pytest.raises(ConfigError, match=r"recipes.default.coop.lr: .*write 1.0e-2 or 0.01"):
        validate(config, "the workflow config")


def test_a_yaml_syntax_error_names_the_file_line_and_column(tmp_path):
    path = _edited(tmp_path, ("seeds: [1, 2, 3]\n", "seeds: [1, 2, 3\n"))
    message = _refused(path)
    line = _line(path, "methods:")
    assert message.startswith(f"{path}, line {line}, column 8: expected ',' or ']', but got ':' (while parsing a flow "
                              f"sequence at line {line - 1}, column 8); fix the YAML there")
    path.write_text("shots: 16\nseeds:\n\t- 1\n")
    assert str(_refused(path)).startswith(f"{path}, line 3, column 1: found character '\\t' that cannot start any token")


def test_one_message_lists_every_problem_of_a_config(tmp_path):
    path = _edited(tmp_path, ("    coop: {epochs: 1}", "    cop: {epochs: 1}"),
                   ("    targets: [objects_v2, objects_sketch,", "    targets: [objects_v2, objects_skecth,"),
                   ("    reference: gate", "    reference: gat"))
    message = _refused(path)
    assert message.startswith(f"{path} has 3 problems:\n")
    assert "  recipes.cross_dataset.cop: 'cop' is not a method, so this recipe would never be used; did you mean 'coop'" in message
    assert "  protocols.domain_generalization.targets[1]: 'objects_skecth' is not a registry dataset, a miniworld " \
           "dataset, or a folder under data_root 'resources/miniworld'; did you mean 'objects_sketch'" in message
    assert "  ablations.mixing.reference: 'gat' is not one of its variants ['gate', 'sum', 'mean'," in message
    assert message.endswith("; did you mean 'gate'?")


def test_a_misspelt_variant_or_key_gets_the_nearest_names(tmp_path):
    config = load_config(REPO / "config" / "config.yaml")
    with pytest.raises(ConfigError, match=r"'bmip@sume' is no variant declared .*; did you mean 'bmip@sum'"):
        run_config(config, "base2novel", "bmip@sume", "toys", 1)
    with pytest.raises(ConfigError, match=r"unknown method 'bmpi'; did you mean 'bmip'"):
        run_config(config, "base2novel", "bmpi", "toys", 1)
    path = _edited(tmp_path, ("shots: 16", "shot: 16"))
    assert "(top level): Additional properties are not allowed ('shot' was unexpected); 'shot': did you mean " \
           "'shots'?" in _refused(path)


def test_workflow_config_merges_files_and_config_arguments_as_snakemake_does(tmp_path):
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text("shots: 2\nrecipes: {default: {bmip: {lr: 4e-3, epochs: 1}}}\n")
    two.write_text("recipes:\n  default:\n    bmip: {lr: 5e-3}\n")
    assert read_config_files([one, two]) == {"shots": 2, "recipes": {"default": {"bmip": {"lr": 0.005, "epochs": 1}}}}
    # `--config` values: Snakemake reads 1e-2 and the 4 inside a nested value as text
    merged = workflow_config([str(one), str(two)], ["recipes={default: {coop: {lr: 1e-2, epochs: 4}}}", "shots=16"])
    assert merged == {"shots": 16, "recipes": {"default": {"bmip": {"lr": 0.005, "epochs": 1},
                                                           "coop": {"lr": 0.01, "epochs": 4}}}}
    two.write_text("recipes:\n  default:\n    bmip: {lr: 5e-3}\n    bmip: {lr: 6e-3}\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(two))} gives a key twice .*\n  recipes.default.bmip: line 3 and line 4$"):
        workflow_config([one, two])
    two.write_text("- a list\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(two))} must hold a mapping of settings"):
        read_config_files([one, two])


def test_check_config_takes_a_raw_config_and_returns_it_validated():
    raw = parse_yaml(DEFAULT, "config/config.yaml")
    assert check_config(raw, "the workflow config") == load_config(REPO / "config" / "config.yaml")
