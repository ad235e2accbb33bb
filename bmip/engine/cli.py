"""`bmip train` and `bmip evaluate`: what each Snakemake job calls, also usable alone."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from bmip.config import load_config

log = logging.getLogger(__name__)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment config (YAML), e.g. config/config.yaml")
    parser.add_argument("--method", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path, help="output folder (default: from the config's results layout)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set recipes.default.bmip.lr=0.001 (repeatable)")


def run_train(args: argparse.Namespace) -> int:
    from bmip.engine.train import train

    config = load_config(args.config, args.overrides)
    out = train(config, args.protocol, args.method, args.dataset, args.seed, args.out)
    log.info("trained model in %s", out)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from bmip.engine.evaluate import evaluate

    config = load_config(args.config, args.overrides)
    out = evaluate(config, args.protocol, args.method, args.dataset, args.seed, args.checkpoint, args.out)
    log.info("metrics in %s", out)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train one (protocol, method, dataset, seed) run")
    _common(train)
    train.add_argument("--protocol", default="base2novel", choices=["base2novel", "cross_dataset"],
                       help="base2novel trains on base classes; cross_dataset on all classes of the source")
    train.set_defaults(func=run_train)

    evaluate = subparsers.add_parser("evaluate", help="evaluate a trained run under one protocol")
    _common(evaluate)
    evaluate.add_argument("--protocol", required=True,
                          choices=["base2novel", "cross_dataset", "domain_generalization", "open_world"])
    evaluate.add_argument("--checkpoint", type=Path, help="prompts.safetensors (default: from the results layout)")
    evaluate.set_defaults(func=run_evaluate)
