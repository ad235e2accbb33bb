"""What an audit found: problems (the audit fails) and warnings (stated; fatal only with --strict)."""
from __future__ import annotations

from dataclasses import dataclass, field

PROBLEM = "problem"
WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    """One finding, always naming the file it is about (relative to the experiment folder)."""

    severity: str
    file: str
    message: str

    def line(self) -> str:
        return f"{self.severity.upper()} {self.file}: {self.message}"


@dataclass
class Findings:
    """Findings plus the counts the summary reports."""

    items: list[Finding] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    def problem(self, file: str, message: str) -> None:
        self.items.append(Finding(PROBLEM, file, message))

    def warning(self, file: str, message: str) -> None:
        self.items.append(Finding(WARNING, file, message))

    def count(self, what: str, n: int = 1) -> None:
        """One more `what` checked."""
        self.counts[what] = self.counts.get(what, 0) + n

    def skip(self, what: str) -> None:
        """One more `what` that could not be checked (e.g. a data file no longer at its recorded path)."""
        self.skipped[what] = self.skipped.get(what, 0) + 1

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.items if f.severity == PROBLEM]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.items if f.severity == WARNING]
