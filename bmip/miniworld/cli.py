"""Subcommands ``miniworld-generate``, ``miniworld-pretrain``, ``miniworld-figure``, ``miniworld-check``.

``bmip.cli`` calls ``register(subparsers)``; every handler takes the parsed args and returns an exit code.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from bmip.miniworld.datasets import SIZES, generate_world
from bmip.io import write_json

log = logging.getLogger(__name__)


def _generate(args: argparse.Namespace) -> int:
    generate_world(args.root, seed=args.seed, size=args.size, force=args.force, workers=args.workers)
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from bmip.miniworld.pretrain import PretrainConfig, default_checkpoint, pretrain

    if args.out is None and args.root is None:
        log.error("miniworld-pretrain needs --out or --root (then it writes <root>/pretrained/mini-vit.pt)")
        return 2
    out = args.out if args.out is not None else default_checkpoint(args.root)
    overrides = {"steps": args.steps} if args.steps is not None else {}
    pretrain(out, PretrainConfig(seed=args.seed, **overrides), threads=args.threads)
    return 0


def _figure(args: argparse.Namespace) -> int:
    from bmip.miniworld.figure import sample_figure

    sample_figure(args.root, args.out, per_row=args.per_row)
    return 0


def _check(args: argparse.Namespace) -> int:
    import torch

    from bmip.miniworld.check import CoOpSettings, coop_base_accuracy, zero_shot_report
    from bmip.miniworld.pretrain import default_checkpoint, load_pretrained

    torch.set_num_threads(args.threads)
    checkpoint = args.checkpoint or default_checkpoint(args.root)
    report = {"zero_shot": zero_shot_report(checkpoint, args.root)}
    if args.coop:
        model, tokenizer = load_pretrained(checkpoint)
        datasets = [n for n, v in report["zero_shot"].items() if v["role"] == "downstream"]
        report["coop"] = {name: coop_base_accuracy(model, tokenizer, args.root, name, CoOpSettings()) for name in datasets}
    write_json(args.out, report, sort_keys=False)
    log.info("wrote %s", args.out)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the miniworld subcommands to a parent parser's subparsers."""
    p = subparsers.add_parser("miniworld-generate", help="write the procedurally generated mini-datasets")
    p.add_argument("--root", type=Path, required=True, help="data root to write <dataset>/images + split.json into")
    p.add_argument("--seed", type=int, default=0, help="the world's seed: same seed and size, same images (default 0)")
    p.add_argument("--size", choices=sorted(SIZES), default="default", help="images per class preset")
    p.add_argument("--force", action="store_true", help="regenerate even if world.json says it is up to date")
    p.add_argument("--workers", type=int, default=None, help="processes writing datasets (default: up to 2)")
    p.set_defaults(func=_generate)

    p = subparsers.add_parser("miniworld-pretrain", help="contrastively pretrain the tiny CLIP (mini-vit)")
    p.add_argument("--root", type=Path, help="world root; the checkpoint goes to <root>/pretrained/mini-vit.pt")
    p.add_argument("--out", type=Path, help="checkpoint path (a .json sidecar is written next to it)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation and the batches (default 0)")
    p.add_argument("--steps", type=int, default=None, help="optimisation steps (default: PretrainConfig.steps)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads (results depend on it)")
    p.set_defaults(func=_pretrain)

    p = subparsers.add_parser("miniworld-figure", help="PNG figure with sample images of each mini-dataset")
    p.add_argument("--root", type=Path, required=True, help="world root (miniworld-generate --root)")
    p.add_argument("--out", type=Path, required=True, help="the PNG file to write")
    p.add_argument("--per-row", type=int, default=8, help="classes shown per dataset, one test image each (default 8)")
    p.set_defaults(func=_figure)

    p = subparsers.add_parser("miniworld-check", help="zero-shot (and optionally CoOp) accuracy of the tiny CLIP")
    p.add_argument("--root", type=Path, required=True, help="world root (miniworld-generate --root)")
    p.add_argument("--checkpoint", type=Path, help="the tiny CLIP to check (default <root>/pretrained/mini-vit.pt)")
    p.add_argument("--out", type=Path, required=True, help="JSON report")
    p.add_argument("--coop", action="store_true", help="also train the minimal CoOp on each downstream dataset")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (the ops are tiny: 1 is fastest)")
    p.set_defaults(func=_check)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (``python -m bmip.miniworld.cli``) until ``bmip.cli`` registers us."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(prog="python -m bmip.miniworld.cli")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
