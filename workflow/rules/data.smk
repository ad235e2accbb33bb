# Data: the generated miniworld (default) or downloaded datasets, and the few-shot split files.


rule write_config:
    # The resolved experiment config every job reads. Jobs depend on it with ancient(): what
    # reruns a job is a change of its own resolved run config (its params), not of this file.
    output:
        f"{EXP}/config.yaml",
    params:
        config=lambda wildcards: json.dumps(config, sort_keys=True),
    resources:
        **RES["light"],
    run:
        import yaml

        from bmip.io import atomic_write

        atomic_write(output[0], lambda tmp: tmp.write_text(yaml.safe_dump(json.loads(params.config), sort_keys=False)))


if MINIWORLD:

    rule miniworld_generate:
        output:
            f"{DATA}/world.json",
        params:
            seed=config["miniworld"]["seed"],
            size=config["miniworld"]["size"],
        log:
            f"{EXP}/logs/miniworld_generate.log",
        threads: 1
        resources:
            **RES["light"],
        shell:
            "{BMIP} miniworld-generate --root {DATA} --seed {params.seed} --size {params.size} > {log} 2>&1"

    rule miniworld_pretrain:
        input:
            f"{DATA}/world.json",
        output:
            config["backbone"]["pretrained"],
        params:
            seed=config["miniworld"]["seed"],
            steps=lambda wildcards: (
                f"--steps {config['miniworld']['pretrain_steps']}" if config["miniworld"]["pretrain_steps"] else ""
            ),
        log:
            f"{EXP}/logs/miniworld_pretrain.log",
        threads: config["miniworld"]["threads"]
        resources:
            **RES["train"],
        shell:
            "{BMIP} miniworld-pretrain --out {output} --seed {params.seed} {params.steps} "
            "--threads {threads} > {log} 2>&1"

    rule miniworld_figure:
        input:
            f"{DATA}/world.json",
        output:
            report(f"{EXP}/figures/miniworld_samples.png", caption="../report/miniworld.rst", category="Data"),
        log:
            f"{EXP}/logs/miniworld_figure.log",
        resources:
            **RES["light"],
        shell:
            "{BMIP} miniworld-figure --root {DATA} --out {output} > {log} 2>&1"

else:

    rule download:
        output:
            f"{DATA}/_downloads/ready/{{dataset}}.json",
        log:
            f"{EXP}/logs/download/{{dataset}}.log",
        retries: 2
        resources:
            **RES["light"],
        shell:
            "{BMIP} download {wildcards.dataset} --root {DATA} --no-progress --stamp {output} > {log} 2>&1"


rule fewshot_splits:
    input:
        lambda wildcards: dataset_ready(wildcards.dataset),
    output:
        expand(f"{EXP}/splits/{{{{dataset}}}}/shot_{config['shots']}-seed_{{seed}}.json", seed=SEEDS),
    params:
        seeds=" ".join(str(s) for s in SEEDS),
    log:
        f"{EXP}/logs/splits/{{dataset}}.log",
    resources:
        **RES["light"],
    shell:
        "{BMIP} splits {wildcards.dataset} --root {DATA} --shots {config[shots]} --seed {params.seeds} "
        "--out {EXP}/splits > {log} 2>&1"
