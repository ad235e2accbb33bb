"""The README's "Your own data" example, run as written: its folder layout, its config file and its
command (scripts/run.sh in a copy of the checkout), on a tiny random CLIP instead of ViT-B-16
(no download here), with the example's 8 images per class, and each method's seeds and datasets
in one job (`workflow.batch_*`: the same numbers, a third of the process start-ups)."""
from __future__ import annotations

import re

import numpy as np
from PIL import Image

from tests.workflow.reduced import REPO
from tests.workflow.test_run_script import checkout, run_script  # noqa: F401 (fixture)


def _section(readme: str) -> str:
    return readme.split("## Your own data", 1)[1].split("\n## ", 1)[0]


def test_the_readme_own_data_example_runs_as_written(checkout):  # noqa: F811
    section = _section((REPO / "README.md").read_text())
    layout = re.search(r"```text\n(.*?)```", section, re.S).group(1)
    config = re.search(r"```yaml\n(# my_birds\.yaml\n.*?)```", section, re.S).group(1)
    command = re.search(r"```bash\n(bash scripts/run\.sh [^#\n]*?)\s*#", section).group(1).split()
    data_root, dataset = layout.splitlines()[0].rstrip("/"), layout.splitlines()[1].strip().rstrip("/")
    classes = [line.split("/")[0].strip() for line in layout.splitlines()[2:] if "/" in line]
    assert classes == ["finch", "robin", "sparrow", "wren"] and command[:3] == ["bash", "scripts/run.sh", "--configfile"]
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        folder = checkout / data_root / dataset / name
        folder.mkdir(parents=True)
        for i in range(8):
            colour = np.array([60 * c, 255 - 60 * c, 128])
            pixels = np.clip(colour + rng.normal(0, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"img_{i:03d}.jpg")
    (checkout / command[3]).write_text(config)
    # The changes: a tiny random CLIP instead of downloading ViT-B-16, and fewer, longer jobs.
    done = run_script(checkout, *command[2:], "--config", "backbone={model: test-vit-tiny, pretrained: none}",
                      "workflow={batch_seeds: true, batch_datasets: true}")
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    results = checkout / "results" / "my_birds"
    table = (results / "tables" / "base2novel.md").read_text()
    for method in ("CoOp", "MaPLe", "BMIP"):
        assert f"| {method} " in table, table
    assert "Note: my_birds was trained on fewer than `shots` images" in table  # 4 training images a class, shots 16
    assert (results / "audit.txt").read_text().rstrip().splitlines()[-1].startswith("PASSED")
