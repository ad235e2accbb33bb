"""Config validation: a dataset name that nothing provides is refused before any job, by its key."""
import subprocess

import pytest

from bmip.config import ConfigError, load_config
from bmip.config_checks import check_dataset_names
from tests.workflow.reduced import REPO, reduced_config, snakemake_command


def check(path, overrides):
    config = load_config(path, overrides)
    check_dataset_names(config)
    return config


def test_a_typo_in_a_dataset_name_is_named_by_key_with_the_nearest_names():
    with pytest.raises(ConfigError) as err:
        check(REPO / "config" / "config.yaml", ["protocols.base2novel.datasets=[toys, stickers, toyz]"])
    message = str(err.value)
    assert "protocols.base2novel.datasets[2]: 'toyz'" in message and "did you mean 'toys'" in message
    assert "datasets[0]" not in message and "datasets[1]" not in message


def test_registry_names_miniworld_names_and_folders_are_accepted_and_other_spellings_named(tmp_path):
    config = check(REPO / "config" / "paper.yaml", ["protocols.cross_dataset.targets=[oxford_pets, oxford_flowers]"])
    assert config["protocols"]["cross_dataset"]["targets"] == ["oxford_pets", "oxford_flowers"]
    # Another spelling of a registry dataset: its jobs file results under the registry's name.
    with pytest.raises(ConfigError, match=r"targets\[0\]: 'OxfordPets' is the registry dataset 'oxford_pets'; "
                                          r"write 'oxford_pets'(.|\n)*'Flowers102' is the registry dataset"):
        check(REPO / "config" / "paper.yaml", ["protocols.cross_dataset.targets=[OxfordPets, Flowers102]"])
    (tmp_path / "my_data").mkdir()
    check(REPO / "config" / "paper.yaml", [f"data_root={tmp_path}", "protocols.base2novel.datasets=[my_data]",
                                           "analysis.datasets=[my_data]"])
    with pytest.raises(ConfigError, match=r"analysis.datasets: \['eurosat', 'dtd'\] not among .*choose analysis.datasets"):
        check(REPO / "config" / "paper.yaml", [f"data_root={tmp_path}", "protocols.base2novel.datasets=[my_data]"])
    with pytest.raises(ConfigError, match=r"protocols.cross_dataset.source: 'imagenett'.*did you mean 'imagenet'"):
        check(REPO / "config" / "paper.yaml", ["protocols.cross_dataset.source=imagenett"])


def test_check_config_refuses_an_unknown_dataset(tmp_path):
    import sys

    done = subprocess.run([sys.executable, "-m", "bmip.cli", "check-config", str(REPO / "config" / "config.yaml"),
                           "--set", "protocols.cross_dataset.source=objets"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "protocols.cross_dataset.source: 'objets'" in done.stderr
    assert "did you mean 'objects'" in done.stderr


def test_the_workflow_refuses_an_unknown_dataset_before_any_job(tmp_path):
    config = reduced_config(tmp_path)
    text = config.read_text().replace("targets:\n    - toy_b", "targets:\n    - toy_c", 1)
    config.write_text(text)
    done = subprocess.run(snakemake_command(tmp_path, config, "--cores", "1"), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode != 0
    assert "[0]: 'toy_c'" in done.stderr and "did you mean 'toy_b'" in done.stderr
    assert not (tmp_path / "results").exists()  # nothing ran, nothing written


def test_a_dataset_kept_outside_data_root_is_read_from_its_folder_named_as_under_data_root(tmp_path):
    from bmip.config import read_config
    from bmip.config_checks import check_config
    from bmip.data import dataset_root
    from tests.engine.toy import make_toy_dataset

    make_toy_dataset(tmp_path / "elsewhere", "my_data")
    make_toy_dataset(tmp_path / "elsewhere", "Renamed")
    paper = REPO / "config" / "paper.yaml"

    def check(path, overrides):
        return check_config(*read_config(path, overrides))

    overrides = [f"data_root={tmp_path / 'root'}", "protocols.base2novel.datasets=[my_data]", "analysis.datasets=[]",
                 "protocols.cross_dataset.targets=[eurosat]"]
    config = check(paper, [*overrides, f"datasets.my_data={tmp_path / 'elsewhere' / 'my_data'}"])
    assert dataset_root(config, "my_data") == tmp_path / "elsewhere"
    assert dataset_root(config, "eurosat") == tmp_path / "root"
    with pytest.raises(ConfigError, match=r"datasets\.my_data: the folder must be named 'my_data' .* not 'Renamed'"):
        check(paper, [*overrides, f"datasets.my_data={tmp_path / 'elsewhere' / 'Renamed'}"])
    with pytest.raises(ConfigError, match=r"datasets\.my_data: .*gone does not exist"):
        check(paper, [*overrides, f"datasets.my_data={tmp_path / 'gone'}"])
    with pytest.raises(ConfigError, match=r"datasets\.eurosat: the folder must be named 'eurosat' \(CoOp's folder name"):
        check(paper, [*overrides, f"datasets.eurosat={tmp_path / 'elsewhere' / 'Renamed'}"])
