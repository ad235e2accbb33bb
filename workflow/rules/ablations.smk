# Ablations (config `ablations:`, bmip/ablations.py): every variant of an ablation runs as the method
# `<method>@<label>` on its ablation's protocols, datasets and seeds. Per ablation, one train job
# and one evaluate job per variant (every dataset and seed of the ablation: variants are many small
# runs), by the same `bmip train` / `bmip evaluate` commands as the methods; then one job writes
# every ablation's table and figure and the paired comparison of the main table.
import re

from bmip import ablations as A
from bmip.report.ablations import ablation_outputs

ABLATIONS = A.ablations(config)
ABLATION_OUTPUTS = ablation_outputs(config)
PAIRED = "paired_base2novel" in ABLATION_OUTPUTS["tables"]


def ablation_tables():
    return expand(f"{EXP}/tables/{{name}}.{{ext}}", name=ABLATION_OUTPUTS["tables"], ext=("csv", "md", "tex"))


def ablation_figures():
    return expand(f"{EXP}/figures/{{name}}.{{ext}}", name=ABLATION_OUTPUTS["figures"], ext=("png", "pdf"))


def variant_runs(ablation, wildcards):
    """The resolved run configs of one variant's trained models: as a param, changing one
    variant's recipe reruns only that variant's jobs."""
    grid = A.method_config(config, wildcards.method)
    runs = [
        run_config(config, training, wildcards.method, dataset, seed)
        for training, dataset in P.trainings(grid)
        for seed in ablation.seeds
    ]
    return json.dumps(runs, sort_keys=True)


for _ablation in ABLATIONS:
    _grid = A.method_config(config, _ablation.variants[0].name)  # every variant of an ablation: one grid
    _seeds = list(_ablation.seeds)
    _trained = P.trainings(_grid)
    _method = "|".join(re.escape(name) for name in _ablation.names)

    rule:
        name:
            f"ablation_train_{_ablation.name}"
        wildcard_constraints:
            method=_method,
        input:
            splits=[f"{EXP}/splits/{d}/shot_{config['shots']}-seed_{s}.json" for d in dict.fromkeys(d for _, d in _trained) for s in _seeds],
            backbone=backbone_files(),
            data_check=data_check_records({d for _, d in _trained}),
        output:
            **{
                key: [f"{EXP}/train/{t}/{{method}}/{d}/seed{s}/{name}" for t, d in _trained for s in _seeds]
                for key, name in (("prompts", P.PROMPTS), ("log", P.TRAIN_LOG), ("provenance", P.PROVENANCE))
            },
        log:
            f"{EXP}/logs/ablation_train_{_ablation.name}/{{method}}.log",
        conda:
            ENV
        threads: RES["train"]["threads"]
        resources:
            **job_resources("train"),
        params:
            bmip=bmip_command,
            config=experiment_config,
            runs=lambda wildcards, a=_ablation: variant_runs(a, wildcards),
            seeds=" ".join(str(s) for s in _seeds),
        shell:
            "printf '%s' {params.config:q} | OMP_NUM_THREADS={threads} {params.bmip} train - --method {wildcards.method:q} "
            "--all --seed {params.seeds} > {log} 2>&1"

    _evals = P.evaluations(_grid)

    rule:
        name:
            f"ablation_evaluate_{_ablation.name}"
        wildcard_constraints:
            method=_method,
        input:
            prompts=[
                str(P.checkpoint_for(_grid, p, "{method}", d, s))
                for p, d in _evals
                for s in _seeds
            ],
            data=sorted({dataset_ready(d) for _, d in _evals}),
            data_check=data_check_records({d for _, d in _evals}),
        output:
            **{
                key: [f"{EXP}/{p}/{{method}}/{d}/seed{s}/{name}" for p, d in _evals for s in _seeds]
                for key, name in (("metrics", P.METRICS), ("provenance", P.PROVENANCE))
            },
        log:
            f"{EXP}/logs/ablation_evaluate_{_ablation.name}/{{method}}.log",
        conda:
            ENV
        threads: RES["evaluate"]["threads"]
        resources:
            **job_resources("evaluate"),
        params:
            bmip=bmip_command,
            config=experiment_config,
            runs=lambda wildcards, a=_ablation: variant_runs(a, wildcards),
            settings=json.dumps({p: _grid["protocols"][p] for p in _grid["protocols"]}, sort_keys=True),
            seeds=" ".join(str(s) for s in _seeds),
        shell:
            "printf '%s' {params.config:q} | OMP_NUM_THREADS={threads} {params.bmip} evaluate - --method {wildcards.method:q} "
            "--all --seed {params.seeds} > {log} 2>&1"


def ablation_metrics():
    return [
        f"{EXP}/{p}/{v}/{d}/seed{s}/{P.METRICS}"
        for a in ABLATIONS
        for v in a.names
        for p, d in P.evaluations(A.method_config(config, v))
        for s in a.seeds
    ]


if ABLATIONS or PAIRED:

    rule ablation_report:
        # Every ablation's table (per variant, per dataset and averaged, with the paired difference
        # to its reference and a seeded 95% bootstrap interval) and figure, and the same paired
        # comparison for the main base-to-novel table.
        input:
            config=f"{EXP}/config.yaml",
            variants=ablation_metrics(),
            methods=[m for m in metrics_files() if "/base2novel/" in m] if PAIRED else [],
        output:
            tables=ablation_tables(),
            figures=ablation_figures(),
        log:
            f"{EXP}/logs/ablation_report.log",
        conda:
            ENV
        resources:
            **RES["light"],
        params:
            bmip=bmip_command,
            tables=f"{EXP}/tables",
            figures=f"{EXP}/figures",
        shell:
            "{params.bmip} ablations {input.config} {input.variants} {input.methods} --tables {params.tables} "
            "--figures {params.figures} > {log} 2>&1"
