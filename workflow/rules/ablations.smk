# Ablations (config `ablations:`, bmip/ablations.py): every variant of an ablation runs as the method
# `<method>@<label>` on its ablation's protocols, datasets and seeds, by the same `bmip train` /
# `bmip evaluate` commands as the methods, in per-ablation rules (ablation_train_<name>,
# ablation_evaluate_<name>) cut into jobs like the methods' (workflow.batch_datasets, batch_seeds);
# then one job writes every ablation's table and figure and the paired comparison of the main table.
# Job granularity follows workflow.batch_datasets / batch_seeds, as for the methods: one job per
# variant (every dataset and seed), per (variant, training protocol, dataset), and/or per seed.
for _ablation in ABLATIONS:
    _grid = A.method_config(config, _ablation.variants[0].name)  # every variant of an ablation: one grid
    _trained, _evals = P.trainings(_grid), P.evaluations(_grid)
    _constraints = {"method": _alternatives(_ablation.names), "seed": _alternatives(_ablation.seeds),
                    "training": _alternatives(t for t, _ in _trained), "protocol": _alternatives(p for p, _ in _evals),
                    "dataset": _alternatives([d for _, d in _trained] + [d for _, d in _evals])}
    _seed_parts = [] if BATCH_SEEDS else ["seed{seed}"]
    _seed_list = lambda: list(_ablation.seeds) if BATCH_SEEDS else ["{seed}"]  # noqa: E731
    _train_pairs = _trained if BATCH_DATASETS else [("{training}", "{dataset}")]
    _eval_pairs = _evals if BATCH_DATASETS else [("{protocol}", "{dataset}")]
    _train_log = os.path.join(EXP, "logs", f"ablation_train_{_ablation.name}",
                              *([] if BATCH_DATASETS else ["{training}"]), "{method}",
                              *([] if BATCH_DATASETS else ["{dataset}"]), *_seed_parts) + ".log"
    # folders in the order of the runs' own (the crate tells a job's files by them)
    _evaluate_log = os.path.join(EXP, "logs", f"ablation_evaluate_{_ablation.name}",
                                 *([] if BATCH_DATASETS else ["{protocol}"]), "{method}",
                                 *([] if BATCH_DATASETS else ["{dataset}"]), *_seed_parts) + ".log"

    rule:
        name:
            f"ablation_train_{_ablation.name}"
        wildcard_constraints:
            **_constraints,
        input:
            splits=lambda wildcards, a=_ablation, g=_grid: [
                P.split_file(EXP, d, config["shots"], s)
                for d in dict.fromkeys(d for _, d in ablation_trained(g, wildcards))
                for s in ablation_seeds(a, wildcards)
            ],
            backbone=backbone_files(),
            data_check=lambda wildcards, g=_grid: data_check_records({d for _, d in ablation_trained(g, wildcards)}),
        output:
            **{
                key: [P.train_file(EXP, t, "{method}", d, s, name) for t, d in _train_pairs for s in _seed_list()]
                for key, name in (("prompts", P.PROMPTS), ("log", P.TRAIN_LOG), ("provenance", P.PROVENANCE))
            },
        log:
            _train_log,
        benchmark:
            job_benchmark(f"ablation_train_{_ablation.name}", _train_log),
        conda:
            ENV
        threads: RES["train"]["threads"]
        resources:
            **job_resources("train"),
        params:
            bmip=bmip_command,
            ledger=ledger_command(f"ablation_train_{_ablation.name}"),
            config=experiment_config,
            runs=lambda wildcards, a=_ablation: variant_runs(a, ablation_trained, wildcards),
            settings=settings_of("train"),
            code=code_of("train"),
            what=lambda wildcards: "--all" if BATCH_DATASETS else
            f"--protocol {wildcards.training} --dataset {shlex.quote(wildcards.dataset)}",
            seeds=lambda wildcards, a=_ablation: " ".join(str(s) for s in ablation_seeds(a, wildcards)),
        shell:
            "printf '%s' {params.config:q} | OMP_NUM_THREADS={threads} {params.bmip} train - --method {wildcards.method:q} "
            "{params.what} --seed {params.seeds} > {log:q} 2>&1 && {params.ledger} {output:q}"

    rule:
        name:
            f"ablation_evaluate_{_ablation.name}"
        wildcard_constraints:
            **_constraints,
        input:
            prompts=lambda wildcards, a=_ablation, g=_grid: list(dict.fromkeys(
                str(P.checkpoint_for(g, p, wildcards.method, d, s))
                for p, d in ablation_evaluated(g, wildcards)
                for s in ablation_seeds(a, wildcards)
            )),
            data_check=lambda wildcards, g=_grid: data_check_records({d for _, d in ablation_evaluated(g, wildcards)}),
            backbone=backbone_files(),
        output:
            **{
                key: [P.eval_file(EXP, p, "{method}", d, s, name) for p, d in _eval_pairs for s in _seed_list()]
                for key, name in (("metrics", P.METRICS), ("predictions", P.PREDICTIONS), ("gates", P.GATES),
                                  ("mechanism", P.MECHANISM), ("provenance", P.PROVENANCE))
            },
        log:
            _evaluate_log,
        benchmark:
            job_benchmark(f"ablation_evaluate_{_ablation.name}", _evaluate_log),
        conda:
            ENV
        threads: RES["evaluate"]["threads"]
        resources:
            **job_resources("evaluate"),
        params:
            bmip=bmip_command,
            ledger=ledger_command(f"ablation_evaluate_{_ablation.name}"),
            config=experiment_config,
            runs=lambda wildcards, a=_ablation: variant_runs(a, ablation_evaluated, wildcards),
            protocols=json.dumps(_grid["protocols"], sort_keys=True),
            settings=settings_of("evaluate"),
            code=code_of("evaluate"),
            what=lambda wildcards: "--all" if BATCH_DATASETS else
            f"--protocol {wildcards.protocol} --dataset {shlex.quote(wildcards.dataset)}",
            seeds=lambda wildcards, a=_ablation: " ".join(str(s) for s in ablation_seeds(a, wildcards)),
        shell:
            "printf '%s' {params.config:q} | OMP_NUM_THREADS={threads} {params.bmip} evaluate - --method {wildcards.method:q} "
            "{params.what} --seed {params.seeds} > {log:q} 2>&1 && {params.ledger} {output:q}"


