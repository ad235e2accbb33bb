"""`bmip audit`, `bmip manifest`, `bmip provenance`, `bmip cost` and `bmip crate`: the workflow's last rules,
also usable alone; `bmip compare`: two runs of one experiment, file by file."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bmip.audit.layout import COST_CSV, COST_MD, CRATE, PROVENANCE_DIR

log = logging.getLogger(__name__)

EXIT_PASSED, EXIT_FAILED, EXIT_NOT_AN_EXPERIMENT = 0, 1, 2


def run_audit(args: argparse.Namespace) -> int:
    from bmip.audit.check import NotAnExperiment, audit
    from bmip.audit.crate_check import audit_crate, is_crate
    from bmip.io import atomic_write, write_json

    try:
        if is_crate(args.experiment):
            report = audit_crate(args.experiment, strict=args.strict, profiles=args.profiles)
        elif args.profiles:
            raise NotAnExperiment(f"--profiles validates a crate, and {args.experiment} is none (bmip crate makes one)")
        else:
            report = audit(args.experiment, strict=args.strict)
    except NotAnExperiment as err:
        log.error("%s", err)
        return EXIT_NOT_AN_EXPERIMENT
    text = report.text()
    sys.stdout.write(text)
    if args.out:
        atomic_write(args.out, lambda tmp: tmp.write_text(text))
    if args.json:
        write_json(args.json, report.to_dict())
    return EXIT_PASSED if report.passed else EXIT_FAILED


def run_compare(args: argparse.Namespace) -> int:
    from bmip.audit.compare import NotComparable, compare

    try:
        result = compare(args.a, args.b)
    except NotComparable as err:
        log.error("%s", err)
        return EXIT_NOT_AN_EXPERIMENT
    sys.stdout.write(result.text())
    return EXIT_PASSED if result.same else EXIT_FAILED


def run_crate(args: argparse.Namespace) -> int:
    from bmip.audit.crate import write_crate

    write_crate(args.experiment, args.out, include_checkpoints=args.include_checkpoints)
    return 0


def run_manifest(args: argparse.Namespace) -> int:
    from bmip.audit.layout import Experiment
    from bmip.audit.manifest import write_manifest

    log.info("manifest in %s", write_manifest(Experiment.open(args.experiment)))
    return 0


def run_provenance(args: argparse.Namespace) -> int:
    from bmip.audit.provenance import write_provenance_tables

    out = args.out or args.experiment / PROVENANCE_DIR
    log.info("provenance tables in %s", sorted(write_provenance_tables(args.experiment, out).values()))
    return 0


def run_cost(args: argparse.Namespace) -> int:
    from bmip.audit.cost import write_cost

    write_cost(args.experiment, args.csv or args.experiment / COST_CSV, args.md or args.experiment / COST_MD)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    audit = subparsers.add_parser(
        "audit", help="trace every table number to its runs and check nothing changed since (exit 1 on a problem)",
        description="Verify the output files against manifest.json, check every run's provenance against the files "
                    "it names, recompute every table from the metrics files, and state the code, packages and "
                    "hardware the runs record. Given a crate (bmip crate), first extract it safely and check every "
                    "file against the crate's metadata. Exit 0: passed; 1: problems found; 2: not an experiment "
                    "folder or crate.",
    )
    audit.add_argument("experiment", type=Path,
                       help=f"the experiment folder, results/<experiment>, or a crate: {CRATE} or its folder")
    audit.add_argument("--strict", action="store_true",
                       help="warnings (uncommitted code, mixed commits, stale configs, unlisted files) fail the audit")
    audit.add_argument("--profiles", action="store_true",
                       help="a crate only: also validate it against the RO-Crate 1.1 and Provenance Run Crate "
                            "profiles (roc-validator, offline; about a minute)")
    audit.add_argument("--out", type=Path, help="also write the report to this file")
    audit.add_argument("--json", type=Path, help="also write the findings as JSON to this file")
    audit.set_defaults(func=run_audit)

    compare = subparsers.add_parser(
        "compare", help="every file that differs between two runs of one experiment, and whether it may (exit 1 if "
                        "any differs beyond the declared volatile fields)",
        description="Compare two experiment folders file by file. Two runs of one config on the same machine with "
                    "the same thread count, interrupted or not, give the same bytes in every file except the records "
                    "of their execution (times, host, command line), which bmip.audit.volatile declares: a difference "
                    "only in those fields is expected, any other is a problem. Exit 0: no problem; 1: problems; "
                    "2: not an experiment folder.",
    )
    compare.add_argument("a", type=Path, help="an experiment folder, results/<experiment>")
    compare.add_argument("b", type=Path, help="the experiment folder of another run of the same config")
    compare.set_defaults(func=run_compare)

    crate = subparsers.add_parser(
        "crate", help="the experiment as one Workflow Run RO-Crate, to share and verify with bmip audit",
        description="Write an RO-Crate (1.1, Provenance Run Crate 0.5 profile) of the experiment: the workflow, "
                    "the resolved config as its parameters, every job and run with its inputs and outputs, and "
                    "every output file with its sha256 and size. Run it after the audit.",
    )
    crate.add_argument("experiment", type=Path, help="the experiment folder, results/<experiment>")
    crate.add_argument("--out", type=Path,
                       help=f"a .zip file (default <experiment>/{CRATE}) or a new folder for the crate")
    crate.add_argument("--include-checkpoints", action="store_true",
                       help="embed the trained prompts (prompts.safetensors); otherwise listed by sha256 and size")
    crate.set_defaults(func=run_crate)

    manifest = subparsers.add_parser(
        "manifest", help="write results/<experiment>/manifest.json (every output's sha256)",
        description="List every output file of the experiment with its sha256, size and the rule that wrote it, in "
                    "<experiment>/manifest.json: the record bmip audit verifies the files against, so an edit made "
                    "after the run shows up naming the file. The workflow writes it once the tables and figures "
                    "exist; run it by hand only to record files you changed on purpose.")
    manifest.add_argument("experiment", type=Path, help="the experiment folder, results/<experiment>")
    manifest.set_defaults(func=run_manifest)

    provenance = subparsers.add_parser(
        "provenance", help="per-table CSVs of the runs behind each table",
        description="Write one CSV per table, one row per evaluation the table averages joined with the training "
                    "of the evaluated model: its code version, config, hardware and time, so a reader of a table "
                    "sees where each number came from without opening the results folder.")
    provenance.add_argument("experiment", type=Path, help="the experiment folder, results/<experiment>")
    provenance.add_argument("--out", type=Path, help=f"folder for <table>.csv (default <experiment>/{PROVENANCE_DIR})")
    provenance.set_defaults(func=run_provenance)

    cost = subparsers.add_parser(
        "cost", help="wall time per rule and in total, and the hardware used",
        description="Summarise what the experiment cost to run: wall time and peak memory per workflow rule and in "
                    "total, and the hardware the runs record, as CSV and Markdown "
                    f"(<experiment>/{COST_CSV}, {COST_MD}).")
    cost.add_argument("experiment", type=Path, help="the experiment folder, results/<experiment>")
    cost.add_argument("--csv", type=Path, help=f"the CSV file to write (default <experiment>/{COST_CSV})")
    cost.add_argument("--md", type=Path, help=f"the Markdown file to write (default <experiment>/{COST_MD})")
    cost.set_defaults(func=run_cost)
