"""`bmip download` and `bmip splits` plug into the main parser and return exit codes."""
from __future__ import annotations

import argparse
import json

from bmip.data import cli, load_dataset, read_fewshot_split

from .helpers import touch_all


def parse(argv):
    parser = argparse.ArgumentParser(prog="bmip")
    cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def _dataset(root):
    d = root / "mini"
    rows = [[f"c{y}/{i}.png", y, f"c{y}"] for y in range(2) for i in range(6)]
    touch_all(d / "images", [r[0] for r in rows])
    (d / "split.json").write_text(json.dumps({"train": rows, "val": rows, "test": rows}))
    return d


def test_splits_writes_every_shots_seed_pair(tmp_path):
    _dataset(tmp_path)
    args = parse(["splits", "mini", "--root", str(tmp_path), "--shots", "1", "4", "--seed", "1", "2",
                  "--out", str(tmp_path / "splits")])
    assert args.func(args) == 0
    files = sorted(p.name for p in (tmp_path / "splits" / "mini").iterdir())
    assert files == ["shot_1-seed_1.json", "shot_1-seed_2.json", "shot_4-seed_1.json", "shot_4-seed_2.json"]
    train, val = read_fewshot_split(tmp_path / "splits" / "mini" / "shot_4-seed_2.json",
                                    load_dataset("mini", tmp_path))
    assert len(train) == 8 and len(val) == 8


def test_splits_reports_a_missing_dataset(tmp_path, caplog):
    args = parse(["splits", "dtd", "--root", str(tmp_path), "--out", str(tmp_path / "o")])
    assert args.func(args) == 1
    assert "bmip download dtd" in caplog.text


def test_download_exit_codes(tmp_path, caplog):
    args = parse(["download", "mnist", "--root", str(tmp_path)])
    assert args.func(args) == 1 and "unknown dataset" in caplog.text
    (tmp_path / "imagenet").mkdir()
    (tmp_path / "imagenet" / "classnames.txt").write_text("n01440764 tench\n")
    (tmp_path / "imagenet" / "imagenet_prompt.json").write_text('{"tench": ["a fish."]}')  # CoPrompt's, in place
    args = parse(["download", "imagenet", "--root", str(tmp_path), "--no-progress"])
    assert args.func(args) == 2 and "image-net.org" in caplog.text
