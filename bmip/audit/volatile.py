"""What may differ between two runs of the same experiment, and why: declared here, once.

Two runs of one config on the same machine with the same thread count write the same bytes in
every result file: metrics, gate statistics, tables (CSV, Markdown, LaTeX), figures (PNG, PDF),
checkpoints, few-shot split files, training logs, the resolved config, the audit report. That
holds whether a run was killed and resumed or not, and wherever the checkout and the working
folder lie. What cannot be the same is the record of the execution itself: when each job ran and
for how long, on which host, under which command line, and which jobs a rerun added. Each
declaration below names those files (a glob on the path relative to the experiment folder), what
in them may differ, and why. Beside them, LOCATION: paths that name the experiment folder itself
are compared relative to it, so that a folder copied or run elsewhere is the same experiment.

`bmip compare` classifies a difference in a declared field as expected and any other difference
as a problem; `bmip audit` states these declarations beside its manifest check.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from bmip.audit.layout import CRATE

# A key path segment matching the path of any file declared here (a listing's entry for it).
VOLATILE_FILE = "<volatile file>"
# The crate's metadata, as `bmip compare` names a member of crate.zip outside the experiment folder.
CRATE_METADATA = f"{CRATE}/ro-crate-metadata.json"
# What `bmip compare` writes in place of the experiment folder's own location in a path.
EXPERIMENT_FOLDER = "<experiment folder>"


@dataclass(frozen=True)
class Volatile:
    """Files (`files`, a glob) and what in them may differ between runs: JSON key paths (`a.b`;
    a list of records is keyed by each record's "path" or "@id": `files[<path>].sha256`; `*` in a
    key matches any text), CSV columns (with `row_key`, rows are matched by that column, and a row
    whose other cells outside `columns` are all empty or 0 may be in one file only), the whole file
    (`whole`), or, for an archive, its members, each judged as the file it holds."""

    files: str
    why: str
    keys: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    row_key: str = ""
    whole: bool = False
    archive: bool = False

    def matches(self, path: str) -> bool:
        return _glob(self.files).fullmatch(path) is not None

    def fields(self) -> str:
        """What may differ, in words."""
        if self.whole:
            return "the whole file"
        if self.archive:
            return "its members, as the files they hold"
        if self.columns:
            rows = f"; rows (matched by {self.row_key}) holding nothing else" if self.row_key else ""
            return "columns " + ", ".join(self.columns) + rows
        return ", ".join(self.keys)

    def key_paths(self) -> list[tuple[str, ...]]:
        """`keys` as tuples of segments."""
        return [key_path(k) for k in self.keys]


def key_path(text: str) -> tuple[str, ...]:
    """`files[a/b.json].sha256` -> ("files", "a/b.json", "sha256")."""
    return tuple(bracketed or plain for bracketed, plain in re.findall(r"\[([^\]]*)\]|([^.\[\]]+)", text))


def show_key(path: tuple[str, ...]) -> str:
    """The inverse of key_path: a segment that is not a plain name is shown in brackets."""
    return "".join(f"[{p}]" if not re.fullmatch(r"[A-Za-z_@][\w@]*", p) else (f".{p}" if i else p)
                   for i, p in enumerate(path))


@functools.lru_cache(maxsize=None)
def _glob(pattern: str) -> re.Pattern:
    """A path glob as a regex: `**/` any number of folders, `*` and `?` within one name."""
    parts = re.split(r"(\*\*/|\*|\?)", pattern)
    wild = {"**/": "(?:[^/]+/)*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(wild.get(part, re.escape(part)) for part in parts))


DECLARED: tuple[Volatile, ...] = (
    Volatile(
        "**/provenance.json",
        "the record of one training or evaluation: when it ran, for how long, each epoch's seconds, the epoch "
        "a resumed training restarted from and peak memory (time); the host, CPU, GPU and GPU slot it ran on "
        "(hardware); its command line, whose first word is the path of the bmip checkout (command); the "
        "sha256 of the data check record it read, which holds the image files' modification times "
        "(inputs.data_check.sha256)",
        keys=("time", "hardware", "command", "inputs.data_check.sha256"),
    ),
    Volatile(
        "data_check/*.json",
        "the key a data check is reused by: a hash of the checked image files' sizes and modification times, "
        "new whenever the data is generated, downloaded or extracted again",
        keys=("files.sizes_mtimes_sha256",),
    ),
    Volatile(
        "provenance/*.csv",
        "the runs' wall times, end times and hardware, copied from their provenance records",
        columns=("evaluation_wall_seconds", "evaluated_at", "training_wall_seconds", "hardware"),
    ),
    Volatile(
        "cost.csv",
        "what the run cost: wall times and peak memory measured while it ran, and the hardware; the Snakemake jobs "
        "each rule counts, from Snakemake's records, to which a rerun adds its own jobs and those that ran after "
        "the summary was first written (manifest, audit, crate: a row of jobs only). The runs and image forwards "
        "are compared",
        columns=("jobs", "job_seconds", "run_seconds", "mean_run_seconds", "max_run_seconds", "peak_rss_mib",
                 "hardware"),
        row_key="rule",
    ),
    Volatile("cost.md", "cost.csv in words: wall times, elapsed time, peak memory", whole=True),
    Volatile(
        "logs/**/*",
        "what each job printed: progress bars with rates and times, and after an interruption what was "
        "resumed; no result is read from a log",
        whole=True,
    ),
    Volatile(
        "manifest.json",
        "when it was written, and the hashes and sizes of the files above, which it lists",
        keys=("created", "totals.bytes", f"files[{VOLATILE_FILE}].sha256", f"files[{VOLATILE_FILE}].size",
              f"logs[{VOLATILE_FILE}].sha256", f"logs[{VOLATILE_FILE}].size"),
    ),
    Volatile(
        "crate.zip",
        "the experiment as an RO-Crate: its members are the files of the experiment folder (each judged as "
        "that file), the workflow and the crate's metadata; every member's timestamp is the last run's end",
        archive=True,
    ),
    Volatile(
        CRATE_METADATA,
        "the crate's record of each job and run: start and end times, resource usage (wall seconds, peak "
        "memory), a description naming its hardware and command, the experiment's date (the last run's end), "
        "and the hashes and sizes of the files above",
        keys=("@graph[*].startTime", "@graph[*].endTime", "@graph[./].datePublished", "@graph[#usage:*].value",
              "@graph[#run:*].description", f"@graph[{VOLATILE_FILE}].sha256",
              f"@graph[{VOLATILE_FILE}].contentSize"),
    ),
)


# Not a file's field but a way of reading every file: how `bmip compare` treats the folder's location.
LOCATION = Volatile(
    "**/*",
    "paths that start with the experiment folder's own location (its config's results_dir/experiment, where "
    "provenance records and the crate put it, or its absolute path) are compared relative to that folder, so "
    "that a folder copied aside, or an experiment run elsewhere, compares as the same experiment",
)


def declaration(path: str) -> Volatile | None:
    """The declaration covering `path` (relative to the experiment folder), if any."""
    return next((v for v in DECLARED if v.matches(path)), None)


def is_volatile_file(path: str) -> bool:
    return declaration(path) is not None


def describe() -> list[str]:
    """One line per declaration: the files, what may differ, and why; then how locations are read."""
    return [*(f"{v.files}: {v.fields()} — {v.why}" for v in DECLARED),
            f"paths in any file: the experiment folder's location — {LOCATION.why}"]
