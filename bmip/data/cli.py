"""`bmip download` and `bmip splits`: sub-commands the main CLI (bmip/cli.py) registers.

Usage from the main parser: `bmip.data.cli.register(subparsers)`; each sub-command sets
`func(args) -> int` (0: done, 1: failed, 2: needs a manual step or a hand-supplied file).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from bmip.io import write_json
from .downloads import download, unresolved_host
from .interrupt import install_sigterm_handler
from .errors import DataError, DeadSourceError, DownloadError, ManualDownloadRequired
from .sampling import write_fewshot_split
from .loader import load_dataset
from .registry import DATASETS, resolve_name

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_MANUAL = 0, 1, 2


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `download` and `splits` sub-commands to an argparse sub-parser set."""
    p = subparsers.add_parser(
        "download",
        help="fetch, verify and extract datasets (and a config's backbone weights); run it where there is network",
        description="Fetch, verify (size + SHA-256/MD5) and extract datasets under --root. Re-running skips "
        "verified files; ImageNet and datasets without a live source explain what to supply by hand. "
        "With --config: every registry dataset the config's runs read, into its data_root, and its "
        "backbone weights, into backbone.cache_dir: on a cluster, run this on the login node (compute "
        "nodes often have no network) before submitting the grid. "
        f"Datasets: {', '.join(DATASETS)}, or 'all'.",
    )
    p.add_argument("names", nargs="*", metavar="dataset", help="registry name(s), or 'all' (or give --config)")
    p.add_argument("--config", type=Path, help="an experiment config: fetch everything its runs read")
    p.add_argument("--weights-only", action="store_true", help="with --config: only the backbone weights")
    p.add_argument("--root", type=Path, help="data root holding the CoOp dataset folders (default with --config: "
                   "its data_root)")
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


def _config_downloads(path: Path) -> tuple[list[str], Path, dict[str, Any] | None]:
    """(registry datasets, data root, backbone spec or None) of an experiment config: every dataset
    its runs read that bmip can fetch (your own folders and the generated miniworld are left
    alone), and its backbone where the weights are a pretrained tag rather than a file."""
    from bmip.config import load_config
    from bmip.grid import datasets_read, weights_tag

    config = load_config(path)
    used = datasets_read(config)
    own = [d for d in used if resolve_name(d) is None]
    if own:
        logger.info("%s: not fetched (your own data or the generated miniworld): %s", path, ", ".join(own))
    return [resolve_name(d) for d in used if resolve_name(d) is not None], Path(config["data_root"]), \
        (config["backbone"] if weights_tag(config) else None)


def _no_network(name: str) -> str | None:
    """A message if none of the hosts dataset `name` is fetched from resolves here (a compute node
    without network), else None."""
    import socket

    from .registry import get_spec

    hosts = [unresolved_host(url) for source in get_spec(name).sources for url in source.urls]
    if not hosts or not all(hosts):
        return None
    return (f"this machine ({socket.gethostname()}) has no network: {', '.join(dict.fromkeys(hosts))} could not be "
            "resolved. "
            "Download where there is network (on a cluster, the login node): `bmip download --config <your config>` "
            "fetches every dataset and the backbone weights a config needs; then run the workflow again "
            "(its download jobs then find the files in place)")


def run_download(args: argparse.Namespace) -> int:
    """Download each named dataset (or a config's); report every failure, not just the first."""
    install_sigterm_handler()  # a cluster's SIGTERM ends the command through its cleanups
    backbone = None
    if args.weights_only and args.config is None:
        logger.error("--weights-only needs --config (the config names the backbone)")
        return EXIT_FAILED
    if args.config is not None:
        if args.names:
            logger.error("give dataset names or --config, not both")
            return EXIT_FAILED
        try:
            names, config_root, backbone = _config_downloads(args.config)
        except ValueError as e:  # ConfigError
            logger.error("%s", e)
            return EXIT_FAILED
        args.root = args.root or config_root
        if args.weights_only:
            names = []
    elif not args.names:
        logger.error("name the datasets to fetch (or 'all'), or give --config <experiment config>")
        return EXIT_FAILED
    else:
        names = list(DATASETS) if args.names == ["all"] else args.names
    if args.root is None and names:
        logger.error("--root: the data root to fetch into is required with dataset names")
        return EXIT_FAILED
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
            offline = _no_network(name) if isinstance(e, DownloadError) else None
            if offline:
                logger.error("%s: %s", name, offline)
            code = EXIT_MANUAL if code == EXIT_MANUAL else EXIT_FAILED
    weights = None
    if backbone is not None:
        from bmip.backbone import BackboneError, resolve_weights

        try:
            path, _ = resolve_weights(backbone["model"], str(backbone["pretrained"]), backbone.get("cache_dir"))
            weights = {"model": backbone["model"], "pretrained": backbone["pretrained"], "file": str(path)}
            logger.info("backbone weights %s/%s: %s", backbone["model"], backbone["pretrained"], path)
        except BackboneError as e:
            logger.error("%s", e)
            code = EXIT_MANUAL if code == EXIT_MANUAL else EXIT_FAILED
    elif args.weights_only:
        logger.info("%s: the backbone's weights are a file, the generated miniworld's or none: nothing to fetch",
                    args.config)
    if code == EXIT_OK and args.stamp:
        record = {"weights": weights} if args.weights_only else {"datasets": ready, "root": str(args.root)}
        write_json(args.stamp, record, sort_keys=False)
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
