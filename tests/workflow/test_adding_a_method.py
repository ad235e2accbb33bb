"""Adding a method is its module plus one registry line: a method defined under tests/ (not in
bmip/) is registered through BMIP_METHOD_MODULES and trained, evaluated, analysed, tabulated and
audited by the workflow like a built-in one."""
from __future__ import annotations

import json
import os
import subprocess

import pandas as pd

from tests.workflow.reduced import REPO, reduced_config, snakemake_command

METHOD = "mean_ctx"  # `_` and no regulariser: the grammar the schema and the wildcards share


def _config(workdir):
    return reduced_config(
        workdir, methods=[METHOD], seeds=[1], protocols={"base2novel": {"datasets": ["toy"]}},
        recipes={"default": {METHOD: {"epochs": 1, "batch_size": 4, "options": {"n_ctx": 4}}}},
        analysis={"methods": [METHOD], "datasets": ["toy"], "seeds": [1]},
    )


def test_a_method_registered_from_outside_the_package_runs_through_the_workflow(tmp_path):
    config = _config(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "BMIP_METHOD_MODULES": "tests.workflow.mean_context"}
    done = subprocess.run(snakemake_command(tmp_path, config, "--cores", "2"), capture_output=True, text=True,
                          timeout=1200, env=env)
    assert done.returncode == 0, done.stderr[-5000:]
    exp = tmp_path / "results" / "reduced"
    run = exp / "base2novel" / METHOD / "toy" / "seed1"
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["summary"]["hm"] <= 100
    # Its declared traits at work: a frozen image tower (the shared features, read not recomputed),
    # a mechanism record, no gates, prompt positions for `bmip analyze`.
    work = json.loads((run / "provenance.json").read_text())["work"]
    assert work["image_forwards"] == 0 and work["image_features_reused"] > 0
    assert "absent" not in json.loads((run / "mechanism.json").read_text())
    assert "absent" in json.loads((run / "gates.json").read_text())
    assert (exp / "analysis" / METHOD / "toy" / "seed1" / "causal.json").is_file()
    table = pd.read_csv(exp / "tables" / "base2novel.csv")
    assert METHOD in set(table.method)
    assert (exp / "audit.txt").read_text().rstrip().splitlines()[-1].startswith("PASSED")


def test_without_its_module_the_method_is_refused_naming_the_variable(tmp_path):
    config = _config(tmp_path)
    env = {key: value for key, value in os.environ.items() if key != "BMIP_METHOD_MODULES"}
    done = subprocess.run(snakemake_command(tmp_path, config, "-n"), capture_output=True, text=True, timeout=300,
                          env=env)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert f"methods[0]: unknown method {METHOD!r}" in output and "BMIP_METHOD_MODULES" in output, output[-3000:]
