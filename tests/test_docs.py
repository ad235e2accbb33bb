"""The README and docs/ pages: every relative link points at a file that exists, and every page in
docs/ is reachable from the README."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s#]+)(#[^)\s]*)?\)")


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        for target, _ in LINK.findall(page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert not broken, broken


def test_every_docs_page_is_linked_from_the_readme_or_another_page():
    linked = {(page.parent / target).resolve() for page in PAGES for target, _ in LINK.findall(page.read_text())}
    orphans = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not orphans, orphans


def test_the_readme_starts_with_its_two_commands_in_one_screen():
    lines = (REPO / "README.md").read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("bash scripts/run.sh"))
    assert first < 60 and lines[first + 1].startswith("bash scripts/test.sh")
