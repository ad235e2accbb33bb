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
    parser.add_argument("--seed", type=int, nargs="+", required=True,
                        help="one or more seeds, run one after the other in this process")
    parser.add_argument("--out", type=Path, help="output folder (default: from the config's results layout)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set recipes.default.bmip.lr=0.001 (repeatable)")


def run_train(args: argparse.Namespace) -> int:
    from bmip.engine.train import train

    config = load_config(args.config, args.overrides)
    _single_out(args)
    for seed in args.seed:
        out = train(config, args.protocol, args.method, args.dataset, seed, args.out)
        log.info("trained model in %s", out)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from bmip.engine.evaluate import evaluate

    from bmip.engine.paths import evaluations_of

    config = load_config(args.config, args.overrides)
    _single_out(args)
    if args.protocol:
        targets = [(args.protocol, args.dataset)]
    else:
        targets = evaluations_of(config, args.training, args.dataset)
        if not targets:
            raise ValueError(f"the config asks no evaluation of a {args.training} model trained on {args.dataset!r}")
    for seed in args.seed:
        for protocol, target in targets:
            out = evaluate(config, protocol, args.method, target, seed, args.checkpoint, args.out)
            log.info("metrics in %s", out)
    return 0


def _single_out(args: argparse.Namespace) -> None:
    if args.out and len(args.seed) > 1:
        raise ValueError("--out names one run's folder; give a single --seed with it")


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train one (protocol, method, dataset, seed) run")
    _common(train)
    train.add_argument("--protocol", default="base2novel", choices=["base2novel", "cross_dataset"],
                       help="base2novel trains on base classes; cross_dataset on all classes of the source")
    train.set_defaults(func=run_train)

    evaluate = subparsers.add_parser(
        "evaluate", help="evaluate a trained model under every protocol the config asks of it, or one protocol"
    )
    _common(evaluate)
    evaluate.add_argument("--training", default="base2novel", choices=["base2novel", "cross_dataset"],
                          help="which trained model: base2novel (base classes of --dataset) or cross_dataset "
                               "(all classes of the source --dataset)")
    evaluate.add_argument("--protocol", choices=["base2novel", "cross_dataset", "domain_generalization", "open_world"],
                          help="evaluate only this protocol, on --dataset (the evaluation dataset)")
    evaluate.add_argument("--checkpoint", type=Path, help="prompts.safetensors (default: from the results layout)")
    evaluate.set_defaults(func=run_evaluate)
