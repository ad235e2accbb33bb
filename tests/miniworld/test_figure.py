from __future__ import annotations

from pathlib import Path

from PIL import Image

from bmip.miniworld.figure import sample_figure


def test_sample_figure_is_a_png(world_root: Path, tmp_path: Path) -> None:
    out = sample_figure(world_root, tmp_path / "fig" / "samples.png", per_row=4, datasets=["toys", "objects_r"])
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] > 200
