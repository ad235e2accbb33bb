# Evaluation. Without workflow.batch_datasets, one rule per configured protocol, except that
# base2novel and open_world of the same datasets share evaluate_base_trained: one job per
# (method, dataset[, seed]) on the base-trained model of that dataset writes both; cross_dataset
# and domain_generalization have one job per (method[, seed]) running the source-trained model on
# every target. With it, the single rule `evaluate` has one job per
# (method[, seed]) covering every protocol and dataset. Each job scores a trained model's test set
# in one pass (bmip.engine.scoring); the evaluations of the methods whose image tower is frozen
# (zsclip, coop, cocoop, lang) read the image features of each test set, computed once by the
# image_features rule: one job per dataset, or one for all of them when datasets are batched.


rule image_features:
    input:
        data_check=lambda wildcards: data_check_records(FEATURE_DATASETS if BATCH_DATASETS else [wildcards.dataset]),
        backbone=backbone_files(),
    output:
        [features_file(d) for d in FEATURE_DATASETS] if BATCH_DATASETS else features_file("{dataset}"),
    log:
        f"{EXP}/logs/image_features/all.log" if BATCH_DATASETS else f"{EXP}/logs/image_features/{{dataset}}.log",
    benchmark:
        job_benchmark("image_features", f"{EXP}/logs/image_features/all.log" if BATCH_DATASETS else f"{EXP}/logs/image_features/{{dataset}}.log"),
    conda:
        ENV
    threads: RES["evaluate"]["threads"]
    resources:
        **job_resources("evaluate"),
    params:
        bmip=bmip_command,
        config=experiment_config,
        ledger=ledger_command("image_features"),
        # What the features depend on besides the images and the weights file (bmip.engine.features).
        settings=settings_of("image_features"),
        code=code_of("image_features"),
        datasets=lambda wildcards: FEATURE_DATASETS if BATCH_DATASETS else [wildcards.dataset],
    shell:
        "printf '%s' {params.config:q} | OMP_NUM_THREADS={threads} {params.bmip} features - "
        "--dataset {params.datasets:q} > {log:q} 2>&1 && {params.ledger} {output:q}"


for _name, _protocols in eval_rules().items():
    _log = (
        job_log(_name, "{method}", "{dataset}")
        if eval_per_dataset(_protocols)
        else job_log(_name, "{method}")
    )

    rule:
        name:
            _name
        input:
            unpack(eval_inputs(_protocols)),
        output:
            metrics=eval_outputs(_protocols, P.METRICS),
            predictions=eval_outputs(_protocols, P.PREDICTIONS),
            gates=eval_outputs(_protocols, P.GATES),
            mechanism=eval_outputs(_protocols, P.MECHANISM),
            provenance=eval_outputs(_protocols, P.PROVENANCE),
        log:
            _log,
        benchmark:
            job_benchmark(_name, _log),
        conda:
            ENV
        threads: RES["evaluate"]["threads"]
        resources:
            **job_resources("evaluate"),
        params:
            bmip=bmip_command,
            ledger=ledger_command(_name),
            config=experiment_config,
            # What shapes the numbers: the trained runs' configs, these protocols' settings, the
            # config's evaluation settings and the code.
            runs=eval_runs(_protocols),
            protocols=json.dumps({p: PROTOCOLS[p] for p in _protocols}, sort_keys=True),
            settings=settings_of("evaluate"),
            code=code_of("evaluate"),
            what=eval_what(_protocols),
            seeds=seeds_arg,
        shell:
            "printf '%s' {params.config:q} | OMP_NUM_THREADS={threads} {params.bmip} evaluate - "
            "--method {wildcards.method:q} {params.what} --seed {params.seeds} > {log:q} 2>&1 "
            "&& {params.ledger} {output:q}"
