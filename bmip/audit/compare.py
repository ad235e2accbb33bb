"""`bmip compare A B`: every file that differs between two experiment folders, and whether it may.

Two runs of one experiment (the same config, on the same machine with the same thread count),
each interrupted any number of times or not, must give the same bytes in every file but the
records of their execution that `bmip.audit.volatile` declares. A file that differs only in
declared fields is an expected difference; a file that differs anywhere else, or that one folder
lacks, is a problem. Hidden files (Snakemake's and atomic writes' temporaries) are not compared,
as the manifest leaves them out.

Experiments are compared, not folders: a path that names the experiment folder itself (where a
provenance record, the manifest or the crate puts it: results_dir/experiment, its path inside
crate.zip, its absolute path) is read relative to that folder, each folder by its own location
(`Place`), so a folder copied aside or run elsewhere compares as SAME.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import re
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, unquote

from bmip.audit.layout import CONFIG, CRATE, TABLES_DIR, Experiment, folder_files
from bmip.audit.volatile import (CRATE_METADATA, EXPERIMENT_FOLDER, LOCATION, VOLATILE_FILE, Volatile, declaration,
                                 is_volatile_file, show_key)

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


METADATA_MEMBER = CRATE_METADATA.removeprefix(f"{CRATE}/")


@dataclass(frozen=True)
class Place:
    """How one experiment folder's files name the folder itself: `crate`, its path inside its
    crate.zip, and `names`, every prefix its records give its files (that path, its config's
    results_dir/experiment, its absolute path; each also as a URI path, as the crate's ids write
    it). A path under one of them is read relative to it."""

    crate: str = ""
    names: tuple[str, ...] = ()

    @classmethod
    def of(cls, folder: Path) -> "Place":
        exp = Experiment.open(folder)
        config = exp.config or {}
        recorded = (PurePosixPath(str(config["results_dir"]), str(config["experiment"])).as_posix()
                    if config.get("results_dir") and config.get("experiment") else "")
        crate = _crate_folder(Path(folder) / CRATE) or recorded
        names = {crate, recorded, exp.path.as_posix(), Path(folder).absolute().as_posix()} - {"", ".", "/"}
        names |= {quote(name) for name in names}
        return cls(crate, tuple(sorted(names, key=lambda n: (-len(n), n))))

    def relative(self, text: str, used: set[str]) -> str:
        """`text` with every path under this folder written `<experiment folder>/...`; the names
        found are added to `used`."""
        if not self.names or not text:
            return text
        return _pattern(self.names).sub(lambda m: used.add(m[2]) or m[1] + EXPERIMENT_FOLDER, text)

    def relative_json(self, value: Any, used: set[str]) -> Any:
        if isinstance(value, str):
            return self.relative(value, used)
        if isinstance(value, list):
            items = [self.relative_json(v, used) for v in value]
            keys = _record_keys(items)
            if keys is not None and keys != _record_keys(value):
                # Records their writer sorted by paths that held the folder's location: sorted without it.
                items = [item for _, item in sorted(zip(keys, items), key=lambda pair: pair[0])]
            return items
        if isinstance(value, dict):
            return {self.relative(k, used): self.relative_json(v, used) for k, v in value.items()}
        return value


NOWHERE = Place()


@functools.lru_cache(maxsize=16)
def _pattern(names: tuple[str, ...]) -> re.Pattern:
    """A name (longest first) where a path starts (the text's start or after a character no path
    holds, such as `#` of an id or `:`) and ends (at `/`, the end or such a character)."""
    return re.compile(r"(^|[^\w.~/-])(" + "|".join(map(re.escape, names)) + r")(?=/|$|[^\w.~/-])")


def _crate_folder(crate: Path) -> str:
    """The experiment folder's path inside a crate.zip: the Dataset the crate's root holds
    (bmip.audit.crate puts it at results_dir/experiment); "" when there is no readable crate."""
    try:
        with zipfile.ZipFile(crate) as archive:
            graph = json.loads(archive.read(METADATA_MEMBER))["@graph"]
        entities = {e["@id"]: e for e in graph if isinstance(e, dict) and isinstance(e.get("@id"), str)}
        parts = entities["./"].get("hasPart", [])
        for part in parts if isinstance(parts, list) else [parts]:
            entity = entities.get(part.get("@id")) if isinstance(part, dict) else None
            types = entity.get("@type") if entity else None
            if entity is not None and "Dataset" in (types if isinstance(types, list) else [types]):
                return unquote(entity["@id"]).rstrip("/")
    except (OSError, KeyError, TypeError, AttributeError, ValueError, zipfile.BadZipFile):
        pass
    return ""


def _moved(used_a: set[str], used_b: set[str]) -> str:
    """What to say when the two files name their experiment folders differently, else ""."""
    if used_a == used_b:
        return ""
    return (f"the experiment folder's location in paths ({', '.join(sorted(used_a)) or 'none'} in A, "
            f"{', '.join(sorted(used_b)) or 'none'} in B)")


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
    places = (Place.of(a), Place.of(b))
    for name in sorted(files_a | files_b):
        if name not in files_b or name not in files_a:
            where = "A" if name in files_a else "B"
            result.differences.append(Difference(name, False, f"only in {where}"))
            continue
        difference = compare_bytes(name, (a / name).read_bytes(), (b / name).read_bytes(), places)
        if difference is None:
            result.identical += 1
        else:
            result.differences.append(difference)
    return result


def compare_bytes(name: str, a: bytes, b: bytes, places: tuple[Place, Place] = (NOWHERE, NOWHERE)
                  ) -> Difference | None:
    """None if the contents are the same, else what differs in file `name` and whether it may.
    `places`: how each folder names itself; paths under it are compared relative to it."""
    if a == b:
        return None
    declared = declaration(name)
    if declared is not None and declared.whole:
        return Difference(name, True, "the whole file", declared)
    if declared is not None and declared.archive:
        return _compare_archive(name, a, b, places, declared)
    used_a, used_b = set(), set()
    docs = _json_pair(name, a, b) if declared is None or not declared.columns else None
    if isinstance(docs, tuple):
        doc_a, doc_b = places[0].relative_json(docs[0], used_a), places[1].relative_json(docs[1], used_b)
        return _compare_json(name, doc_a, doc_b, _moved(used_a, used_b), declared)
    if declared is not None and not declared.columns:
        return Difference(name, False, f"not readable JSON ({docs or 'not a .json file'})", declared)
    texts = _texts(name, a, b)
    if texts is None:
        return Difference(name, False, _bytes_differ(a, b), declared)
    text_a, text_b = places[0].relative(texts[0], used_a), places[1].relative(texts[1], used_b)
    moved = _moved(used_a, used_b)
    if declared is not None:
        return _compare_csv(name, text_a, text_b, moved, declared)
    if text_a == text_b and moved:
        return Difference(name, True, moved, LOCATION)
    return Difference(name, False, _lines_differ(text_a.splitlines(), text_b.splitlines()))


def _expected(name: str, covered: list[str], moved: str, declared: Volatile | None, same: str) -> Difference:
    """The difference of a file whose every difference is `covered` by its declaration or `moved`;
    a problem saying `same` when there is neither (the same content in other bytes)."""
    if not covered and not moved:
        return Difference(name, False, same, declared)
    return Difference(name, True, "; ".join(filter(None, (", ".join(covered), moved))), declared or LOCATION)


# --- JSON -------------------------------------------------------------------------------------

def _record_keys(value: list[Any]) -> list[str] | None:
    """Each record's "path" or "@id", if every item of the list is a record with its own."""
    for key in ("path", "@id"):
        if value and all(isinstance(v, dict) and isinstance(v.get(key), str) for v in value) \
                and len({v[key] for v in value}) == len(value):
            return [v[key] for v in value]
    return None


