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

    write_figures(args.tables, args.train_logs, args.out)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    agg = subparsers.add_parser("aggregate", help="tables (CSV + Markdown) from metrics.json files")
    agg.add_argument("metrics", nargs="+", type=Path, help="metrics.json files")
    agg.add_argument("--out", type=Path, required=True, help="folder for <table>.csv and <table>.md")
    agg.set_defaults(func=run_aggregate)

    fig = subparsers.add_parser("figures", help="figures (PNG + PDF) from the tables and training logs")
    fig.add_argument("--tables", type=Path, required=True)
    fig.add_argument("--train-logs", nargs="*", type=Path, default=[])
    fig.add_argument("--out", type=Path, required=True)
    fig.set_defaults(func=run_figures)
