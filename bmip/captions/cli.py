"""`bmip captions`: the captions stage of one or more datasets (what the workflow's captions job calls)."""
from __future__ import annotations

import argparse
import logging

from bmip.config import load_config

log = logging.getLogger(__name__)


def run_captions(args: argparse.Namespace) -> int:
    from bmip.captions.stage import caption_datasets, gpu_job

    config = load_config(args.config, args.overrides)
    if "captions" not in config:
        raise ValueError("the config has no `captions:` section naming the captioner (docs/captions.md)")
    datasets = args.dataset or caption_datasets(config)
    unknown = [d for d in datasets if d not in caption_datasets(config)]
    if unknown:
        raise ValueError(f"--dataset {' '.join(unknown)}: no run of the config reads it; it reads "
                         f"{', '.join(caption_datasets(config))}")
    if gpu_job(config):
        from bmip.engine.gpu_slots import claim_for

        claim_for(config)  # before torch starts: it fixes the GPU this process sees
    from bmip.captions.stage import build_captions

    for dataset in datasets:
        log.info("captions of %s in %s", dataset, build_captions(config, dataset))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "captions", help="caption every image the config's runs read, once per dataset "
                         "(<experiment>/captions/<dataset>.json; the captioner of the config's captions: section)")
    p.add_argument("config", help="experiment config (YAML), e.g. config/config.yaml; '-' reads it from stdin")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set captions.batch_size=8 (repeatable)")
    p.add_argument("--dataset", nargs="+", metavar="DATASET",
                   help="caption only these datasets, as the config names them (default: every dataset it reads)")
    p.set_defaults(func=run_captions)
