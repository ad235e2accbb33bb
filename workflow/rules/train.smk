# One training job per (training protocol, method, dataset, seed) — or per (protocol, method,
# dataset) for every seed when workflow.batch_seeds is set. base2novel trains on the base
# classes (its model also serves open_world); cross_dataset trains on all classes of the source
# (its model also serves domain_generalization).


rule train:
    input:
        splits=split_files,
        backbone=backbone_files(),
    output:
        prompts=per_seed(
            f"{EXP}/train/{{training}}/{{method}}/{{dataset}}/seed{{seed}}/{P.PROMPTS}"
        ),
        log=per_seed(
            f"{EXP}/train/{{training}}/{{method}}/{{dataset}}/seed{{seed}}/{P.TRAIN_LOG}"
        ),
        provenance=per_seed(
            f"{EXP}/train/{{training}}/{{method}}/{{dataset}}/seed{{seed}}/{P.PROVENANCE}"
        ),
    log:
        job_log("train", "{training}", "{method}", "{dataset}"),
    conda:
        ENV
    threads: RES["train"]["threads"]
    resources:
        mem_mb=RES["train"]["mem_mb"],
        runtime=RES["train"]["runtime"],
        gpu=RES["train"]["gpu"],
    params:
        bmip=BMIP,
        config=experiment_config,
        runs=run_params(lambda w: w.training, lambda w: w.dataset),
        seeds=seeds_arg,
    shell:
        "printf '%s' {params.config:q} | OMP_NUM_THREADS={threads} {params.bmip} train - --protocol {wildcards.training} --method {wildcards.method} "
        "--dataset {wildcards.dataset} --seed {params.seeds} > {log} 2>&1"
