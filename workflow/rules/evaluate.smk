# Evaluation. Without workflow.batch_datasets, one rule per configured protocol: base2novel and
# open_world have one job per (method, dataset[, seed]) on the base-trained model of that
# dataset; cross_dataset and domain_generalization one job per (method[, seed]) running the
# source-trained model on every target. With it, the single rule `evaluate` has one job per
# (method[, seed]) covering every protocol and dataset.


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
            provenance=eval_outputs(_protocols, P.PROVENANCE),
        log:
            _log,
        conda:
            ENV
        threads: RES["evaluate"]["threads"]
        resources:
            **job_resources("evaluate"),
        params:
            bmip=bmip_command,
            config=experiment_config,
            # What shapes the numbers: the trained runs' configs and these protocols' settings.
            runs=eval_runs(_protocols),
            settings=json.dumps({p: PROTOCOLS[p] for p in _protocols}, sort_keys=True),
            what=eval_what(_protocols),
            seeds=seeds_arg,
        shell:
            "printf '%s' {params.config:q} | OMP_NUM_THREADS={threads} {params.bmip} evaluate - --method {wildcards.method} "
            "{params.what} --seed {params.seeds} > {log} 2>&1"
