from __future__ import annotations

import argparse
import json
from pathlib import Path

from bmip.miniworld import cli


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_register_adds_the_subcommands() -> None:
    parser = _parser()
    for argv in (
        ["miniworld-generate", "--root", "r"],
        ["miniworld-pretrain", "--out", "m.pt"],
        ["miniworld-figure", "--root", "r", "--out", "f.png"],
        ["miniworld-check", "--root", "r", "--out", "c.json"],
    ):
        args = parser.parse_args(argv)
        assert callable(args.func)


def test_generate_and_figure_through_the_cli(tmp_path: Path, world_root: Path, world_seed: int) -> None:
    """Generating onto an up-to-date root is a no-op that succeeds (generation itself: test_datasets)."""
    parser = _parser()
    before = (world_root / "world.json").read_bytes()
    args = parser.parse_args(["miniworld-generate", "--root", str(world_root), "--size", "test", "--seed", str(world_seed)])
    assert args.func(args) == 0
    assert (world_root / "world.json").read_bytes() == before
    assert json.loads(before)["spec"]["seed"] == world_seed
    args = parser.parse_args(
        ["miniworld-figure", "--root", str(world_root), "--out", str(tmp_path / "f.png"), "--per-row", "2"]
    )
    assert args.func(args) == 0 and (tmp_path / "f.png").stat().st_size > 0


def test_pretrain_needs_a_destination() -> None:
    args = _parser().parse_args(["miniworld-pretrain"])
    assert args.func(args) == 2
