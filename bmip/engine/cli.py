"""`bmip train` and `bmip evaluate`: what each Snakemake job calls, also usable alone.

Both accept several seeds, and several datasets (`evaluate --dataset a b`, `train --all`), so
that one process, which pays the torch/open_clip start-up and loads the backbone once, can do a
job's whole share of the grid.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from bmip.ablations import method_config
from bmip.config import load_config, read_config
from bmip.config_checks import check_config, check_dataset_names
from bmip.grid import TRAINED_BY, TRAIN_CLASSES
from bmip.engine.gpu_slots import claim_for

log = logging.getLogger(__name__)


def _config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment config (YAML), e.g. config/config.yaml; '-' reads it from stdin")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set recipes.default.bmip.lr=0.001 (repeatable)")


def method_help(what: str = "the method") -> str:
    """--method's help: every registered name, and the ablation variants a config may declare."""
    from bmip.methods import VARIANT_MARK, method_names

    return (f"{what}: one of {', '.join(method_names())}; or an ablation variant "
            f"<method>{VARIANT_MARK}<label> that the config's ablations declare (e.g. bmip{VARIANT_MARK}sum)")


def dataset_help(what: str) -> str:
    """--dataset's help: the names bmip.config_checks.check_dataset_names accepts."""
    from bmip.data.registry import DATASETS
    from bmip.miniworld.datasets import DATASETS as MINIWORLD

    return (f"{what}: a registry dataset ({', '.join(DATASETS)}; any common spelling, e.g. OxfordPets), a "
            f"miniworld dataset ({', '.join(MINIWORLD)}), or the name of a folder under the config's data_root")


def _common(parser: argparse.ArgumentParser, what: str) -> None:
    _config(parser)
    parser.add_argument("--method", required=True, metavar="METHOD", help=method_help())
    target = parser.add_mutually_exclusive_group(required=True)
    if what == "train":
        target.add_argument("--dataset", help=dataset_help(
            "the dataset to train on (under cross_dataset: the source)"))
    else:
        target.add_argument("--dataset", nargs="+", help=dataset_help(
            "the dataset(s) to evaluate on (under cross_dataset and domain_generalization: the targets)"))
    target.add_argument("--all", action="store_true",
                        help=f"every (protocol, dataset) the config {what}s, instead of --protocol/--dataset")
    parser.add_argument("--seed", type=int, nargs="+", metavar="SEED",
                        help="one or more seeds, run one after the other; needed for every method but zsclip "
                             "(zero-shot CLIP, nothing trained), whose runs default to the config's seeds, as the "
                             "workflow runs them")
    parser.add_argument("--out", type=Path, help="output folder of a single run (default: the config's results layout)")


def _no_prompt_positions() -> list[str]:
    """The base methods `bmip analyze` has nothing to intervene on (registry traits)."""
    from bmip.methods import has_prompt_positions, method_names

    return [m for m in method_names() if "+" not in m and not has_prompt_positions(m)]


def _seeds(args: argparse.Namespace, config: dict) -> list[int]:
    """--seed, or for a method with nothing trained the config's seeds: the workflow runs zsclip
    under every seed (each run folder seed<N>) like any method, so by hand it gets the same runs."""
    if args.seed is not None:
        return args.seed
    from bmip.methods import records_mechanism

    if not records_mechanism(args.method):  # no prompt term to record: nothing learnt (zsclip)
        return list(config["seeds"])
    raise ValueError(f"--method {args.method} trains prompts, so name the seed(s) of its runs: --seed "
                     f"{' '.join(map(str, config['seeds']))} (the config's seeds)")


def _targets(args: argparse.Namespace, every: list[tuple[str, str]], default: str | None = None) -> list[tuple[str, str]]:
    """The (protocol, dataset) pairs a command runs: --all's, or --protocol (else `default`) with --dataset."""
    if args.all:
        if args.protocol is not None:
            raise ValueError("--all runs every protocol the config names; give --protocol only with --dataset")
        return every
    protocols = args.protocol or default
    if protocols is None:
        raise ValueError("--dataset needs --protocol (or give --all instead of both)")
    protocols = protocols if isinstance(protocols, list) else [protocols]
    datasets = args.dataset if isinstance(args.dataset, list) else [args.dataset]
    return [(protocol, dataset) for protocol in protocols for dataset in datasets]


def _check_single(args: argparse.Namespace, runs: int) -> None:
    if args.out and runs > 1:
        raise ValueError("--out names one run's folder; give a single seed (and dataset) with it")


