"""`bmip download --config`: everything a config's runs read, fetched where there is network (a
cluster's login node), and the message a machine without network gives."""
from __future__ import annotations

import json
import logging
import socket
import urllib.error

import pytest
import yaml

from bmip.data import cli
from bmip.data.errors import DownloadError

from .test_cli import parse


def _config(tmp_path, **backbone):
    own = tmp_path / "data" / "my_data"
    own.mkdir(parents=True)
    config = {"experiment": "x", "data_root": str(tmp_path / "data"), "methods": ["coop"], "seeds": [1],
              "protocols": {"base2novel": {"datasets": ["my_data", "eurosat"]}},
              "backbone": {"model": "ViT-B-16", "pretrained": "openai", "cache_dir": str(tmp_path / "weights"),
                           **backbone}}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_config_names_its_registry_datasets_and_weights_and_leaves_own_folders_alone(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    fetched, weights = [], []
    monkeypatch.setattr(cli, "download", lambda name, root, **_: fetched.append((name, root)) or root / name)
    monkeypatch.setattr("bmip.backbone.resolve_weights",
                        lambda model, tag, cache: weights.append((model, tag, cache)) or (tmp_path / "w.pt", True))
    config = _config(tmp_path)
    args = parse(["download", "--config", str(config), "--stamp", str(tmp_path / "ready.json")])
    assert args.func(args) == 0
    assert fetched == [("eurosat", tmp_path / "data")]  # my_data is the user's folder
    assert weights == [("ViT-B-16", "openai", str(tmp_path / "weights"))]
    assert "not fetched (your own data or the generated miniworld): my_data" in caplog.text
    assert json.loads((tmp_path / "ready.json").read_text())["datasets"] == {"eurosat": str(tmp_path / "data" / "eurosat")}

    fetched.clear()
    args = parse(["download", "--config", str(config), "--weights-only", "--stamp", str(tmp_path / "w.json")])
    assert args.func(args) == 0 and fetched == []
    assert json.loads((tmp_path / "w.json").read_text())["weights"]["file"] == str(tmp_path / "w.pt")


def test_names_and_a_config_together_or_neither_are_refused(tmp_path, caplog):
    config = _config(tmp_path)
    for argv, text in [(["download", "eurosat", "--config", str(config)], "not both"),
                       (["download"], "name the datasets"), (["download", "eurosat"], "--root"),
                       (["download", "--weights-only", "--root", str(tmp_path)], "needs --config")]:
        args = parse(argv)
        assert args.func(args) == 1, argv
        assert text in caplog.text, argv


def _offline(monkeypatch):
    def no_dns(*_args, **_kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)


def test_a_download_on_a_machine_without_network_says_so_and_what_to_run_where(tmp_path, monkeypatch, caplog):
    _offline(monkeypatch)

    def fails(name, root, **_):
        raise DownloadError(f"{name}: every mirror failed (<urlopen error [Errno -2] Name or service not known>)")

    monkeypatch.setattr(cli, "download", fails)
    args = parse(["download", "eurosat", "--root", str(tmp_path)])
    assert args.func(args) == 1
    assert f"this machine ({socket.gethostname()}) has no network: huggingface.co, " in caplog.text
    assert "bmip download --config <your config>" in caplog.text and "login node" in caplog.text


def test_missing_weights_on_a_machine_without_network_name_the_cache_and_the_command(tmp_path, monkeypatch):
    from bmip.backbone import BackboneError, resolve_weights

    def no_network(*_args, **_kwargs):
        raise urllib.error.URLError(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))

    monkeypatch.setattr("open_clip.pretrained.download_pretrained", no_network)
    with pytest.raises(BackboneError) as err:
        resolve_weights("ViT-B-16", "openai", str(tmp_path / "cache"))
    message = str(err.value)
    assert f"not cached in {tmp_path / 'cache'}" in message and socket.gethostname() in message
    assert "bmip download --config <your config>" in message and "ViT-B-16.pt" in message


def _without_network(*argv):
    """`bmip download` in a network namespace of its own: no interface but loopback, no DNS (a compute
    node without network)."""
    import subprocess
    import sys
    import time

    start = time.monotonic()
    done = subprocess.run(["unshare", "-n", sys.executable, "-m", "bmip.cli", "download", *argv, "--no-progress"],
                          capture_output=True, text=True, timeout=120)
    return done, time.monotonic() - start


def test_on_a_node_without_network_a_dataset_download_fails_at_once_saying_what_to_run_where(tmp_path):
    done, seconds = _without_network("eurosat", "--root", str(tmp_path / "data"))
    assert done.returncode == 1
    assert "its host huggingface.co does not resolve" in done.stderr  # no retries on a name that cannot resolve
    assert f"this machine ({socket.gethostname()}) has no network" in done.stderr
    assert "`bmip download --config <your config>`" in done.stderr
    assert seconds < 30, f"took {seconds:.0f} s"  # retries with backoff took 100 s before


def test_on_a_node_without_network_missing_weights_name_the_cache_and_the_command(tmp_path):
    config = _config(tmp_path)
    done, _ = _without_network("--config", str(config), "--weights-only")
    assert done.returncode == 1
    assert f"not cached in {tmp_path / 'weights'}" in done.stderr and "bmip download --config" in done.stderr