def _keyed(value: Any) -> Any:
    """Lists of records keyed by their "path" or "@id", other lists by position."""
    if isinstance(value, list):
        keys = _record_keys(value)
        return dict(zip(keys, value)) if keys is not None else {str(i): v for i, v in enumerate(value)}
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


def _segment_matches(pattern: str, key: str) -> bool:
    if pattern == VOLATILE_FILE:  # a listing's entry for a volatile file; in a crate, under the experiment folder
        return is_volatile_file(key.removeprefix(f"{EXPERIMENT_FOLDER}/"))
    return fnmatchcase(key, pattern)


def _declared_key(path: tuple[str, ...], declared: Volatile | None) -> tuple[str, ...] | None:
    """The declared key path covering `path` (itself or a parent of it), if any."""
    for pattern in declared.key_paths() if declared is not None else []:
        if len(pattern) <= len(path) and all(_segment_matches(p, k) for p, k in zip(pattern, path)):
            return pattern
    return None


def _json_pair(name: str, a: bytes, b: bytes) -> tuple[Any, Any] | str | None:
    """Both documents of a .json file, or why one is not JSON; None for another file."""
    if not name.endswith(".json"):
        return None
    try:
        return json.loads(a), json.loads(b)
    except ValueError as err:
        return str(err)


