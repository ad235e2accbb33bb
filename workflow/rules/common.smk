# Config validation, the job grid, and paths: everything the rules share.
import json
import os
import sys

from snakemake.exceptions import WorkflowError

from bmip.config import TRAINED_BY, ConfigError, check_ablations, check_dataset_names, run_config, validate
from bmip.data import resolve_name
from bmip.engine import data_check as DC
from bmip.engine import paths as P
from bmip.engine.gates import has_gates
from bmip.engine.mechanism import has_mechanism
from bmip.methods import frozen_image_tower
from bmip.report.figures import FIGURES, SECTIONS
from bmip.report.tables import TABLES

try:
    _validated = validate(dict(config), "the workflow config")
    check_dataset_names(_validated, "the workflow config")
    check_ablations(_validated, "the workflow config")
except ConfigError as err:
    raise WorkflowError(str(err)) from None
config.clear()
config.update(_validated)

EXP = str(P.experiment_dir(config))
DATA = config["data_root"]
SEEDS = config["seeds"]
METHODS = config["methods"]
PROTOCOLS = config["protocols"]
BATCH_SEEDS = config["workflow"]["batch_seeds"]
BATCH_DATASETS = config["workflow"]["batch_datasets"]
RES = config["workflow"]["resources"]
MINIWORLD = "miniworld" in config
ENV = "../envs/bmip.yaml"


wildcard_constraints:
    training="base2novel|cross_dataset",
    protocol="base2novel|open_world|cross_dataset|domain_generalization",
    method="[a-z]+(\\+(promptsrc|coprompt))?",
    dataset="[A-Za-z0-9_.-]+",
    seed="[0-9]+",


def job_resources(kind):
    """What a train or evaluate job asks the executor for (workflow.resources.<kind>); `gres`
    (SLURM generic resources, e.g. a GPU shard) only where the config sets it."""
    return {key: RES[kind][key] for key in ("mem_mb", "runtime", "gpu", "gres") if key in RES[kind]}


def check_config_resources():
    """The first job checks the device the config asks for. For an explicit `cuda` it must run
    where the train jobs run, with their GPU (on a cluster: on a GPU node), or it would refuse a
    GPU that the train jobs will have."""
    if config["device"].startswith("cuda"):
        gpu = {key: value for key, value in job_resources("train").items() if key in ("gpu", "gres")}
        return {**RES["light"], **gpu}
    return RES["light"]


def bmip_command(wildcards, input):
    """The package's command line under the interpreter running Snakemake: no PATH set-up needed.
    It takes `input` so that Snakemake counts it as derived and leaves it out of its params-change
    trigger: `python -m snakemake` after `snakemake`, or a venv at another path, reruns nothing."""
    return f"{sys.executable} -m bmip.cli"


def experiment_config(wildcards, input):
    """The resolved experiment config, handed to a job on stdin. It takes `input` so that
    Snakemake counts it as derived and leaves it out of its params-change trigger: what reruns
    a job is a change of its own resolved runs (the `runs` param), never of an unrelated key.
    """
    return json.dumps(config, sort_keys=True)


def per_seed(pattern):
    """A job's outputs: one `{seed}` wildcard, or every configured seed when seeds are batched."""
    return expand(pattern, seed=SEEDS, allow_missing=True) if BATCH_SEEDS else [pattern]


def seeds_of(wildcards):
    return SEEDS if BATCH_SEEDS else [int(wildcards.seed)]


def seeds_arg(wildcards):
    return " ".join(str(s) for s in seeds_of(wildcards))


def job_log(stage, *parts):
    parts = [EXP, "logs", stage, *parts] + ([] if BATCH_SEEDS else ["seed{seed}"])
    return os.path.join(*parts) + ".log"


def trainings_of(wildcards):
    """The (training protocol, dataset) pairs one train job covers: its own, or every pair the
    config needs when datasets are batched."""
    if BATCH_DATASETS:
        return P.trainings(config)
    return [(wildcards.training, wildcards.dataset)]


def train_outputs(name):
    pairs = P.trainings(config) if BATCH_DATASETS else [("{training}", "{dataset}")]
    return [
        path
        for training, dataset in pairs
        for path in per_seed(f"{EXP}/train/{training}/{{method}}/{dataset}/seed{{seed}}/{name}")
    ]


def resolved_runs(trained, wildcards):
    """The resolved run configs of a job's trained models, (training, dataset) pairs x its seeds:
    as a param, changing one method's recipe reruns only that method's jobs."""
    runs = [
        run_config(config, training, wildcards.method, dataset, seed)
        for training, dataset in trained
        for seed in seeds_of(wildcards)
    ]
    return json.dumps(runs, sort_keys=True)


def train_runs(wildcards):
    return resolved_runs(trainings_of(wildcards), wildcards)


def train_what(wildcards):
    """`bmip train` arguments naming what one job trains."""
    if BATCH_DATASETS:
        return "--all"
    return f"--protocol {wildcards.training} --dataset {wildcards.dataset}"


