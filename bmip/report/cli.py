"""`bmip aggregate` (tables) and `bmip figures`: what the workflow's last rules call."""
from __future__ import annotations

import argparse
from pathlib import Path


def run_aggregate(args: argparse.Namespace) -> int:
    from bmip.report.tables import write_tables

    write_tables(args.metrics, args.out)
    return 0


def run_figures(args: argparse.Namespace) -> int:
    from bmip.report.figures import write_figures

    write_figures(args.tables, args.train_logs, args.out, args.gates, args.mechanism, args.causal)
    return 0


def run_ablations(args: argparse.Namespace) -> int:
    from bmip.report.ablations import run_cli

    return run_cli(args.config, args.metrics, args.tables, args.figures)


def register(subparsers: argparse._SubParsersAction) -> None:
    agg = subparsers.add_parser("aggregate", help="tables (CSV, Markdown, LaTeX) from metrics.json files")
    agg.add_argument("metrics", nargs="+", type=Path, help="metrics.json files")
    agg.add_argument("--out", type=Path, required=True, help="folder for <table>.csv, .md and .tex")
    agg.set_defaults(func=run_aggregate)

    abl = subparsers.add_parser(
        "ablations", help="each ablation's table and figure and the main table's paired comparison, with the "
                          "paired differences' 95%% intervals over seeds and test images")
    abl.add_argument("config", type=Path, help="the experiment's resolved config (results/<experiment>/config.yaml)")
    abl.add_argument("metrics", nargs="+", type=Path, help="metrics.json files of the variants (and of the methods)")
    abl.add_argument("--tables", type=Path, required=True, help="folder for ablation_<name>.csv/.md/.tex")
    abl.add_argument("--figures", type=Path, required=True, help="folder for ablation_<name>.png/.pdf")
    abl.set_defaults(func=run_ablations)

    fig = subparsers.add_parser(
        "figures", help="figures (PNG + PDF) from the tables, training logs and BMIP gate files; "
                        "the same inputs in any order give the same bytes")
    fig.add_argument("--tables", type=Path, required=True, help="folder with <table>.csv (bmip aggregate --out)")
    fig.add_argument("--train-logs", nargs="*", type=Path, default=[], help="train_log.csv files")
    fig.add_argument("--gates", nargs="*", type=Path, default=[],
                     help="gates.json files of BMIP evaluations (the workflow passes the base-to-novel ones)")
    fig.add_argument("--mechanism", nargs="*", type=Path, default=[],
                     help="mechanism.json files of prompt-method evaluations (the workflow passes the base-to-novel ones)")
    fig.add_argument("--causal", nargs="*", type=Path, default=[], help="causal.json files of bmip analyze")
    fig.add_argument("--out", type=Path, required=True, help="folder for <figure>.png and .pdf")
    fig.set_defaults(func=run_figures)
