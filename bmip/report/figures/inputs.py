"""What the figures are drawn from (read by bmip.report.figures.read_inputs; each figure module
takes it). No matplotlib or pandas at import: the workflow reads the figure names without them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Inputs:
    """What the figures are drawn from: tables by name (empty if absent), training logs, gate
    statistics, mechanism records and causal checks."""

    tables: dict[str, "pd.DataFrame"] = field(default_factory=dict)
    train_logs: "pd.DataFrame | None" = None
    gates: "pd.DataFrame | None" = None
    mechanism: "pd.DataFrame | None" = None
    causal: "pd.DataFrame | None" = None

    def table(self, name: str) -> "pd.DataFrame":
        import pandas as pd

        return self.tables.get(name, pd.DataFrame())
