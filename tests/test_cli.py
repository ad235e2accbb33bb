"""What `bmip` prints: its own progress at INFO, other libraries' chatter only with -v, and no
warning about random weights where they were asked for; help for every subcommand and option, the
choices of --method and --dataset, --version, and docs/cli.md as the parser's command list."""
import argparse
import subprocess
import sys

import bmip
from bmip.cli import COMMAND_GROUPS, OTHER, REFERENCE, REGENERATE, build_parser, command_groups, command_reference
from bmip.data.registry import DATASETS
from bmip.methods import method_names
from bmip.miniworld.datasets import DATASETS as MINIWORLD
from tests.workflow.reduced import REPO


def _check_config(*flags: str) -> str:
    done = subprocess.run([sys.executable, "-m", "bmip.cli", *flags, "check-config", "config/config.yaml"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def test_open_clip_info_lines_only_with_verbose():
    quiet, verbose = _check_config(), _check_config("-v")
    assert "INFO bmip.engine.cli: the config is valid" in quiet
    assert "INFO root:" not in quiet  # open_clip logs each model load on the root logger
    # check-config builds the recipes on random weights on purpose: open_clip's warning about that is dropped
    assert "No pretrained weights loaded" not in quiet + verbose
    assert "INFO root:" in verbose and "INFO bmip.engine.cli: the config is valid" in verbose


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_subcommand_and_option_says_what_it_does():
    commands = _subcommands()
    assert len(commands) >= 24
    groups = command_groups(build_parser())
    helps = {name: help for listed in groups.values() for name, help in listed}
    silent = [name for name in commands if not helps.get(name) or not commands[name].description]
    silent += [f"{name} {action.option_strings[-1] if action.option_strings else action.dest}"
               for name, parser in commands.items() for action in parser._actions
               if not action.help or action.help == argparse.SUPPRESS]
    assert not silent, f"give these a help text: {silent}"


def test_every_subcommand_is_in_one_group_of_the_help():
    grouped = [name for names in COMMAND_GROUPS.values() for name in names]
    assert len(grouped) == len(set(grouped)), "a subcommand is in two groups of COMMAND_GROUPS"
    assert sorted(grouped) == sorted(_subcommands()), "COMMAND_GROUPS (bmip/cli.py) and the subcommands differ"
    assert OTHER not in command_groups(build_parser())


def test_docs_cli_md_is_the_parser_s_command_list():
    documented = (REPO / REFERENCE).read_text()
    assert documented == command_reference() + "\n", (
        f"{REFERENCE} is not what the parser lists; regenerate it (from the repository root): {REGENERATE}")
    for name in _subcommands():
        assert f"- `bmip {name}`: " in documented


def test_method_and_dataset_options_list_what_they_accept():
    commands = _subcommands()
    for command in ("train", "evaluate", "analyze"):
        method = next(a for a in commands[command]._actions if "--method" in a.option_strings)
        assert all(name in method.help for name in method_names()), command
        assert "<method>@<label>" in method.help, command
    for command in ("train", "evaluate", "features"):
        dataset = next(a for a in commands[command]._actions if "--dataset" in a.option_strings)
        assert all(name in dataset.help for name in [*DATASETS, *MINIWORLD]), command
        assert "data_root" in dataset.help, command


def test_version_names_the_package_and_commit_without_torch():
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "bmip.cli", "--version"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith(f"bmip {bmip.__version__}")
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if commit.returncode == 0:  # a checkout (not an installed copy)
        assert f"git commit {commit.stdout.strip()}" in done.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "torch" not in imported and "open_clip" not in imported
