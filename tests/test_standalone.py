"""The repository stands alone: no tracked file points outside it (a user clones only this)."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Paths and names of material that lives beside a development checkout, never in a user's clone.
OUTSIDE = re.compile(
    r"\.\./+shared\b|/work/|\bshared/(coop_splits|reference|hooks)\b|shared (reference|folder|material)"
    r"|official_bmip_code\.md|coprompt\.md\b",
    re.IGNORECASE,
)
DOC_NAME = re.compile(r"\b([A-Z][A-Z_]+\.md)\b")  # METHODS.md, DATA.md, ...
MD_LINK = re.compile(r"\]\((?!https?:|mailto:|#)([^)\s#]+)")


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    files = [REPO / name for name in listed.decode().split("\0") if name]
    out = []
    for path in files:
        if path == Path(__file__).resolve() or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" not in data[:8192]:
            out.append(path)
    return out


def test_no_tracked_file_points_outside_the_repository():
    hits = []
    for path in tracked_text_files():
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{path.relative_to(REPO)}:{n}: {line.strip()[:120]}")
    assert not hits, "references to files outside the repository:\n" + "\n".join(hits)


def test_named_documents_exist_in_the_repository():
    present = {p.name for p in REPO.rglob("*.md")}
    missing = []
    for path in tracked_text_files():
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            missing += [f"{path.relative_to(REPO)}:{n}: {name}" for name in DOC_NAME.findall(line) if name not in present]
    assert not missing, "documents named but not in the repository:\n" + "\n".join(missing)


def test_markdown_links_resolve_inside_the_repository():
    broken = []
    for path in tracked_text_files():
        if path.suffix != ".md":
            continue
        for target in MD_LINK.findall(path.read_text()):
            resolved = (path.parent / target).resolve()
            if not resolved.exists() or REPO not in (resolved, *resolved.parents):
                broken.append(f"{path.relative_to(REPO)}: {target}")
    assert not broken, "markdown links that do not resolve inside the repository:\n" + "\n".join(broken)


def test_the_guard_catches_outside_references():
    for line in ("see ../shared/METHODS.md", "in the shared reference material", "/work/shared/x",
                 "reference/official_bmip_code.md §1.3"):
        assert OUTSIDE.search(line), line
    assert not OUTSIDE.search("one visual deep prompt shared by all blocks")
