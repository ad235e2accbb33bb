"""The `bmip` command line: one subcommand per task, each a thin call into the package."""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import shutil
import sys
import textwrap
from pathlib import Path

from bmip.io import write_json
from bmip.methods import method_names

# Modules that add their own subcommands through `register(subparsers)`.
SUBCOMMAND_MODULES = ("bmip.engine.cli", "bmip.report.cli", "bmip.data.cli", "bmip.miniworld.cli", "bmip.audit.cli",
                      "bmip.captions.cli")

# What a user does with each subcommand: the sections of `bmip --help` and of docs/cli.md
# (command_reference). A subcommand left out here is listed under OTHER (tests/test_cli.py fails).
COMMAND_GROUPS: dict[str, tuple[str, ...]] = {
    "Run the pipeline by hand (what the workflow's jobs call)": (
        "check-config", "check-data", "plan", "captions", "features", "train", "evaluate", "analyze",
        "import-official"),
    "Data": ("download", "splits"),
    "Results and audit": (
        "aggregate", "figures", "ablations", "provenance", "cost", "manifest", "audit", "crate", "compare"),
    "Miniworld (the built-in benchmark's datasets and tiny CLIP)": (
        "miniworld-generate", "miniworld-pretrain", "miniworld-check", "miniworld-figure"),
    "Benchmarks": ("benchmark",),
}
OTHER = "Other commands"
REFERENCE = Path("docs") / "cli.md"
DESCRIPTION = ("Reproducible prompt learning for CLIP: BMIP and its baselines on open_clip. The workflow "
               "(snakemake --cores N, or bash scripts/run.sh) runs the whole pipeline of a config; each command "
               "below is one of its steps, or a tool around it, usable alone.")
REGENERATE = 'python -c "from bmip.cli import command_reference; print(command_reference())" > docs/cli.md'


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


def version_text() -> str:
    """What `bmip --version` prints: the package version and, run from a git checkout, its commit
    and whether it has uncommitted changes, as every run's provenance records them."""
    from bmip.engine.provenance import code_version

    code = code_version()
    text = f"bmip {code['package']}"
    if code["git_commit"]:
        text += f" (git commit {code['git_commit']}{', uncommitted changes' if code['git_dirty'] else ''})"
    return text


class _Version(argparse.Action):
    """--version, computed only when asked (it runs git), then exit."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        sys.stdout.write(version_text() + "\n")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bmip", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, and a traceback on an error")
    parser.add_argument("--version", action=_Version,
                        help="print the bmip version (and the git commit it runs from) and exit")
    # The commands are listed by group in the description below, not in argparse's flat list.
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>", help=argparse.SUPPRESS)

    bench = sub.add_parser("benchmark", help="time training steps and evaluation per method (JSON)")
    bench.add_argument("--model", default="ViT-B-16", help="open_clip model name")
    bench.add_argument("--pretrained", default="none", help="pretrained tag, weight file, or 'none' (random)")
    bench.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                       help=f"methods to time (default: all): {', '.join(method_names())}")
    bench.add_argument("--classes", type=int, default=50, help="number of classes in the text side")
    bench.add_argument("--batch-size", default="4", type=_batch_size,
                       help="training batch size, or 'recipe': each method's own (the paper's)")
    bench.add_argument("--eval-batch-size", type=int, default=32, help="evaluation batch size (default 32)")
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
    for name, command in sub.choices.items():  # `bmip <command> --help` starts with what it does
        command.description = command.description or _plain(_helps(sub)[name])
    parser.usage = parser.format_usage().removeprefix("usage: ").strip() + " <command> ..."
    width = min(shutil.get_terminal_size().columns, 100) - 2
    parser.description = "\n\n".join([
        textwrap.fill(DESCRIPTION, width),
        *(f"{group}:\n" + "\n".join(_help_line(name, help, width) for name, help in commands)
          for group, commands in command_groups(parser).items()),
        textwrap.fill("`bmip <command> --help` tells what a command does and lists its options.", width),
    ])
    return parser


def _plain(text: str) -> str:
    """A help string as printed (argparse formats help strings with %: a literal percent is %%)."""
    return text.replace("%%", "%")


def _helps(sub: argparse._SubParsersAction) -> dict[str, str]:
    """Each subcommand's one-line help (argparse keeps it only on the listing's pseudo-actions)."""
    return {action.dest: action.help or "" for action in sub._choices_actions}


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def command_groups(parser: argparse.ArgumentParser) -> dict[str, list[tuple[str, str]]]:
    """The parser's subcommands with their help, by COMMAND_GROUPS (ungrouped ones under OTHER)."""
    sub = _subcommands(parser)
    helps = {name: _plain(help) for name, help in _helps(sub).items()}
    groups = {group: [(name, helps[name]) for name in names if name in helps]
              for group, names in COMMAND_GROUPS.items()}
    grouped = {name for names in COMMAND_GROUPS.values() for name in names}
    groups[OTHER] = [(name, help) for name, help in helps.items() if name not in grouped]
    return {group: commands for group, commands in groups.items() if commands}


def _help_line(name: str, help: str, width: int) -> str:
    return textwrap.fill(help, width, initial_indent=f"  {name:<20}", subsequent_indent=" " * 22)


def _markdown(text: str) -> str:
    """Help text as Markdown prose: `<experiment>` would otherwise render as an (invisible) HTML tag."""
    return text.replace("<", "\\<")


def command_reference() -> str:
    """docs/cli.md: every subcommand with its help, by what a user does with it, generated from the
    parser (tests/test_cli.py checks the file is current)."""
    parser = build_parser()
    lines = [
        "# The `bmip` command line",
        "",
        f"Generated from the parser; regenerate with `{REGENERATE}`.",
        "`bmip <command> --help` tells what a command does and lists its options; `bmip --version` prints "
        "the version and the git commit bmip runs from; `bmip -v <command>` logs at debug level and shows "
        "the traceback of an error.",
    ]
    for group, commands in command_groups(parser).items():
        lines += ["", f"## {group}", ""]
        lines += [f"- `bmip {name}`: {_markdown(help)}" for name, help in commands]
    return "\n".join(lines)


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