def run_train(args: argparse.Namespace) -> int:
    config = method_config(load_config(args.config, args.overrides), args.method)  # a variant: its ablation's grid
    claim_for(config)  # before torch starts: it fixes the GPU this process sees
    from bmip.engine.paths import trainings
    from bmip.engine.train import train

    targets = _targets(args, trainings(config), default="base2novel")
    seeds = _seeds(args, config)
    _check_single(args, len(seeds) * len(targets))
    for protocol, dataset in targets:
        for seed in seeds:
            log.info("trained model in %s", train(config, protocol, args.method, dataset, seed, args.out))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    config = method_config(load_config(args.config, args.overrides), args.method)  # a variant: its ablation's grid
    claim_for(config)  # before torch starts: it fixes the GPU this process sees
    from bmip.engine.evaluate import evaluate
    from bmip.engine.paths import evaluations

    targets = _targets(args, evaluations(config))
    seeds = _seeds(args, config)
    _check_single(args, len(seeds) * len(targets))
    for protocol, dataset, seed in by_model(config, [(p, d, s) for p, d in targets for s in seeds]):
        out = evaluate(config, protocol, args.method, dataset, seed, args.checkpoint, args.out)
        log.info("metrics in %s", out)
    return 0


def by_model(config: dict, runs: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """Evaluations in an order where those of one trained model on one test set follow each other
    (base2novel, then open_world of the same dataset and seed), so that the second reuses the
    first's score matrix (bmip.engine.evaluate keeps the last one)."""
    from bmip.engine.paths import training_dataset

    groups: dict[tuple, list[tuple[str, str, int]]] = {}
    for protocol, dataset, seed in runs:
        model = (TRAINED_BY[protocol], training_dataset(config, protocol, dataset), dataset, seed)
        groups.setdefault(model, []).append((protocol, dataset, seed))
    return [run for group in groups.values() for run in group]


def run_features(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    claim_for(config)  # before torch starts: it fixes the GPU this process sees
    from bmip.engine.features import build

    for dataset in args.dataset:
        built = build(config, dataset)
        log.info("frozen image features of %s: %s (sha256 %s, %s)", dataset, built.path, built.sha256[:12],
                 "computed" if built.built else "already there, key checked")
    return 0


def run_plan(args: argparse.Namespace) -> int:
    from bmip.engine.plan import plan, plan_text

    config = load_config(args.config, args.overrides)
    print(plan_text(plan(config)), end="")  # the command's output, as a table
    return 0


def run_analyze(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    claim_for(config)  # before torch starts: it fixes the GPU this process sees
    from bmip.engine.analyze import analyze

    datasets = args.dataset or config["analysis"]["datasets"]
    if args.out and len(datasets) * len(args.seed) > 1:
        raise ValueError("--out names one analysis folder; give a single seed and dataset with it")
    for dataset in datasets:
        for seed in args.seed:
            log.info("causal checks in %s", analyze(config, args.method, dataset, seed, args.checkpoint, args.out))
    return 0


def run_import_official(args: argparse.Namespace) -> int:
    from bmip.official import import_official

    config = load_config(args.config, args.overrides)
    out = import_official(args.path, config, args.out, args.protocol, args.allow_backbone_mismatch)
    log.info("imported %s into %s; evaluate it with bmip evaluate %s --method bmip ... --checkpoint %s",
             args.path, out, args.config, out / "prompts.safetensors")
    return 0


def run_check_config(args: argparse.Namespace) -> int:
    from bmip.engine.check import check_compute, check_recipes

    config = check_config(*read_config(args.config, args.overrides))  # every problem of the config at once
    compute = check_compute(config)
    built = check_recipes(config)
    log.info("the config is valid and its %d (training protocol, method) recipes build on %s", built,
             config["backbone"]["model"])
    log.info("runs here compute on %s", compute)
    if args.write:
        import yaml

        from bmip.io import atomic_write

        text = yaml.safe_dump(config, sort_keys=False)
        atomic_write(args.write, lambda tmp: tmp.write_text(text))
    return 0


def run_check_data(args: argparse.Namespace) -> int:
    from bmip.engine.data_check import RECORDS, check_data
    from bmip.engine.paths import experiment_dir

    config = load_config(args.config, args.overrides)
    if args.inventory:
        from bmip.grid import datasets_read
        from bmip.engine.inventory import FOLDER, update_inventories

        changed = update_inventories(config, args.dataset or datasets_read(config))
        log.info("images recorded in %s (%d changed: %s)", experiment_dir(config) / FOLDER, len(changed),
                 ", ".join(changed) or "none")
        return 0
    check_dataset_names(config, "the config on standard input" if str(args.config) == "-" else str(args.config))
    checks = check_data(config, args.dataset, args.workers)
    log.info("every image decodes (%d dataset(s); records in %s)", len(checks), experiment_dir(config) / RECORDS)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    check = subparsers.add_parser(
        "check-config", help="validate a config and build every method recipe on its backbone (random weights)")
    _config(check)
    check.add_argument("--write", type=Path, help="then write the resolved config (YAML) to this file")
    check.set_defaults(func=run_check_config)

    data = subparsers.add_parser(
        "check-data", help="decode every image the config's runs read; list every unreadable file at once")
    _config(data)
    data.add_argument("--workers", type=int, default=None,
                      help="decoding threads (default: the config's workers, at least 1)")
    data.add_argument("--dataset", nargs="+", metavar="DATASET",
                      help="check only these datasets, as the config names them (default: every dataset it reads)")
    data.add_argument("--inventory", action="store_true",
                      help="only record the images the runs read (<experiment>/inputs/<dataset>.json; the workflow's "
                           "inventory rule), without decoding them")
    data.set_defaults(func=run_check_data)

    train = subparsers.add_parser(
        "train", help="train a method's prompts: one run per (protocol, dataset, seed)",
        description="Train a method on one dataset (--dataset, under --protocol, default base2novel) or on every "
                    "(protocol, dataset) the config trains (--all), once per seed. Each run writes "
                    "prompts.safetensors, train_log.csv and provenance.json to "
                    "<results_dir>/<experiment>/train/<protocol>/<method>/<dataset>/seed<N>/ (or --out); a run "
                    "interrupted there resumes from its last complete epoch.")
    _common(train, "train")
    train.add_argument("--protocol", choices=sorted(TRAIN_CLASSES),
                       help="base2novel (the default) trains on the base classes; cross_dataset on all classes of the source")
    train.set_defaults(func=run_train)

    evaluate = subparsers.add_parser(
        "evaluate", help="evaluate trained runs under one or more protocols (metrics.json per run)",
        description="Evaluate the runs train wrote (or --checkpoint) on the datasets of --protocol, or on every "
                    "(protocol, dataset) the config evaluates (--all), once per seed. Each evaluation writes "
                    "metrics.json and provenance.json (and gates.json, mechanism.json) to "
                    "<results_dir>/<experiment>/<protocol>/<method>/<dataset>/seed<N>/ (or --out).")
    _common(evaluate, "evaluate")
    evaluate.add_argument("--protocol", choices=sorted(TRAINED_BY), nargs="+",
                          help="one or more protocols; --dataset then names the evaluation dataset(s) of each")
    evaluate.add_argument("--checkpoint", type=Path, help="prompts.safetensors (default: from the results layout)")
    evaluate.set_defaults(func=run_evaluate)

    analysis = subparsers.add_parser(
        "analyze", help="causal checks of the prompt mechanism on base-to-novel models (reconstruction of Ma et al.)")
    _config(analysis)
    analysis.add_argument("--method", required=True, metavar="METHOD",
                          help=method_help(f"a prompt method trained under base2novel (not "
                                           f"{' or '.join(_no_prompt_positions())}: no prompt positions to "
                                           "intervene on)"))
    analysis.add_argument("--dataset", nargs="+", metavar="DATASET",
                          help="base-to-novel datasets whose trained models to analyse (default: the config's "
                               "analysis.datasets)")
    analysis.add_argument("--seed", type=int, nargs="+", required=True, metavar="SEED",
                          help="the seeds of the trained models, one or more")
    analysis.add_argument("--checkpoint", type=Path, help="prompts.safetensors (default: from the results layout)")
    analysis.add_argument("--out", type=Path, help="output folder of a single analysis (default: the results layout)")
    analysis.set_defaults(func=run_analyze)

    feats = subparsers.add_parser(
        "features", help="compute the frozen image features of test sets, shared by the methods whose image tower "
                         "is not prompted (zsclip, coop, cocoop, lang); the workflow's image_features rule")
    _config(feats)
    feats.add_argument("--dataset", nargs="+", required=True, metavar="DATASET",
                       help=dataset_help("the test sets to compute"))
    feats.set_defaults(func=run_features)

    planned = subparsers.add_parser(
        "plan", help="the image-tower forward passes a config's evaluations will run, per rule, before submitting it")
    _config(planned)
    planned.set_defaults(func=run_plan)

    imp = subparsers.add_parser(
        "import-official", help="turn a checkpoint of the released BMIP code into an official_compat bmip run folder")
    imp.add_argument("path", type=Path, help="MultiModalPromptLearner/model.pth.tar-<epoch> or model-best.pth.tar")
    imp.add_argument("--config", required=True,
                     help="experiment config whose backbone and bmip recipe (official_compat: true) describe the file")
    imp.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value (repeatable)")
    imp.add_argument("--out", type=Path, required=True,
                     help="folder for prompts.safetensors + provenance.json; the run's train folder of the results "
                          "layout (train/<protocol>/bmip/<dataset>/seed<N>) lets bmip evaluate find it")
    imp.add_argument("--protocol", choices=sorted(TRAIN_CLASSES), default="base2novel",
                     help="the training protocol whose bmip recipe the file was trained with (default base2novel)")
    imp.add_argument("--allow-backbone-mismatch", action="store_true",
                     help="import even if the file's frozen CLIP weights differ from the config's backbone")
    imp.set_defaults(func=run_import_official)
