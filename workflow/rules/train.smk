# One training job per (training protocol, method, dataset, seed). workflow.batch_seeds makes it
# one job per (protocol, method, dataset) for every seed; workflow.batch_datasets one job per
# method (and seed) for every dataset. base2novel trains on the base classes (its model also
# serves open_world); cross_dataset trains on all classes of the source (its model also serves
# domain_generalization).


TRAIN_LOG = (
    job_log("train", "{method}") if BATCH_DATASETS else job_log("train", "{training}", "{method}", "{dataset}")
)


rule train:
    input:
        splits=split_files,
        backbone=backbone_files(),
        data_check=lambda wildcards: data_check_records({d for _, d in trainings_of(wildcards)}),
        captions=lambda wildcards: method_captions(wildcards.method, {d for _, d in trainings_of(wildcards)}),
    output:
        prompts=train_outputs(P.PROMPTS),
        log=train_outputs(P.TRAIN_LOG),
        provenance=train_outputs(P.PROVENANCE),
    log:
        TRAIN_LOG,
    benchmark:
        job_benchmark("train", TRAIN_LOG),
    conda:
        ENV
    threads: RES["train"]["threads"]
    resources:
        **job_resources("train"),
    params:
        bmip=bmip_command,
        ledger=ledger_command("train"),
        config=experiment_config,
        runs=train_runs,
        settings=settings_of("train"),
        code=code_of("train"),
        what=train_what,
        seeds=seeds_arg,
    shell:
        "printf '%s' {params.config:q} | OMP_NUM_THREADS={threads} {params.bmip} train - --method {wildcards.method:q} "
        "{params.what} --seed {params.seeds} > {log:q} 2>&1 && {params.ledger} {output:q}"