def metrics_files():
    return [
        f"{EXP}/{protocol}/{method}/{dataset}/seed{seed}/{P.METRICS}"
        for protocol in PROTOCOLS
        for method in METHODS
        for dataset in P.eval_datasets(config, protocol)
        for seed in SEEDS
    ]


def train_log_files():
    return [
        f"{EXP}/train/{training}/{method}/{dataset}/seed{seed}/{P.TRAIN_LOG}"
        for training, dataset in P.trainings(config)
        for method in METHODS
        for seed in SEEDS
    ]


def gated_metrics_files():
    """The base-to-novel evaluations of BMIP methods: each writes gates.json beside metrics.json
    (not a declared output, since only these methods write one), which the gate figure reads."""
    if "base2novel" not in PROTOCOLS:
        return []
    return [
        f"{EXP}/base2novel/{method}/{dataset}/seed{seed}/{P.METRICS}"
        for method in METHODS
        if has_gates(method)
        for dataset in P.eval_datasets(config, "base2novel")
        for seed in SEEDS
    ]


def mechanism_metrics_files():
    """The base-to-novel evaluations of prompt methods: each writes mechanism.json beside
    metrics.json (not a declared output, like gates.json), which the mechanism figures read."""
    if "base2novel" not in PROTOCOLS:
        return []
    return [
        f"{EXP}/base2novel/{method}/{dataset}/seed{seed}/{P.METRICS}"
        for method in METHODS
        if has_mechanism(method)
        for dataset in P.eval_datasets(config, "base2novel")
        for seed in SEEDS
    ]


def causal_files():
    """`bmip analyze`'s records for the config's analysis subset (seeds: all when it names none)."""
    analysis = config["analysis"]
    return [
        f"{EXP}/analysis/{method}/{dataset}/seed{seed}/causal.json"
        for method in analysis["methods"]
        for dataset in analysis["datasets"]
        for seed in (analysis["seeds"] or SEEDS)
    ]


def table_files():
    main = expand(f"{EXP}/tables/{{table}}.{{ext}}", table=TABLES, ext=("csv", "md", "tex"))
    return main + ablation_tables()  # rules/ablations.smk


def figure_files():
    figures = expand(
        f"{EXP}/figures/{{figure}}.{{ext}}", figure=FIGURES, ext=("png", "pdf")
    )
    return figures + ([f"{EXP}/figures/miniworld_samples.png"] if MINIWORLD else []) + ablation_figures()


def dataset_ready(dataset):
    """What says a dataset is in place: the generated world, a download stamp for the paper's
    datasets, or (bring your own) the dataset's own folder under data_root."""
    if MINIWORLD:
        return f"{DATA}/world.json"
    if resolve_name(dataset) is not None:
        return f"{DATA}/_downloads/ready/{dataset}.json"
    return f"{DATA}/{dataset}"


def backbone_files():
    """A local backbone weight file the workflow itself produces (the miniworld CLIP)."""
    return [config["backbone"]["pretrained"]] if MINIWORLD else []


def data_check_records(datasets):
    """The data check records of `datasets` (bmip.engine.data_check): what a job waits for."""
    return [f"{EXP}/{DC.RECORDS}/{dataset}.json" for dataset in sorted(datasets)]


def check_outputs():
    if BATCH_DATASETS:
        return data_check_records(DC.checked_datasets(config))
    return f"{EXP}/{DC.RECORDS}/{{dataset}}.json"


def check_datasets(wildcards):
    """The datasets one check job covers: its own, or every one when datasets are batched."""
    return DC.checked_datasets(config) if BATCH_DATASETS else [wildcards.dataset]


def check_inputs(wildcards):
    return [dataset_ready(dataset) for dataset in check_datasets(wildcards)]


def check_params(wildcards):
    """What decides which images a check job reads: whether each dataset is trained on, then with
    which seeds and shots (every checked dataset's test list is read)."""
    trained = {dataset for _, dataset in P.trainings(config)}
    return json.dumps(
        {
            dataset: {"seeds": SEEDS, "shots": config["shots"]} if dataset in trained else "test only"
            for dataset in check_datasets(wildcards)
        },
        sort_keys=True,
    )


def split_files(wildcards):
    datasets = dict.fromkeys(dataset for _, dataset in trainings_of(wildcards))
    return [
        f"{EXP}/splits/{dataset}/shot_{config['shots']}-seed_{s}.json"
        for dataset in datasets
        for s in seeds_of(wildcards)
    ]


def eval_rules():
    """The protocols each evaluation rule covers, by rule name (bmip.engine.paths.evaluate_rule)."""
    rules = {}
    for protocol in PROTOCOLS:
        rules.setdefault(P.evaluate_rule(config, protocol), []).append(protocol)
    return rules


def eval_per_dataset(protocols):
    """A base2novel-trained protocol's own rule has one job per dataset unless datasets are batched;
    cross_dataset and domain_generalization jobs cover every target."""
    return not BATCH_DATASETS and all(TRAINED_BY[p] == "base2novel" for p in protocols)


def eval_pairs(protocols, wildcards):
    """The (protocol, dataset) pairs one evaluation job covers."""
    if eval_per_dataset(protocols):
        return [(p, wildcards.dataset) for p in protocols]
    return [(p, d) for p in protocols for d in P.eval_datasets(config, p)]


