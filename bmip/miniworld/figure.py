"""A figure of sample images from each mini-dataset, so a reader sees what the benchmark looks like."""
from __future__ import annotations

import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from bmip.data.decode import read_rgb  # noqa: E402

from bmip.miniworld.datasets import SPLIT_FILE, WORLD_FILE  # noqa: E402
from bmip.io import atomic_write_bytes  # noqa: E402


def _samples(root: Path, dataset: str, per_row: int) -> list[tuple[np.ndarray, str]]:
    """The first test image of the first ``per_row`` classes (fixed, so the figure is reproducible)."""
    split = json.loads((root / dataset / SPLIT_FILE).read_text())
    first: dict[int, list] = {}
    for rel, label, name in split["test"]:
        first.setdefault(label, [rel, name])
    picked = [first[label] for label in sorted(first)[:per_row]]
    return [(np.asarray(read_rgb(root / dataset / "images" / rel, f"miniworld {dataset}")), name) for rel, name in picked]


def sample_figure(root: Path, out: Path, per_row: int = 8, datasets: list[str] | None = None) -> Path:
    """One row per dataset (name, style, class count), ``per_row`` classes each, captioned with class names."""
    root = Path(root)
    spec = json.loads((root / WORLD_FILE).read_text())["spec"]
    world = spec["datasets"]
    names = datasets or list(world)
    fig, axes = plt.subplots(len(names), per_row, figsize=(1.45 * per_row, 1.75 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        entry = world[name]
        samples = _samples(root, entry["dir"], per_row)
        for col, ax in enumerate(axes[row]):
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if col >= len(samples):
                continue
            image, classname = samples[col]
            ax.imshow(image, interpolation="nearest")
            ax.set_title(classname.replace(" ", "\n", 1), fontsize=6.5, pad=2)
        axes[row][0].set_ylabel(
            f"{name}\n{entry['style']}, {len(entry['classnames'])} cl.", fontsize=8, rotation=0, ha="right", va="center"
        )
    fig.suptitle(f"miniworld samples (seed {spec['seed']})", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=130)
    plt.close(fig)
    out = Path(out)
    atomic_write_bytes(out, buffer.getvalue())
    return out
