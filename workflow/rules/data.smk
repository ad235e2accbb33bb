# Data: the generated miniworld (default) or downloaded datasets, and the few-shot split files.


rule write_config:
    # The resolved experiment config, for the record, written once every method recipe has been
    # built on the backbone (random weights, seconds). It runs first (highest priority, no
    # inputs), so a recipe that does not fit stops the run before data preparation and training.
    # Jobs get the config on stdin and do not depend on this file: a rerun of it (any config
    # change) would rerun everything below it, and with `ancient` Snakemake skips their own
    # params-change check. It also stops a config whose device or precision cannot run there.
    priority: 100
    output:
        f"{EXP}/config.yaml",
    log:
        f"{EXP}/logs/write_config.log",
    benchmark:
        job_benchmark("write_config", f"{EXP}/logs/write_config.log"),
    conda:
        ENV
    resources:
        **check_config_resources(),
    params:
        bmip=bmip_command,
        ledger=ledger_command("write_config"),
        config=json.dumps(config, sort_keys=True),
        code=code_of("write_config"),
    shell:
        "printf '%s' {params.config:q} | {params.bmip} check-config - --write {output:q} > {log:q} 2>&1 "
        "&& {params.ledger} {output:q}"


if MINIWORLD:

    rule miniworld_generate:
        output:
            f"{DATA}/world.json",
        log:
            f"{EXP}/logs/miniworld_generate.log",
        benchmark:
            job_benchmark("miniworld_generate", f"{EXP}/logs/miniworld_generate.log"),
        conda:
            ENV
        resources:
            **RES["light"],
        params:
            bmip=bmip_command,
            root=lambda wildcards, output: os.path.dirname(output[0]),
            seed=config["miniworld"]["seed"],
            size=config["miniworld"]["size"],
            code=code_of("miniworld_generate"),
        shell:
            "{params.bmip} miniworld-generate --root {params.root:q} --seed {params.seed} --size {params.size:q} "
            "> {log:q} 2>&1"

    rule miniworld_pretrain:
        input:
            f"{DATA}/world.json",
        output:
            config["backbone"]["pretrained"],
        log:
            f"{EXP}/logs/miniworld_pretrain.log",
        benchmark:
            job_benchmark("miniworld_pretrain", f"{EXP}/logs/miniworld_pretrain.log"),
        conda:
            ENV
        threads: config["miniworld"]["threads"]
        resources:
            mem_mb=RES["train"]["mem_mb"],
            runtime=RES["train"]["runtime"],
        params:
            bmip=bmip_command,
            ledger=ledger_command("miniworld_pretrain"),
            seed=config["miniworld"]["seed"],
            steps=(
                f"--steps {config['miniworld']['pretrain_steps']}"
                if config["miniworld"]["pretrain_steps"]
                else ""
            ),
            code=code_of("miniworld_pretrain"),
        shell:
            "{params.bmip} miniworld-pretrain --out {output:q} --seed {params.seed} {params.steps} "
            "--threads {threads} > {log:q} 2>&1 && {params.ledger} {output:q}"

    rule miniworld_figure:
        input:
            f"{DATA}/world.json",
        output:
            report(
                f"{EXP}/figures/miniworld_samples.png",
                caption="../report/miniworld.rst",
                category="Data",
            ),
        log:
            f"{EXP}/logs/miniworld_figure.log",
        benchmark:
            job_benchmark("miniworld_figure", f"{EXP}/logs/miniworld_figure.log"),
        conda:
            ENV
        resources:
            **RES["light"],
        params:
            bmip=bmip_command,
            ledger=ledger_command("miniworld_figure"),
            root=lambda wildcards, input: os.path.dirname(input[0]),
            code=code_of("miniworld_figure"),
        shell:
            "{params.bmip} miniworld-figure --root {params.root:q} --out {output:q} > {log:q} 2>&1 "
            "&& {params.ledger} {output:q}"

else:

    rule download:
        # Runs where Snakemake runs (localrule): on a cluster, the login node, which has network
        # where compute nodes often have none, and no job time limit to outlast (SUN397 is 39 GB).
        # With everything fetched beforehand (`bmip download --config ...`), it only verifies.
        output:
            f"{EXP}/{INV.FOLDER}/downloaded/{{dataset}}.json",
        log:
            f"{EXP}/logs/download/{{dataset}}.log",
        benchmark:
            job_benchmark("download", f"{EXP}/logs/download/{{dataset}}.log"),
        localrule: True
        retries: 2
        conda:
            ENV
        resources:
            **RES["light"],
        params:
            bmip=bmip_command,
            root=lambda wildcards: dataset_root(config, wildcards.dataset),
        shell:
            "HF_HUB_OFFLINE=0 {params.bmip} download {wildcards.dataset:q} --root {params.root:q} --no-progress "
            "--stamp {output:q} > {log:q} 2>&1"


