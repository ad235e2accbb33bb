"""`bmip download` and `bmip splits`: sub-commands the main CLI (bmip/cli.py) registers.

Usage from the main parser: `bmip.data.cli.register(subparsers)`; each sub-command sets
`func(args) -> int` (0: done, 1: failed, 2: needs a manual step or a hand-supplied file).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from bmip.io import write_json
from .downloads import download
from .errors import DataError, DeadSourceError, ManualDownloadRequired
from .sampling import write_fewshot_split
from .loader import load_dataset
from .registry import DATASETS, resolve_name

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_MANUAL = 0, 1, 2


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `download` and `splits` sub-commands to an argparse sub-parser set."""
    p = subparsers.add_parser(
        "download",
        help="fetch, verify and extract datasets into CoOp's folder layout",
        description="Fetch, verify (size + SHA-256/MD5) and extract datasets under --root. Re-running skips "
        "verified files; ImageNet and datasets without a live source explain what to supply by hand. "
        f"Datasets: {', '.join(DATASETS)}, or 'all'.",
    )
    p.add_argument("names", nargs="+", metavar="dataset", help="registry name(s), or 'all'")
    p.add_argument("--root", type=Path, required=True, help="data root holding the CoOp dataset folders")
    p.add_argument("--keep-archives", action="store_true", help="keep archives in <root>/_downloads after extraction")
    p.add_argument("--retries", type=int, default=3, help="retries per mirror after an interrupted transfer")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--stamp", type=Path, help="after success, write a JSON record of the ready dataset(s) here")
    p.set_defaults(func=run_download)

    s = subparsers.add_parser(
        "splits",
        help="write CoOp-identical few-shot splits as JSON",
        description="Write <out>/<dataset>/shot_K-seed_S.json for every K in --shots and S in --seed "
        "(the same items, in the same order, as CoOp/Dassl's shot_K-seed_S.pkl).",
    )
    s.add_argument("dataset", help="registry name, or a custom dataset folder/file")
    s.add_argument("--root", type=Path, default=None, help="data root (needed for registry names)")
    s.add_argument("--shots", type=int, nargs="+", default=[16], help="shots per class (default 16)")
    s.add_argument("--seed", type=int, nargs="+", default=[1, 2, 3], help="seeds (default 1 2 3)")
    s.add_argument("--out", type=Path, required=True, help="output folder")
    s.set_defaults(func=run_splits)


def run_download(args: argparse.Namespace) -> int:
    """Download each named dataset; report every failure, not just the first."""
    names = list(DATASETS) if args.names == ["all"] else args.names
    unknown = [n for n in names if resolve_name(n) is None]
    if unknown:
        logger.error("unknown dataset(s) %s; known: %s", ", ".join(unknown), ", ".join(DATASETS))
        return EXIT_FAILED
    code = EXIT_OK
    ready = {}
    for name in names:
        try:
            ready[name] = str(download(name, args.root, keep_archives=args.keep_archives, retries=args.retries,
                                       progress=not args.no_progress))
        except (ManualDownloadRequired, DeadSourceError) as e:
            logger.error("%s", e)
            code = max(code, EXIT_MANUAL)
        except DataError as e:
            logger.error("%s", e)
            code = EXIT_MANUAL if code == EXIT_MANUAL else EXIT_FAILED
    if code == EXIT_OK and args.stamp:
        write_json(args.stamp, {"datasets": ready, "root": str(args.root)}, sort_keys=False)
    return code


def run_splits(args: argparse.Namespace) -> int:
    """Load the dataset once, then write one split file per (shots, seed)."""
    try:
        dataset = load_dataset(args.dataset, args.root)
        for shots in args.shots:
            for seed in args.seed:
                write_fewshot_split(dataset, shots, seed, args.out)
    except (DataError, ValueError) as e:
        logger.error("%s", e)
        return EXIT_FAILED
    return EXIT_OK
