# The causal checks of the prompt mechanism (bmip analyze; a reconstruction of Ma et al.): one
# job per (method, dataset, seed) of the config's `analysis:` subset, on the base-to-novel model.
# The mechanism record itself needs no rule: every evaluation of a prompt method writes it.


rule analyze:
    input:
        prompts=P.train_file(EXP, "base2novel", "{method}", "{dataset}", "{seed}", P.PROMPTS),
        data_check=lambda wildcards: data_check_records({wildcards.dataset}),
        backbone=backbone_files(),
    output:
        P.causal_file(EXP, "{method}", "{dataset}", "{seed}"),
    log:
        f"{EXP}/logs/analyze/{{method}}/{{dataset}}/seed{{seed}}.log",
    benchmark:
        job_benchmark("analyze", f"{EXP}/logs/analyze/{{method}}/{{dataset}}/seed{{seed}}.log"),
    conda:
        ENV
    threads: RES["evaluate"]["threads"]
    resources:
        **job_resources("evaluate"),
    params:
        bmip=bmip_command,
        ledger=ledger_command("analyze"),
        config=experiment_config,
        runs=lambda wildcards: json.dumps(
            run_config(config, "base2novel", wildcards.method, wildcards.dataset, int(wildcards.seed)), sort_keys=True
        ),
        settings=settings_of("analyze"),
        code=code_of("analyze"),
    shell:
        "printf '%s' {params.config:q} | OMP_NUM_THREADS={threads} {params.bmip} analyze - "
        "--method {wildcards.method:q} --dataset {wildcards.dataset:q} --seed {wildcards.seed} > {log:q} 2>&1 "
        "&& {params.ledger} {output:q}"