def _compare_json(name: str, doc_a: Any, doc_b: Any, moved: str, declared: Volatile | None) -> Difference:
    """Two documents (their paths already relative to their experiment folders) key by key."""
    covered, others = set(), []
    for path in json_differences(doc_a, doc_b):
        pattern = _declared_key(path, declared)
        if pattern is None:
            others.append(path)
        else:
            covered.add(show_key(pattern))
    if others:
        return Difference(name, False, _keys_text(others), declared)
    return _expected(name, sorted(covered), moved, declared, SAME_JSON)


# --- CSV --------------------------------------------------------------------------------------

def _rows(header: list[str], rows: list[list[str]], declared: Volatile) -> dict[str, list[str]] | None:
    """Rows by their `row_key` cell (by position, `row 1`, `row 2`..., without one); None if the
    table has no such column or a key repeats."""
    if not declared.row_key:
        return {f"row {i}": row for i, row in enumerate(rows, start=1)}
    if declared.row_key not in header:
        return None
    column = header.index(declared.row_key)
    keyed = {f"{declared.row_key} {(row[column] if column < len(row) else '')!r}": row for row in rows}
    return keyed if len(keyed) == len(rows) else None


def _volatile_row(header: list[str], row: list[str], declared: Volatile) -> bool:
    """Whether a row holds nothing but its key and declared columns (the rest empty or 0)."""
    return bool(declared.row_key) and all(
        cell in ("", "0") for column, cell in zip(header, row) if column not in (*declared.columns, declared.row_key))


def _compare_csv(name: str, text_a: str, text_b: str, moved: str, declared: Volatile) -> Difference:
    """Two tables (their paths already relative to their experiment folders) cell by cell, rows
    matched by position or by the declaration's `row_key`."""
    rows_a, rows_b = list(csv.reader(io.StringIO(text_a))), list(csv.reader(io.StringIO(text_b)))
    if not rows_a or not rows_b or rows_a[0] != rows_b[0]:
        return Difference(name, False, "another header", declared)
    header = rows_a[0]
    keyed_a, keyed_b = _rows(header, rows_a[1:], declared), _rows(header, rows_b[1:], declared)
    if keyed_a is None or keyed_b is None or (not declared.row_key and len(rows_a) != len(rows_b)):
        return Difference(name, False, f"{len(rows_a) - 1} rows in A, {len(rows_b) - 1} in B", declared)
    covered, others, alone = set(), [], []
    for key in [*keyed_a, *(k for k in keyed_b if k not in keyed_a)]:
        if key not in keyed_a or key not in keyed_b:
            where, row = ("A", keyed_a[key]) if key in keyed_a else ("B", keyed_b[key])
            (alone if _volatile_row(header, row, declared) else others).append(f"{key} only in {where}")
            continue
        left, right = keyed_a[key], keyed_b[key]
        if len(left) != len(right):
            others.append(f"{key}: {len(left)} and {len(right)} cells")
            continue
        for column, x, y in zip(header, left, right):
            if x != y:
                if column in declared.columns:
                    covered.add(column)
                else:
                    others.append(f"{key} column {column}: {x!r} vs {y!r}")
    if others:
        return Difference(name, False, _some(others, "; ", "; and {} more"), declared)
    shown = (["columns " + ", ".join(c for c in declared.columns if c in covered)] if covered else []) + \
        ([f"rows holding only those columns: {_some(alone, ', ', ' and {} more')}"] if alone else [])
    return _expected(name, ["; ".join(shown)] if shown else [], moved, declared,
                     "same cells, different bytes (quoting or line ends)")