if ABLATIONS or PAIRED:

    rule ablation_report:
        # Every ablation's table (per variant, per dataset and averaged, with the paired difference
        # to its reference and a seeded 95% bootstrap interval) and figure, and the same paired
        # comparison for the main base-to-novel table.
        input:
            config=f"{EXP}/config.yaml",
            variants=ablation_metrics(),
            methods=[m for m in metrics_files() if "/base2novel/" in m] if PAIRED else [],
            # Each run's per-image predictions, beside its metrics.json: the image-level intervals.
            predictions=[str(Path(m).with_name(P.PREDICTIONS)) for m in
                         ablation_metrics() + ([m for m in metrics_files() if "/base2novel/" in m] if PAIRED else [])],
        output:
            tables=[
                report(path, caption="../report/ablations.rst", category="Tables", labels={"table": Path(path).stem})
                if path.endswith(".csv") else path
                for path in ablation_tables()
            ],
            figures=[
                report(path, caption="../report/figures/ablation.rst", category="Figures", labels={"figure": Path(path).stem})
                if path.endswith(".png") else path
                for path in ablation_figures()
            ],
        log:
            f"{EXP}/logs/ablation_report.log",
        benchmark:
            job_benchmark("ablation_report", f"{EXP}/logs/ablation_report.log"),
        conda:
            ENV
        resources:
            **RES["light"],
        params:
            bmip=bmip_command,
            ledger=ledger_command("ablation_report"),
            tables=lambda wildcards, output: os.path.dirname(output.tables[0]),
            figures=lambda wildcards, output: os.path.join(os.path.dirname(os.path.dirname(output.tables[0])), "figures"),
            code=code_of("ablation_report"),
        shell:
            "{params.bmip} ablations {input.config:q} {input.variants:q} {input.methods:q} --tables {params.tables:q} "
            "--figures {params.figures:q} > {log:q} 2>&1 && {params.ledger} {output:q}"
