# Evaluation, one rule per configured protocol. base2novel and open_world: one job per
# (method, dataset[, seed]) on the base-trained model of that dataset (per (method[, seed]) for
# every dataset when workflow.batch_datasets is set). cross_dataset and domain_generalization:
# one job per (method[, seed]) running the source-trained model on every target.


for _protocol in PROTOCOLS:
    _per_dataset = eval_per_dataset(_protocol)
    _log = job_log(
        f"evaluate_{_protocol}", "{method}", *(["{dataset}"] if _per_dataset else [])
    )

    rule:
        name:
            f"evaluate_{_protocol}"
        input:
            unpack(eval_inputs(_protocol)),
        output:
            metrics=eval_outputs(_protocol, P.METRICS),
            provenance=eval_outputs(_protocol, P.PROVENANCE),
        log:
            _log,
        conda:
            ENV
        threads: RES["evaluate"]["threads"]
        resources:
            mem_mb=RES["evaluate"]["mem_mb"],
            runtime=RES["evaluate"]["runtime"],
            gpu=RES["evaluate"]["gpu"],
        params:
            bmip=BMIP,
            config=experiment_config,
            # What shapes the numbers: the trained runs' configs and this protocol's settings.
            runs=eval_runs(_protocol),
            settings=json.dumps(PROTOCOLS[_protocol], sort_keys=True),
            seeds=seeds_arg,
            datasets=lambda w, p=_protocol: " ".join(eval_datasets_of(p, w)),
            protocol=_protocol,
        shell:
            "printf '%s' {params.config:q} | OMP_NUM_THREADS={threads} {params.bmip} evaluate - --protocol {params.protocol} --method {wildcards.method} "
            "--dataset {params.datasets} --seed {params.seeds} > {log} 2>&1"