def eval_inputs(protocols):
    def inputs(wildcards):
        pairs = eval_pairs(protocols, wildcards)
        return {
            "prompts": list(
                dict.fromkeys(
                    str(P.checkpoint_for(config, protocol, wildcards.method, dataset, seed))
                    for protocol, dataset in pairs
                    for seed in seeds_of(wildcards)
                )
            ),
            "data": sorted({dataset_ready(dataset) for _, dataset in pairs}),
            "data_check": data_check_records({dataset for _, dataset in pairs}),
            "features": (
                sorted({features_file(dataset) for _, dataset in pairs})
                if frozen_image_tower(wildcards.method)
                else []
            ),
        }

    return inputs


# The test sets whose frozen image features the configured methods read (bmip.engine.features).
FEATURE_DATASETS = (
    list(dict.fromkeys(d for protocol in PROTOCOLS for d in P.eval_datasets(config, protocol)))
    if any(frozen_image_tower(method) for method in METHODS)
    else []
)


def features_data(wildcards):
    datasets = FEATURE_DATASETS if BATCH_DATASETS else [wildcards.dataset]
    return sorted({dataset_ready(dataset) for dataset in datasets})


def features_file(dataset):
    """The frozen image features of a test set (bmip.engine.features.features_path)."""
    return str(P.features_file(EXP, dataset))


def features_settings(wildcards, input):
    """The config keys frozen image features depend on (the rest of their key is in the inputs)."""
    keys = ("backbone", "eval_batch_size", "precision", "device")
    return json.dumps({key: config[key] for key in keys}, sort_keys=True)


def eval_runs(protocols):
    """What shapes an evaluation job's numbers: the trained runs' configs (its protocols'
    settings are a separate param)."""

    def params(wildcards):
        trained = dict.fromkeys(
            (TRAINED_BY[protocol], P.training_dataset(config, protocol, dataset))
            for protocol, dataset in eval_pairs(protocols, wildcards)
        )
        return resolved_runs(trained, wildcards)

    return params


def eval_what(protocols):
    """`bmip evaluate` arguments naming what one job evaluates."""

    def what(wildcards):
        if BATCH_DATASETS:
            return "--all"
        datasets = " ".join(dict.fromkeys(d for _, d in eval_pairs(protocols, wildcards)))
        return f"--protocol {' '.join(protocols)} --dataset {datasets}"

    return what


def eval_outputs(protocols, name):
    return [
        path
        for protocol in protocols
        for target in (["{dataset}"] if eval_per_dataset(protocols) else P.eval_datasets(config, protocol))
        for path in per_seed(f"{EXP}/{protocol}/{{method}}/{target}/seed{{seed}}/{name}")
    ]


# Ablations (config `ablations:`, bmip/ablations.py; rules in ablations.smk).
import re
from pathlib import Path

from bmip import ablations as A
from bmip.report.ablations import ablation_outputs

ABLATIONS = A.ablations(config)
ABLATION_OUTPUTS = ablation_outputs(config)
PAIRED = "paired_base2novel" in ABLATION_OUTPUTS["tables"]


def ablation_tables():
    return expand(f"{EXP}/tables/{{name}}.{{ext}}", name=ABLATION_OUTPUTS["tables"], ext=("csv", "md", "tex"))


def ablation_figures():
    return expand(f"{EXP}/figures/{{name}}.{{ext}}", name=ABLATION_OUTPUTS["figures"], ext=("png", "pdf"))


def ablation_seeds(ablation, wildcards):
    return list(ablation.seeds) if BATCH_SEEDS else [int(wildcards.seed)]


def ablation_trained(grid, wildcards):
    """The (training protocol, dataset) pairs one variant train job covers: all of its ablation's
    when datasets are batched, else its own."""
    return P.trainings(grid) if BATCH_DATASETS else [(wildcards.training, wildcards.dataset)]


def ablation_evaluated(grid, wildcards):
    return P.evaluations(grid) if BATCH_DATASETS else [(wildcards.protocol, wildcards.dataset)]


def variant_runs(ablation, pairs, wildcards):
    """The resolved run configs of the trained models one variant job covers: as a param,
    changing one variant's recipe reruns only that variant's jobs."""
    grid = A.method_config(config, wildcards.method)
    trained = dict.fromkeys((TRAINED_BY.get(p, p), P.training_dataset(grid, p, d) if p in TRAINED_BY else d)
                            for p, d in pairs(grid, wildcards))
    runs = [run_config(config, t, wildcards.method, d, s) for t, d in trained for s in ablation_seeds(ablation, wildcards)]
    return json.dumps(runs, sort_keys=True)


def _alternatives(names):
    return "|".join(re.escape(str(n)) for n in dict.fromkeys(names))


def ablation_metrics():
    return [
        f"{EXP}/{p}/{v}/{d}/seed{s}/{P.METRICS}"
        for a in ABLATIONS
        for v in a.names
        for p, d in P.evaluations(A.method_config(config, v))
        for s in a.seeds
    ]
