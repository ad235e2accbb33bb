"""What `bmip` prints: its own progress at INFO, other libraries' chatter only with -v, and no
warning about random weights where they were asked for."""
import subprocess
import sys

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
