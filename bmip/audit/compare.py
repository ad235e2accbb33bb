"""`bmip compare A B`: every file that differs between two experiment folders, and whether it may.

Two runs of one experiment (the same config, on the same machine with the same thread count),
each interrupted any number of times or not, must give the same bytes in every file but the
records of their execution that `bmip.audit.volatile` declares. A file that differs only in
declared fields is an expected difference; a file that differs anywhere else, or that one folder
lacks, is a problem. Hidden files (Snakemake's and atomic writes' temporaries) are not compared,
as the manifest leaves them out.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import Any

from bmip.audit.layout import CONFIG, CRATE, TABLES_DIR, Experiment, folder_files
from bmip.audit.volatile import VOLATILE_FILE, Volatile, declaration, is_volatile_file, show_key

TEXT = (".json", ".csv", ".md", ".tex", ".txt", ".log", ".yaml", ".smk", "")  # shown line by line
SAME_JSON = "same JSON content, different bytes (formatting or key order)"
_SHOWN = 8  # differing keys, cells or members shown per file


def _some(items: list[str], sep: str, more: str) -> str:
    """The first _SHOWN items joined by `sep`, then `more` (formatted with how many are left)."""
    left = len(items) - _SHOWN
    return sep.join(items[:_SHOWN]) + (more.format(left) if left > 0 else "")


def _keys_text(paths: list[tuple[str, ...]]) -> str:
    return "differs at " + _some([show_key(p) or "(the document)" for p in paths], ", ", " and {} more key(s)")


class NotComparable(ValueError):
    """A folder given is not an experiment folder."""


@dataclass(frozen=True)
class Difference:
    """One file that differs: expected (only in fields its declaration names) or a problem."""

    path: str
    expected: bool
    detail: str
    declared: Volatile | None = None


@dataclass
class Comparison:
    a: Path
    b: Path
    identical: int = 0
    differences: list[Difference] = field(default_factory=list)

    @property
    def problems(self) -> list[Difference]:
        return [d for d in self.differences if not d.expected]

    @property
    def same(self) -> bool:
        return not self.problems

    def text(self) -> str:
        lines = [f"bmip compare {self.a} {self.b}", f"identical: {self.identical} file(s)"]
        groups: dict[Volatile, list[Difference]] = defaultdict(list)
        for difference in self.differences:
            if difference.expected:
                groups[difference.declared].append(difference)
        if groups:
            lines.append("expected differences (bmip.audit.volatile):")
        for declared, found in groups.items():
            details = sorted({d.detail for d in found})
            lines.append(f"  {len(found)} x {declared.files}: {'; '.join(details)} (e.g. {found[0].path})")
            lines.append(f"      why: {declared.why}")
        lines += [f"PROBLEM {d.path}: {d.detail}" for d in self.problems]
        verdict = (f"SAME: every difference is in a declared volatile field ({len(self.differences)} file(s))"
                   if self.same else f"DIFFERENT: {len(self.problems)} file(s) differ beyond the declared volatile "
                                     "fields")
        return "\n".join([*lines, verdict]) + "\n"


def compare(a: Path, b: Path) -> Comparison:
    """Compare two experiment folders (results/<experiment>) file by file."""
    a, b = Path(a), Path(b)
    for folder in (a, b):
        if not (folder / CONFIG).is_file() and not (folder / TABLES_DIR).is_dir():
            raise NotComparable(f"{folder} is not an experiment folder (no {CONFIG} or {TABLES_DIR}/ in it)")
    result = Comparison(a, b)
    files_a, files_b = set(folder_files(a)), set(folder_files(b))
    prefix = _crate_prefix(a)
    for name in sorted(files_a | files_b):
        if name not in files_b or name not in files_a:
            where = "A" if name in files_a else "B"
            result.differences.append(Difference(name, False, f"only in {where}"))
            continue
        difference = compare_bytes(name, (a / name).read_bytes(), (b / name).read_bytes(), prefix)
        if difference is None:
            result.identical += 1
        else:
            result.differences.append(difference)
    return result


def compare_bytes(name: str, a: bytes, b: bytes, prefix: str = "") -> Difference | None:
    """None if the contents are the same, else what differs in file `name` and whether it may.
    `prefix` is the experiment folder's path inside a crate."""
    if a == b:
        return None
    declared = declaration(name)
    if declared is None:
        return Difference(name, False, _what_differs(name, a, b))
    if declared.whole:
        return Difference(name, True, "the whole file", declared)
    if declared.archive:
        return _compare_archive(name, a, b, prefix, declared)
    if declared.columns:
        return _compare_csv(name, a, b, declared)
    return _compare_json(name, a, b, prefix, declared)


# --- JSON -------------------------------------------------------------------------------------

def _keyed(value: Any) -> Any:
    """Lists of records keyed by their "path" or "@id", other lists by position."""
    if isinstance(value, list):
        for key in ("path", "@id"):
            if value and all(isinstance(v, dict) and isinstance(v.get(key), str) for v in value) \
                    and len({v[key] for v in value}) == len(value):
                return {v[key]: v for v in value}
        return {str(i): v for i, v in enumerate(value)}
    return value


