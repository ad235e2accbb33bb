"""The `bmip` command line: one subcommand per task, each a thin call into the package."""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path

from bmip.io import write_json

# Modules that add their own subcommands through `register(subparsers)`.
SUBCOMMAND_MODULES = ("bmip.engine.cli", "bmip.report.cli", "bmip.data.cli", "bmip.miniworld.cli", "bmip.audit.cli")


def _benchmark(args: argparse.Namespace) -> int:
    from bmip.benchmark import benchmark

    record = benchmark(
        model=args.model, pretrained=args.pretrained, methods=args.methods, n_classes=args.classes,
        batch_size=None if args.batch_size == "recipe" else int(args.batch_size), eval_batch_size=args.eval_batch_size,
        steps=args.steps, warmup=args.warmup, device=args.device, precision=args.precision,
        progress=(lambda partial: write_json(Path(args.out), partial)) if args.out else None,
        config=args.config,
    )
    if args.out:
        write_json(Path(args.out), record)
    json.dump(record, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _batch_size(text: str) -> str:
    if text != "recipe" and not (text.isdigit() and int(text) > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is neither a positive integer nor 'recipe'")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bmip", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("benchmark", help="time training steps and evaluation per method (JSON)")
    bench.add_argument("--model", default="ViT-B-16", help="open_clip model name")
    bench.add_argument("--pretrained", default="none", help="pretrained tag, weight file, or 'none' (random)")
    bench.add_argument("--methods", nargs="+", default=None, help="methods to time (default: all)")
    bench.add_argument("--classes", type=int, default=50, help="number of classes in the text side")
    bench.add_argument("--batch-size", default="4", type=_batch_size,
                       help="training batch size, or 'recipe': each method's own (the paper's)")
    bench.add_argument("--eval-batch-size", type=int, default=32)
    bench.add_argument("--steps", type=int, default=5, help="timed repetitions")
    bench.add_argument("--warmup", type=int, default=1, help="untimed repetitions first")
    bench.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    bench.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                       help="compute precision, as a config's: auto is bf16 on a GPU, fp32 on CPU")
    bench.add_argument("--config", help="build each method with this config's base-to-novel recipe "
                       "(options; batch size with --batch-size recipe) instead of bmip/recipes.yaml's")
    bench.add_argument("--out", help="also write the JSON record to this file")
    bench.set_defaults(func=_benchmark)

    for module in SUBCOMMAND_MODULES:
        try:
            importlib.import_module(module).register(sub)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # bmip's own progress at INFO; other libraries (open_clip logs every model load on the root
    # logger) only from WARNING, unless -v asks for everything.
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        logging.getLogger("bmip").setLevel(logging.INFO)
    try:
        return int(args.func(args) or 0)
    except Exception as err:  # a clear one-line error for the user; details with -v
        if args.verbose:
            raise
        logging.getLogger("bmip").error("%s: %s", type(err).__name__, err)
        return 1


if __name__ == "__main__":
    sys.exit(main())
