"""A reduced experiment for workflow tests: toy data, a random tiny CLIP, every protocol, 2 seeds."""
from __future__ import annotations

from pathlib import Path

import yaml

from tests.engine.toy import make_toy_dataset

REPO = Path(__file__).resolve().parents[2]


def reduced_config(workdir: Path, **changes) -> Path:
    """Write toy datasets and a reduced config under `workdir`; return the config path."""
    data = workdir / "data"
    for name in ("toy", "toy_b"):
        make_toy_dataset(data, name)
    config = {
        "experiment": "reduced",
        "results_dir": "results",
        "data_root": "data",
        "backbone": {"model": "test-vit-tiny", "pretrained": "none"},
        "seeds": [1, 2],
        "shots": 2,
        "eval_batch_size": 16,
        "methods": ["zsclip", "coop", "maple", "bmip"],
        "protocols": {
            "base2novel": {"datasets": ["toy", "toy_b"]},
            "open_world": {"datasets": ["toy"], "ratios": [100, 50, 0]},
            "cross_dataset": {"source": "toy", "targets": ["toy_b"]},
            "domain_generalization": {"source": "toy", "targets": ["toy_b"]},
        },
        "recipes": {"default": {
            "coop": {"epochs": 1, "batch_size": 4, "options": {"n_ctx": 4, "ctx_init": "a photo of a"}},
            "maple": {"epochs": 1, "options": {"depth": 3}},
            "bmip": {"epochs": 2, "options": {"depth": 3}},
        }},
        "workflow": {"batch_seeds": True, "resources": {
            "train": {"threads": 1, "mem_mb": 2000, "runtime": 10},
            "evaluate": {"threads": 1, "mem_mb": 2000, "runtime": 10},
            "light": {"threads": 1, "mem_mb": 1000, "runtime": 5},
        }},
    }
    config.update(changes)
    if "coop" in config["methods"] and "analysis" not in changes:  # bmip analyze's rule, on one model
        trained = config["protocols"].get("base2novel", {}).get("datasets", [])
        config["analysis"] = {"methods": ["coop"], "datasets": trained[:1], "seeds": [config["seeds"][0]]}
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake_command(workdir: Path, config: Path, *extra: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
            "--directory", str(workdir), "--configfile", str(config), *extra]
