# Captions (bmip/captions, docs/captions.md): one job per dataset writes a caption for every image
# the config's runs read (the few-shot train and val images of every seed, every test image), keyed
# by path and content hash, once for every method and seed. It runs when the config has a
# `captions:` section. With an MLLM captioner it is a GPU job (an evaluate job's resources); a
# rerun (changed images, captioner settings or code) captions only what its last file lacks.


if CAPTION_DATASETS:

    rule captions:
        input:
            inventory=lambda wildcards: inventory_file(wildcards.dataset),
            data_check=lambda wildcards: data_check_records([wildcards.dataset]),
        output:
            caption_file("{dataset}"),
        log:
            f"{EXP}/logs/captions/{{dataset}}.log",
        benchmark:
            job_benchmark("captions", f"{EXP}/logs/captions/{{dataset}}.log"),
        conda:
            ENV
        threads: caption_job().get("threads", 1)
        resources:
            **caption_resources(),
        params:
            bmip=bmip_command,
            ledger=ledger_command("captions"),
            config=experiment_config,
            settings=settings_of("captions"),
            code=code_of("captions"),
        shell:
            "printf '%s' {params.config:q} | OMP_NUM_THREADS={threads} {params.bmip} captions - "
            "--dataset {wildcards.dataset:q} > {log:q} 2>&1 && {params.ledger} {output:q}"
