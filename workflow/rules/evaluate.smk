# Evaluation, one rule per configured protocol. base2novel and open_world: one job per
# (method, dataset[, seed]) on the base-trained model of that dataset. cross_dataset and
# domain_generalization: one job per (method[, seed]) running the source-trained model on
# every target.


def eval_inputs(protocol, per_dataset):
    def inputs(wildcards):
        source = wildcards.dataset if per_dataset else PROTOCOLS[protocol]["source"]
        datasets = [wildcards.dataset] if per_dataset else eval_datasets(protocol)
        return {
            "config": ancient(f"{EXP}/config.yaml"),
            "prompts": [
                f"{EXP}/train/{TRAINED_BY[protocol]}/{wildcards.method}/{source}/seed{s}/{P.PROMPTS}"
                for s in seeds_of(wildcards)
            ],
            "data": sorted({dataset_ready(d) for d in datasets}),
        }

    return inputs


def eval_outputs(protocol, name, per_dataset):
    if per_dataset:
        return per_seed(f"{EXP}/{protocol}/{{method}}/{{dataset}}/seed{{seed}}/{name}")
    return [
        path
        for target in eval_datasets(protocol)
        for path in per_seed(f"{EXP}/{protocol}/{{method}}/{target}/seed{{seed}}/{name}")
    ]


for _protocol in PROTOCOLS:
    _per_dataset = _protocol in ("base2novel", "open_world")
    _log = job_log(f"evaluate_{_protocol}", "{method}", *(["{dataset}"] if _per_dataset else []))

    rule:
        name:
            f"evaluate_{_protocol}"
        input:
            unpack(eval_inputs(_protocol, _per_dataset)),
        output:
            metrics=eval_outputs(_protocol, P.METRICS, _per_dataset),
            provenance=eval_outputs(_protocol, P.PROVENANCE, _per_dataset),
        params:
            # What shapes the numbers: the trained runs' configs and this protocol's settings.
            runs=run_params(
                lambda w, p=_protocol: TRAINED_BY[p],
                (lambda w: w.dataset) if _per_dataset else (lambda w, p=_protocol: PROTOCOLS[p]["source"]),
            ),
            settings=json.dumps(PROTOCOLS[_protocol], sort_keys=True),
            seeds=seeds_arg,
            datasets=(lambda w: w.dataset) if _per_dataset else " ".join(eval_datasets(_protocol)),
            protocol=_protocol,
        log:
            _log,
        threads: RES["evaluate"]["threads"]
        resources:
            mem_mb=RES["evaluate"]["mem_mb"],
            runtime=RES["evaluate"]["runtime"],
            gpu=RES["evaluate"]["gpu"],
        shell:
            "{BMIP} evaluate {input.config} --protocol {params.protocol} --method {wildcards.method} "
            "--dataset {params.datasets} --seed {params.seeds} > {log} 2>&1"
