"""The method registry: names resolve to their classes, and checking names needs no torch."""
import subprocess
import sys

import pytest

from bmip.methods import (
    METHODS, REGULARIZED_BASES, REGULARIZERS, MethodConfigError, method_class, method_names, split_name,
)


def test_every_registered_name_is_its_class_name():
    for name in METHODS:
        assert method_class(name).name == name


def test_unknown_names_are_refused_listing_the_valid_ones():
    assert split_name("maple+promptsrc") == ("maple", "promptsrc")
    assert split_name("bmip+coprompt") == ("bmip", "coprompt") and split_name("bmip") == ("bmip", None)
    for bad in ("bmipp", "coop+promptsrc", "cocoop+coprompt", "bmip+coprompt+promptsrc"):
        with pytest.raises(MethodConfigError, match="choose one of"):
            split_name(bad)


def test_config_validation_and_the_command_line_import_no_torch():
    """Light jobs (splits, tables, audit) and the workflow's DAG build skip a ~6 s torch start-up."""
    code = ("import sys, bmip.config, bmip.cli, bmip.engine.paths\n"
            "bmip.cli.build_parser()\n"
            "assert 'bmip+promptsrc' in bmip.config.method_names()\n"
            "heavy = sorted(m for m in ('torch', 'open_clip', 'torchvision') if m in sys.modules)\n"
            "print(heavy)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
    assert len(method_names()) == len(METHODS) + len(REGULARIZERS) * len(REGULARIZED_BASES)