# --- archives (crate.zip) ---------------------------------------------------------------------

def _members(data: bytes) -> dict[str, bytes] | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return {info.filename: archive.read(info) for info in archive.infolist() if not info.is_dir()}
    except (zipfile.BadZipFile, OSError, ValueError):
        return None


def _held(members: dict[str, bytes], place: Place) -> dict[str, tuple[str, bytes]]:
    """Members by the file each holds: a file of the experiment folder by its path relative to the
    folder (wherever the crate puts the folder, its name as a path or as a URI path: ro-crate-py
    writes both), anything else (the workflow, the metadata) as `crate.zip/<member>`; with each
    member's own name, to show."""
    folders = [f"{name}/" for name in dict.fromkeys((place.crate, quote(place.crate))) if name]

    def held(member: str) -> str:
        folder = next((f for f in folders if member.startswith(f)), None)
        return member.removeprefix(folder) if folder else f"{CRATE}/{member}"

    return {held(member): (member, data) for member, data in members.items()}


def _compare_archive(name: str, a: bytes, b: bytes, places: tuple[Place, Place], declared: Volatile) -> Difference:
    members_a, members_b = _members(a), _members(b)
    if members_a is None or members_b is None:
        return Difference(name, False, "not a readable zip file", declared)
    held_a, held_b = _held(members_a, places[0]), _held(members_b, places[1])
    problems, expected = [], []
    for held in sorted(held_a.keys() | held_b.keys()):
        if held not in held_a or held not in held_b:
            member = (held_a.get(held) or held_b[held])[0]
            problems.append(f"{member}: only in {'A' if held in held_a else 'B'}")
            continue
        (member, data_a), (_, data_b) = held_a[held], held_b[held]
        difference = compare_bytes(held, data_a, data_b, places)
        if difference is not None:
            (expected if difference.expected else problems).append(f"{member}: {difference.detail}")
    if problems:
        return Difference(name, False, "members differ: " + _some(problems, "; ", "; and {} more"), declared)
    return Difference(name, True, "members that differ only in declared fields, and their timestamps", declared)


# --- anything else ----------------------------------------------------------------------------

def _texts(name: str, a: bytes, b: bytes) -> tuple[str, str] | None:
    """Both files' text, for a text file that decodes as UTF-8."""
    if PurePosixPath(name).suffix not in TEXT:
        return None
    try:
        return a.decode("utf-8"), b.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _bytes_differ(a: bytes, b: bytes) -> str:
    return (f"{len(a)} and {len(b)} bytes, sha256 {hashlib.sha256(a).hexdigest()[:12]}… and "
            f"{hashlib.sha256(b).hexdigest()[:12]}…")


def _lines_differ(lines_a: list[str], lines_b: list[str]) -> str:
    """The first line that differs between two text files."""
    for number, (x, y) in enumerate(zip(lines_a, lines_b), start=1):
        if x != y:
            return f"line {number}: {x[:120]!r} vs {y[:120]!r}"
    return f"{len(lines_a)} and {len(lines_b)} lines" if len(lines_a) != len(lines_b) else "line ends differ"