if WEIGHTS_TAG:

    rule weights:
        # The backbone's pretrained weights (a tag such as openai), fetched once into
        # backbone.cache_dir where Snakemake runs (localrule, as downloads); every job that reads
        # them waits for this and reads them offline (HF_HUB_OFFLINE, set in common.smk).
        output:
            WEIGHTS_STAMP,
        log:
            f"{EXP}/logs/weights.log",
        benchmark:
            job_benchmark("weights", f"{EXP}/logs/weights.log"),
        localrule: True
        conda:
            ENV
        resources:
            **RES["light"],
        params:
            bmip=bmip_command,
            # What it fetches, and where: the weights rerun when these change, not on any config key.
            backbone=json.dumps({key: config["backbone"].get(key) for key in ("model", "pretrained", "cache_dir")}),
            config=experiment_config,
        shell:
            "printf '%s' {params.config:q} | HF_HUB_OFFLINE=0 {params.bmip} download --config - --weights-only "
            "--no-progress --stamp {output:q} > {log:q} 2>&1"


rule inventory:
    # The record of the images the config's runs read (bmip/engine/inventory.py), once the dataset
    # is in place. The workflow brings it up to date each time it starts, rewriting it only when
    # the images changed, so this job runs only when the dataset was not in place at the start.
    # Its input is `ancient`: what counts is the images it records, not a stamp's time.
    input:
        ancient(lambda wildcards: dataset_ready(wildcards.dataset)),
    output:
        f"{EXP}/{INV.FOLDER}/{{dataset}}.json",
    log:
        f"{EXP}/logs/inventory/{{dataset}}.log",
    benchmark:
        job_benchmark("inventory", f"{EXP}/logs/inventory/{{dataset}}.log"),
    localrule: True
    conda:
        ENV
    resources:
        **RES["light"],
    params:
        bmip=bmip_command,
        config=experiment_config,
    shell:
        "printf '%s' {params.config:q} | {params.bmip} check-data - --dataset {wildcards.dataset:q} --inventory "
        "> {log:q} 2>&1"


rule fewshot_splits:
    # After the data check: a split is drawn from images known to decode, and drawn again once the
    # broken files a failed check named are removed.
    input:
        data_check=lambda wildcards: data_check_records([wildcards.dataset]),
    output:
        expand(
            P.split_file(EXP, "{{dataset}}", config["shots"], "{seed}"),
            seed=SEEDS,
        ),
    log:
        f"{EXP}/logs/splits/{{dataset}}.log",
    benchmark:
        job_benchmark("fewshot_splits", f"{EXP}/logs/splits/{{dataset}}.log"),
    conda:
        ENV
    resources:
        **RES["light"],
    params:
        bmip=bmip_command,
        ledger=ledger_command("fewshot_splits"),
        root=lambda wildcards: dataset_root(config, wildcards.dataset),
        shots=config["shots"],
        seeds=" ".join(str(s) for s in SEEDS),
        out=lambda wildcards, output: os.path.dirname(os.path.dirname(output[0])),
        code=code_of("fewshot_splits"),
    shell:
        "{params.bmip} splits {wildcards.dataset:q} --root {params.root:q} --shots {params.shots} "
        "--seed {params.seeds} --out {params.out:q} > {log:q} 2>&1 && {params.ledger} {output:q}"



rule check_data:
    # Every image the config's runs read (few-shot train and val items of every seed, every test
    # item), opened and fully decoded before any training (bmip/engine/data_check.py): the split,
    # train and evaluate jobs depend on the records of their datasets, so an unreadable file stops
    # the grid before its first GPU hour, with every such file of the checked datasets listed in the
    # log. One job per dataset, or one for all with workflow.batch_datasets, as training; a dataset
    # whose files are unchanged since they last passed is not decoded again.
    priority: 50
    input:
        check_inputs,
    output:
        check_outputs(),
    log:
        f"{EXP}/logs/check_data.log" if BATCH_DATASETS else f"{EXP}/logs/check_data/{{dataset}}.log",
    benchmark:
        job_benchmark("check_data", f"{EXP}/logs/check_data.log" if BATCH_DATASETS else f"{EXP}/logs/check_data/{{dataset}}.log"),
    conda:
        ENV
    threads: max(1, config["workers"])
    resources:
        **RES["light"],
    params:
        bmip=bmip_command,
        ledger=ledger_command("check_data"),
        config=experiment_config,
        checked=check_params,
        what=lambda wildcards: "" if BATCH_DATASETS else f"--dataset {shlex.quote(wildcards.dataset)}",
        code=code_of("check_data"),
    shell:
        "printf '%s' {params.config:q} | {params.bmip} check-data - {params.what} --workers {threads} > {log:q} 2>&1 "
        "&& {params.ledger} {output:q}"
