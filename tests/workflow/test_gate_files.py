"""The workflow gives the gate figure and table the gate files of every gated run, ablation
variants included (a dry run: which files `bmip figures` is given, and what it writes)."""
from __future__ import annotations

import subprocess

from tests.workflow.reduced import reduced_config, snakemake_command

MIXING = {"method": "bmip", "recipe": {"epochs": 1}, "variants": {
    "gate": {}, "sum": {"options": {"aggregation": "sum"}}, "scaled_gate": {"options": {"gate_statistic": "scaled"}}}}


def test_the_figures_job_reads_the_gate_files_of_gated_variants_and_writes_the_gate_table(tmp_path):
    config = reduced_config(tmp_path, methods=["zsclip", "bmip"], protocols={"base2novel": {"datasets": ["toy"]}},
                            ablations={"mixing": MIXING})
    done = subprocess.run(snakemake_command(tmp_path, config, "-n", "-p", "--cores", "1"), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (command,) = [line for line in done.stdout.splitlines() if " figures --tables " in line]
    given = command.split(" --gates ", 1)[1].split(" --mechanism ", 1)[0].split()
    assert given == [f"results/reduced/base2novel/{method}/toy/seed{seed}/gates.json"
                     for method in ("bmip", "bmip@gate", "bmip@scaled_gate") for seed in (1, 2)]  # not bmip@sum
    assert "results/reduced/figures/bmip_gates.csv results/reduced/figures/bmip_gates.md" in command  # its outputs