def json_differences(a: Any, b: Any, where: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Key paths at which two JSON documents differ: a key in one only, another value or type, or
    the same records listed in another order (`<list>[(order)]`)."""
    a, b = _keyed(a), _keyed(b)
    if isinstance(a, dict) and isinstance(b, dict):
        found = [(*where, "(order)")] if a.keys() == b.keys() and list(a) != list(b) else []
        for key in (*a, *(k for k in b if k not in a)):
            if key not in a or key not in b:
                found.append((*where, key))
            else:
                found += json_differences(a[key], b[key], (*where, key))
        return found
    return [] if type(a) is type(b) and a == b else [where]


def _segment_matches(pattern: str, key: str, prefix: str) -> bool:
    if pattern == VOLATILE_FILE:  # a listing's entry for a volatile file; in a crate, by its crate path
        return is_volatile_file(key.removeprefix(f"{prefix}/") if prefix else key)
    return fnmatchcase(key, pattern)


def _declared_key(path: tuple[str, ...], declared: Volatile, prefix: str) -> tuple[str, ...] | None:
    """The declared key path covering `path` (itself or a parent of it), if any."""
    for pattern in declared.key_paths():
        if len(pattern) <= len(path) and all(_segment_matches(p, k, prefix) for p, k in zip(pattern, path)):
            return pattern
    return None


def _compare_json(name: str, a: bytes, b: bytes, prefix: str, declared: Volatile) -> Difference:
    try:
        doc_a, doc_b = json.loads(a), json.loads(b)
    except ValueError as err:
        return Difference(name, False, f"not readable JSON ({err})")
    covered, others = set(), []
    for path in json_differences(doc_a, doc_b):
        pattern = _declared_key(path, declared, prefix)
        if pattern is None:
            others.append(path)
        else:
            covered.add(show_key(pattern))
    if others:
        return Difference(name, False, _keys_text(others), declared)
    if not covered:
        return Difference(name, False, SAME_JSON, declared)
    return Difference(name, True, ", ".join(sorted(covered)), declared)


# --- CSV --------------------------------------------------------------------------------------

def _compare_csv(name: str, a: bytes, b: bytes, declared: Volatile) -> Difference:
    rows_a = list(csv.reader(io.StringIO(a.decode("utf-8", errors="replace"))))
    rows_b = list(csv.reader(io.StringIO(b.decode("utf-8", errors="replace"))))
    if not rows_a or not rows_b or rows_a[0] != rows_b[0]:
        return Difference(name, False, "another header", declared)
    if len(rows_a) != len(rows_b):
        return Difference(name, False, f"{len(rows_a) - 1} rows in A, {len(rows_b) - 1} in B", declared)
    header, covered, others = rows_a[0], set(), []
    for row, (left, right) in enumerate(zip(rows_a[1:], rows_b[1:]), start=1):
        if len(left) != len(right):
            others.append(f"row {row}: {len(left)} and {len(right)} cells")
            continue
        for column, x, y in zip(header, left, right):
            if x != y:
                if column in declared.columns:
                    covered.add(column)
                else:
                    others.append(f"row {row} column {column}: {x!r} vs {y!r}")
    if others:
        return Difference(name, False, _some(others, "; ", "; and {} more"), declared)
    if not covered:
        return Difference(name, False, "same cells, different bytes (quoting or line ends)", declared)
    return Difference(name, True, "columns " + ", ".join(c for c in declared.columns if c in covered), declared)


# --- archives (crate.zip) ---------------------------------------------------------------------

def _crate_prefix(folder: Path) -> str:
    """The experiment folder's path inside its crate (bmip.audit.crate: results_dir/experiment)."""
    exp = Experiment.open(folder)
    return exp.path.relative_to(exp.root).as_posix()


def _members(data: bytes) -> dict[str, bytes] | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return {info.filename: archive.read(info) for info in archive.infolist() if not info.is_dir()}
    except (zipfile.BadZipFile, OSError, ValueError):
        return None


def _compare_archive(name: str, a: bytes, b: bytes, prefix: str, declared: Volatile) -> Difference:
    members_a, members_b = _members(a), _members(b)
    if members_a is None or members_b is None:
        return Difference(name, False, "not a readable zip file", declared)

    def inside(member: str) -> str:
        """A member as the experiment file it holds, else as a member of crate.zip (the workflow, the metadata)."""
        return member.removeprefix(f"{prefix}/") if member.startswith(f"{prefix}/") else f"{CRATE}/{member}"

    problems, expected = [], []
    for member in sorted(members_a.keys() | members_b.keys()):
        if member not in members_a or member not in members_b:
            problems.append(f"{member}: only in {'A' if member in members_a else 'B'}")
            continue
        difference = compare_bytes(inside(member), members_a[member], members_b[member], prefix)
        if difference is not None:
            (expected if difference.expected else problems).append(f"{member}: {difference.detail}")
    if problems:
        return Difference(name, False, "members differ: " + _some(problems, "; ", "; and {} more"), declared)
    return Difference(name, True, "members that differ only in declared fields, and their timestamps", declared)


# --- anything else ----------------------------------------------------------------------------

def _text_lines(name: str, a: bytes, b: bytes) -> tuple[list[str], list[str]] | None:
    """Both files' lines, for a text file that decodes as UTF-8."""
    if PurePosixPath(name).suffix not in TEXT:
        return None
    try:
        return a.decode("utf-8").splitlines(), b.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        return None


def _what_differs(name: str, a: bytes, b: bytes) -> str:
    """A short, specific account of a difference in an undeclared file."""
    if name.endswith(".json"):
        try:
            keys = json_differences(json.loads(a), json.loads(b))
        except ValueError:
            keys = None
        if keys:
            return _keys_text(keys)
        if keys == []:
            return SAME_JSON
    lines = _text_lines(name, a, b)
    if lines is None:
        return (f"{len(a)} and {len(b)} bytes, sha256 {hashlib.sha256(a).hexdigest()[:12]}… and "
                f"{hashlib.sha256(b).hexdigest()[:12]}…")
    lines_a, lines_b = lines
    for number, (x, y) in enumerate(zip(lines_a, lines_b), start=1):
        if x != y:
            return f"line {number}: {x[:120]!r} vs {y[:120]!r}"
    return f"{len(lines_a)} and {len(lines_b)} lines" if len(lines_a) != len(lines_b) else "line ends differ"
